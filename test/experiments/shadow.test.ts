import { describe, expect, it } from 'vitest';
import type { BackendCluster } from '../../src/backends/cluster.js';
import { validateConfig } from '../../src/config/load.js';
import type { DataType } from '../../src/core/datatypes.js';
import { GatewayError } from '../../src/core/errors.js';
import type { InferRequest, InferResponse } from '../../src/core/inference.js';
import type { Tensor } from '../../src/core/tensor.js';
import { encodeElements } from '../../src/core/tensor-values.js';
import {
  responsesAgree,
  ShadowMirrorImpl,
  type ShadowObservation,
  type ShadowPlan,
} from '../../src/experiments/shadow.js';
import type { LeafNode } from '../../src/routing/route-tree.js';

/** Shadow mirroring over an in-memory leaf: sampling, the concurrency bound, failures, comparison. */

const REQ: InferRequest = { model: 'm', version: '', inputs: [] };
const CTX = { deadline: Date.now() + 60_000 };

function tensor(datatype: DataType, shape: number[], values: unknown[], name = 'OUT'): Tensor {
  return { name, datatype, shape, data: encodeElements(datatype, values, name) };
}
function resp(...outputs: Tensor[]): InferResponse {
  return { model: 'm', version: '1', outputs };
}

/** A leaf whose one endpoint answers with `answer(req)` (a promise it controls). */
function fakeLeaf(answer: (req: InferRequest) => Promise<InferResponse>): { leaf: LeafNode; calls: InferRequest[] } {
  const calls: InferRequest[] = [];
  const endpoint = {
    infer: (req: InferRequest) => {
      calls.push(req);
      return answer(req);
    },
  };
  const backend = { call: <T>(fn: (e: unknown) => Promise<T>) => fn(endpoint) } as unknown as BackendCluster;
  const leaf = {
    kind: 'leaf', name: 'm', id: 'shadow', backend, backendModel: 'm-shadow', options: {}, timeoutMs: 60_000,
  } as unknown as LeafNode;
  return { leaf, calls };
}

function plan(leaf: LeafNode, over: Partial<ShadowPlan> = {}): ShadowPlan {
  return { model: 'm', percent: 100, maxConcurrency: 16, tolerance: 0, timeoutMs: 5_000, node: leaf, ...over };
}

/** A deterministic [0, 1) source (a linear congruential generator). */
function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const settle = () => new Promise((r) => setTimeout(r, 5));

describe('sampling', () => {
  it('copies about percent of 10,000 requests', async () => {
    const { leaf, calls } = fakeLeaf(async () => resp());
    const mirror = new ShadowMirrorImpl([plan(leaf, { percent: 10, maxConcurrency: 100_000 })], { random: seeded(42) });
    for (let i = 0; i < 10_000; i++) mirror.mirror('m', REQ, resp(), 1, CTX);
    await settle();
    const stats = mirror.stats('m')!;
    expect(stats.sent).toBeGreaterThan(900);
    expect(stats.sent).toBeLessThan(1100);
    expect(calls).toHaveLength(stats.sent);
    expect(stats.agreed).toBe(stats.sent);
    expect(stats.primaryLatency.count).toBe(stats.sent);
  });

  it('copies nothing at 0 and everything at 100; other models are not copied', async () => {
    const { leaf } = fakeLeaf(async () => resp());
    const none = new ShadowMirrorImpl([plan(leaf, { percent: 0 })]);
    const all = new ShadowMirrorImpl([plan(leaf, { percent: 100, maxConcurrency: 1000 })]);
    for (let i = 0; i < 100; i++) {
      none.mirror('m', REQ, resp(), 1, CTX);
      all.mirror('m', REQ, resp(), 1, CTX);
      all.mirror('other', REQ, resp(), 1, CTX);
    }
    await settle();
    expect(none.stats('m')).toBeUndefined();
    expect(all.stats('m')!.sent).toBe(100);
    expect(all.stats('other')).toBeUndefined();
  });

  it('uses the injected random source', () => {
    const { leaf } = fakeLeaf(async () => resp());
    const draws = [0.049, 0.05, 0.5, 0.01];
    const mirror = new ShadowMirrorImpl([plan(leaf, { percent: 5 })], { random: () => draws.shift()! });
    for (let i = 0; i < 4; i++) mirror.mirror('m', REQ, resp(), 1, CTX);
    expect(mirror.stats('m')!.sent).toBe(2);
  });
});

