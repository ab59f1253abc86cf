// Tests of the reference Triton server itself, over real sockets, with requests built by hand so that the
// expected bytes and values come from this file rather than from the server's own codecs.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PROTO = fileURLToPath(new URL('../../protos/inference/grpc_service.proto', import.meta.url));

type Value = number | bigint | boolean | string;
type Dt = 'BOOL' | 'UINT8' | 'UINT16' | 'UINT32' | 'UINT64' | 'INT8' | 'INT16' | 'INT32' | 'INT64' | 'FP16' | 'BF16' | 'FP32' | 'FP64' | 'BYTES';

/** Four edge values per datatype, used as a [2,2] tensor. FP16/BF16 are raw bit patterns (1, -2, max, min subnormal). */
const SAMPLES: Record<Dt, Value[]> = {
  BOOL: [true, false, false, true],
  UINT8: [0, 1, 128, 255],
  UINT16: [0, 1, 40000, 65535],
  UINT32: [0, 1, 3000000000, 4294967295],
  UINT64: [0n, 1n, 9007199254740993n, 18446744073709551615n],
  INT8: [-128, -1, 0, 127],
  INT16: [-32768, -1, 1, 32767],
  INT32: [-2147483648, -1, 1, 2147483647],
  INT64: [-9223372036854775808n, -1n, 9007199254740993n, 9223372036854775807n],
  FP16: [0x3c00, 0xc000, 0x7bff, 0x0001],
  BF16: [0x3f80, 0xc000, 0x7f7f, 0x0001],
  FP32: [1.5, -0.1, 3.4028234663852886e38, 1e-45],
  FP64: [0.1, -2.5, 1.7976931348623157e308, 5e-324],
  BYTES: ['hello', '', 'ünïcödé', 'a,"b"\n'],
};
const DATATYPES = Object.keys(SAMPLES) as Dt[];

/** Little-endian encoding written independently of the server (DataView, not Buffer helpers). */
function le(dt: Dt, values: readonly Value[]): Buffer {
  if (dt === 'BYTES') {
    return Buffer.concat(values.map((v) => {
      const bytes = Buffer.from(String(v), 'utf8');
      const len = new DataView(new ArrayBuffer(4));
      len.setUint32(0, bytes.length, true);
      return Buffer.concat([Buffer.from(len.buffer), bytes]);
    }));
  }
  const size = { BOOL: 1, UINT8: 1, INT8: 1, UINT16: 2, INT16: 2, FP16: 2, BF16: 2, UINT32: 4, INT32: 4, FP32: 4, UINT64: 8, INT64: 8, FP64: 8 }[dt];
  const view = new DataView(new ArrayBuffer(values.length * size));
  values.forEach((v, i) => {
    const o = i * size;
    if (dt === 'BOOL') view.setUint8(o, v ? 1 : 0);
    else if (dt === 'UINT8') view.setUint8(o, Number(v));
    else if (dt === 'INT8') view.setInt8(o, Number(v));
    else if (dt === 'UINT16' || dt === 'FP16' || dt === 'BF16') view.setUint16(o, Number(v), true);
    else if (dt === 'INT16') view.setInt16(o, Number(v), true);
    else if (dt === 'UINT32') view.setUint32(o, Number(v), true);
    else if (dt === 'INT32') view.setInt32(o, Number(v), true);
    else if (dt === 'FP32') view.setFloat32(o, Number(v), true);
    else if (dt === 'FP64') view.setFloat64(o, Number(v), true);
    else if (dt === 'UINT64') view.setBigUint64(o, BigInt(v), true);
    else view.setBigInt64(o, BigInt(v), true);
  });
  return Buffer.from(view.buffer);
}

/** JSON text with bigints written exactly (JSON.stringify refuses them). */
function jsonText(value: unknown): string {
  if (typeof value === 'bigint') return value.toString();
  if (Array.isArray(value)) return `[${value.map(jsonText).join(',')}]`;
  if (value && typeof value === 'object') return `{${Object.entries(value).filter(([, v]) => v !== undefined).map(([k, v]) => `${JSON.stringify(k)}:${jsonText(v)}`).join(',')}}`;
  return JSON.stringify(value);
}

/** What a JSON reply's `data` holds for the samples (64-bit integers are checked on the raw text instead). */
function expectedJsonData(dt: Dt): unknown[] {
  return SAMPLES[dt].map((v) => (dt === 'FP32' ? Math.fround(Number(v)) : v));
}

/** The linear model recomputed here: float32 with rounding after every multiply and add, fixed order. */
function linearExpected(rows: number[][], version: '1' | '2'): { scores: number[]; classes: number[] } {
  const W = [[0.5, -1, 0.25], [1.5, 0.5, -0.75], [-0.5, 2, 1], [1, -0.25, 0.5]];
  const b = version === '1' ? [0.1, -0.2, 0.3] : [1, 0, -1];
  const f = Math.fround;
  const scores: number[] = [];
  const classes: number[] = [];
  for (const row of rows) {
    const s = [0, 1, 2].map((j) => {
      let acc = 0;
      for (let k = 0; k < 4; k++) acc = f(acc + f(f(row[k] ?? 0) * (W[k]?.[j] ?? 0)));
      return f(acc + f(b[j] ?? 0));
    });
    scores.push(...s);
    classes.push(s.indexOf(Math.max(...s)));
  }
  return { scores, classes };
}

