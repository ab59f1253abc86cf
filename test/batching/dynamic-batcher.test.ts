import { afterEach, describe, expect, it, vi } from 'vitest';
import { DynamicBatcher, type BatchCallContext, type BatchingSettings } from '../../src/batching/dynamic-batcher.js';
import { GatewayError } from '../../src/core/errors.js';
import type { InferRequest, InferResponse } from '../../src/core/inference.js';
import type { Tensor } from '../../src/core/tensor.js';

function fp32(name: string, values: number[][]): Tensor {
  const data = Buffer.alloc(values.length * (values[0]?.length ?? 0) * 4);
  values.flat().forEach((v, i) => data.writeFloatLE(v, i * 4));
  return { name, datatype: 'FP32', shape: [values.length, values[0]?.length ?? 0], data };
}

function readFp32(t: Tensor | undefined): number[] {
  if (!t) throw new Error('missing tensor');
  const out: number[] = [];
  for (let o = 0; o < t.data.length; o += 4) out.push(t.data.readFloatLE(o));
  return out;
}

function request(values: number[][], id?: string, model = 'm'): InferRequest {
  return { model, version: '1', inputs: [fp32('X', values)], ...(id !== undefined ? { id } : {}) };
}

/** A backend that doubles each FP32 of X into Y; rows with a negative first value make the call INVALID_ARGUMENT. */
function scripted(opts: { delayMs?: number; fail?: (req: InferRequest) => GatewayError | undefined } = {}) {
  const calls: { req: InferRequest; ctx: BatchCallContext }[] = [];
  const call = async (req: InferRequest, ctx: BatchCallContext): Promise<InferResponse> => {
    calls.push({ req, ctx });
    if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
    const err = opts.fail?.(req);
    if (err) throw err;
    const x = req.inputs[0]!;
    if (x.data.length % 4 !== 0) throw new GatewayError('INVALID_ARGUMENT', `bad data for '${x.name}'`);
    const y = Buffer.alloc(x.data.length);
    for (let o = 0; o < y.length; o += 4) y.writeFloatLE(x.data.readFloatLE(o) * 2, o);
    return {
      model: req.model,
      version: '1',
      ...(req.id !== undefined ? { id: req.id } : {}),
      parameters: { served_by: 'scripted' },
      outputs: [{ name: 'Y', datatype: 'FP32', shape: [...x.shape], data: y }],
    };
  };
  return { calls, call };
}

const SETTINGS: BatchingSettings = { maxBatchSize: 32, maxQueueDelayMs: 20, maxQueueSize: 1000 };
const ctx = (ms = 5000, signal?: AbortSignal): BatchCallContext => ({ deadline: Date.now() + ms, ...(signal ? { signal } : {}) });
const codeOf = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
    return 'OK';
  } catch (err) {
    return err instanceof GatewayError ? err.code : `non-gateway: ${String(err)}`;
  }
};

afterEach(() => {
  vi.useRealTimers();
});

