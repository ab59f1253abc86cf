import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { call } from '../helpers/http.js';
import {
  BAD_BODY,
  bounded,
  countBy,
  grpc,
  grpcFailures,
  grpcInfer,
  linearMessage,
  NO_CHECKS,
  restFailures,
  restInfer,
  startFaultGateway,
  steadyLoad,
  until,
  type FaultGateway,
  type GrpcOutcome,
  type RestOutcome,
} from './fault-kit.js';
import type { BackendHealthView } from '../../src/api/http/admin.js';

/**
 * Failures that come in numbers: one endpoint of two answering errors or
 * resetting connections, more load than a backend (or the gateway) takes,
 * and retries running out of budget. Faults come from the reference servers
 * (setFault) and TCP fault proxies, on loopback; health checks are off.
 */

const REF = { host: '127.0.0.1' };
const BREAKER = { minimum_requests: 5, window_ms: 10_000, reset_timeout_ms: 30_000 };

/** A REST and a gRPC backend over the same reference servers, round robin, breakers with small numbers. */
function pairOf(refs: readonly TritonReference[], extra: Record<string, unknown> = {}): { rest: unknown; grpc: unknown } {
  const common = { kind: 'triton', load_balancing: { policy: 'round_robin' }, timeout_ms: 5000, circuit_breaker: BREAKER, ...NO_CHECKS, ...extra };
  return {
    rest: { ...common, protocol: 'rest', endpoints: refs.map((r) => r.httpEndpoint) },
    grpc: { ...common, protocol: 'grpc', endpoints: refs.map((r) => r.grpcEndpoint) },
  };
}

describe('a 5xx storm on one of two endpoints', () => {
  let internal: TritonReference[] = []; // [healthy, INTERNAL]
  let unavailable: TritonReference[] = []; // [healthy, UNAVAILABLE]
  let fine: TritonReference;
  let gw: FaultGateway;

  beforeAll(async () => {
    [internal, unavailable] = [await Promise.all([0, 1].map(() => startTritonReference(REF))), await Promise.all([0, 1].map(() => startTritonReference(REF)))];
    fine = await startTritonReference(REF);
    const i = pairOf(internal);
    const u = pairOf(unavailable);
    const f = pairOf([fine]);
    gw = await startFaultGateway({
      backends: { 'internal-rest': i.rest, 'internal-grpc': i.grpc, 'unavail-rest': u.rest, 'unavail-grpc': u.grpc, 'fine-rest': f.rest, 'fine-grpc': f.grpc },
      models: Object.fromEntries(
        ['internal-rest', 'internal-grpc', 'unavail-rest', 'unavail-grpc', 'fine-rest', 'fine-grpc'].map((b) => [b, { backend: b, model: 'linear' }]),
      ),
    });
  });

  afterAll(async () => {
    await gw?.close();
    await Promise.all([...internal, ...unavailable, fine].map((s) => s?.close()));
  });

  it('INTERNAL is not retried: REST clients see 500s (at most minimum_requests of them) until the breaker opens, then 0 errors and no call reaches it', async () => {
    internal[1]!.setFault({ kind: 'error', status: 'INTERNAL' });
    const first = await bounded(20, 1, () => restInfer(gw.http, 'internal-rest'));
    const errors = first.filter((r) => r.status !== 200);
    expect(errors.length).toBeGreaterThanOrEqual(1);
    expect(errors.length).toBeLessThanOrEqual(BREAKER.minimum_requests);
    for (const r of errors) {
      expect([r.status, r.attempts]).toEqual([500, '1']);
      expect(r.text).toContain('injected fault: INTERNAL');
    }
    expect(gw.endpoint('internal-rest', 1).breaker.state).toBe('open');
    const callsThere = internal[1]!.stats.inferCalls;
    const then = await bounded(40, 8, () => restInfer(gw.http, 'internal-rest'));
    expect(restFailures(then)).toEqual([]);
    expect(internal[1]!.stats.inferCalls).toBe(callsThere);
  });

  it('INTERNAL over gRPC: INTERNAL statuses (at most minimum_requests) until the breaker opens, then 0 errors', async () => {
    internal[1]!.setFault({ kind: 'error', status: 'INTERNAL' });
    const first = await bounded(20, 1, () => grpcInfer(gw.grpc, 'internal-grpc'));
    const errors = first.filter((g) => g.code !== grpc.status.OK);
    expect(errors.length).toBeGreaterThanOrEqual(1);
    expect(errors.length).toBeLessThanOrEqual(BREAKER.minimum_requests);
    for (const g of errors) {
      expect(g.code).toBe(grpc.status.INTERNAL);
      expect(g.trailers.get('x-infergate-attempts')).toEqual(['1']);
    }
    expect(gw.endpoint('internal-grpc', 1).breaker.state).toBe('open');
    expect(grpcFailures(await bounded(40, 8, () => grpcInfer(gw.grpc, 'internal-grpc')))).toEqual([]);
  });

  it('UNAVAILABLE (503) is retried on the healthy endpoint: 0 client errors from the first call, over REST and gRPC, and the breaker opens', async () => {
    unavailable[1]!.setFault({ kind: 'error', status: 'UNAVAILABLE' });
    const [rest, viaGrpc] = await Promise.all([
      bounded(40, 4, () => restInfer(gw.http, 'unavail-rest')),
      bounded(40, 4, () => grpcInfer(gw.grpc, 'unavail-grpc')),
    ]);
    expect(restFailures(rest)).toEqual([]);
    expect(grpcFailures(viaGrpc)).toEqual([]);
    expect(rest.filter((r) => r.attempts === '2').length).toBeGreaterThanOrEqual(1);
    expect(viaGrpc.filter((g) => g.trailers.get('x-infergate-attempts')[0] === '2').length).toBeGreaterThanOrEqual(1);
    expect(gw.endpoint('unavail-rest', 1).breaker.state).toBe('open');
    expect(gw.endpoint('unavail-grpc', 1).breaker.state).toBe('open');
  });

  it('4xx client errors never open the breaker: 30 bad inputs are 30 × 400 / INVALID_ARGUMENT, no failure counted, and the next good call is 200', async () => {
    const bad = await bounded(30, 6, () => restInfer(gw.http, 'fine-rest', {}, BAD_BODY));
    expect(countBy(bad, (r) => r.status)).toEqual({ 400: 30 });
    const badRequest = linearMessage('fine-grpc');
    (badRequest.inputs as { name: string }[])[0]!.name = 'WRONG';
    const badGrpc = await bounded(30, 6, () => grpcInfer(gw.grpc, 'fine-grpc', 10_000, badRequest));
    expect(countBy(badGrpc, (g) => grpc.status[g.code]!)).toEqual({ INVALID_ARGUMENT: 30 });
    for (const b of ['fine-rest', 'fine-grpc']) {
      const e = gw.endpoint(b, 0);
      expect([b, e.breaker.state, e.calls, e.failures]).toEqual([b, 'closed', 30, 0]);
    }
    expect((await restInfer(gw.http, 'fine-rest')).status).toBe(200);
    expect((await grpcInfer(gw.grpc, 'fine-grpc')).code).toBe(grpc.status.OK);
  });
});