interface OutputJson { name: string; datatype: string; shape: number[]; parameters?: { binary_data_size: number }; data?: unknown[] }
interface InferJson { model_name: string; model_version: string; id?: string; outputs: OutputJson[] }
interface Reply { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }

let ref: TritonReference;
let client: grpc.Client & Record<string, (...args: unknown[]) => unknown>;

async function http(method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<Reply> {
  const res = await request(`http://${ref.httpEndpoint}${path}`, { method: method as 'GET', body, headers });
  return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) };
}
const post = (path: string, value: unknown): Promise<Reply> => http('POST', path, jsonText(value), { 'content-type': 'application/json' });
const json = <T = InferJson>(r: Reply): T => JSON.parse(r.body.toString('utf8')) as T;

function binaryRequest(header: unknown, blobs: Buffer[]): [Buffer, Record<string, string>] {
  const head = Buffer.from(jsonText(header));
  return [Buffer.concat([head, ...blobs]), { 'inference-header-content-length': String(head.length), 'content-type': 'application/octet-stream' }];
}

/** Splits a binary-extension reply into its JSON header and the blob of each binary output. */
function splitBinary(r: Reply): { header: InferJson; blobs: Record<string, Buffer> } {
  expect(r.headers['content-type']).toBe('application/octet-stream');
  const n = Number(r.headers['inference-header-content-length']);
  const header = JSON.parse(r.body.subarray(0, n).toString('utf8')) as InferJson;
  const blobs: Record<string, Buffer> = {};
  let offset = n;
  for (const o of header.outputs) {
    const size = o.parameters?.binary_data_size;
    if (size === undefined) continue;
    blobs[o.name] = r.body.subarray(offset, offset + size);
    offset += size;
  }
  expect(offset).toBe(r.body.length);
  return { header, blobs };
}

function rpc<T = Record<string, unknown>>(method: string, req: object): Promise<T> {
  return new Promise((resolve, reject) => {
    const fn = client[method];
    if (!fn) throw new Error(`no rpc ${method}`);
    fn.call(client, req, (err: grpc.ServiceError | null, reply: T) => (err ? reject(err) : resolve(reply)));
  });
}
const rpcError = (code: grpc.status, details?: string) =>
  expect.objectContaining({ code, ...(details === undefined ? {} : { details: expect.stringContaining(details) }) });

beforeAll(async () => {
  ref = await startTritonReference();
  const def = protoLoader.loadSync(PROTO, { keepCase: true, longs: String, enums: String, defaults: false, oneofs: true });
  const Service = (grpc.loadPackageDefinition(def).inference as grpc.GrpcObject).GRPCInferenceService as grpc.ServiceClientConstructor;
  client = new Service(ref.grpcEndpoint, grpc.credentials.createInsecure()) as typeof client;
});

afterAll(async () => {
  client?.close();
  await ref?.close();
});

describe('REST server endpoints', () => {
  it('answers health with 200 and an empty body, on a kept-alive connection', async () => {
    for (const path of ['/v2/health/live', '/v2/health/ready']) {
      const r = await http('GET', path);
      expect([r.status, r.body.length, r.headers.connection]).toEqual([200, 0, 'keep-alive']);
    }
  });

  it('serves server metadata', async () => {
    expect(json(await http('GET', '/v2'))).toEqual({
      name: 'triton', version: '2.50.0-reference', extensions: ['classification', 'model_repository', 'binary_tensor_data'],
    });
  });

  it('serves model metadata, for the latest and an explicit version', async () => {
    const all = json(await http('GET', '/v2/models/linear'));
    expect(all).toEqual({
      name: 'linear', versions: ['1', '2'], platform: 'reference_linear',
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [-1, 4] }],
      outputs: [{ name: 'SCORES', datatype: 'FP32', shape: [-1, 3] }, { name: 'CLASS', datatype: 'INT64', shape: [-1] }],
    });
    expect(json<{ versions: string[] }>(await http('GET', '/v2/models/linear/versions/1')).versions).toEqual(['1']);
    expect(json<{ inputs: unknown[] }>(await http('GET', '/v2/models/unready')).inputs).toEqual([{ name: 'INPUT0', datatype: 'FP32', shape: [-1] }]);
    expect(json<{ inputs: unknown[] }>(await http('GET', '/v2/models/identity_bf16')).inputs).toEqual([{ name: 'INPUT0', datatype: 'BF16', shape: [-1, -1] }]);
  });

  it('reports model readiness as 200 / 400 / 404', async () => {
    expect((await http('GET', '/v2/models/linear/ready')).status).toBe(200);
    expect((await http('GET', '/v2/models/linear/versions/1/ready')).status).toBe(200);
    const unready = await http('GET', '/v2/models/unready/ready');
    expect([unready.status, json(unready)]).toEqual([400, { error: 'Model version not ready' }]);
    const unknown = await http('GET', '/v2/models/nope/ready');
    expect([unknown.status, json(unknown)]).toEqual([404, { error: "Request for unknown model: 'nope' is not found" }]);
    expect((await http('GET', '/v2/models/linear/versions/3/ready')).status).toBe(404);
  });

  it('lists the repository, optionally only ready versions', async () => {
    const rows = json<{ name: string; version: string; state: string; reason?: string }[]>(await http('POST', '/v2/repository/index'));
    expect(rows).toHaveLength(2 + 1 + DATATYPES.length + 1 + 1); // linear x2, simple, identity_*, repeat_int32, unready
    expect(rows).toContainEqual({ name: 'linear', version: '2', state: 'READY' });
    expect(rows).toContainEqual({ name: 'repeat_int32', version: '1', state: 'READY' });
    expect(rows).toContainEqual(expect.objectContaining({ name: 'unready', version: '1', state: 'UNAVAILABLE', reason: expect.any(String) }));
    const ready = json<{ state: string }[]>(await post('/v2/repository/index', { ready: true }));
    expect(ready).toHaveLength(rows.length - 1);
    expect(ready.every((r) => r.state === 'READY')).toBe(true);
  });

  it('answers unmatched paths with 404 and wrong verbs with 405', async () => {
    for (const path of ['/v3', '/v2/nothing', '/v2/models/linear/versions/abc', '/v2/models/linear/explain']) {
      const r = await http('GET', path);
      expect([path, r.status, json(r)]).toEqual([path, 404, { error: 'Not Found' }]);
    }
    for (const [method, path] of [['DELETE', '/v2/models/linear'], ['GET', '/v2/models/linear/infer'], ['POST', '/v2/health/live'], ['GET', '/v2/repository/index']]) {
      expect((await http(method ?? '', path ?? '')).status).toBe(405);
    }
  });
});