describe('bounded concurrency and failures', () => {
  it('drops (and counts) copies beyond max_concurrency while the shadow hangs', async () => {
    const { leaf, calls } = fakeLeaf(() => new Promise<InferResponse>(() => {}));
    const seen: ShadowObservation[] = [];
    const mirror = new ShadowMirrorImpl([plan(leaf, { maxConcurrency: 3 })], { reporter: { recordShadow: (_m, o) => seen.push(o) } });
    const started = performance.now();
    for (let i = 0; i < 10; i++) mirror.mirror('m', REQ, resp(), 1, CTX);
    expect(performance.now() - started).toBeLessThan(50); // returns at once
    const stats = mirror.stats('m')!;
    expect(stats).toMatchObject({ sampled: 10, sent: 3, dropped: 7, inFlight: 3, failed: 0 });
    expect(calls).toHaveLength(3);
    expect(seen.filter((o) => o.dropped === true)).toHaveLength(7);
  });

  it('a hanging shadow fails at its own deadline and frees its slot', async () => {
    // Stands in for an adapter failing its call at the deadline it was given.
    const hang = fakeLeaf(
      () => new Promise<InferResponse>((_resolve, reject) => setTimeout(() => reject(new GatewayError('DEADLINE_EXCEEDED', 'late')), 60)),
    );
    const mirror = new ShadowMirrorImpl([plan(hang.leaf, { maxConcurrency: 1, timeoutMs: 50 })]);
    mirror.mirror('m', REQ, resp(), 1, CTX);
    mirror.mirror('m', REQ, resp(), 1, CTX);
    expect(mirror.stats('m')).toMatchObject({ sent: 1, dropped: 1, inFlight: 1 });
    await new Promise((r) => setTimeout(r, 120));
    expect(mirror.stats('m')).toMatchObject({ sent: 1, dropped: 1, failed: 1, inFlight: 0, agreed: 0, disagreed: 0 });
    mirror.mirror('m', REQ, resp(), 1, CTX);
    expect(mirror.stats('m')).toMatchObject({ sent: 2, inFlight: 1 });
  });

  it('counts errors, never throws, and survives a throwing reporter', async () => {
    const { leaf } = fakeLeaf(async () => {
      throw new GatewayError('NOT_FOUND', 'no such model');
    });
    const mirror = new ShadowMirrorImpl([plan(leaf)], {
      reporter: {
        recordShadow: () => {
          throw new Error('reporter broke');
        },
      },
    });
    for (let i = 0; i < 5; i++) expect(() => mirror.mirror('m', REQ, resp(), 1, CTX)).not.toThrow();
    await settle();
    expect(mirror.stats('m')).toMatchObject({ sent: 5, failed: 5, inFlight: 0 });
    expect(mirror.stats('m')!.shadowLatency.count).toBe(5);
  });

  it('sends the client request to the shadow leaf, with its pinned version', async () => {
    const { leaf, calls } = fakeLeaf(async () => resp());
    const pinned = { ...leaf, pinnedVersion: '1' } as LeafNode;
    const mirror = new ShadowMirrorImpl([plan(pinned)]);
    mirror.mirror('m', { ...REQ, version: '2' }, resp(), 1, CTX);
    await settle();
    expect(calls[0]).toMatchObject({ model: 'm-shadow', version: '1' });
  });

  it('reports each compared copy with both latencies', async () => {
    const { leaf } = fakeLeaf(async (req) => (req.id === 'same' ? resp(tensor('INT32', [1], [1])) : resp(tensor('INT32', [1], [2]))));
    const seen: ShadowObservation[] = [];
    const mirror = new ShadowMirrorImpl([plan(leaf)], { reporter: { recordShadow: (_m, o) => seen.push(o) } });
    const primary = resp(tensor('INT32', [1], [1]));
    mirror.mirror('m', { ...REQ, id: 'same' }, primary, 7, CTX);
    mirror.mirror('m', { ...REQ, id: 'other' }, primary, 9, CTX);
    await settle();
    expect(seen.map((o) => [o.agreed, o.primaryMs])).toEqual([[true, 7], [false, 9]]);
    expect(seen.every((o) => o.shadowMs >= 0 && o.dropped === undefined && o.failed === undefined)).toBe(true);
    expect(mirror.stats('m')).toMatchObject({ agreed: 1, disagreed: 1, agreementRate: 0.5 });
  });
});

