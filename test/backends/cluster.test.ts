import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import type { Backend } from '../../src/backends/backend.js';
import type { BackendCluster } from '../../src/backends/cluster.js';
import { createBackendCluster } from '../../src/backends/registry.js';
import { validateConfig } from '../../src/config/load.js';
import { GatewayError } from '../../src/core/errors.js';
import type { InferRequest } from '../../src/core/inference.js';

// Three reference Tritons on free loopback ports; one answers slowly, to hold calls in flight.
let fast: TritonReference[];
let slow: TritonReference;
const open: BackendCluster[] = [];

beforeAll(async () => {
  fast = await Promise.all([startTritonReference(), startTritonReference()]);
  slow = await startTritonReference({ latencyMs: 150 });
});
afterAll(async () => {
  await Promise.allSettled(open.map((c) => c.close()));
  await Promise.all([...(fast ?? []), slow].map((t) => t?.close()));
});

/** A cluster over `endpoints` built the way the gateway builds it: from a validated config. */
function cluster(endpoints: unknown[], load_balancing: Record<string, unknown> = {}, protocol: 'rest' | 'grpc' = 'rest'): BackendCluster {
  const config = validateConfig({
    backends: { b: { kind: 'triton', protocol, endpoints, load_balancing, timeout_ms: 2000 } },
    models: { linear: { backend: 'b' } },
  });
  const c = createBackendCluster('b', config.backends.b!, 1 << 20);
  open.push(c);
  return c;
}

const x = Buffer.alloc(16);
const linear: InferRequest = { model: 'linear', version: '', inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: x }] };
const infer = (e: Backend) => e.infer(linear, { deadline: Date.now() + 2000 });
const indexOf = (c: BackendCluster, e: Backend) => c.endpoints.indexOf(e);
const headers = (h: Record<string, string>) => ({ header: (name: string) => h[name] });

async function failure(p: Promise<unknown> | (() => unknown)): Promise<GatewayError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError);
    return err as GatewayError;
  }
  throw new Error('expected a failure');
}