describe('DynamicBatcher', () => {
  it('merges 64 concurrent requests into 2 calls and gives every caller its own rows', async () => {
    const backend = scripted();
    const batcher = new DynamicBatcher('t', { ...SETTINGS, maxQueueDelayMs: 1000 }, backend.call);
    const started = Date.now();
    const answers = await Promise.all(
      Array.from({ length: 64 }, (_, i) => batcher.submit(request([[i, i + 0.5, -i]], `r${i}`), ctx())),
    );
    expect(Date.now() - started).toBeLessThan(900); // sent on maxBatchSize, not after the delay
    expect(backend.calls).toHaveLength(2);
    expect(backend.calls.map((c) => c.req.inputs[0]?.shape)).toEqual([[32, 3], [32, 3]]);
    answers.forEach((a, i) => {
      expect(a.id).toBe(`r${i}`);
      expect(a.model).toBe('m');
      expect(a.parameters).toEqual({ served_by: 'scripted' });
      expect(a.outputs).toHaveLength(1);
      expect(a.outputs[0]?.shape).toEqual([1, 3]);
      expect(readFp32(a.outputs[0])).toEqual([2 * i, 2 * i + 1, -2 * i]);
    });
    expect(batcher.stats()).toMatchObject({ batches: 2, batchedRequests: 64, unbatched: 0, queued: 0, meanBatchRows: 32 });
  });

  it('counts rows, not requests, against maxBatchSize', async () => {
    const backend = scripted();
    const batcher = new DynamicBatcher('t', { ...SETTINGS, maxBatchSize: 4, maxQueueDelayMs: 1000 }, backend.call);
    const a = batcher.submit(request([[1], [2], [3]]), ctx());
    const b = batcher.submit(request([[4], [5]]), ctx()); // 3 + 2 > 4: the first batch goes as it is
    await a;
    expect(backend.calls.map((c) => c.req.inputs[0]?.shape[0])).toEqual([3]);
    const c = batcher.submit(request([[6], [7]]), ctx()); // 2 + 2 = 4: full
    expect(readFp32((await b).outputs[0])).toEqual([8, 10]);
    expect(readFp32((await c).outputs[0])).toEqual([12, 14]);
    expect(backend.calls.map((x) => x.req.inputs[0]?.shape[0])).toEqual([3, 4]);
  });

  it('sends a partial batch after maxQueueDelayMs', async () => {
    vi.useFakeTimers();
    const backend = scripted();
    const batcher = new DynamicBatcher('t', { ...SETTINGS, maxQueueDelayMs: 50 }, backend.call);
    const p = Promise.all([batcher.submit(request([[1]]), ctx()), batcher.submit(request([[2]]), ctx())]);
    await vi.advanceTimersByTimeAsync(49);
    expect(backend.calls).toHaveLength(0);
    expect(batcher.stats().queued).toBe(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(backend.calls).toHaveLength(1);
    const [a, b] = await p;
    expect(readFp32(a.outputs[0])).toEqual([2]);
    expect(readFp32(b.outputs[0])).toEqual([4]);
    expect(batcher.stats().queued).toBe(0);
  });

  it('flush() sends pending batches now', async () => {
    const backend = scripted();
    const batcher = new DynamicBatcher('t', { ...SETTINGS, maxQueueDelayMs: 60_000 }, backend.call);
    const p = Promise.all([batcher.submit(request([[1]]), ctx()), batcher.submit(request([[2]], undefined, 'other'), ctx())]);
    batcher.flush();
    expect(backend.calls).toHaveLength(2);
    await p;
  });

  it('a batch of one member is a plain call with its own request and context', async () => {
    const backend = scripted();
    const batcher = new DynamicBatcher('t', { ...SETTINGS, maxQueueDelayMs: 5 }, backend.call);
    const r = request([[3]], 'solo');
    const c = ctx();
    const res = await batcher.submit(r, c);
    expect(backend.calls[0]?.req).toBe(r);
    expect(backend.calls[0]?.ctx).toBe(c);
    expect(res.id).toBe('solo');
  });

  it('puts incompatible requests in separate batches', async () => {
    const backend = scripted();
    const batcher = new DynamicBatcher('t', { ...SETTINGS, maxQueueDelayMs: 10 }, backend.call);
    const results = await Promise.all([
      batcher.submit(request([[1, 1]]), ctx()),
      batcher.submit(request([[2, 2, 2]]), ctx()), // another inner shape
      batcher.submit(request([[3, 3]], undefined, 'n'), ctx()), // another model
      batcher.submit(request([[4, 4]]), ctx()),
      batcher.submit({ ...request([[5, 5]]), parameters: { p: 1 } }, ctx()),
    ]);
    expect(backend.calls).toHaveLength(4);
    expect(backend.calls.map((c) => c.req.inputs[0]?.shape).sort()).toEqual([[1, 2], [1, 2], [1, 3], [2, 2]].sort());
    expect(results.map((r) => readFp32(r.outputs[0]))).toEqual([[2, 2], [4, 4, 4], [6, 6], [8, 8], [10, 10]]);
  });

  it('runs an oversized or invalid request alone, at once', async () => {
    const backend = scripted();
    const batcher = new DynamicBatcher('t', { ...SETTINGS, maxBatchSize: 2, maxQueueDelayMs: 60_000 }, backend.call);
    const big = request([[1], [2], [3]]);
    const bad: InferRequest = { model: 'm', version: '1', inputs: [{ name: 'X', datatype: 'FP32', shape: [1, 2], data: Buffer.alloc(3) }] };
    const c1 = ctx();
    const p1 = batcher.submit(big, c1);
    const p2 = batcher.submit(bad, ctx());
    expect(backend.calls.map((c) => c.req)).toEqual([big, bad]);
    expect(backend.calls[0]?.ctx).toBe(c1);
    expect(readFp32((await p1).outputs[0])).toEqual([2, 4, 6]);
    expect(await codeOf(p2)).toBe('INVALID_ARGUMENT'); // the backend judged it, for this caller only
    expect(batcher.stats()).toMatchObject({ unbatched: 2, batches: 0, queued: 0 });
  });

  it('an aborted queued member leaves the batch with its reason; the others are sent', async () => {
    const backend = scripted();
    const batcher = new DynamicBatcher('t', { ...SETTINGS, maxQueueDelayMs: 30 }, backend.call);
    const ac = new AbortController();
    const ac2 = new AbortController();
    const a = batcher.submit(request([[1]]), ctx());
    const b = batcher.submit(request([[2]]), ctx(5000, ac.signal));
    const c = batcher.submit(request([[3]]), ctx(5000, ac2.signal));
    const d = batcher.submit(request([[4]]), ctx());
    ac.abort(new GatewayError('DEADLINE_EXCEEDED', 'client gave up'));
    ac2.abort();
    expect(batcher.stats().queued).toBe(2);
    await expect(b).rejects.toThrow('client gave up');
    expect(await codeOf(b)).toBe('DEADLINE_EXCEEDED');
    expect(await codeOf(c)).toBe('CANCELLED');
    expect(readFp32((await a).outputs[0])).toEqual([2]);
    expect(readFp32((await d).outputs[0])).toEqual([8]);
    expect(backend.calls).toHaveLength(1);
    expect(backend.calls[0]?.req.inputs[0]?.shape).toEqual([2, 1]);
  });

  it('a batch whose members all abort is never sent; an already aborted signal is refused', async () => {
    const backend = scripted();
    const batcher = new DynamicBatcher('t', { ...SETTINGS, maxQueueDelayMs: 10 }, backend.call);
    const ac = new AbortController();
    const p = batcher.submit(request([[1]]), ctx(5000, ac.signal));
    ac.abort();
    expect(await codeOf(p)).toBe('CANCELLED');
    expect(await codeOf(batcher.submit(request([[1]]), ctx(5000, ac.signal)))).toBe('CANCELLED');
    await new Promise((r) => setTimeout(r, 30));
    expect(backend.calls).toHaveLength(0);
    expect(batcher.stats().queued).toBe(0);
  });

  it('a member whose deadline passes while queued is not sent; the merged deadline is the earliest', async () => {
    const backend = scripted();
    const batcher = new DynamicBatcher('t', { ...SETTINGS, maxQueueDelayMs: 40 }, backend.call);
    const late = batcher.submit(request([[1]]), ctx(10));
    const c1 = ctx(3000);
    const c2 = ctx(2000);
    const ok = Promise.all([batcher.submit(request([[2]]), c1), batcher.submit(request([[3]]), c2)]);
    expect(await codeOf(late)).toBe('DEADLINE_EXCEEDED');
    const [x, y] = await ok;
    expect(readFp32(x.outputs[0])).toEqual([4]);
    expect(readFp32(y.outputs[0])).toEqual([6]);
    expect(backend.calls).toHaveLength(1);
    expect(backend.calls[0]?.req.inputs[0]?.shape).toEqual([2, 1]);
    expect(backend.calls[0]?.ctx.deadline).toBe(c2.deadline);
  });

  it('refuses with RESOURCE_EXHAUSTED when maxQueueSize requests wait already', async () => {
    const backend = scripted();
    const batcher = new DynamicBatcher('t', { maxBatchSize: 100, maxQueueDelayMs: 60_000, maxQueueSize: 3 }, backend.call);
    const queued = [1, 2, 3].map((v) => batcher.submit(request([[v]]), ctx()));
    let caught: unknown;
    await batcher.submit(request([[4]], undefined, 'other'), ctx()).catch((e: unknown) => {
      caught = e;
    });
    expect(caught).toBeInstanceOf(GatewayError);
    expect((caught as GatewayError).code).toBe('RESOURCE_EXHAUSTED');
    expect((caught as GatewayError).retryAfterMs).toBe(1000);
    expect(batcher.stats()).toMatchObject({ queued: 3, rejected: 1 });
    batcher.flush();
    await Promise.all(queued);
    expect(backend.calls).toHaveLength(1);
    const after = batcher.submit(request([[5]]), ctx()); // room again once the batch went
    expect(batcher.stats().queued).toBe(1);
    batcher.flush();
    expect(readFp32((await after).outputs[0])).toEqual([10]);
  });

  it('INVALID_ARGUMENT of a merged call: members are retried alone, only the bad one fails', async () => {
    const backend = scripted({
      fail: (req) => (readFp32(req.inputs[0]).some((v) => v < 0) ? new GatewayError('INVALID_ARGUMENT', 'negative input') : undefined),
    });
    const batcher = new DynamicBatcher('t', { ...SETTINGS, maxBatchSize: 4 }, backend.call);
    const results = await Promise.allSettled([1, -2, 3, 4].map((v) => batcher.submit(request([[v]], `r${v}`), ctx())));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect(((results[1] as PromiseRejectedResult).reason as GatewayError).code).toBe('INVALID_ARGUMENT');
    expect(results.flatMap((r) => (r.status === 'fulfilled' ? readFp32(r.value.outputs[0]) : []))).toEqual([2, 6, 8]);
    expect(backend.calls).toHaveLength(5); // 1 merged + 4 alone
    expect(backend.calls.slice(1).map((c) => c.req.id).sort()).toEqual(['r-2', 'r1', 'r3', 'r4']);
    expect(batcher.stats().retriedAlone).toBe(4);
  });

  it('an output that cannot be split back counts as INTERNAL: members are retried alone', async () => {
    let n = 0;
    const call = async (req: InferRequest): Promise<InferResponse> => {
      n++;
      // A backend that answers a batch with a single summary row: not splittable.
      return { model: req.model, version: '1', outputs: [{ name: 'S', datatype: 'FP32', shape: [1], data: Buffer.alloc(4) }] };
    };
    const batcher = new DynamicBatcher('t', { ...SETTINGS, maxBatchSize: 2 }, call);
    const [a, b] = await Promise.all([batcher.submit(request([[1]]), ctx()), batcher.submit(request([[2]]), ctx())]);
    expect(a.outputs[0]?.shape).toEqual([1]);
    expect(b.outputs[0]?.shape).toEqual([1]);
    expect(n).toBe(3);
  });

  it('UNAVAILABLE of a merged call reaches every member without a retry', async () => {
    const backend = scripted({ fail: () => new GatewayError('UNAVAILABLE', 'backend down') });
    const batcher = new DynamicBatcher('t', { ...SETTINGS, maxBatchSize: 3 }, backend.call);
    const codes = await Promise.all([1, 2, 3].map((v) => codeOf(batcher.submit(request([[v]]), ctx()))));
    expect(codes).toEqual(['UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE']);
    expect(backend.calls).toHaveLength(1);
    expect(batcher.stats().retriedAlone).toBe(0);
  });

  it('a member aborting after the batch was sent is answered at once; the call is cancelled only when all leave', async () => {
    const backend = scripted({ delayMs: 100 });
    const batcher = new DynamicBatcher('t', { ...SETTINGS, maxBatchSize: 2 }, backend.call);
    const ac1 = new AbortController();
    const ac2 = new AbortController();
    const p1 = batcher.submit(request([[1]]), ctx(5000, ac1.signal));
    const p2 = batcher.submit(request([[2]]), ctx(5000, ac2.signal));
    expect(backend.calls).toHaveLength(1);
    const merged = backend.calls[0]!.ctx.signal!;
    ac1.abort();
    expect(await codeOf(p1)).toBe('CANCELLED');
    expect(merged.aborted).toBe(false);
    expect(readFp32((await p2).outputs[0])).toEqual([4]);
    ac2.abort(); // after the answer: nothing happens
    expect(merged.aborted).toBe(false);

    const ac3 = new AbortController();
    const ac4 = new AbortController();
    const p3 = batcher.submit(request([[3]]), ctx(5000, ac3.signal));
    const p4 = batcher.submit(request([[4]]), ctx(5000, ac4.signal));
    const second = backend.calls[1]!.ctx.signal!;
    ac3.abort();
    ac4.abort();
    expect(second.aborted).toBe(true);
    expect([await codeOf(p3), await codeOf(p4)]).toEqual(['CANCELLED', 'CANCELLED']);
  });

  it('a call that throws synchronously still rejects the promise', async () => {
    const batcher = new DynamicBatcher('t', SETTINGS, () => {
      throw new GatewayError('UNAVAILABLE', 'sync');
    });
    expect(await codeOf(batcher.submit(request([[1], [2]]), ctx()))).toBe('UNAVAILABLE');
    expect(await codeOf(batcher.submit({ model: 'm', version: '', inputs: [] }, ctx()))).toBe('UNAVAILABLE');
  });

  it('rejects invalid settings', () => {
    const call = scripted().call;
    expect(() => new DynamicBatcher('t', { ...SETTINGS, maxBatchSize: 0 }, call)).toThrow(RangeError);
    expect(() => new DynamicBatcher('t', { ...SETTINGS, maxQueueDelayMs: -1 }, call)).toThrow(RangeError);
    expect(() => new DynamicBatcher('t', { ...SETTINGS, maxQueueSize: 1.5 }, call)).toThrow(RangeError);
  });
});