describe('connection resets on one of two endpoints', () => {
  let refs: TritonReference[] = [];
  let proxies: FaultProxy[] = []; // [rest, grpc] in front of refs[1]
  let gw: FaultGateway;

  beforeAll(async () => {
    refs = await Promise.all([0, 1].map(() => startTritonReference(REF)));
    proxies = await Promise.all([startFaultProxy(refs[1]!.httpEndpoint), startFaultProxy(refs[1]!.grpcEndpoint)]);
    const common = { kind: 'triton', load_balancing: { policy: 'round_robin' }, timeout_ms: 5000, circuit_breaker: BREAKER, ...NO_CHECKS };
    gw = await startFaultGateway({
      backends: {
        'reset-rest': { ...common, protocol: 'rest', endpoints: [refs[0]!.httpEndpoint, proxies[0]!.endpoint] },
        'reset-grpc': { ...common, protocol: 'grpc', endpoints: [refs[0]!.grpcEndpoint, proxies[1]!.endpoint] },
      },
      models: { 'reset-rest': { backend: 'reset-rest', model: 'linear' }, 'reset-grpc': { backend: 'reset-grpc', model: 'linear' } },
    });
  });

  afterAll(async () => {
    await gw?.close();
    await Promise.all([...proxies, ...refs].map((s) => s?.close()));
  });

  it('mid-load, every connection to it is reset (RST): 0 client errors over REST and gRPC, the calls are retried on the other endpoint', async () => {
    const rest = steadyLoad<RestOutcome>(8, () => restInfer(gw.http, 'reset-rest'), 20_000);
    const viaGrpc = steadyLoad<GrpcOutcome>(8, () => grpcInfer(gw.grpc, 'reset-grpc'), 20_000);
    try {
      await until('both endpoints serve', () => ['reset-rest', 'reset-grpc'].every((b) => gw.endpoint(b, 1).calls >= 20), 10_000);
      await Promise.all(proxies.map((p) => p.setMode({ kind: 'reset' })));
      await until('the resetting endpoint is out of rotation', () => ['reset-rest', 'reset-grpc'].every((b) => gw.endpoint(b, 1).breaker.state === 'open'), 10_000);
      const counted = [rest.results.length, viaGrpc.results.length];
      await until('100 more calls on each surface', () => rest.results.length >= counted[0]! + 100 && viaGrpc.results.length >= counted[1]! + 100, 10_000);
    } finally {
      await Promise.all([rest.stop(), viaGrpc.stop()]);
    }
    expect(restFailures(rest.results)).toEqual([]);
    expect(grpcFailures(viaGrpc.results)).toEqual([]);
    expect(rest.results.some((r) => r.attempts === '2')).toBe(true);
    for (const b of ['reset-rest', 'reset-grpc']) expect(gw.backend(b).retries.retries, b).toBeGreaterThan(0);
  });
});