describe('REST inference', () => {
  const linearRows = [[1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4], [0, 4, 0, -4], [-1.5, 0.25, 2, -3]];

  for (const version of ['1', '2'] as const) {
    it(`computes linear v${version} in float32, with argmax classes`, async () => {
      const r = await post(`/v2/models/linear/versions/${version}/infer`, {
        id: 'req-7', inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [4, 4], data: linearRows }],
      });
      const body = json(r);
      const want = linearExpected(linearRows, version);
      expect(r.headers['content-type']).toBe('application/json');
      expect(body).toEqual({
        model_name: 'linear', model_version: version, id: 'req-7',
        outputs: [
          { name: 'SCORES', datatype: 'FP32', shape: [4, 3], data: want.scores },
          { name: 'CLASS', datatype: 'INT64', shape: [4], data: want.classes },
        ],
      });
    });
  }

  it('uses the latest version when none is given, and known values hold', async () => {
    const body = json(await post('/v2/models/linear/infer', { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [2, 4], data: [1, 2, 3, 4, 0, 4, 0, -4] }] }));
    expect(body.model_version).toBe('2');
    expect(body.outputs[0]?.data).toEqual([7, 5, 2.75, 3, 3, -6]); // hand-computed with W and b of version 2
    expect(body.outputs[1]?.data).toEqual([0, 0]); // the 3 / 3 tie goes to the first index
    expect(body.id).toBeUndefined();
  });

  it('returns only the requested outputs, in the order asked', async () => {
    const body = json(await post('/v2/models/linear/infer', {
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }], outputs: [{ name: 'CLASS' }],
    }));
    expect(body.outputs).toEqual([{ name: 'CLASS', datatype: 'INT64', shape: [1], data: [0] }]);
  });

  it('applies classification to a requested output', async () => {
    const body = json(await post('/v2/models/linear/infer', {
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }],
      outputs: [{ name: 'SCORES', parameters: { classification: 2 } }],
    }));
    expect(body.outputs).toEqual([{ name: 'SCORES', datatype: 'BYTES', shape: [1, 2], data: ['7.000000:0', '5.000000:1'] }]);
  });

  it('adds and subtracts in simple with int32 wrap-around', async () => {
    const a = Array.from({ length: 16 }, (_, i) => (i === 0 ? 2147483647 : i === 1 ? -2147483648 : i * 3));
    const b = Array.from({ length: 16 }, (_, i) => (i < 2 ? 1 : 100 - i));
    const body = json(await post('/v2/models/simple/infer', {
      inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: [a] }, { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: [b] }],
    }));
    expect(body.outputs[0]?.data).toEqual(a.map((x, i) => (x + (b[i] ?? 0)) | 0));
    expect(body.outputs[1]?.data).toEqual(a.map((x, i) => (x - (b[i] ?? 0)) | 0));
    expect((body.outputs[0]?.data ?? [])[0]).toBe(-2147483648);
    expect((body.outputs[1]?.data ?? [])[1]).toBe(2147483647);
  });

  for (const dt of DATATYPES) {
    const path = `/v2/models/identity_${dt.toLowerCase()}/infer`;

    it(`echoes ${dt} through binary input and binary output`, async () => {
      const data = le(dt, SAMPLES[dt]);
      const [body, headers] = binaryRequest({
        inputs: [{ name: 'INPUT0', datatype: dt, shape: [2, 2], parameters: { binary_data_size: data.length } }],
        parameters: { binary_data_output: true },
      }, [data]);
      const r = await http('POST', path, body, headers);
      expect(r.status).toBe(200);
      const { header, blobs } = splitBinary(r);
      expect(header.outputs).toEqual([{ name: 'OUTPUT0', datatype: dt, shape: [2, 2], parameters: { binary_data_size: data.length } }]);
      expect(blobs.OUTPUT0?.equals(data)).toBe(true);
    });

    if (dt === 'FP16' || dt === 'BF16') {
      it(`refuses ${dt} in JSON, both as input data and as output data`, async () => {
        const r = await post(path, { inputs: [{ name: 'INPUT0', datatype: dt, shape: [1, 1], data: [1] }] });
        expect(r.status).toBe(400);
        expect(json<{ error: string }>(r).error).toContain('INPUT0');
        const [body, headers] = binaryRequest({ inputs: [{ name: 'INPUT0', datatype: dt, shape: [1, 2], parameters: { binary_data_size: 4 } }] }, [le(dt, [1, 2])]);
        const out = await http('POST', path, body, headers);
        expect([out.status, json<{ error: string }>(out).error]).toEqual([400, expect.stringContaining(`sending ${dt} data via JSON`)]);
      });
      continue;
    }

    it(`echoes ${dt} through JSON, and binary input comes back as JSON by default`, async () => {
      const r = await http('POST', path, jsonText({ inputs: [{ name: 'INPUT0', datatype: dt, shape: [2, 2], data: [SAMPLES[dt].slice(0, 2), SAMPLES[dt].slice(2)] }] }));
      const data = le(dt, SAMPLES[dt]);
      const [body, headers] = binaryRequest({ inputs: [{ name: 'INPUT0', datatype: dt, shape: [2, 2], parameters: { binary_data_size: data.length } }] }, [data]);
      const fromBinary = await http('POST', path, body, headers);
      for (const reply of [r, fromBinary]) {
        expect(reply.status).toBe(200);
        expect(reply.headers['content-type']).toBe('application/json');
        const text = reply.body.toString('utf8');
        if (dt === 'INT64' || dt === 'UINT64') expect(text).toContain(`"data":[${SAMPLES[dt].join(',')}]`);
        else expect(json(reply).outputs).toEqual([{ name: 'OUTPUT0', datatype: dt, shape: [2, 2], data: expectedJsonData(dt) }]);
      }
    });
  }

  it('sends binary only for outputs that ask, the per-output flag overriding the request-wide one', async () => {
    const r = await post('/v2/models/linear/infer', {
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }],
      parameters: { binary_data_output: true },
      outputs: [{ name: 'SCORES' }, { name: 'CLASS', parameters: { binary_data: false } }],
    });
    const { header, blobs } = splitBinary(r);
    expect(header.outputs).toEqual([
      { name: 'SCORES', datatype: 'FP32', shape: [1, 3], parameters: { binary_data_size: 12 } },
      { name: 'CLASS', datatype: 'INT64', shape: [1], data: [0] },
    ]);
    expect(blobs.SCORES?.equals(le('FP32', [7, 5, 2.75]))).toBe(true);
  });

  it('reads several binary inputs in order, mixed with JSON ones', async () => {
    const a = Array.from({ length: 16 }, (_, i) => i * 1000);
    const b = Array.from({ length: 16 }, (_, i) => i);
    const [body, headers] = binaryRequest({
      inputs: [
        { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], parameters: { binary_data_size: 64 } },
        { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: a },
      ],
      outputs: [{ name: 'OUTPUT1', parameters: { binary_data: true } }],
    }, [le('INT32', b)]);
    const { blobs } = splitBinary(await http('POST', '/v2/models/simple/infer', body, headers));
    expect(blobs.OUTPUT1?.equals(le('INT32', a.map((x, i) => x - (b[i] ?? 0))))).toBe(true);
  });

  it('treats Inference-Header-Content-Length 0 as the raw data of the only input', async () => {
    const data = le('FP32', [1, 2, 3]);
    const { header, blobs } = splitBinary(await http('POST', '/v2/models/identity_fp32/infer', data, { 'inference-header-content-length': '0' }));
    expect(header.outputs[0]?.shape).toEqual([1, 3]);
    expect(blobs.OUTPUT0?.equals(data)).toBe(true);
  });

  it('accepts a gzip-compressed request body', async () => {
    const body = gzipSync(JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'INT8', shape: [1, 2], data: [-5, 5] }] }));
    const r = await http('POST', '/v2/models/identity_int8/infer', body, { 'content-encoding': 'gzip' });
    expect(json(r).outputs[0]?.data).toEqual([-5, 5]);
  });
});

