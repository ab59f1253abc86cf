import { createServer } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../../reference/triton/index.js';
import { TritonGrpcBackend } from '../../../src/backends/triton/grpc.js';
import type { CallOptions } from '../../../src/backends/backend.js';
import { DATATYPES, ELEMENT_SIZE, type DataType } from '../../../src/core/datatypes.js';
import { GatewayError, type ErrorCode } from '../../../src/core/errors.js';
import type { InferRequest, InferResponse } from '../../../src/core/inference.js';
import { joinBytesElements, type Tensor } from '../../../src/core/tensor.js';
import { INFERENCE_SERVICE } from '../../../src/protocols/v2/grpc-proto.js';

const opts = (ms = 5000, extra?: Partial<CallOptions>): CallOptions => ({ deadline: Date.now() + ms, ...extra });

async function expectError(promise: Promise<unknown>, code: ErrorCode, message: RegExp): Promise<GatewayError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'expected the call to fail').toBeInstanceOf(GatewayError);
  const gatewayError = err as GatewayError;
  expect(gatewayError.code).toBe(code);
  expect(gatewayError.message).toMatch(message);
  return gatewayError;
}

/** Distinct, non-trivial bytes for a [2,3] tensor of `datatype`. */
function sampleData(datatype: DataType): Buffer {
  if (datatype === 'BYTES') return joinBytesElements(['a', '', 'héllo', '\u0000\u00ff', 'x'.repeat(300), '6'].map((s) => Buffer.from(s)));
  const size = ELEMENT_SIZE[datatype];
  const data = Buffer.from(Array.from({ length: 6 * size }, (_, i) => (i * 37 + size) & 0xff));
  if (datatype === 'BOOL') data.forEach((b, i) => (data[i] = b & 1));
  return data;
}

/** The reference `linear` model's float32 arithmetic, in its documented order. */
function linearScores(x: readonly number[], bias: readonly number[]): number[] {
  const w = [
    [0.5, -1, 0.25],
    [1.5, 0.5, -0.75],
    [-0.5, 2, 1],
    [1, -0.25, 0.5],
  ];
  return [0, 1, 2].map((j) => {
    let acc = 0;
    for (let k = 0; k < 4; k++) acc = Math.fround(acc + Math.fround(x[k]! * w[k]![j]!));
    return Math.fround(acc + Math.fround(bias[j]!));
  });
}

function fp32(values: readonly number[]): Buffer {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeFloatLE(v, i * 4));
  return b;
}

function linearRequest(version: string, x = [1, 2, 3, 4]): InferRequest {
  return { model: 'linear', version, inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: fp32(x) }] };
}