describe('load shedding', () => {
  let slow: TritonReference;
  let slower: TritonReference;
  let gw: FaultGateway;
  let tight: FaultGateway;
  const LATENCY_MS = 200;

  beforeAll(async () => {
    [slow, slower] = await Promise.all([startTritonReference(REF), startTritonReference(REF)]);
    slow.setFault({ kind: 'latency', ms: LATENCY_MS });
    slower.setFault({ kind: 'latency', ms: 1000 });
    const shed = pairOf([slow], { concurrency: { max_in_flight: 2, max_queued: 2, max_queue_wait_ms: 200 } });
    gw = await startFaultGateway({
      backends: { 'shed-rest': shed.rest, 'shed-grpc': shed.grpc },
      models: { 'shed-rest': { backend: 'shed-rest', model: 'linear' }, 'shed-grpc': { backend: 'shed-grpc', model: 'linear' } },
    });
    const wide = pairOf([slower]);
    tight = await startFaultGateway({
      server: { max_in_flight_requests: 4 },
      backends: { 'wide-rest': wide.rest, 'wide-grpc': wide.grpc },
      models: { 'wide-rest': { backend: 'wide-rest', model: 'linear' }, 'wide-grpc': { backend: 'wide-grpc', model: 'linear' } },
    });
  });

  afterAll(async () => {
    await Promise.all([gw?.close(), tight?.close()]);
    await Promise.all([slow, slower].map((s) => s?.close()));
  });

  it('backend concurrency 2 + queue 2, 20 concurrent REST calls: 2-4 × 200, the rest 429 with Retry-After, the shed ones before any call completes', async () => {
    const done: RestOutcome[] = [];
    await bounded(20, 20, async () => {
      const r = await restInfer(gw.http, 'shed-rest');
      done.push(r);
      return r;
    });
    const counts = countBy(done, (r) => r.status);
    expect(Object.keys(counts).sort()).toEqual(['200', '429']);
    expect(counts[200]).toBeGreaterThanOrEqual(2);
    expect(counts[200]).toBeLessThanOrEqual(4);
    for (const r of done.filter((r) => r.status === 429)) {
      expect(r.retryAfter).toBe('1');
      expect(r.text).toMatch(/overloaded/);
    }
    // 16 found the queue full and were refused at once: they were all answered before the first 200.
    const firstOk = done.findIndex((r) => r.status === 200);
    expect(firstOk).toBeGreaterThanOrEqual(16);
    expect(gw.backend('shed-rest').concurrency.shed).toBe(16);
  });

  it('the same over gRPC: RESOURCE_EXHAUSTED with grpc-retry-pushback-ms', async () => {
    const done = await bounded(20, 20, () => grpcInfer(gw.grpc, 'shed-grpc'));
    const counts = countBy(done, (g) => grpc.status[g.code]!);
    expect(Object.keys(counts).sort()).toEqual(['OK', 'RESOURCE_EXHAUSTED']);
    expect(counts.OK).toBeGreaterThanOrEqual(2);
    expect(counts.OK).toBeLessThanOrEqual(4);
    for (const g of done.filter((g) => g.code === grpc.status.RESOURCE_EXHAUSTED)) {
      expect(g.trailers.get('grpc-retry-pushback-ms')).toEqual(['1000']);
    }
    // Overload answers say nothing about the endpoint.
    expect(gw.endpoint('shed-grpc', 0).breaker.state).toBe('closed');
  });

  it('gateway-wide max_in_flight_requests 4 with a slow backend: extra REST calls get 503 + Retry-After and gRPC calls UNAVAILABLE at once, while GET /v2/health/ready answers 200', async () => {
    const held = Array.from({ length: 4 }, () => restInfer(tight.http, 'wide-rest'));
    await until('4 requests in flight', () => tight.gateway.inFlight === 4, 5_000);
    const [extraRest, extraGrpc] = await Promise.all([
      bounded(6, 6, () => restInfer(tight.http, 'wide-rest')),
      bounded(3, 3, () => grpcInfer(tight.grpc, 'wide-grpc')),
    ]);
    const probe = new Pool(tight.httpBase, { connections: 1 });
    try {
      const ready = await call(probe, 'GET', '/v2/health/ready');
      expect(ready.status).toBe(200);
      expect(tight.gateway.inFlight).toBe(4);
    } finally {
      await probe.close();
    }
    for (const r of extraRest) {
      expect(r.status, r.text).toBe(503);
      expect(r.retryAfter).toBe('1');
      expect(r.text).toMatch(/max_in_flight_requests/);
      expect(r.ms).toBeLessThan(1000);
    }
    for (const g of extraGrpc) {
      expect(g.code, g.details).toBe(grpc.status.UNAVAILABLE);
      expect(g.trailers.get('grpc-retry-pushback-ms')).toEqual(['1000']);
      expect(g.ms).toBeLessThan(1000);
    }
    expect(countBy(await Promise.all(held), (r) => r.status)).toEqual({ 200: 4 });
    expect((await restInfer(tight.http, 'wide-rest')).status).toBe(200);
  });
});