describe('REST errors', () => {
  const linearInput = (over: Record<string, unknown> = {}) => ({ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4], ...over });
  const expectError = async (r: Promise<Reply>, status: number, contains: string) => {
    const reply = await r;
    expect(reply.headers['content-type']).toBe('application/json');
    expect([reply.status, json<{ error: string }>(reply).error]).toEqual([status, expect.stringContaining(contains)]);
  };

  it('maps model lookup failures like Triton', async () => {
    const r = await post('/v2/models/nope/infer', { inputs: [] });
    expect([r.status, json(r)]).toEqual([404, { error: "Request for unknown model: 'nope' is not found" }]);
    await expectError(post('/v2/models/linear/versions/9/infer', { inputs: [linearInput()] }), 404, 'version 9');
    await expectError(post('/v2/models/unready/infer', { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1], data: [1] }] }), 503, 'unready');
  });

  it('rejects inputs that do not fit the model, naming the input', async () => {
    const infer = (inputs: unknown[], outputs?: unknown[]) => post('/v2/models/linear/infer', { inputs, ...(outputs ? { outputs } : {}) });
    await expectError(infer([linearInput({ datatype: 'INT32' })]), 400, "'INPUT0'");
    await expectError(infer([linearInput({ shape: [4] })]), 400, "unexpected shape for input 'INPUT0'");
    await expectError(infer([linearInput({ shape: [1, 3], data: [1, 2, 3] })]), 400, "unexpected shape for input 'INPUT0'");
    await expectError(infer([linearInput({ shape: [2, 4] })]), 400, 'INPUT0');
    await expectError(infer([linearInput(), { name: 'EXTRA', datatype: 'FP32', shape: [1], data: [1] }]), 400, "'EXTRA'");
    await expectError(infer([linearInput({ data: [1, 'x', 3, 4] })]), 400, 'INPUT0');
    await expectError(infer([linearInput()], [{ name: 'PROBS' }]), 400, "'PROBS'");
    await expectError(post('/v2/models/simple/infer', { inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: new Array(16).fill(1) }] }), 400, "'INPUT1'");
    await expectError(post('/v2/models/identity_uint8/infer', { inputs: [{ name: 'INPUT0', datatype: 'UINT8', shape: [1, 1], data: [256] }] }), 400, 'INPUT0');
  });

  it('checks binary framing: data size, leftovers and the header value', async () => {
    const [short, h1] = binaryRequest({ inputs: [linearInput({ data: undefined, parameters: { binary_data_size: 12 } })] }, [le('FP32', [1, 2, 3])]);
    await expectError(http('POST', '/v2/models/linear/infer', short, h1), 400, "'INPUT0'");
    const [extra, h2] = binaryRequest({ inputs: [linearInput({ data: undefined, parameters: { binary_data_size: 16 } })] }, [le('FP32', [1, 2, 3, 4, 5])]);
    await expectError(http('POST', '/v2/models/linear/infer', extra, h2), 400, 'additional input data');
    const [overrun, h3] = binaryRequest({ inputs: [linearInput({ data: undefined, parameters: { binary_data_size: 32 } })] }, [le('FP32', [1, 2, 3, 4])]);
    await expectError(http('POST', '/v2/models/linear/infer', overrun, h3), 400, "'INPUT0'");
    for (const bad of ['abc', '-1', '1.5', String(overrun.length + 1), '99999999999']) {
      await expectError(http('POST', '/v2/models/linear/infer', overrun, { 'inference-header-content-length': bad }), 400, 'Inference-Header-Content-Length');
    }
  });

  it('rejects malformed bodies with 400 and keeps serving', async () => {
    await expectError(http('POST', '/v2/models/linear/infer', '{"inputs": ['), 400, 'JSON');
    await expectError(http('POST', '/v2/models/linear/infer', '[1,2]'), 400, 'object');
    await expectError(http('POST', '/v2/models/linear/infer', '{"inputs":[{"name":"INPUT0","datatype":"FP99","shape":[1,4],"data":[1,2,3,4]}]}'), 400, 'FP99');
    await expectError(http('POST', '/v2/models/linear/infer', 'x', { 'content-encoding': 'gzip' }), 400, 'decompress');
    await expectError(http('POST', '/v2/repository/index', '{"ready":"yes"}'), 400, 'ready');
    expect((await http('GET', '/v2/health/ready')).status).toBe(200);
  });
});

