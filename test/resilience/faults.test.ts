import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import {
  bounded,
  countBy,
  grpc,
  grpcFailures,
  grpcInfer,
  NO_CHECKS,
  restFailures,
  restInfer,
  startFaultGateway,
  until,
  type FaultGateway,
} from './fault-kit.js';

/**
 * What clients of the gateway see when backends misbehave on real sockets:
 * every endpoint refusing, hanging, slow, or one that never existed. Faults
 * come from TCP fault proxies between the gateway and reference Triton servers,
 * or from the references themselves (setFault). Health checks are off
 * everywhere, so only the circuit breakers take endpoints out of rotation.
 */

const REF = { host: '127.0.0.1' };

describe('every endpoint down (connections refused)', () => {
  const TIMEOUT_MS = 5000;
  const RESET_MS = 2000;
  let refs: TritonReference[] = [];
  let proxies: FaultProxy[] = [];
  let gw: FaultGateway;

  beforeAll(async () => {
    refs = await Promise.all([0, 1].map(() => startTritonReference(REF)));
    // [rest 0, rest 1, grpc 0, grpc 1]
    proxies = await Promise.all([...refs.map((r) => startFaultProxy(r.httpEndpoint)), ...refs.map((r) => startFaultProxy(r.grpcEndpoint))]);
    const common = {
      kind: 'triton',
      load_balancing: { policy: 'round_robin' },
      timeout_ms: TIMEOUT_MS,
      circuit_breaker: { minimum_requests: 5, window_ms: 5000, reset_timeout_ms: RESET_MS },
      ...NO_CHECKS,
    };
    gw = await startFaultGateway({
      backends: {
        'down-rest': { ...common, protocol: 'rest', endpoints: [proxies[0]!.endpoint, proxies[1]!.endpoint] },
        'down-grpc': { ...common, protocol: 'grpc', endpoints: [proxies[2]!.endpoint, proxies[3]!.endpoint] },
      },
      models: {
        'down-rest': { backend: 'down-rest', model: 'linear' },
        'down-grpc': { backend: 'down-grpc', model: 'linear' },
      },
    });
  });

  afterAll(async () => {
    await gw?.close();
    await Promise.all([...proxies, ...refs].map((s) => s.close()));
  });

  it(
    'once the breakers open, REST clients get 503 with Retry-After and gRPC clients UNAVAILABLE with grpc-retry-pushback-ms, ' +
      'in under 1/5 of timeout_ms, without a backend call; traffic resumes by itself when one endpoint is back',
    async () => {
      expect((await restInfer(gw.http, 'down-rest')).status).toBe(200);
      expect((await grpcInfer(gw.grpc, 'down-grpc')).code).toBe(grpc.status.OK);

      await Promise.all(proxies.map((p) => p.setMode({ kind: 'refuse' })));
      const open = (b: string): boolean => gw.backend(b).endpoints.every((e) => e.breaker.state === 'open');
      // Until the breakers open the refused calls are failures too, and they are answered 503 / UNAVAILABLE.
      const before: string[] = [];
      await until(
        'every breaker of both backends open',
        async () => {
          const [r, g] = await Promise.all([restInfer(gw.http, 'down-rest'), grpcInfer(gw.grpc, 'down-grpc')]);
          before.push(String(r.status), grpc.status[g.code]!);
          return open('down-rest') && open('down-grpc');
        },
        5_000,
        0,
      );
      expect(new Set(before)).toEqual(new Set(['503', 'UNAVAILABLE']));

      const callsBefore = [...gw.backend('down-rest').endpoints, ...gw.backend('down-grpc').endpoints].map((e) => e.calls);
      const rest = await bounded(10, 5, () => restInfer(gw.http, 'down-rest'));
      const viaGrpc = await bounded(10, 5, () => grpcInfer(gw.grpc, 'down-grpc'));
      for (const r of rest) {
        expect(r.status, r.text).toBe(503);
        expect(r.ms).toBeLessThan(TIMEOUT_MS / 5);
        expect(Number(r.retryAfter)).toBeGreaterThanOrEqual(1);
        expect(Number(r.retryAfter)).toBeLessThanOrEqual(Math.ceil(RESET_MS / 1000));
        // The message names what is down and why.
        expect(r.text).toContain(proxies[0]!.endpoint);
        expect(r.text).toContain(proxies[1]!.endpoint);
        expect(r.text).toMatch(/no endpoint available/);
      }
      for (const g of viaGrpc) {
        expect(g.code, g.details).toBe(grpc.status.UNAVAILABLE);
        expect(g.ms).toBeLessThan(TIMEOUT_MS / 5);
        const pushback = Number(g.trailers.get('grpc-retry-pushback-ms')[0]);
        expect(pushback).toBeGreaterThanOrEqual(1);
        expect(pushback).toBeLessThanOrEqual(RESET_MS);
        expect(g.details).toContain(proxies[2]!.endpoint);
      }
      // Refused by the gateway itself: no attempt was made on any endpoint.
      expect([...gw.backend('down-rest').endpoints, ...gw.backend('down-grpc').endpoints].map((e) => e.calls)).toEqual(callsBefore);

      // One endpoint of each backend comes back; nobody touches the gateway.
      await Promise.all([proxies[1]!.setMode({ kind: 'pass' }), proxies[3]!.setMode({ kind: 'pass' })]);
      await until('REST answers 200 again', async () => (await restInfer(gw.http, 'down-rest')).status === 200, 15_000, 50);
      await until('gRPC answers OK again', async () => (await grpcInfer(gw.grpc, 'down-grpc')).code === grpc.status.OK, 15_000, 50);
      const after = await bounded(20, 4, () => restInfer(gw.http, 'down-rest'));
      expect(restFailures(after)).toEqual([]);
      const afterGrpc = await bounded(20, 4, () => grpcInfer(gw.grpc, 'down-grpc'));
      expect(grpcFailures(afterGrpc)).toEqual([]);
      expect(gw.endpoint('down-rest', 1).breaker.state).toBe('closed');
      expect(gw.endpoint('down-grpc', 1).breaker.state).toBe('closed');
    },
    40_000,
  );
});