describe('BackendCluster', () => {
  it('pick skips ejected endpoints and uses them again once restored', () => {
    const c = cluster([fast[0]!.httpEndpoint, fast[1]!.httpEndpoint, slow.httpEndpoint], { policy: 'round_robin' });
    expect(c.eject(1, 'draining for upgrade')).toBe(true);
    const picked = new Set(Array.from({ length: 30 }, () => indexOf(c, c.pick())));
    expect(picked).toEqual(new Set([0, 2]));
    expect(c.restore(1)).toBe(true);
    expect(new Set(Array.from({ length: 30 }, () => indexOf(c, c.pick())))).toEqual(new Set([0, 1, 2]));
  });

  it('every ejected endpoint: UNAVAILABLE naming each and why, and available turns false', async () => {
    const c = cluster([fast[0]!.httpEndpoint, '127.0.0.1:1']);
    c.eject(c.endpoints[0]!, 'drained', 'admin');
    c.eject(1, 'unreachable in 2 checks in a row', 'health');
    expect(c.available).toBe(false);
    const err = await failure(() => c.pick());
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toBe(
      `backend 'b': no endpoint available (2 ejected: ${fast[0]!.httpEndpoint} (admin: drained); 127.0.0.1:1 (health: unreachable in 2 checks in a row))`,
    );
    expect((await failure(c.call(infer))).code).toBe('UNAVAILABLE');
    expect(c.endpointStates().map((s) => s.outstanding)).toEqual([0, 0]);
    c.restore(0);
    expect(c.available).toBe(true);
    expect(c.pick()).toBe(c.endpoints[0]);
  });

  it('each source holds its own ejection: lifting one leaves the other', () => {
    const c = cluster([fast[0]!.httpEndpoint, fast[1]!.httpEndpoint]);
    c.eject(0, 'failing', 'breaker');
    c.eject(0, 'unreachable', 'health');
    expect(c.restore(0, 'health')).toBe(false);
    expect(c.isEjected(0)).toBe(true);
    expect(c.isEjected(0, 'health')).toBe(false);
    expect(c.endpointStates()[0]).toMatchObject({ ejected: true, reason: 'breaker: failing' });
    expect(c.restore(0, 'breaker')).toBe(true);
    expect(c.endpointStates()[0]).toMatchObject({ address: fast[0]!.httpEndpoint, weight: 1, ejected: false, reason: '', outstanding: 0 });
    expect(() => c.eject(7, 'no such')).toThrow(RangeError);
  });

  it('counts calls in flight per endpoint, and releases them on success and on failure', async () => {
    const c = cluster([slow.httpEndpoint, '127.0.0.1:1'], { policy: 'round_robin' });
    const calls = Array.from({ length: 4 }, () => c.call(infer).then(() => 'ok', (e: GatewayError) => e.code));
    // Two held by the slow server; the other two fail at once on the closed port.
    expect(c.endpointStates().map((s) => s.outstanding)).toEqual([2, 2]);
    await expect.poll(() => c.endpointStates()[1]!.outstanding).toBe(0);
    expect(c.endpointStates()[0]!.outstanding).toBe(2);
    expect(await Promise.all(calls)).toEqual(['ok', 'UNAVAILABLE', 'ok', 'UNAVAILABLE']);
    expect(c.endpointStates().map((s) => s.outstanding)).toEqual([0, 0]);
    // A call that throws before awaiting anything is released too.
    await expect(c.call(() => { throw new Error('boom'); })).rejects.toThrow('boom');
    expect(c.endpointStates().map((s) => s.outstanding)).toEqual([0, 0]);
  });

  it('a lease counts until released, once, however often release() is called', () => {
    const c = cluster([fast[0]!.httpEndpoint]);
    const lease = c.acquire();
    expect(lease.endpoint).toBe(c.endpoints[0]);
    expect(c.endpointStates()[0]!.outstanding).toBe(1);
    lease.release();
    lease.release();
    expect(c.endpointStates()[0]!.outstanding).toBe(0);
  });

  it('least_request (the default) steers calls away from a slow endpoint', async () => {
    const c = cluster([slow.grpcEndpoint, fast[0]!.grpcEndpoint], {}, 'grpc');
    const before = [slow.stats.inferCalls, fast[0]!.stats.inferCalls];
    // 8 concurrent clients, 20 calls each: the slow endpoint holds its calls longer, so it is picked less.
    await Promise.all(Array.from({ length: 8 }, async () => {
      for (let i = 0; i < 20; i++) await c.call(infer);
    }));
    const slowCalls = slow.stats.inferCalls - before[0]!;
    const fastCalls = fast[0]!.stats.inferCalls - before[1]!;
    expect(slowCalls + fastCalls).toBe(160);
    expect(fastCalls).toBeGreaterThan(slowCalls * 3);
  });

  it('consistent_hash keys on the configured header; a request without it still gets an endpoint', async () => {
    const c = cluster([fast[0]!.httpEndpoint, fast[1]!.httpEndpoint, slow.httpEndpoint], {
      policy: 'consistent_hash',
      hash_header: 'X-User',
    });
    for (const user of ['alice', 'bob', 'carol', 'dave']) {
      const first = c.pick(headers({ 'x-user': user }));
      for (let i = 0; i < 20; i++) expect(c.pick(headers({ 'x-user': user }))).toBe(first);
    }
    const spread = new Set(Array.from({ length: 200 }, (_, i) => c.pick(headers({ 'x-user': `u${i}` }))));
    expect(spread.size).toBe(3);
    expect(c.pick()).toBeDefined();
    // Through call(), with a real inference.
    const answer = await c.call(infer, headers({ 'x-user': 'alice' }));
    expect(answer.model).toBe('linear');
    // An ejected endpoint's keys move; the key comes back when it is restored.
    const home = c.pick(headers({ 'x-user': 'alice' }));
    c.eject(home, 'maintenance');
    expect(c.pick(headers({ 'x-user': 'alice' }))).not.toBe(home);
    c.restore(home);
    expect(c.pick(headers({ 'x-user': 'alice' }))).toBe(home);
  });

  it('weighted round robin across real endpoints', async () => {
    const c = cluster([{ address: fast[0]!.httpEndpoint, weight: 3 }, { address: fast[1]!.httpEndpoint, weight: 1 }], { policy: 'round_robin' });
    const before = fast.map((t) => t.stats.inferCalls);
    for (let i = 0; i < 40; i++) await c.call(infer);
    expect(fast.map((t, i) => t.stats.inferCalls - before[i]!)).toEqual([30, 10]);
    expect(c.endpointStates().map((s) => s.weight)).toEqual([3, 1]);
  });

  it('a skip filter is avoided when possible, and ignored when it would leave nothing', () => {
    const c = cluster([fast[0]!.httpEndpoint, fast[1]!.httpEndpoint]);
    for (let i = 0; i < 20; i++) expect(c.pick(undefined, new Set([0]))).toBe(c.endpoints[1]);
    const both = new Set([0, 1]);
    expect(new Set(Array.from({ length: 50 }, () => c.pick(undefined, both))).size).toBe(2);
    c.eject(1, 'down');
    // The filter never brings back an ejected endpoint.
    for (let i = 0; i < 20; i++) expect(c.pick(undefined, new Set([0]))).toBe(c.endpoints[0]);
  });

  it('a closed cluster answers UNAVAILABLE', async () => {
    const c = cluster([fast[0]!.httpEndpoint]);
    await c.close();
    const err = await failure(() => c.pick());
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toMatch(/shut down/);
  });
});