describe('gRPC', () => {
  it('answers the server and model rpcs', async () => {
    expect(await rpc('ServerLive', {})).toEqual({ live: true });
    expect(await rpc('ServerReady', {})).toEqual({ ready: true });
    expect(await rpc('ServerMetadata', {})).toEqual({ name: 'triton', version: '2.50.0-reference', extensions: ['classification', 'model_repository', 'binary_tensor_data'] });
    expect(await rpc('ModelMetadata', { name: 'simple' })).toEqual({
      name: 'simple', versions: ['1'], platform: 'reference_simple',
      inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: ['-1', '16'] }, { name: 'INPUT1', datatype: 'INT32', shape: ['-1', '16'] }],
      outputs: [{ name: 'OUTPUT0', datatype: 'INT32', shape: ['-1', '16'] }, { name: 'OUTPUT1', datatype: 'INT32', shape: ['-1', '16'] }],
    });
    expect(await rpc('ModelReady', { name: 'linear', version: '1' })).toEqual({ ready: true });
    expect((await rpc<{ ready?: boolean }>('ModelReady', { name: 'unready' })).ready ?? false).toBe(false); // false may be elided
    await expect(rpc('ModelReady', { name: 'nope' })).rejects.toEqual(rpcError(grpc.status.NOT_FOUND, "'nope' is not found"));
    await expect(rpc('ModelMetadata', { name: 'linear', version: '5' })).rejects.toEqual(rpcError(grpc.status.NOT_FOUND));
    const index = await rpc<{ models: { name: string; state: string; reason?: string }[] }>('RepositoryIndex', {});
    expect(index.models).toContainEqual({ name: 'unready', version: '1', state: 'UNAVAILABLE', reason: expect.any(String) });
    expect((await rpc<{ models: unknown[] }>('RepositoryIndex', { ready: true })).models).toHaveLength(index.models.length - 1);
  });

  it('infers linear from fp32_contents and replies with raw_output_contents', async () => {
    const rows = [[1, 2, 3, 4], [-0.3, 0.7, 1.1, 2.2]];
    const reply = await rpc<{ model_name: string; model_version: string; id: string; outputs: unknown[]; raw_output_contents: Buffer[] }>('ModelInfer', {
      model_name: 'linear', model_version: '1', id: 'g-1',
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [2, 4], contents: { fp32_contents: rows.flat() } }],
    });
    const want = linearExpected(rows, '1');
    expect(reply.model_name).toBe('linear');
    expect(reply.model_version).toBe('1');
    expect(reply.id).toBe('g-1');
    expect(reply.outputs).toEqual([{ name: 'SCORES', datatype: 'FP32', shape: ['2', '3'] }, { name: 'CLASS', datatype: 'INT64', shape: ['2'] }]);
    expect(reply.raw_output_contents[0]?.equals(le('FP32', want.scores))).toBe(true);
    expect(reply.raw_output_contents[1]?.equals(le('INT64', want.classes.map(BigInt)))).toBe(true);
  });

  it('infers simple from raw_input_contents, filtering outputs and defaulting to the latest version', async () => {
    const a = Array.from({ length: 32 }, (_, i) => i - 16);
    const b = Array.from({ length: 32 }, (_, i) => 2 * i);
    const reply = await rpc<{ model_version: string; outputs: { name: string }[]; raw_output_contents: Buffer[] }>('ModelInfer', {
      model_name: 'simple',
      inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [2, 16] }, { name: 'INPUT1', datatype: 'INT32', shape: [2, 16] }],
      outputs: [{ name: 'OUTPUT1' }],
      raw_input_contents: [le('INT32', a), le('INT32', b)],
    });
    expect(reply.model_version).toBe('1');
    expect(reply.outputs.map((o) => o.name)).toEqual(['OUTPUT1']);
    expect(reply.raw_output_contents[0]?.equals(le('INT32', a.map((x, i) => x - (b[i] ?? 0))))).toBe(true);
  });

  const TYPED: Partial<Record<Dt, (v: Value[]) => object>> = {
    BOOL: (v) => ({ bool_contents: v }),
    UINT8: (v) => ({ uint_contents: v }), UINT16: (v) => ({ uint_contents: v }), UINT32: (v) => ({ uint_contents: v }),
    UINT64: (v) => ({ uint64_contents: v.map(String) }),
    INT8: (v) => ({ int_contents: v }), INT16: (v) => ({ int_contents: v }), INT32: (v) => ({ int_contents: v }),
    INT64: (v) => ({ int64_contents: v.map(String) }),
    FP32: (v) => ({ fp32_contents: v }), FP64: (v) => ({ fp64_contents: v }),
    BYTES: (v) => ({ bytes_contents: v.map((s) => Buffer.from(String(s), 'utf8')) }),
  };

  for (const dt of DATATYPES) {
    const model_name = `identity_${dt.toLowerCase()}`;
    const expected = le(dt, SAMPLES[dt]);
    const typed = TYPED[dt];

    it(`echoes ${dt} from raw_input_contents`, async () => {
      const reply = await rpc<{ outputs: unknown[]; raw_output_contents: Buffer[] }>('ModelInfer', {
        model_name, inputs: [{ name: 'INPUT0', datatype: dt, shape: [2, 2] }], raw_input_contents: [expected],
      });
      expect(reply.outputs).toEqual([{ name: 'OUTPUT0', datatype: dt, shape: ['2', '2'] }]);
      expect(reply.raw_output_contents[0]?.equals(expected)).toBe(true);
    });

    if (typed) {
      it(`echoes ${dt} from typed contents as raw bytes`, async () => {
        const reply = await rpc<{ raw_output_contents: Buffer[] }>('ModelInfer', {
          model_name, inputs: [{ name: 'INPUT0', datatype: dt, shape: [2, 2], contents: typed(SAMPLES[dt]) }],
        });
        expect(reply.raw_output_contents[0]?.equals(expected)).toBe(true);
      });
    } else {
      it(`refuses ${dt} in typed contents`, async () => {
        const req = { model_name, inputs: [{ name: 'INPUT0', datatype: dt, shape: [1, 2], contents: { fp32_contents: [1, 2] } }] };
        await expect(rpc('ModelInfer', req)).rejects.toEqual(rpcError(grpc.status.INVALID_ARGUMENT, 'INPUT0'));
      });
    }
  }

  it('maps errors to gRPC status codes', async () => {
    const linear = (input: object, extra: object = {}) => rpc('ModelInfer', {
      model_name: 'linear', inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], ...input }], ...extra,
    });
    const raw4 = { raw_input_contents: [le('FP32', [1, 2, 3, 4])] };
    await expect(rpc('ModelInfer', { model_name: 'nope' })).rejects.toEqual(rpcError(grpc.status.NOT_FOUND, "Request for unknown model: 'nope' is not found"));
    await expect(rpc('ModelInfer', { model_name: 'linear', model_version: '7' })).rejects.toEqual(rpcError(grpc.status.NOT_FOUND, 'version 7'));
    await expect(rpc('ModelInfer', { model_name: 'unready', inputs: [] })).rejects.toEqual(rpcError(grpc.status.UNAVAILABLE));
    await expect(linear({ contents: { fp32_contents: [1, 2, 3, 4] } }, raw4)).rejects.toEqual(rpcError(grpc.status.INVALID_ARGUMENT, 'raw_input_contents'));
    await expect(linear({ datatype: 'FP64' }, { raw_input_contents: [le('FP64', [1, 2, 3, 4])] })).rejects.toEqual(rpcError(grpc.status.INVALID_ARGUMENT, "'INPUT0'"));
    await expect(linear({ contents: { int_contents: [1, 2, 3, 4] } })).rejects.toEqual(rpcError(grpc.status.INVALID_ARGUMENT, 'INPUT0'));
    await expect(linear({ contents: { fp32_contents: [1, 2, 3] } })).rejects.toEqual(rpcError(grpc.status.INVALID_ARGUMENT, "'INPUT0'"));
    await expect(linear({ shape: [4] }, raw4)).rejects.toEqual(rpcError(grpc.status.INVALID_ARGUMENT, "unexpected shape for input 'INPUT0'"));
    await expect(linear({}, { raw_input_contents: [le('FP32', [1, 2, 3])] })).rejects.toEqual(rpcError(grpc.status.INVALID_ARGUMENT, "'INPUT0'"));
    await expect(linear({}, { ...raw4, outputs: [{ name: 'PROBS' }] })).rejects.toEqual(rpcError(grpc.status.INVALID_ARGUMENT, "'PROBS'"));
    await expect(rpc('ModelInfer', { model_name: 'simple', inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 16] }], raw_input_contents: [le('INT32', new Array(16).fill(0))] }))
      .rejects.toEqual(rpcError(grpc.status.INVALID_ARGUMENT, "'INPUT1'"));
    await expect(rpc('ModelInfer', { model_name: 'identity_int8', inputs: [{ name: 'INPUT0', datatype: 'INT8', shape: [1, 1], contents: { int_contents: [200] } }] }))
      .rejects.toEqual(rpcError(grpc.status.INVALID_ARGUMENT, 'INPUT0'));
  });

  it('streams one response per request, errors included, and ends when the client does', async () => {
    const call = (client.ModelStreamInfer as () => grpc.ClientDuplexStream<object, { error_message?: string; infer_response?: { id: string; raw_output_contents: Buffer[] } }>)();
    const replies: { error_message?: string; infer_response?: { id: string; raw_output_contents: Buffer[] } }[] = [];
    call.on('data', (m) => replies.push(m));
    const ok = (id: string, values: number[]) => ({ model_name: 'identity_int16', id, inputs: [{ name: 'INPUT0', datatype: 'INT16', shape: [1, values.length] }], raw_input_contents: [le('INT16', values)] });
    call.write(ok('s1', [1, -2]));
    call.write({ model_name: 'nope', id: 's2' });
    call.write(ok('s3', [300]));
    call.end();
    await once(call, 'end');
    expect(replies).toHaveLength(3);
    expect(replies[0]?.infer_response?.id).toBe('s1');
    expect(replies[0]?.infer_response?.raw_output_contents[0]?.equals(le('INT16', [1, -2]))).toBe(true);
    expect(replies[1]).toEqual({ error_message: "Request for unknown model: 'nope' is not found" });
    expect(replies[2]?.infer_response?.raw_output_contents[0]?.equals(le('INT16', [300]))).toBe(true);
  });
});