describe('a hanging endpoint', () => {
  let hung: TritonReference;
  let healthy: TritonReference[] = [];
  let hangProxies: FaultProxy[] = [];
  let gw: FaultGateway;
  const LONG_MS = 5000;
  const SHORT_MS = 600;
  const PAIR_MS = 400;

  beforeAll(async () => {
    hung = await startTritonReference(REF);
    hung.setFault({ kind: 'hang' });
    healthy = await Promise.all([0, 1].map(() => startTritonReference(REF)));
    // Two proxies in front of a healthy server, hanging: one per backend of the pair tests, so their breakers are their own.
    hangProxies = await Promise.all([0, 1].map(() => startFaultProxy(healthy[0]!.httpEndpoint)));
    await Promise.all(hangProxies.map((p) => p.setMode({ kind: 'hang' })));
    const pairBreaker = { minimum_requests: 5, window_ms: 5000, reset_timeout_ms: 30_000 };
    gw = await startFaultGateway({
      server: { request_timeout_ms: 10_000 },
      backends: {
        'hang-rest': { kind: 'triton', protocol: 'rest', endpoints: [hung.httpEndpoint], timeout_ms: LONG_MS, ...NO_CHECKS },
        'hang-grpc': { kind: 'triton', protocol: 'grpc', endpoints: [hung.grpcEndpoint], timeout_ms: LONG_MS, ...NO_CHECKS },
        'hang-short-rest': { kind: 'triton', protocol: 'rest', endpoints: [hung.httpEndpoint], timeout_ms: SHORT_MS, ...NO_CHECKS },
        'hang-short-grpc': { kind: 'triton', protocol: 'grpc', endpoints: [hung.grpcEndpoint], timeout_ms: SHORT_MS, ...NO_CHECKS },
        'pair-a': {
          kind: 'triton',
          protocol: 'rest',
          endpoints: [hangProxies[0]!.endpoint, healthy[1]!.httpEndpoint],
          load_balancing: { policy: 'round_robin' },
          timeout_ms: PAIR_MS,
          circuit_breaker: pairBreaker,
          ...NO_CHECKS,
        },
        'pair-b': {
          kind: 'triton',
          protocol: 'rest',
          endpoints: [hangProxies[1]!.endpoint, healthy[1]!.httpEndpoint],
          load_balancing: { policy: 'round_robin' },
          timeout_ms: PAIR_MS,
          circuit_breaker: pairBreaker,
          ...NO_CHECKS,
        },
        spare: { kind: 'triton', protocol: 'grpc', endpoints: [healthy[0]!.grpcEndpoint], ...NO_CHECKS },
      },
      models: {
        'hang-rest': { backend: 'hang-rest', model: 'linear' },
        'hang-grpc': { backend: 'hang-grpc', model: 'linear' },
        'hang-short-rest': { backend: 'hang-short-rest', model: 'linear' },
        'hang-short-grpc': { backend: 'hang-short-grpc', model: 'linear' },
        pair: { backend: 'pair-a', model: 'linear' },
        'pair-fallback': {
          fallback: [
            { backend: 'pair-b', model: 'linear', id: 'pair' },
            { backend: 'spare', model: 'linear', id: 'spare' },
          ],
          fallback_on: ['timeout'],
        },
      },
    });
  });

  afterAll(async () => {
    await gw?.close();
    await Promise.all([...hangProxies, hung, ...healthy].map((s) => s?.close()));
  });

  it('a REST client with x-infergate-timeout-ms: 300 gets 504 in under 1/5 of the backend timeout_ms, not held to it', async () => {
    const replies = await bounded(3, 3, () => restInfer(gw.http, 'hang-rest', { 'x-infergate-timeout-ms': '300' }));
    for (const r of replies) {
      expect(r.status, r.text).toBe(504);
      expect(r.ms).toBeLessThan(LONG_MS / 5);
    }
  });

  it('a gRPC client with a 300 ms deadline gets DEADLINE_EXCEEDED in under 1/5 of the backend timeout_ms', async () => {
    const replies = await bounded(3, 3, () => grpcInfer(gw.grpc, 'hang-grpc', 300));
    for (const r of replies) {
      expect(r.code, r.details).toBe(grpc.status.DEADLINE_EXCEEDED);
      expect(r.ms).toBeLessThan(LONG_MS / 5);
    }
  });

  it('a client that sets no timeout is bounded by the backend timeout_ms: REST 504 and gRPC DEADLINE_EXCEEDED from the gateway, well before the server default', async () => {
    const [rest, viaGrpc] = await Promise.all([restInfer(gw.http, 'hang-short-rest'), grpcInfer(gw.grpc, 'hang-short-grpc', 10_000)]);
    expect(rest.status, rest.text).toBe(504);
    expect(rest.text).toMatch(/did not answer/);
    // timeout_ms is a lower bound too: the gateway cannot have given up earlier (a few ms for clock granularity).
    expect(rest.ms).toBeGreaterThanOrEqual(SHORT_MS - 20);
    expect(rest.ms).toBeLessThan(10_000 / 5);
    expect(viaGrpc.code, viaGrpc.details).toBe(grpc.status.DEADLINE_EXCEEDED);
    // The gateway's status (with its message), not the client's own deadline (10 s).
    expect(viaGrpc.details).toMatch(/did not answer/);
    expect(viaGrpc.ms).toBeGreaterThanOrEqual(SHORT_MS - 20);
    expect(viaGrpc.ms).toBeLessThan(10_000 / 5);
  });

  it('two endpoints, one hangs, no fallback: calls landing on it get 504 after timeout_ms (timeouts are not retried) until its breaker opens, then 0 errors', async () => {
    // Round robin over [hanging, healthy]: half of 10 concurrent calls land on the hanging endpoint.
    const first = await bounded(10, 10, () => restInfer(gw.http, 'pair'));
    expect(countBy(first, (r) => r.status)).toEqual({ 200: 5, 504: 5 });
    for (const r of first.filter((r) => r.status === 504)) {
      expect(r.attempts).toBe('1');
      expect(r.ms).toBeGreaterThanOrEqual(PAIR_MS - 20);
    }
    // Five timeouts of five calls: its breaker is open and it is out of rotation.
    expect(gw.endpoint('pair-a', 0).breaker.state).toBe('open');
    expect(gw.endpoint('pair-a', 0).ejected).toBe(true);
    const then = await bounded(20, 10, () => restInfer(gw.http, 'pair'));
    expect(restFailures(then)).toEqual([]);
    expect(then.every((r) => r.ms < PAIR_MS)).toBe(true);
  });

  it('two endpoints, one hangs, with a fallback on timeout: 0 errors; calls landing on it are answered by the fallback target after timeout_ms, until its breaker opens', async () => {
    const first = await bounded(10, 10, () => restInfer(gw.http, 'pair-fallback'));
    expect(restFailures(first)).toEqual([]);
    expect(countBy(first, (r) => `${r.target} ${r.attempts}`)).toEqual({ 'pair 1': 5, 'spare 2': 5 });
    for (const r of first.filter((r) => r.target === 'spare')) expect(r.ms).toBeGreaterThanOrEqual(PAIR_MS - 20);
    expect(gw.endpoint('pair-b', 0).breaker.state).toBe('open');
    const then = await bounded(20, 10, () => restInfer(gw.http, 'pair-fallback'));
    expect(restFailures(then)).toEqual([]);
    expect(countBy(then, (r) => `${r.target} ${r.attempts}`)).toEqual({ 'pair 1': 20 });
  });
});