describe('comparison', () => {
  const f32 = (v: number[], shape = [1, v.length]) => tensor('FP32', shape, v);

  it('identical answers agree', () => {
    expect(responsesAgree(resp(f32([1, 2.5]), tensor('BYTES', [1], ['a'], 'B')), resp(tensor('BYTES', [1], ['a'], 'B'), f32([1, 2.5])), 0)).toBe(true);
  });

  it('floats within the tolerance agree; outside it they do not; 0 is bit-exact', () => {
    expect(responsesAgree(resp(f32([1, 2])), resp(f32([1.000001, 2])), 1e-5)).toBe(true);
    expect(responsesAgree(resp(f32([1, 2])), resp(f32([1.001, 2])), 1e-5)).toBe(false);
    expect(responsesAgree(resp(f32([1, 2])), resp(f32([1.000001, 2])), 0)).toBe(false);
    expect(responsesAgree(resp(tensor('FP64', [1], [0.1 + 0.2])), resp(tensor('FP64', [1], [0.3])), 1e-12)).toBe(true);
    expect(responsesAgree(resp(tensor('FP16', [1], [1])), resp(tensor('FP16', [1], [1.001])), 0.01)).toBe(true);
    expect(responsesAgree(resp(tensor('BF16', [1], [1])), resp(tensor('BF16', [1], [2])), 0.5)).toBe(false);
    expect(responsesAgree(resp(f32([NaN])), resp(f32([NaN])), 1e-3)).toBe(true);
    expect(responsesAgree(resp(f32([NaN])), resp(f32([1])), 1e-3)).toBe(false);
  });

  it('integers and bytes are exact whatever the tolerance', () => {
    expect(responsesAgree(resp(tensor('INT64', [1], [1])), resp(tensor('INT64', [1], [2])), 10)).toBe(false);
    expect(responsesAgree(resp(tensor('BYTES', [1], ['a'])), resp(tensor('BYTES', [1], ['b'])), 10)).toBe(false);
  });

  it('a different shape, datatype or set of outputs disagrees', () => {
    expect(responsesAgree(resp(f32([1, 2], [1, 2])), resp(f32([1, 2], [2, 1])), 1)).toBe(false);
    expect(responsesAgree(resp(f32([1, 2])), resp(tensor('FP64', [1, 2], [1, 2])), 1)).toBe(false);
    expect(responsesAgree(resp(f32([1])), resp(f32([1]), f32([1])), 0)).toBe(false);
    expect(responsesAgree(resp(f32([1])), resp({ ...f32([1]), name: 'OTHER' }), 0)).toBe(false);
  });
});

describe('config', () => {
  const base = {
    backends: { a: { kind: 'triton', protocol: 'grpc', endpoints: ['127.0.0.1:1'] } },
    targets: { pool: { backend: 'a', model: 'other' } },
  };

  it('parses shadow: with defaults, beside the model node', () => {
    const config = validateConfig({
      ...base,
      models: {
        ranker: { backend: 'a', shadow: { percent: 10, target: 'pool' } },
        leafy: { backend: 'a', shadow: { percent: 50, max_concurrency: 4, tolerance: 1e-5, timeout_ms: 300, backend: 'a', model: 'x', version: '1' } },
      },
    });
    expect(config.models.ranker).toEqual({ backend: 'a', shadow: { percent: 10, max_concurrency: 16, tolerance: 0, timeout_ms: 2000, node: { target: 'pool' } } });
    expect(config.models.leafy!.shadow).toEqual({
      percent: 50, max_concurrency: 4, tolerance: 1e-5, timeout_ms: 300, node: { backend: 'a', model: 'x', version: '1', timeout_ms: 300 },
    });
  });

  it('names the key path of each problem', () => {
    const problems = (shadow: unknown): string => {
      try {
        validateConfig({ ...base, models: { ranker: { backend: 'a', shadow } } });
        return '';
      } catch (err) {
        return String((err as Error).message);
      }
    };
    expect(problems({ percent: 101, target: 'pool' })).toMatch(/models\.ranker\.shadow\.percent/);
    expect(problems({ target: 'pool' })).toMatch(/models\.ranker\.shadow\.percent: missing/);
    expect(problems({ percent: 5, max_concurrency: 0, target: 'pool' })).toMatch(/models\.ranker\.shadow\.max_concurrency/);
    expect(problems({ percent: 5, target: 'nope' })).toMatch(/models\.ranker\.shadow\.target: unknown target 'nope'/);
    expect(problems({ percent: 5 })).toMatch(/models\.ranker\.shadow: a node needs exactly one of/);
    expect(problems({ percent: 5, target: 'pool', colour: 1 })).toMatch(/models\.ranker\.shadow: unknown key 'colour'/);
    expect(problems(7)).toMatch(/models\.ranker\.shadow: must be a map/);
  });
});