describe('decoupled model repeat_int32 (ModelStreamInfer only)', () => {
  interface StreamReply {
    error_message?: string;
    infer_response?: {
      id?: string;
      model_name?: string;
      outputs?: { name: string; datatype: string; shape: string[] }[];
      raw_output_contents?: Buffer[];
      parameters?: Record<string, { bool_param?: boolean }>;
    };
  }
  const repeat = (id: string, values: number[], extra: object = {}) => ({
    model_name: 'repeat_int32', id, inputs: [{ name: 'IN', datatype: 'INT32', shape: [values.length] }], raw_input_contents: [le('INT32', values)], ...extra,
  });
  const emptyFinal = { parameters: { triton_enable_empty_final_response: { bool_param: true } } };
  const final = (r: StreamReply | undefined) => r?.infer_response?.parameters?.triton_final_response?.bool_param ?? false;

  async function stream(requests: object[]): Promise<StreamReply[]> {
    const call = (client.ModelStreamInfer as () => grpc.ClientDuplexStream<object, StreamReply>)();
    const replies: StreamReply[] = [];
    call.on('data', (m: StreamReply) => replies.push(m));
    for (const r of requests) call.write(r);
    call.end();
    await once(call, 'end');
    return replies;
  }

  it('is listed with its inputs, DELAY among them, and no optional marker in the metadata', async () => {
    expect(await rpc('ModelMetadata', { name: 'repeat_int32' })).toEqual({
      name: 'repeat_int32', versions: ['1'], platform: 'reference_repeat',
      inputs: [{ name: 'IN', datatype: 'INT32', shape: ['-1'] }, { name: 'DELAY', datatype: 'UINT32', shape: ['-1'] }],
      outputs: [{ name: 'OUT', datatype: 'INT32', shape: ['1'] }, { name: 'IDX', datatype: 'UINT32', shape: ['1'] }],
    });
  });

  it('answers one response per element of IN, flagged not final, then an empty final one only when asked', async () => {
    const replies = await stream([repeat('a', [7, -1, 42]), repeat('b', [5], emptyFinal)]);
    expect(replies).toHaveLength(3 + 1 + 1);
    replies.slice(0, 3).forEach((r, i) => {
      expect(r.infer_response?.id).toBe('a');
      expect(r.infer_response?.outputs).toEqual([{ name: 'OUT', datatype: 'INT32', shape: ['1'] }, { name: 'IDX', datatype: 'UINT32', shape: ['1'] }]);
      expect(r.infer_response?.raw_output_contents?.[0]?.equals(le('INT32', [[7, -1, 42][i]!]))).toBe(true);
      expect(r.infer_response?.raw_output_contents?.[1]?.equals(le('UINT32', [i]))).toBe(true);
      expect(final(r)).toBe(false);
    });
    expect(replies[3]?.infer_response?.raw_output_contents?.[0]?.equals(le('INT32', [5]))).toBe(true);
    expect(final(replies[3])).toBe(false);
    expect(replies[4]?.infer_response).toMatchObject({ id: 'b', model_name: 'repeat_int32', parameters: { triton_final_response: { bool_param: true } } });
    expect(replies[4]?.infer_response?.outputs ?? []).toEqual([]);
  });

  it('an empty IN gets no response, or only the empty final one; a non-decoupled model\'s one response is final', async () => {
    const replies = await stream([repeat('none', []), repeat('only-final', [], emptyFinal)]);
    expect(replies.map((r) => [r.infer_response?.id, final(r), r.infer_response?.outputs?.length ?? 0])).toEqual([['only-final', true, 0]]);
    const [unary] = await stream([{ model_name: 'identity_int32', id: 'u', inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 1] }], raw_input_contents: [le('INT32', [3])] }]);
    expect(final(unary)).toBe(true);
  });

  it('reports bad requests in-band: inputs, DELAY length, the final-response parameter', async () => {
    const replies = await stream([
      repeat('x', [1], { inputs: [{ name: 'IN', datatype: 'INT64', shape: [1] }], raw_input_contents: [le('INT64', [1n])] }),
      { ...repeat('y', [1, 2]), inputs: [{ name: 'IN', datatype: 'INT32', shape: [2] }, { name: 'DELAY', datatype: 'UINT32', shape: [1] }], raw_input_contents: [le('INT32', [1, 2]), le('UINT32', [0])] },
      repeat('z', [1], { parameters: { triton_enable_empty_final_response: { int64_param: '1' } } }),
    ]);
    expect(replies.map((r) => r.error_message)).toEqual([
      expect.stringContaining("data-type is 'INT64'"), expect.stringContaining('DELAY'), expect.stringContaining('expected bool_param'),
    ]);
  });

  it('unary ModelInfer and REST refuse it as Triton does', async () => {
    await expect(rpc('ModelInfer', repeat('u', [1]))).rejects.toEqual(
      rpcError(grpc.status.UNIMPLEMENTED, "ModelInfer RPC doesn't support models with decoupled transaction policy"));
    const r = await post('/v2/models/repeat_int32/infer', { inputs: [{ name: 'IN', datatype: 'INT32', shape: [1], data: [1] }] });
    expect([r.status, json(r)]).toEqual([501, { error: "HTTP end point doesn't support models with decoupled transaction policy" }]);
  });

  it('counts open streams; a cancelled one stops sending and is counted closed', async () => {
    const call = (client.ModelStreamInfer as () => grpc.ClientDuplexStream<object, StreamReply>)();
    call.on('error', () => {}); // CANCELLED, below
    call.write(repeat('slow', [1, 2, 3], { inputs: [{ name: 'IN', datatype: 'INT32', shape: [3] }, { name: 'DELAY', datatype: 'UINT32', shape: [3] }], raw_input_contents: [le('INT32', [1, 2, 3]), le('UINT32', [0, 60_000, 0])] }));
    const [first] = (await once(call, 'data')) as [StreamReply];
    expect(first.infer_response?.raw_output_contents?.[0]?.equals(le('INT32', [1]))).toBe(true);
    expect(ref.stats.activeStreams).toBe(1);
    call.cancel();
    await expect.poll(() => ref.stats.activeStreams).toBe(0);
  });
});