describe('a hanging endpoint, the client sets no timeout, server.request_timeout_ms is what runs out first (as with the defaults, 30 s each)', () => {
  // server.request_timeout_ms and timeout_ms both default to 30 s: a client without its own timeout gets the
  // server's request timeout as its deadline, which then ends the backend call (it is the same or earlier).
  const SERVER_MS = 800;
  let hung: TritonReference;
  let gw: FaultGateway;
  const breaker = { minimum_requests: 5, window_ms: 10_000, reset_timeout_ms: 30_000 };

  beforeAll(async () => {
    hung = await startTritonReference(REF);
    hung.setFault({ kind: 'hang' });
    const backend = (protocol: 'rest' | 'grpc', timeout?: number) => ({
      kind: 'triton',
      protocol,
      endpoints: [protocol === 'rest' ? hung.httpEndpoint : hung.grpcEndpoint],
      ...(timeout !== undefined ? { timeout_ms: timeout } : {}),
      circuit_breaker: breaker,
      ...NO_CHECKS,
    });
    gw = await startFaultGateway({
      server: { request_timeout_ms: SERVER_MS },
      backends: {
        'equal-rest': backend('rest', SERVER_MS),
        'equal-grpc': backend('grpc', SERVER_MS),
        'default-rest': backend('rest'),
      },
      models: Object.fromEntries(['equal-rest', 'equal-grpc', 'default-rest'].map((b) => [b, { backend: b, model: 'linear' }])),
    });
  });

  afterAll(async () => {
    await gw?.close();
    await hung?.close();
  });

  it('clients get 504 / DEADLINE_EXCEEDED after request_timeout_ms, and those timeouts (not the client\'s own) count: the breaker opens', async () => {
    const [equal, viaGrpc, byDefault] = await Promise.all([
      bounded(6, 6, () => restInfer(gw.http, 'equal-rest')),
      // The client's deadline (10 s) is longer than the server's: the server's runs out.
      bounded(6, 6, () => grpcInfer(gw.grpc, 'equal-grpc', 10_000)),
      bounded(6, 6, () => restInfer(gw.http, 'default-rest')),
    ]);
    expect(countBy([...equal, ...byDefault], (r) => r.status)).toEqual({ 504: 12 });
    expect(countBy(viaGrpc, (g) => grpc.status[g.code]!)).toEqual({ DEADLINE_EXCEEDED: 6 });
    for (const r of [...equal, ...byDefault, ...viaGrpc]) expect(r.ms).toBeLessThan(10_000 / 5);
    const seen = ['equal-rest', 'equal-grpc', 'default-rest'].map((b) => {
      const e = gw.endpoint(b, 0);
      return { backend: b, state: e.breaker.state, calls: e.calls, failures: e.failures };
    });
    expect(seen).toEqual([
      { backend: 'equal-rest', state: 'open', calls: 6, failures: 6 },
      { backend: 'equal-grpc', state: 'open', calls: 6, failures: 6 },
      { backend: 'default-rest', state: 'open', calls: 6, failures: 6 },
    ]);
  });
});