/** A port nothing listens on: bound once to learn a free number, then closed. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('TritonGrpcBackend against the reference Triton', () => {
  let triton: TritonReference;
  let backend: TritonGrpcBackend;

  beforeAll(async () => {
    triton = await startTritonReference();
    backend = new TritonGrpcBackend({ endpoint: triton.grpcEndpoint, maxConnections: 4 });
  });

  afterAll(async () => {
    await backend?.close();
    await triton?.close();
  });

  it('describes itself', () => {
    expect(backend.kind).toBe('triton');
    expect(backend.protocol).toBe('grpc');
    expect(backend.endpoint).toBe(triton.grpcEndpoint);
  });

  it.each(DATATYPES)('returns %s bytes exactly through identity', async (datatype) => {
    const data = sampleData(datatype);
    const model = `identity_${datatype.toLowerCase()}`;
    const resp = await backend.infer(
      { model, version: '', id: `id-${datatype}`, inputs: [{ name: 'INPUT0', datatype, shape: [2, 3], data }] },
      opts(),
    );
    expect(resp).toMatchObject({ model, version: '1', id: `id-${datatype}` });
    expect(resp.outputs).toHaveLength(1);
    const out = resp.outputs[0]!;
    expect(out).toMatchObject({ name: 'OUTPUT0', datatype, shape: [2, 3] });
    expect(out.data.equals(data)).toBe(true);
  });

  it('runs the version asked for: linear versions 1 and 2 differ', async () => {
    const v1 = await backend.infer(linearRequest('1'), opts());
    const v2 = await backend.infer(linearRequest('2'), opts());
    const latest = await backend.infer(linearRequest(''), opts());
    expect(v1.version).toBe('1');
    expect(v2.version).toBe('2');
    expect(latest.version).toBe('2');
    const scores = (outputs: readonly Tensor[]) => outputs.find((t) => t.name === 'SCORES')!;
    expect(scores(v1.outputs).data.equals(fp32(linearScores([1, 2, 3, 4], [0.1, -0.2, 0.3])))).toBe(true);
    expect(scores(v2.outputs).data.equals(fp32(linearScores([1, 2, 3, 4], [1, 0, -1])))).toBe(true);
    expect(scores(v1.outputs).data.equals(scores(v2.outputs).data)).toBe(false);
    const cls = v1.outputs.find((t) => t.name === 'CLASS')!;
    expect(cls).toMatchObject({ datatype: 'INT64', shape: [1] });
    expect(cls.data.length).toBe(8);
  });

  it('sends requested outputs and several inputs', async () => {
    const a = Buffer.alloc(64);
    const b = Buffer.alloc(64);
    for (let i = 0; i < 16; i++) {
      a.writeInt32LE(i * 3, i * 4);
      b.writeInt32LE(i, i * 4);
    }
    const resp = await backend.infer(
      {
        model: 'simple',
        version: '',
        inputs: [
          { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: a },
          { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: b },
        ],
        outputs: [{ name: 'OUTPUT1' }],
      },
      opts(),
    );
    expect(resp.outputs.map((t) => t.name)).toEqual(['OUTPUT1']);
    const diff = resp.outputs[0]!.data;
    for (let i = 0; i < 16; i++) expect(diff.readInt32LE(i * 4)).toBe(i * 2);
  });

  it('reports model readiness: true, false, and NOT_FOUND for an unknown model or version', async () => {
    expect(await backend.modelReady('linear', '', opts())).toBe(true);
    expect(await backend.modelReady('linear', '1', opts())).toBe(true);
    expect(await backend.modelReady('unready', '', opts())).toBe(false);
    await expectError(backend.modelReady('nope', '', opts()), 'NOT_FOUND', /Request for unknown model: 'nope' is not found/);
    await expectError(backend.modelReady('linear', '7', opts()), 'NOT_FOUND', /version 7 is not found/);
  });

  it('reads model metadata', async () => {
    expect(await backend.modelMetadata('linear', '', opts())).toEqual({
      name: 'linear',
      versions: ['1', '2'],
      platform: 'reference_linear',
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [-1, 4] }],
      outputs: [
        { name: 'SCORES', datatype: 'FP32', shape: [-1, 3] },
        { name: 'CLASS', datatype: 'INT64', shape: [-1] },
      ],
    });
    expect((await backend.modelMetadata('linear', '1', opts())).versions).toEqual(['1']);
    await expectError(backend.modelMetadata('nope', '', opts()), 'NOT_FOUND', /'nope'/);
  });

  it('reports server readiness', async () => {
    expect(await backend.serverReady(opts())).toBe(true);
  });

  it("passes on the backend's INVALID_ARGUMENT with its message", async () => {
    const req: InferRequest = {
      model: 'linear',
      version: '1',
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 3], data: fp32([1, 2, 3]) }],
    };
    await expectError(backend.infer(req, opts()), 'INVALID_ARGUMENT', /unexpected shape for input 'INPUT0'.*\[-1,4\].*\[1,3\]/);
  });

  it("passes on the backend's own UNAVAILABLE as the backend said it, not as unreachable", async () => {
    const req: InferRequest = {
      model: 'unready',
      version: '',
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1], data: fp32([1]) }],
    };
    const err = await expectError(backend.infer(req, opts()), 'UNAVAILABLE', /is not at ready state/);
    expect(err.message).not.toMatch(/unreachable/);
  });

  it('refuses a message beyond maxMessageBytes', async () => {
    const small = new TritonGrpcBackend({ endpoint: triton.grpcEndpoint, maxConnections: 1, maxMessageBytes: 1024 });
    try {
      const data = Buffer.alloc(2048);
      const req: InferRequest = {
        model: 'identity_uint8',
        version: '',
        inputs: [{ name: 'INPUT0', datatype: 'UINT8', shape: [1, 2048], data }],
      };
      await expectError(small.infer(req, opts()), 'RESOURCE_EXHAUSTED', /larger than 1024/);
    } finally {
      await small.close();
    }
  });

  it('fails with UNAVAILABLE after close()', async () => {
    const b = new TritonGrpcBackend({ endpoint: triton.grpcEndpoint, maxConnections: 1 });
    expect(await b.serverReady(opts())).toBe(true);
    await b.close();
    await b.close();
    await expectError(b.serverReady(opts()), 'UNAVAILABLE', /is closed/);
    await expectError(b.infer(linearRequest('1'), opts()), 'UNAVAILABLE', /is closed/);
  });
});

describe('TritonGrpcBackend when the endpoint is down', () => {
  it('fails fast with UNAVAILABLE for a closed port', async () => {
    const endpoint = `127.0.0.1:${await closedPort()}`;
    const backend = new TritonGrpcBackend({ endpoint, maxConnections: 1 });
    try {
      const started = Date.now();
      await expectError(
        backend.infer(linearRequest('1'), opts(10_000)),
        'UNAVAILABLE',
        new RegExp(`^backend triton ${endpoint} unreachable: .*ECONNREFUSED`),
      );
      await expectError(backend.serverReady(opts(10_000)), 'UNAVAILABLE', /unreachable/);
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      await backend.close();
    }
  });
});

describe('TritonGrpcBackend against a misbehaving server', () => {
  let server: grpc.Server;
  let endpoint: string;
  let backend: TritonGrpcBackend;
  const pending: grpc.sendUnaryData<unknown>[] = [];
  const seenRequestIds: string[] = [];

  beforeAll(async () => {
    server = new grpc.Server();
    server.addService(INFERENCE_SERVICE, {
      // Never answers: the call is held until the client gives up.
      ModelInfer: (_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        pending.push(callback);
      },
      ServerReady: (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        seenRequestIds.push(...call.metadata.get('x-request-id').map(String));
        callback(null, { ready: true });
      },
      // A shape no tensor can have.
      ModelMetadata: (_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        callback(null, { name: 'bad', inputs: [{ name: 'x', datatype: 'FP32', shape: ['-5'] }] });
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    endpoint = `127.0.0.1:${port}`;
    backend = new TritonGrpcBackend({ endpoint, maxConnections: 1 });
  });

  afterAll(async () => {
    await backend?.close();
    server?.forceShutdown();
  });

  afterEach(() => {
    pending.length = 0;
  });

  it('fails with DEADLINE_EXCEEDED when the backend never answers', async () => {
    const started = Date.now();
    await expectError(
      backend.infer(linearRequest('1'), opts(200)),
      'DEADLINE_EXCEEDED',
      new RegExp(`^backend ${endpoint} did not answer within the deadline$`),
    );
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(150);
    expect(elapsed).toBeLessThan(2000);
    expect(pending).toHaveLength(1);
  });

  it('fails at once for a deadline already past', async () => {
    await expectError(backend.infer(linearRequest('1'), { deadline: Date.now() - 1 }), 'DEADLINE_EXCEEDED', /deadline/);
  });

  it('cancels the call when the signal aborts', async () => {
    const controller = new AbortController();
    const call = backend.infer(linearRequest('1'), opts(10_000, { signal: controller.signal }));
    setTimeout(() => controller.abort(), 50);
    await expectError(call, 'CANCELLED', /was cancelled/);
  });

  it('does not start a call whose signal already aborted', async () => {
    const before = pending.length;
    await expectError(backend.infer(linearRequest('1'), opts(5000, { signal: AbortSignal.abort() })), 'CANCELLED', /cancelled/);
    expect(pending.length).toBe(before);
  });

  it('sends the request id as x-request-id metadata', async () => {
    expect(await backend.serverReady(opts(5000, { requestId: 'req-42' }))).toBe(true);
    expect(seenRequestIds).toContain('req-42');
  });

  it('reports a malformed reply as INTERNAL, not as the client’s INVALID_ARGUMENT', async () => {
    await expectError(backend.modelMetadata('bad', '', opts()), 'INTERNAL', /sent a malformed reply: .*shape \[-5\]/);
  });

  it('passes on UNIMPLEMENTED for an rpc the server lacks', async () => {
    await expectError(backend.modelReady('x', '', opts()), 'UNIMPLEMENTED', /./);
  });
});

// ------------------------------------------------------------------ inferStream (ModelStreamInfer)

function int32(values: readonly number[]): Buffer {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeInt32LE(v, i * 4));
  return b;
}

function uint32(values: readonly number[]): Buffer {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeUInt32LE(v, i * 4));
  return b;
}

/** A request to the reference's decoupled repeat_int32: one response per element, each DELAY[i] ms after the last. */
function repeatRequest(values: readonly number[], delays?: readonly number[], id?: string): InferRequest {
  const inputs: Tensor[] = [{ name: 'IN', datatype: 'INT32', shape: [values.length], data: int32(values) }];
  if (delays !== undefined) inputs.push({ name: 'DELAY', datatype: 'UINT32', shape: [delays.length], data: uint32(delays) });
  return { model: 'repeat_int32', version: '', ...(id !== undefined ? { id } : {}), inputs };
}

