// End to end: the dynamic batcher in front of the real reference Triton (serial: one call at a time, 5 ms each),
// reached over its KServe v2 REST API by a tiny undici client.
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { DynamicBatcher, type BatchCallContext } from '../../src/batching/dynamic-batcher.js';
import { GatewayError, codeFromHttpStatus } from '../../src/core/errors.js';
import type { InferRequest, InferResponse } from '../../src/core/inference.js';
import { parseDataType } from '../../src/core/datatypes.js';
import type { Tensor } from '../../src/core/tensor.js';

/** POST /v2/models/{model}/infer with JSON inputs (FP32 only) and binary outputs. */
async function restInfer(endpoint: string, req: InferRequest, ctx: BatchCallContext): Promise<InferResponse> {
  const body = {
    ...(req.id !== undefined ? { id: req.id } : {}),
    parameters: { binary_data_output: true },
    inputs: req.inputs.map((t) => {
      if (t.datatype !== 'FP32') throw new Error('this test client sends FP32 only');
      const data: number[] = [];
      for (let o = 0; o < t.data.length; o += 4) data.push(t.data.readFloatLE(o));
      return { name: t.name, datatype: t.datatype, shape: t.shape, data };
    }),
    ...(req.outputs ? { outputs: req.outputs.map((o) => ({ name: o.name })) } : {}),
  };
  const version = req.version ? `/versions/${req.version}` : '';
  const timeout = Math.max(1, ctx.deadline - Date.now());
  const res = await request(`http://${endpoint}/v2/models/${req.model}${version}/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    headersTimeout: timeout,
    bodyTimeout: timeout,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
  });
  const raw = Buffer.from(await res.body.arrayBuffer());
  if (res.statusCode !== 200) {
    const { error } = JSON.parse(raw.toString('utf8')) as { error: string };
    throw new GatewayError(codeFromHttpStatus(res.statusCode), error);
  }
  const headerLength = Number(res.headers['inference-header-content-length'] ?? raw.length);
  const json = JSON.parse(raw.subarray(0, headerLength).toString('utf8')) as {
    model_name: string;
    model_version: string;
    id?: string;
    outputs: { name: string; datatype: string; shape: number[]; parameters: { binary_data_size: number } }[];
  };
  let offset = headerLength;
  const outputs = json.outputs.map((o): Tensor => {
    const size = o.parameters.binary_data_size;
    const data = raw.subarray(offset, offset + size);
    offset += size;
    const datatype = parseDataType(o.datatype);
    if (!datatype) throw new Error(`unknown datatype ${o.datatype}`);
    return { name: o.name, datatype, shape: o.shape, data };
  });
  return { model: json.model_name, version: json.model_version, ...(json.id ? { id: json.id } : {}), outputs };
}

/** A distinct linear request of 1-3 rows. */
function linearRequest(i: number): InferRequest {
  const rows = 1 + (i % 3);
  const data = Buffer.alloc(rows * 4 * 4);
  for (let k = 0; k < rows * 4; k++) data.writeFloatLE(Math.fround(i * 0.37 - k * 1.25 + (i % 5)), k * 4);
  return { model: 'linear', version: '', id: `req-${i}`, inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [rows, 4], data }] };
}

describe('DynamicBatcher against the reference Triton', () => {
  let triton: TritonReference;
  beforeAll(async () => {
    triton = await startTritonReference({ latencyMs: 5, maxConcurrency: 1 });
  });
  afterAll(async () => {
    await triton.close();
  });

  it('64 concurrent distinct requests: each gets its own SCORES and CLASS, in a few calls', async () => {
    const requests = Array.from({ length: 64 }, (_, i) => linearRequest(i));
    const ctx = (): BatchCallContext => ({ deadline: Date.now() + 10_000 });

    // The truth: each request alone.
    const expected = await Promise.all(requests.map((r) => restInfer(triton.httpEndpoint, r, ctx())));

    const batcher = new DynamicBatcher('linear', { maxBatchSize: 64, maxQueueDelayMs: 10, maxQueueSize: 256 }, (req, c) =>
      restInfer(triton.httpEndpoint, req, c),
    );
    const before = triton.stats.inferCalls;
    const answers = await Promise.all(requests.map((r) => batcher.submit(r, ctx())));
    const calls = triton.stats.inferCalls - before;

    expect(calls).toBeLessThanOrEqual(8);
    expect(batcher.stats()).toMatchObject({ batchedRequests: 64, unbatched: 0, queued: 0, retriedAlone: 0 });
    answers.forEach((a, i) => {
      const want = expected[i]!;
      expect(a.id).toBe(`req-${i}`);
      expect(a.model).toBe('linear');
      expect(a.version).toBe(want.version);
      expect(a.outputs.map((t) => [t.name, t.datatype, t.shape])).toEqual(want.outputs.map((t) => [t.name, t.datatype, t.shape]));
      a.outputs.forEach((t, j) => expect(t.data.equals(want.outputs[j]!.data)).toBe(true));
      expect(a.outputs[0]?.shape).toEqual([requests[i]!.inputs[0]!.shape[0], 3]);
    });
  });

  it('a request the backend rejects fails alone; the others succeed', async () => {
    const batcher = new DynamicBatcher('linear', { maxBatchSize: 16, maxQueueDelayMs: 10, maxQueueSize: 256 }, (req, c) =>
      restInfer(triton.httpEndpoint, req, c),
    );
    const ctx = (): BatchCallContext => ({ deadline: Date.now() + 10_000 });
    const good = [0, 1, 2].map(linearRequest);
    // Same signature as the good ones except it asks for an output the model lacks: a batch of its own (outputs
    // are part of the signature), so it alone gets INVALID_ARGUMENT.
    const bad: InferRequest = { ...linearRequest(3), outputs: [{ name: 'NOPE' }] };
    const results = await Promise.allSettled([...good, bad].map((r) => batcher.submit(r, ctx())));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'rejected']);
    expect(((results[3] as PromiseRejectedResult).reason as GatewayError).code).toBe('INVALID_ARGUMENT');
  });

  it('UNAVAILABLE of a merged call reaches every member, with no retry', async () => {
    const batcher = new DynamicBatcher('linear', { maxBatchSize: 16, maxQueueDelayMs: 20, maxQueueSize: 256 }, (req, c) =>
      restInfer(triton.httpEndpoint, req, c),
    );
    triton.setFault({ kind: 'error', status: 'UNAVAILABLE', message: 'overloaded' });
    try {
      const before = triton.stats.inferCalls;
      const results = await Promise.allSettled([0, 1, 2, 3].map((i) => batcher.submit(linearRequest(i), { deadline: Date.now() + 10_000 })));
      expect(results.map((r) => (r.status === 'rejected' ? (r.reason as GatewayError).code : 'OK'))).toEqual(Array(4).fill('UNAVAILABLE'));
      expect(triton.stats.inferCalls - before).toBe(1);
    } finally {
      triton.setFault(undefined);
    }
  });
});