describe('a slow endpoint (reference latency fault)', () => {
  let slow: TritonReference;
  let slowToo: TritonReference;
  let gw: FaultGateway;
  const ROUTE_MS = 500;
  const breaker = { minimum_requests: 5, window_ms: 10_000, reset_timeout_ms: 30_000 };

  beforeAll(async () => {
    [slow, slowToo] = await Promise.all([startTritonReference(REF), startTritonReference(REF)]);
    const backend = (protocol: 'rest' | 'grpc', ref: TritonReference, timeout: number) => ({
      kind: 'triton',
      protocol,
      endpoints: [protocol === 'rest' ? ref.httpEndpoint : ref.grpcEndpoint],
      timeout_ms: timeout,
      circuit_breaker: breaker,
      ...NO_CHECKS,
    });
    gw = await startFaultGateway({
      server: { request_timeout_ms: 10_000 },
      backends: {
        'slow-rest': backend('rest', slow, 30_000),
        'slow-grpc': backend('grpc', slow, 30_000),
        'patient-rest': backend('rest', slowToo, 10_000),
        'patient-grpc': backend('grpc', slowToo, 10_000),
      },
      models: {
        // The route's own timeout_ms, under the backend's.
        'slow-rest': { backend: 'slow-rest', model: 'linear', timeout_ms: ROUTE_MS },
        'slow-grpc': { backend: 'slow-grpc', model: 'linear', timeout_ms: ROUTE_MS },
        'patient-rest': { backend: 'patient-rest', model: 'linear' },
        'patient-grpc': { backend: 'patient-grpc', model: 'linear' },
      },
    });
  });

  afterAll(async () => {
    await gw?.close();
    await Promise.all([slow, slowToo].map((s) => s?.close()));
  });

  it('within the timeout: 200 / OK, only slower', async () => {
    slow.setFault({ kind: 'latency', ms: 150 });
    const [rest, viaGrpc] = await Promise.all([restInfer(gw.http, 'slow-rest'), grpcInfer(gw.grpc, 'slow-grpc')]);
    expect(rest.status, rest.text).toBe(200);
    expect(rest.ms).toBeGreaterThanOrEqual(145);
    expect(viaGrpc.code, viaGrpc.details).toBe(grpc.status.OK);
    expect(viaGrpc.ms).toBeGreaterThanOrEqual(145);
    expect(gw.endpoint('slow-rest', 0).breaker.state).toBe('closed');
  });

  it("beyond the route's timeout_ms: 504 / DEADLINE_EXCEEDED at the route timeout, and these timeouts open the breaker", async () => {
    slow.setFault({ kind: 'latency', ms: 3000 });
    const [rest, viaGrpc] = await Promise.all([
      bounded(6, 6, () => restInfer(gw.http, 'slow-rest')),
      bounded(6, 6, () => grpcInfer(gw.grpc, 'slow-grpc')),
    ]);
    for (const r of rest) {
      expect(r.status, r.text).toBe(504);
      expect(r.ms).toBeLessThan(3000);
    }
    for (const g of viaGrpc) {
      expect(g.code, g.details).toBe(grpc.status.DEADLINE_EXCEEDED);
      expect(g.ms).toBeLessThan(3000);
    }
    for (const b of ['slow-rest', 'slow-grpc']) {
      const e = gw.endpoint(b, 0);
      expect([b, e.breaker.state, e.ejected, e.failures]).toEqual([b, 'open', true, 6]);
    }
    // With the breaker open, the next client is told at once.
    const next = await restInfer(gw.http, 'slow-rest');
    expect(next.status).toBe(503);
    expect(next.ms).toBeLessThan(ROUTE_MS);
    expect(next.retryAfter).toBeDefined();
  });

  it("a client's own short timeout does not count against the endpoint: 40 client-timeout 504s / DEADLINE_EXCEEDEDs leave the breaker closed", async () => {
    slowToo.setFault({ kind: 'latency', ms: 1000 });
    const [rest, viaGrpc] = await Promise.all([
      bounded(20, 10, () => restInfer(gw.http, 'patient-rest', { 'x-infergate-timeout-ms': '100' })),
      bounded(20, 10, () => grpcInfer(gw.grpc, 'patient-grpc', 100)),
    ]);
    expect(countBy(rest, (r) => r.status)).toEqual({ 504: 20 });
    expect(countBy(viaGrpc, (g) => grpc.status[g.code]!)).toEqual({ DEADLINE_EXCEEDED: 20 });
    for (const b of ['patient-rest', 'patient-grpc']) {
      const e = gw.endpoint(b, 0);
      expect([b, e.breaker.state, e.ejected, e.calls]).toEqual([b, 'closed', false, 20]);
      expect([b, e.failures], 'client timeouts counted as endpoint failures').toEqual([b, 0]);
    }
    slowToo.setFault(undefined);
    expect((await restInfer(gw.http, 'patient-rest')).status).toBe(200);
  });
});