async function collectParts(parts: AsyncIterable<InferResponse>): Promise<InferResponse[]> {
  const out: InferResponse[] = [];
  for await (const part of parts) out.push(part);
  return out;
}

describe('TritonGrpcBackend.inferStream against the reference Triton', () => {
  let triton: TritonReference;
  let backend: TritonGrpcBackend;

  beforeAll(async () => {
    triton = await startTritonReference();
    backend = new TritonGrpcBackend({ endpoint: triton.grpcEndpoint, maxConnections: 1 });
  });

  afterAll(async () => {
    await backend?.close();
    await triton?.close();
  });

  afterEach(() => triton.setFault(undefined));

  it('yields every response of a decoupled model, in order, and not the empty final one', async () => {
    const parts = await collectParts(backend.inferStream(repeatRequest([4, -7, 2147483647], undefined, 'r-1'), opts()));
    expect(parts).toHaveLength(3);
    parts.forEach((part, i) => {
      expect(part).toMatchObject({ model: 'repeat_int32', version: '1', id: 'r-1' });
      expect(part.outputs.map((t) => [t.name, t.datatype, t.shape])).toEqual([['OUT', 'INT32', [1]], ['IDX', 'UINT32', [1]]]);
      expect(part.outputs[0]!.data.equals(int32([[4, -7, 2147483647][i]!]))).toBe(true);
      expect(part.outputs[1]!.data.equals(uint32([i]))).toBe(true);
      expect(part.parameters?.triton_final_response).toBe(false);
    });
    expect(triton.stats.activeStreams).toBe(0);
  });

  it('yields nothing for a request the model answers with its final flag alone', async () => {
    expect(await collectParts(backend.inferStream(repeatRequest([]), opts()))).toEqual([]);
  });

  it('yields the one response of a model that is not decoupled, equal to infer()', async () => {
    const parts = await collectParts(backend.inferStream(linearRequest('1'), opts()));
    const unary = await backend.infer(linearRequest('1'), opts());
    expect(parts).toHaveLength(1);
    expect(parts[0]!.outputs).toEqual(unary.outputs);
    // Answered by a unary call, not a stream: Triton flags only stream responses as final.
    expect(parts[0]!.parameters?.triton_final_response).toBeUndefined();
  });

  it("maps Triton's in-band error_message to the code its wording says, with the message", async () => {
    await expectError(collectParts(backend.inferStream({ ...repeatRequest([1]), model: 'nope' }, opts())), 'NOT_FOUND', /^Request for unknown model: 'nope' is not found$/);
    await expectError(collectParts(backend.inferStream({ ...repeatRequest([1]), version: '9' }, opts())), 'NOT_FOUND', /version 9 is not found/);
    await expectError(collectParts(backend.inferStream({ ...linearRequest('1'), model: 'unready' }, opts())), 'UNAVAILABLE', /not at ready state/);
    const wrongType: InferRequest = { model: 'repeat_int32', version: '', inputs: [{ name: 'IN', datatype: 'INT64', shape: [1], data: Buffer.alloc(8) }] };
    await expectError(collectParts(backend.inferStream(wrongType, opts())), 'INVALID_ARGUMENT', /data-type is 'INT64'/);
    await expectError(collectParts(backend.inferStream(repeatRequest([1, 2], [0]), opts())), 'INVALID_ARGUMENT', /DELAY/);
    triton.setFault({ kind: 'error', status: 'INTERNAL', message: "Failed to process the request(s) for model 'repeat_int32', message: boom" });
    await expectError(collectParts(backend.inferStream(repeatRequest([1]), opts())), 'INTERNAL', /message: boom/);
  });

  it('fails with DEADLINE_EXCEEDED when the stream outlives its deadline, after the parts that came', async () => {
    const seen: InferResponse[] = [];
    const parts = backend.inferStream(repeatRequest([1, 2], [0, 60_000]), opts(300));
    await expectError((async () => {
      for await (const part of parts) seen.push(part);
    })(), 'DEADLINE_EXCEEDED', /did not answer within the deadline/);
    expect(seen).toHaveLength(1);
    await expect.poll(() => triton.stats.activeStreams).toBe(0);
  });

  it('cancels the backend stream when the signal aborts, mid-stream', async () => {
    const controller = new AbortController();
    const parts = backend.inferStream(repeatRequest([1, 2], [0, 60_000]), opts(10_000, { signal: controller.signal }))[Symbol.asyncIterator]();
    const first = await parts.next();
    expect(first.done).toBe(false);
    expect(triton.stats.activeStreams).toBe(1);
    const second = parts.next();
    controller.abort();
    await expectError(second, 'CANCELLED', /was cancelled/);
    await expect.poll(() => triton.stats.activeStreams).toBe(0);
  });

  it('cancels the backend stream when the reader leaves early', async () => {
    for await (const part of backend.inferStream(repeatRequest([1, 2], [0, 60_000]), opts())) {
      expect(part.outputs[0]!.data.equals(int32([1]))).toBe(true);
      break;
    }
    await expect.poll(() => triton.stats.activeStreams).toBe(0);
  });

  it('does not open a stream whose signal already aborted', async () => {
    const before = triton.stats.inferCalls;
    await expectError(collectParts(backend.inferStream(repeatRequest([1]), opts(5000, { signal: AbortSignal.abort() }))), 'CANCELLED', /cancelled/);
    expect(triton.stats.inferCalls).toBe(before);
  });
});