describe('the retry budget', () => {
  const ADMIN_KEY = 'faults-admin-key';
  let refs: TritonReference[] = [];
  let resetting: FaultProxy[] = [];
  let gw: FaultGateway;

  beforeAll(async () => {
    refs = await Promise.all([0, 1].map(() => startTritonReference(REF)));
    // Each backend resets on its own first endpoint: a proxy that resets every connection.
    resetting = await Promise.all([0, 1].map(() => startFaultProxy(refs[0]!.httpEndpoint)));
    await Promise.all(resetting.map((p) => p.setMode({ kind: 'reset' })));
    // Breakers off: the reset endpoint stays in rotation, so only retries stand between it and the clients.
    const common = { kind: 'triton', protocol: 'rest', load_balancing: { policy: 'round_robin' }, circuit_breaker: { enabled: false }, ...NO_CHECKS };
    gw = await startFaultGateway(
      {
        backends: {
          stingy: { ...common, endpoints: [resetting[0]!.endpoint, refs[1]!.httpEndpoint], retry: { budget_percent: 0, min_retries_per_second: 0 } },
          roomy: { ...common, endpoints: [resetting[1]!.endpoint, refs[1]!.httpEndpoint] },
        },
        models: { stingy: { backend: 'stingy', model: 'linear' }, roomy: { backend: 'roomy', model: 'linear' } },
      },
      { env: { INFERGATE_ADMIN_KEY: ADMIN_KEY } },
    );
  });

  afterAll(async () => {
    await gw?.close();
    await Promise.all([...resetting, ...refs].map((s) => s?.close()));
  });

  it('a reset storm on one of two endpoints: the default budget hides it (0 errors); budget 0 lets every reset through as a 503, and GET /admin/backends shows the denied retries', async () => {
    const roomy = await bounded(40, 4, () => restInfer(gw.http, 'roomy'));
    const stingy = await bounded(40, 4, () => restInfer(gw.http, 'stingy'));
    expect(restFailures(roomy)).toEqual([]);
    const failed = stingy.filter((r) => r.status !== 200);
    // Round robin: every other call meets the reset endpoint, and none may be retried.
    expect(failed.length).toBe(20);
    for (const r of failed) {
      expect(r.status).toBe(503);
      expect(r.text).toContain(resetting[0]!.endpoint);
      expect(r.attempts).toBe('1');
    }

    const res = await call(gw.http, 'GET', '/admin/backends', undefined, { authorization: `Bearer ${ADMIN_KEY}` });
    expect(res.status, res.text()).toBe(200);
    const byName = new Map(res.json<{ backends: BackendHealthView[] }>().backends.map((b) => [b.name, b]));
    expect(byName.get('stingy')!.retries).toMatchObject({ retries: 0, denied: 20, allowed: 0 });
    expect(byName.get('roomy')!.retries).toMatchObject({ retries: 20, denied: 0 });
    expect(byName.get('stingy')!.endpoints.map((e) => e.breaker.state)).toEqual(['closed', 'closed']);
  });
});