describe('server lifecycle', () => {
  it('counts inference calls and adds the configured latency', async () => {
    const slow = await startTritonReference({ latencyMs: 120 });
    try {
      const start = performance.now();
      const r = await request(`http://${slow.httpEndpoint}/v2/models/identity_bool/infer`, {
        method: 'POST', body: JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'BOOL', shape: [1, 1], data: [true] }] }),
      });
      await r.body.text();
      expect(r.statusCode).toBe(200);
      expect(performance.now() - start).toBeGreaterThanOrEqual(110);
      expect(slow.stats.inferCalls).toBe(1);
      await (await request(`http://${slow.httpEndpoint}/v2/models/linear`)).body.text();
      expect(slow.stats.inferCalls).toBe(1); // metadata is not an inference call
    } finally {
      await slow.close();
    }
    await expect(request(`http://${slow.httpEndpoint}/v2/health/live`)).rejects.toThrow();
  });

  it('runs as a CLI that prints its endpoints and exits cleanly on SIGTERM', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'reference/triton/main.ts', '--http-port', '0', '--grpc-port', '0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
    const endpoints = JSON.parse(line) as { http: string; grpc: string };
    expect(endpoints).toEqual({ http: expect.stringMatching(/^127\.0\.0\.1:\d+$/), grpc: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
    const live = await request(`http://${endpoints.http}/v2/health/live`);
    await live.body.text();
    expect(live.statusCode).toBe(200);
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(0);
  }, 20_000);
});