describe('TritonGrpcBackend.inferStream against a scripted server', () => {
  let server: grpc.Server;
  let backend: TritonGrpcBackend;
  const seen: { requestId: string | undefined; emptyFinal: unknown }[] = [];
  /** What the server does with each stream, by the request's model name. */
  const scripts: Record<string, (call: grpc.ServerDuplexStream<Record<string, unknown>, unknown>) => void> = {
    // A final response with data, and the stream left open: the data is the last part, and the end.
    'final-with-data': (call) => {
      call.write({ infer_response: { model_name: 'm', outputs: [{ name: 'OUT', datatype: 'INT32', shape: ['1'] }], raw_output_contents: [int32([1])], parameters: { triton_final_response: { bool_param: false } } } });
      call.write({ infer_response: { model_name: 'm', outputs: [{ name: 'OUT', datatype: 'INT32', shape: ['1'] }], raw_output_contents: [int32([2])], parameters: { triton_final_response: { bool_param: true } } } });
    },
    // An empty final response and the stream left open: the end, not a part.
    'empty-final': (call) => {
      call.write({ infer_response: { model_name: 'm', outputs: [{ name: 'OUT', datatype: 'INT32', shape: ['1'] }], raw_output_contents: [int32([1])] } });
      call.write({ infer_response: { model_name: 'm', id: 'x', parameters: { triton_final_response: { bool_param: true } } } });
    },
    // A model failure reported in-band, in Triton's words.
    'in-band-error': (call) => {
      call.write({ error_message: "Failed to process the request(s) for model 'm', message: TritonModelException: oops" });
    },
    // A status at the end of the stream (Triton's triton_grpc_error mode, or any server failure).
    'status-error': (call) => {
      call.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: 'queue full' });
    },
  };

  beforeAll(async () => {
    server = new grpc.Server();
    server.addService(INFERENCE_SERVICE, {
      // Every scripted model is decoupled: unary calls are refused as Triton refuses them.
      ModelInfer: (_call: unknown, callback: grpc.sendUnaryData<unknown>) =>
        callback({ code: grpc.status.UNIMPLEMENTED, details: "ModelInfer RPC doesn't support models with decoupled transaction policy" }),
      ModelStreamInfer: (call: grpc.ServerDuplexStream<Record<string, unknown>, unknown>) => {
        call.on('error', () => {});
        call.once('data', (msg: { model_name?: string; parameters?: Record<string, { bool_param?: boolean }> }) => {
          seen.push({ requestId: call.metadata.get('x-request-id')[0]?.toString(), emptyFinal: msg.parameters?.triton_enable_empty_final_response?.bool_param });
          scripts[msg.model_name ?? '']?.(call);
        });
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    backend = new TritonGrpcBackend({ endpoint: `127.0.0.1:${port}`, maxConnections: 1 });
  });

  afterAll(async () => {
    await backend?.close();
    server?.forceShutdown();
  });

  const request = (model: string): InferRequest => ({ model, version: '', inputs: [] });

  it('ends after a final response that carries outputs, that response included', async () => {
    const parts = await collectParts(backend.inferStream(request('final-with-data'), opts(5000, { requestId: 'req-7' })));
    expect(parts.map((p) => p.outputs[0]!.data.readInt32LE(0))).toEqual([1, 2]);
    expect(seen.at(-1)).toEqual({ requestId: 'req-7', emptyFinal: true });
  });

  it('ends at an empty final response without yielding it', async () => {
    const parts = await collectParts(backend.inferStream(request('empty-final'), opts()));
    expect(parts).toHaveLength(1);
  });

  it('maps an in-band model failure to INTERNAL and a stream status like a unary one', async () => {
    await expectError(collectParts(backend.inferStream(request('in-band-error'), opts())), 'INTERNAL', /TritonModelException: oops/);
    await expectError(collectParts(backend.inferStream(request('status-error'), opts())), 'RESOURCE_EXHAUSTED', /^queue full$/);
  });
});