describe('an endpoint that never existed', () => {
  let live: TritonReference;
  let gw: FaultGateway;
  const GHOSTS = ['127.0.0.1:1', 'no-such-host.invalid:8001'];
  const TIMEOUT_MS = 5000;

  beforeAll(async () => {
    live = await startTritonReference(REF);
    const common = {
      kind: 'triton',
      timeout_ms: TIMEOUT_MS,
      load_balancing: { policy: 'round_robin' },
      circuit_breaker: { minimum_requests: 5, window_ms: 5000, reset_timeout_ms: 30_000 },
      ...NO_CHECKS,
    };
    gw = await startFaultGateway({
      backends: {
        'ghosts-rest': { ...common, protocol: 'rest', endpoints: [...GHOSTS, live.httpEndpoint] },
        'ghosts-grpc': { ...common, protocol: 'grpc', endpoints: [...GHOSTS, live.grpcEndpoint] },
        'port1-rest': { ...common, protocol: 'rest', endpoints: [GHOSTS[0]] },
        'port1-grpc': { ...common, protocol: 'grpc', endpoints: [GHOSTS[0]] },
        'dns-rest': { ...common, protocol: 'rest', endpoints: [GHOSTS[1]] },
        'dns-grpc': { ...common, protocol: 'grpc', endpoints: [GHOSTS[1]] },
      },
      models: Object.fromEntries(
        ['ghosts-rest', 'ghosts-grpc', 'port1-rest', 'port1-grpc', 'dns-rest', 'dns-grpc'].map((b) => [b, { backend: b, model: 'linear' }]),
      ),
    });
  });

  afterAll(async () => {
    await gw?.close();
    await live?.close();
  });

  it('127.0.0.1:1 and an unresolvable host beside a live endpoint: 0 client errors over REST and gRPC', async () => {
    const rest = await bounded(60, 6, () => restInfer(gw.http, 'ghosts-rest'));
    const viaGrpc = await bounded(60, 6, () => grpcInfer(gw.grpc, 'ghosts-grpc'));
    expect(restFailures(rest)).toEqual([]);
    expect(grpcFailures(viaGrpc)).toEqual([]);
    // The dead ones were tried (and retried elsewhere) until their breakers took them out.
    expect(rest.some((r) => r.attempts !== '1')).toBe(true);
    for (const b of ['ghosts-rest', 'ghosts-grpc']) {
      expect(gw.backend(b).endpoints.map((e) => e.breaker.state)).toEqual(['open', 'open', 'closed']);
    }
  });

  it.each([
    ['127.0.0.1:1', 'port1'],
    ['no-such-host.invalid:8001', 'dns'],
  ])('%s alone: a fast 503 / UNAVAILABLE whose message names the endpoint', async (endpoint, prefix) => {
    const rest = await restInfer(gw.http, `${prefix}-rest`);
    expect(rest.status, rest.text).toBe(503);
    expect(rest.text).toContain(endpoint);
    expect(rest.ms).toBeLessThan(TIMEOUT_MS / 5);
    const viaGrpc = await grpcInfer(gw.grpc, `${prefix}-grpc`);
    expect(viaGrpc.code, viaGrpc.details).toBe(grpc.status.UNAVAILABLE);
    expect(viaGrpc.details).toContain(endpoint);
    expect(viaGrpc.ms).toBeLessThan(TIMEOUT_MS / 5);
  });
});
