// Tests of the reference TF Serving server itself, over real sockets, with requests built by hand so that the
// expected bytes and values come from this file rather than from the server's own codecs.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTfServingReference, type TfServingReference } from '../../reference/tfserving/index.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PROTO_ROOT = fileURLToPath(new URL('../../protos/tensorflow/', import.meta.url));

type Value = number | bigint | boolean | string;
type Suffix = 'bool' | 'uint8' | 'uint16' | 'uint32' | 'uint64' | 'int8' | 'int16' | 'int32' | 'int64' | 'fp16' | 'bf16' | 'fp32' | 'fp64' | 'bytes';

interface Case {
  dtype: string;
  /** The TensorProto field TF uses for the type. */
  field: string;
  /** Four edge values, used as a [2,2] tensor; what REST sends and expects back. */
  values: Value[];
  /** The same values as the typed field carries them (FP16/BF16 as bit patterns, 64-bit integers as strings). */
  wire: unknown[];
}

const s64 = (vs: bigint[]): string[] => vs.map(String);
const CASES: Record<Suffix, Case> = {
  bool: { dtype: 'DT_BOOL', field: 'bool_val', values: [true, false, false, true], wire: [true, false, false, true] },
  uint8: { dtype: 'DT_UINT8', field: 'int_val', values: [0, 1, 128, 255], wire: [0, 1, 128, 255] },
  uint16: { dtype: 'DT_UINT16', field: 'int_val', values: [0, 1, 40000, 65535], wire: [0, 1, 40000, 65535] },
  uint32: { dtype: 'DT_UINT32', field: 'uint32_val', values: [0, 1, 3000000000, 4294967295], wire: [0, 1, 3000000000, 4294967295] },
  uint64: { dtype: 'DT_UINT64', field: 'uint64_val', values: [0n, 1n, 9007199254740993n, 18446744073709551615n], wire: s64([0n, 1n, 9007199254740993n, 18446744073709551615n]) },
  int8: { dtype: 'DT_INT8', field: 'int_val', values: [-128, -1, 0, 127], wire: [-128, -1, 0, 127] },
  int16: { dtype: 'DT_INT16', field: 'int_val', values: [-32768, -1, 1, 32767], wire: [-32768, -1, 1, 32767] },
  int32: { dtype: 'DT_INT32', field: 'int_val', values: [-2147483648, -1, 1, 2147483647], wire: [-2147483648, -1, 1, 2147483647] },
  int64: { dtype: 'DT_INT64', field: 'int64_val', values: [-9223372036854775808n, -1n, 9007199254740993n, 9223372036854775807n], wire: s64([-9223372036854775808n, -1n, 9007199254740993n, 9223372036854775807n]) },
  // 1, -2, the largest finite value and the smallest subnormal of each 16-bit type.
  fp16: { dtype: 'DT_HALF', field: 'half_val', values: [1, -2, 65504, 2 ** -24], wire: [0x3c00, 0xc000, 0x7bff, 0x0001] },
  bf16: { dtype: 'DT_BFLOAT16', field: 'half_val', values: [1, -2, 3.3895313892515355e38, 2 ** -133], wire: [0x3f80, 0xc000, 0x7f7f, 0x0001] },
  fp32: { dtype: 'DT_FLOAT', field: 'float_val', values: [1.5, -0.1, 3.4028234663852886e38, 1e-45], wire: [1.5, -0.1, 3.4028234663852886e38, 1e-45].map(Math.fround) },
  fp64: { dtype: 'DT_DOUBLE', field: 'double_val', values: [0.1, -2.5, 1.7976931348623157e308, 5e-324], wire: [0.1, -2.5, 1.7976931348623157e308, 5e-324] },
  bytes: { dtype: 'DT_STRING', field: 'string_val', values: ['hello', '', 'ünïcödé', 'a,"b"\n'], wire: ['hello', '', 'ünïcödé', 'a,"b"\n'].map((v) => Buffer.from(v)) },
};
const SUFFIXES = Object.keys(CASES) as Suffix[];
const FLOATS16_32 = new Set<Suffix>(['fp16', 'bf16', 'fp32']);

/** Little-endian tensor_content written independently of the server (DataView, not its codecs). */
function le(suffix: Suffix, wire: readonly unknown[]): Buffer {
  const size = { bool: 1, uint8: 1, int8: 1, uint16: 2, int16: 2, fp16: 2, bf16: 2, uint32: 4, int32: 4, fp32: 4, uint64: 8, int64: 8, fp64: 8, bytes: 0 }[suffix];
  const view = new DataView(new ArrayBuffer(wire.length * size));
  wire.forEach((v, i) => {
    const o = i * size;
    if (suffix === 'bool') view.setUint8(o, v ? 1 : 0);
    else if (suffix === 'uint8') view.setUint8(o, Number(v));
    else if (suffix === 'int8') view.setInt8(o, Number(v));
    else if (suffix === 'uint16' || suffix === 'fp16' || suffix === 'bf16') view.setUint16(o, Number(v), true);
    else if (suffix === 'int16') view.setInt16(o, Number(v), true);
    else if (suffix === 'uint32') view.setUint32(o, Number(v), true);
    else if (suffix === 'int32') view.setInt32(o, Number(v), true);
    else if (suffix === 'fp32') view.setFloat32(o, Number(v), true);
    else if (suffix === 'fp64') view.setFloat64(o, Number(v), true);
    else if (suffix === 'uint64') view.setBigUint64(o, BigInt(String(v)), true);
    else view.setBigInt64(o, BigInt(String(v)), true);
  });
  return Buffer.from(view.buffer);
}

/** JSON text with bigints written exactly (JSON.stringify refuses them). */
function jsonText(value: unknown): string {
  if (typeof value === 'bigint') return value.toString();
  if (Array.isArray(value)) return `[${value.map(jsonText).join(',')}]`;
  if (value && typeof value === 'object') return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}:${jsonText(v)}`).join(',')}}`;
  return JSON.stringify(value);
}

/** Parses a reply keeping integers of 16+ digits exact, as decimal strings. */
function parseExact<T = Record<string, unknown>>(text: string): T {
  return JSON.parse(text.replace(/(?<![\w."])(-?\d{16,})(?![\w.])/g, '"$1"')) as T;
}

/** What REST gives back for a case's values, as parseExact reads it (16+ digit integers as strings). */
function restExpected(suffix: Suffix, values: readonly Value[]): unknown[] {
  return values.map((v) => {
    if (typeof v === 'bigint') return String(v).replace('-', '').length >= 16 ? String(v) : Number(v);
    return FLOATS16_32.has(suffix) ? Math.fround(Number(v)) : v;
  });
}
const f32 = (rows: number[][]): number[][] => rows.map((r) => r.map(Math.fround));
/** FP16/BF16/FP32 come back in their shortest float32 form, so compare after rounding to float32. */
const normalize = (suffix: Suffix, rows: unknown): unknown => (FLOATS16_32.has(suffix) ? f32(rows as number[][]) : rows);

function linearExpected(rows: number[][], version: 1 | 2): { scores: number[][]; classes: number[] } {
  const W = [[0.5, -1, 0.25], [1.5, 0.5, -0.75], [-0.5, 2, 1], [1, -0.25, 0.5]];
  const b = version === 1 ? [0.1, -0.2, 0.3] : [1, 0, -1];
  const f = Math.fround;
  const scores = rows.map((row) => [0, 1, 2].map((j) => {
    let acc = 0;
    for (let k = 0; k < 4; k++) acc = f(acc + f(f(row[k] ?? 0) * (W[k]?.[j] ?? 0)));
    return f(acc + f(b[j] ?? 0));
  }));
  return { scores, classes: scores.map((s) => s.indexOf(Math.max(...s))) };
}
const LINEAR_X = [[1, 2, 3, 4], [-1.5, 0.25, 2, -3], [0, 0, 0, 0]];

interface Reply { status: number; contentType: string | undefined; text: string }
type Client = grpc.Client & Record<string, (...args: unknown[]) => unknown>;
interface Server { ref: TfServingReference; predict: Client; model: Client }

const servers: Server[] = [];
let main: Server;
let contentForm: Server;
let broadcast: Server;

const def = protoLoader.loadSync(
  ['tensorflow_serving/apis/prediction_service.proto', 'tensorflow_serving/apis/model_service.proto'],
  { keepCase: true, longs: String, enums: String, defaults: false, oneofs: true, includeDirs: [PROTO_ROOT] },
);
const serving = ((grpc.loadPackageDefinition(def).tensorflow as grpc.GrpcObject).serving as grpc.GrpcObject);

async function start(opts: Parameters<typeof startTfServingReference>[0]): Promise<Server> {
  const ref = await startTfServingReference(opts);
  const make = (name: string): Client =>
    new (serving[name] as grpc.ServiceClientConstructor)(ref.grpcEndpoint, grpc.credentials.createInsecure()) as Client;
  const server = { ref, predict: make('PredictionService'), model: make('ModelService') };
  servers.push(server);
  return server;
}

async function http(method: string, path: string, body?: string, on: Server = main): Promise<Reply> {
  const res = await request(`http://${on.ref.httpEndpoint}${path}`, { method: method as 'GET', body });
  const contentType = res.headers['content-type'];
  return { status: res.statusCode, contentType: typeof contentType === 'string' ? contentType : undefined, text: await res.body.text() };
}
const post = (path: string, value: unknown): Promise<Reply> => http('POST', path, jsonText(value));

function rpc<T = Record<string, unknown>>(client: Client, method: string, req: object): Promise<T> {
  return new Promise((resolve, reject) => {
    const fn = client[method];
    if (!fn) throw new Error(`no rpc ${method}`);
    fn.call(client, req, (err: grpc.ServiceError | null, reply: T) => (err ? reject(err) : resolve(reply)));
  });
}
const rpcError = (code: grpc.status, details?: string) =>
  expect.objectContaining({ code, ...(details === undefined ? {} : { details: expect.stringContaining(details) }) });

interface TensorMsg { dtype?: string; tensor_shape?: { dim?: { size?: string }[] }; tensor_content?: Buffer; [field: string]: unknown }
interface PredictReply { outputs: Record<string, TensorMsg>; model_spec: Record<string, unknown> }
const shape = (...dims: number[]) => ({ dim: dims.map((d) => ({ size: String(d) })) });
const grpcPredict = (on: Server, req: object): Promise<PredictReply> => rpc<PredictReply>(on.predict, 'Predict', req);

beforeAll(async () => {
  main = await start({});
  contentForm = await start({ responseForm: 'tensor_content' });
  broadcast = await start({ broadcastScalars: true });
});

afterAll(async () => {
  for (const s of servers) {
    s.predict.close();
    s.model.close();
    await s.ref.close();
  }
});

describe('REST predict', () => {
  it.each(SUFFIXES)('identity_%s round-trips rows and columns', async (suffix) => {
    const c = CASES[suffix];
    const rows = [c.values.slice(0, 2), c.values.slice(2)];
    const expected = [restExpected(suffix, rows[0] ?? []), restExpected(suffix, rows[1] ?? [])];
    const byRow = await post(`/v1/models/identity_${suffix}:predict`, { instances: rows });
    expect([byRow.status, byRow.contentType]).toEqual([200, 'application/json']);
    expect(normalize(suffix, parseExact(byRow.text).predictions)).toEqual(normalize(suffix, expected));
    const byColumn = await post(`/v1/models/identity_${suffix}:predict`, { inputs: rows });
    expect(normalize(suffix, parseExact(byColumn.text).outputs)).toEqual(normalize(suffix, expected));
    const named = await post(`/v1/models/identity_${suffix}:predict`, { instances: rows.map((r) => ({ INPUT0: r })) });
    expect(normalize(suffix, parseExact(named.text).predictions)).toEqual(normalize(suffix, expected));
  });

  it('writes floats in their shortest float32 form and rounds numbers sent to 16-bit inputs', async () => {
    expect(parseExact((await post('/v1/models/identity_fp32:predict', { inputs: [[0.1, 1 / 3]] })).text).outputs).toEqual([[0.1, 0.33333334]]);
    // Numbers sent to 16-bit inputs are rounded to nearest even: 0.1 becomes half 0x2e66 (0.0999755859375) and
    // bfloat16 0x3dcd (0.10009765625), and -1e-45 is -0 in bfloat16; 65519 rounds down to the largest half, 65520 up to infinity.
    const half = await post('/v1/models/identity_fp16:predict', { inputs: [[0.1, 65519, 65520]] });
    expect(half.text.replace(/\s/g, '')).toBe('{"outputs":[[0.099975586,65504,Infinity]]}');
    const bf16 = await post('/v1/models/identity_bf16:predict', { inputs: [[0.1, -1e-45]] });
    expect(bf16.text.replace(/\s/g, '')).toBe('{"outputs":[[0.100097656,-0]]}');
  });

  it('reads and writes bare NaN and Infinity and exact 64-bit integers', async () => {
    const r = await http('POST', '/v1/models/identity_fp64:predict', '{"inputs": [[NaN, Infinity, -Infinity, 1e308]]}');
    expect(r.status).toBe(200);
    expect(r.text.replace(/\s/g, '')).toBe('{"outputs":[[NaN,Infinity,-Infinity,1e+308]]}');
    const big = await http('POST', '/v1/models/identity_uint64:predict', '{"inputs": [[18446744073709551615, 9007199254740993]]}');
    expect(big.text.replace(/\s/g, '')).toBe('{"outputs":[[18446744073709551615,9007199254740993]]}');
  });

  it('takes and gives {"b64"} strings; outputs named *_bytes come back as b64', async () => {
    const inputs = [[{ b64: Buffer.from([0, 1, 255]).toString('base64') }, 'hi']];
    expect(parseExact((await post('/v1/models/identity_bytes:predict', { inputs })).text).outputs).toEqual([['\u0000\u0001\ufffd', 'hi']]);
    const b64 = await post('/v1/models/identity_bytes:predict', { signature_name: 'bytes_out', inputs });
    expect(parseExact(b64.text).outputs).toEqual([[{ b64: 'AAH/' }, { b64: 'aGk=' }]]);
  });

  it('runs linear: named outputs per row, version 1 and 2, labels, and another signature', async () => {
    const v2 = linearExpected(LINEAR_X, 2);
    const rows = await post('/v1/models/linear:predict', { instances: LINEAR_X });
    const predictions = parseExact<{ predictions: { SCORES: number[]; CLASS: number }[] }>(rows.text).predictions;
    expect(predictions.map((p) => ({ SCORES: p.SCORES.map(Math.fround), CLASS: p.CLASS }))).toEqual(v2.scores.map((s, i) => ({ SCORES: s, CLASS: v2.classes[i] })));
    // Scores are written in their shortest float32 form (6.1, not 6.099999904632568): compare as float32.
    const outputs = async (path: string, body: unknown) => {
      const out = parseExact<{ outputs: { SCORES: number[][]; CLASS: number[] } }>((await post(path, body)).text).outputs;
      return { SCORES: f32(out.SCORES), CLASS: out.CLASS };
    };
    expect(await outputs('/v1/models/linear:predict', { inputs: { INPUT0: LINEAR_X } })).toEqual({ SCORES: v2.scores, CLASS: v2.classes });
    const v1 = linearExpected(LINEAR_X, 1);
    for (const path of ['/v1/models/linear/versions/1:predict', '/v1/models/linear/labels/stable:predict', '/V1/MODELS/linear/VERSIONS/01:PREDICT']) {
      expect(await outputs(path, { inputs: LINEAR_X })).toEqual({ SCORES: v1.scores, CLASS: v1.classes });
    }
    expect(await outputs('/v1/models/linear/labels/canary:predict', { inputs: LINEAR_X })).toEqual({ SCORES: v2.scores, CLASS: v2.classes });
    const only = await post('/v1/models/linear:predict', { signature_name: 'scores_only', instances: LINEAR_X });
    expect(f32(parseExact<{ predictions: number[][] }>(only.text).predictions)).toEqual(v2.scores); // one output: rows are unnamed
  });

  it('runs simple with named rows and named columns, wrapping int32', async () => {
    const a = Array.from({ length: 16 }, (_, i) => i - 8);
    const b = Array.from({ length: 16 }, (_, i) => (i === 0 ? 2147483647 : i * 3));
    const sum = a.map((x, i) => (x + (b[i] ?? 0)) | 0);
    const diff = a.map((x, i) => (x - (b[i] ?? 0)) | 0);
    const rows = await post('/v1/models/simple:predict', { instances: [{ INPUT0: a, INPUT1: b }, { INPUT0: b, INPUT1: b }] });
    expect(parseExact(rows.text).predictions).toEqual([{ OUTPUT0: sum, OUTPUT1: diff }, { OUTPUT0: b.map((x) => (2 * x) | 0), OUTPUT1: b.map(() => 0) }]);
    const columns = await post('/v1/models/simple:predict', { inputs: { INPUT0: [a], INPUT1: [b] } });
    expect(parseExact(columns.text).outputs).toEqual({ OUTPUT0: [sum], OUTPUT1: [diff] });
  });
});

describe('gRPC Predict', () => {
  const spec = (name: string, extra: object = {}) => ({ model_spec: { name, ...extra } });

  it.each(SUFFIXES)('identity_%s accepts tensor_content and typed values and answers with typed values', async (suffix) => {
    const c = CASES[suffix];
    const typedReply = { dtype: c.dtype, tensor_shape: shape(2, 2), [c.field]: c.wire };
    const inputs = suffix === 'bytes'
      ? [{ dtype: c.dtype, tensor_shape: shape(2, 2), string_val: c.wire }]
      : [{ dtype: c.dtype, tensor_shape: shape(2, 2), tensor_content: le(suffix, c.wire) }, typedReply];
    for (const input of inputs) {
      const reply = await grpcPredict(main, { ...spec(`identity_${suffix}`), inputs: { INPUT0: input } });
      expect(reply.outputs).toEqual({ OUTPUT0: typedReply });
      expect(reply.model_spec).toMatchObject({ name: `identity_${suffix}`, version: { value: '1' }, signature_name: 'serving_default' });
    }
  });

  it.each(SUFFIXES)('identity_%s answers with tensor_content when the server is set to (strings stay string_val)', async (suffix) => {
    const c = CASES[suffix];
    const input = { dtype: c.dtype, tensor_shape: shape(2, 2), [c.field]: c.wire };
    const reply = await grpcPredict(contentForm, { ...spec(`identity_${suffix}`), inputs: { INPUT0: input } });
    const expected = suffix === 'bytes' ? input : { dtype: c.dtype, tensor_shape: shape(2, 2), tensor_content: le(suffix, c.wire) };
    expect(reply.outputs).toEqual({ OUTPUT0: expected });
  });

  it('broadcasts a single typed value over the shape and pads a short list with its last value', async () => {
    const one = await grpcPredict(main, { ...spec('identity_int32'), inputs: { INPUT0: { dtype: 'DT_INT32', tensor_shape: shape(2, 3), int_val: [7] } } });
    expect(one.outputs.OUTPUT0?.int_val).toEqual([7, 7, 7, 7, 7, 7]);
    const padded = await grpcPredict(main, { ...spec('identity_fp16'), inputs: { INPUT0: { dtype: 'DT_HALF', tensor_shape: shape(1, 4), half_val: [0x3c00, 0xc000] } } });
    expect(padded.outputs.OUTPUT0?.half_val).toEqual([0x3c00, 0xc000, 0xc000, 0xc000]);
    const none = await grpcPredict(main, { ...spec('identity_bool'), inputs: { INPUT0: { dtype: 'DT_BOOL', tensor_shape: shape(1, 2) } } });
    expect(none.outputs.OUTPUT0).toEqual({ dtype: 'DT_BOOL', tensor_shape: shape(1, 2), bool_val: [false, false] }); // zero-filled
    const linear = await grpcPredict(main, { ...spec('linear'), inputs: { INPUT0: { dtype: 'DT_FLOAT', tensor_shape: shape(2, 4), float_val: [0.5] } } });
    expect(linear.outputs.SCORES?.float_val).toEqual(linearExpected([[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]], 2).scores.flat());
  });

  it('answers in broadcast form for all-equal outputs when broadcastScalars is set', async () => {
    const same = await grpcPredict(broadcast, { ...spec('identity_int64'), inputs: { INPUT0: { dtype: 'DT_INT64', tensor_shape: shape(2, 3), int64_val: ['-5'] } } });
    expect(same.outputs.OUTPUT0).toEqual({ dtype: 'DT_INT64', tensor_shape: shape(2, 3), int64_val: ['-5'] });
    const strings = await grpcPredict(broadcast, { ...spec('identity_bytes'), inputs: { INPUT0: { dtype: 'DT_STRING', tensor_shape: shape(1, 2), string_val: [Buffer.from('x'), Buffer.from('x')] } } });
    expect(strings.outputs.OUTPUT0?.string_val).toEqual([Buffer.from('x')]);
    const mixed = await grpcPredict(broadcast, { ...spec('identity_fp64'), inputs: { INPUT0: { dtype: 'DT_DOUBLE', tensor_shape: shape(1, 2), double_val: [1, 2] } } });
    expect(mixed.outputs.OUTPUT0?.double_val).toEqual([1, 2]);
  });

  it('runs linear by version, label and signature, and honours output_filter', async () => {
    const content = le('fp32', LINEAR_X.flat());
    const input = { INPUT0: { dtype: 'DT_FLOAT', tensor_shape: shape(3, 4), tensor_content: content } };
    const v2 = linearExpected(LINEAR_X, 2);
    const latest = await grpcPredict(main, { ...spec('linear'), inputs: input });
    expect(latest.outputs).toEqual({
      SCORES: { dtype: 'DT_FLOAT', tensor_shape: shape(3, 3), float_val: v2.scores.flat() },
      CLASS: { dtype: 'DT_INT64', tensor_shape: shape(3), int64_val: v2.classes.map(String) },
    });
    expect(latest.model_spec).toEqual({ name: 'linear', version: { value: '2' }, version_choice: 'version', signature_name: 'serving_default' });
    const v1 = linearExpected(LINEAR_X, 1).scores.flat();
    const byVersion = await grpcPredict(main, { ...spec('linear', { version: { value: '1' } }), inputs: input });
    expect(byVersion.outputs.SCORES?.float_val).toEqual(v1);
    const byLabel = await grpcPredict(main, { ...spec('linear', { version_label: 'stable' }), inputs: input });
    expect([byLabel.outputs.SCORES?.float_val, byLabel.model_spec.version]).toEqual([v1, { value: '1' }]);
    const filtered = await grpcPredict(main, { ...spec('linear'), inputs: input, output_filter: ['CLASS'] });
    expect(Object.keys(filtered.outputs)).toEqual(['CLASS']);
    const signature = await grpcPredict(main, { ...spec('linear', { signature_name: 'scores_only' }), inputs: input });
    expect([Object.keys(signature.outputs), signature.model_spec.signature_name]).toEqual([['SCORES'], 'scores_only']);
  });

  it('runs simple with one input as tensor_content and the other as int_val', async () => {
    const a = Array.from({ length: 16 }, (_, i) => i * 1000);
    const reply = await grpcPredict(main, {
      ...spec('simple'),
      inputs: {
        INPUT0: { dtype: 'DT_INT32', tensor_shape: shape(1, 16), tensor_content: le('int32', a) },
        INPUT1: { dtype: 'DT_INT32', tensor_shape: shape(1, 16), int_val: [1] },
      },
    });
    expect(reply.outputs.OUTPUT0?.int_val).toEqual(a.map((x) => x + 1));
    expect(reply.outputs.OUTPUT1?.int_val).toEqual(a.map((x) => x - 1));
  });
});

describe('metadata and status', () => {
  const info = (name: string, dtype: string, dims: number[]) => ({
    dtype, tensor_shape: { dim: dims.map((d) => ({ size: String(d), name: '' })), unknown_rank: false }, name,
  });

  it('serves REST metadata in TF’s layout, for the latest or a given version', async () => {
    const r = await http('GET', '/v1/models/linear/metadata');
    expect([r.status, r.contentType]).toEqual([200, 'application/json']);
    const body = JSON.parse(r.text) as { model_spec: unknown; metadata: { signature_def: { signature_def: Record<string, unknown> } } };
    expect(body.model_spec).toEqual({ name: 'linear', signature_name: '', version: '2' });
    expect(body.metadata.signature_def.signature_def.serving_default).toEqual({
      inputs: { INPUT0: info('INPUT0:0', 'DT_FLOAT', [-1, 4]) },
      outputs: { SCORES: info('SCORES:0', 'DT_FLOAT', [-1, 3]), CLASS: info('CLASS:0', 'DT_INT64', [-1]) },
      method_name: 'tensorflow/serving/predict',
    });
    expect(Object.keys(body.metadata.signature_def.signature_def)).toEqual(['serving_default', 'scores_only']);
    const v1 = JSON.parse((await http('GET', '/v1/models/linear/versions/1/metadata')).text) as { model_spec: { version: string } };
    expect(v1.model_spec.version).toBe('1');
  });

  it('serves gRPC metadata as an Any-packed SignatureDefMap', async () => {
    const reply = await rpc<{ model_spec: unknown; metadata: Record<string, { type_url: string; value: Buffer }> }>(
      main.predict, 'GetModelMetadata', { model_spec: { name: 'identity_bf16' }, metadata_field: ['signature_def'] });
    expect(reply.model_spec).toMatchObject({ name: 'identity_bf16', version: { value: '1' } });
    const any = reply.metadata.signature_def;
    expect(any?.type_url).toBe('type.googleapis.com/tensorflow.serving.SignatureDefMap');
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => PROTO_ROOT + target;
    root.loadSync('tensorflow_serving/apis/get_model_metadata.proto', { keepCase: true });
    const type = root.lookupType('tensorflow.serving.SignatureDefMap');
    const decoded = type.toObject(type.decode(any?.value ?? Buffer.alloc(0)), { longs: String, enums: String });
    expect(decoded).toEqual({
      signature_def: {
        serving_default: {
          inputs: { INPUT0: { name: 'INPUT0:0', dtype: 'DT_BFLOAT16', tensor_shape: { dim: [{ size: '-1' }, { size: '-1' }] } } },
          outputs: { OUTPUT0: { name: 'OUTPUT0:0', dtype: 'DT_BFLOAT16', tensor_shape: { dim: [{ size: '-1' }, { size: '-1' }] } } },
          method_name: 'tensorflow/serving/predict',
        },
      },
    });
  });

  it('reports version status over REST and gRPC, newest first, LOADING for unready', async () => {
    const ok = { error_code: 'OK', error_message: '' };
    expect(JSON.parse((await http('GET', '/v1/models/linear')).text)).toEqual({
      model_version_status: [{ version: '2', state: 'AVAILABLE', status: ok }, { version: '1', state: 'AVAILABLE', status: ok }],
    });
    expect(JSON.parse((await http('GET', '/v1/models/linear/labels/stable')).text)).toEqual({ model_version_status: [{ version: '1', state: 'AVAILABLE', status: ok }] });
    expect(JSON.parse((await http('GET', '/v1/models/unready')).text)).toEqual({ model_version_status: [{ version: '1', state: 'LOADING', status: ok }] });
    const all = await rpc<{ model_version_status: unknown[] }>(main.model, 'GetModelStatus', { model_spec: { name: 'linear' } });
    expect(all.model_version_status).toEqual([
      expect.objectContaining({ version: '2', state: 'AVAILABLE' }), expect.objectContaining({ version: '1', state: 'AVAILABLE' }),
    ]);
    const one = await rpc<{ model_version_status: unknown[] }>(main.model, 'GetModelStatus', { model_spec: { name: 'linear', version: { value: '1' } } });
    expect(one.model_version_status).toEqual([expect.objectContaining({ version: '1', state: 'AVAILABLE' })]);
    const unready = await rpc<{ model_version_status: unknown[] }>(main.model, 'GetModelStatus', { model_spec: { name: 'unready' } });
    expect(unready.model_version_status).toEqual([expect.objectContaining({ version: '1', state: 'LOADING' })]);
  });
});

describe('errors', () => {
  const error = (r: Reply) => (JSON.parse(r.text) as { error: string }).error;

  it('answers REST errors as pretty-printed {"error"} with TF’s statuses', async () => {
    const unknown = await post('/v1/models/nope:predict', { instances: [[1]] });
    expect([unknown.status, unknown.contentType, unknown.text]).toEqual([404, 'application/json', '{\n    "error": "Servable not found for request: Latest(nope)"\n}']);
    const cases: [string, unknown, number, string][] = [
      ['/v1/models/linear/versions/3:predict', { instances: LINEAR_X }, 404, 'Servable not found for request: Specific(linear, 3)'],
      ['/v1/models/linear/labels/beta:predict', { instances: LINEAR_X }, 400, 'Unrecognized servable version label: beta'],
      ['/v1/models/unready:predict', { instances: [1] }, 503, 'not available'],
      ['/v1/models/identity_fp32:predict', { instances: [['a']] }, 400, 'is not of expected type: float'],
      ['/v1/models/identity_uint8:predict', { inputs: [[256]] }, 400, 'is not of expected type: uint8'],
      ['/v1/models/identity_int32:predict', { inputs: [[1.5]] }, 400, 'is not of expected type: int32'],
      ['/v1/models/identity_bool:predict', { inputs: [[1]] }, 400, 'is not of expected type: bool'],
      ['/v1/models/simple:predict', { inputs: { INPUT0: [[1]] } }, 400, 'Missing but required: {INPUT1}'],
      ['/v1/models/simple:predict', { inputs: [[1]] }, 400, 'signature has 2 inputs'],
      ['/v1/models/linear:predict', { signature_name: 'nope', instances: LINEAR_X }, 400, 'Serving signature key "nope" not found.'],
      ['/v1/models/linear:predict', { instances: LINEAR_X, inputs: LINEAR_X }, 400, "only one of 'inputs' or 'instances'"],
      ['/v1/models/linear:predict', {}, 400, "Missing 'inputs' or 'instances' key"],
      ['/v1/models/linear:predict', { inputs: [[1, 2, 3]] }, 400, 'incompatible with [-1,4]'],
      ['/v1/models/identity_int8:predict', { inputs: [[1, 2], [3]] }, 400, 'not rectangular'],
      ['/v1/models/identity_int8:predict', { instances: [[1, 2], [3]] }, 400, 'Expecting tensor size'],
      ['/v1/models/identity_bytes:predict', { inputs: [[{ b64: '!!' }]] }, 400, 'base64'],
    ];
    for (const [path, body, status, message] of cases) {
      const r = await post(path, body);
      expect([path, r.status, error(r)]).toEqual([path, status, expect.stringContaining(message)]);
    }
    const garbage = await http('POST', '/v1/models/linear:predict', '{"instances": [1,');
    expect([garbage.status, error(garbage)]).toEqual([400, expect.stringContaining('JSON Parse error')]);
  });

  it('routes like TF: non-/v1 paths are a bare 404, unparseable /v1 paths a 400', async () => {
    const bare = await http('GET', '/v2/models/linear');
    expect([bare.status, bare.text]).toEqual([404, '']);
    const malformed = await http('GET', '/v1/models/linear:predict');
    expect([malformed.status, error(malformed)]).toEqual([400, 'Malformed request: GET /v1/models/linear:predict']);
    const status404 = await http('GET', '/v1/models/nope');
    expect([status404.status, error(status404)]).toEqual([404, 'Could not find any versions of model nope']);
    const version404 = await http('GET', '/v1/models/linear/versions/9');
    expect([version404.status, error(version404)]).toEqual([404, 'Could not find version 9 of model linear']);
    expect((await http('GET', '/v1/models')).status).toBe(400);
  });

  it('answers gRPC errors with TF’s status codes', async () => {
    const input = (dtype: string, extra: object) => ({ INPUT0: { dtype, tensor_shape: shape(1, 4), ...extra } });
    const floats = input('DT_FLOAT', { float_val: [1, 2, 3, 4] });
    const cases: [object, grpc.status, string][] = [
      [{ model_spec: { name: 'nope' }, inputs: floats }, grpc.status.NOT_FOUND, 'Servable not found for request: Latest(nope)'],
      [{ model_spec: { name: 'linear', version: { value: '7' } }, inputs: floats }, grpc.status.NOT_FOUND, 'Specific(linear, 7)'],
      [{ model_spec: { name: 'linear', version_label: 'beta' }, inputs: floats }, grpc.status.INVALID_ARGUMENT, 'Unrecognized servable version label: beta'],
      [{ model_spec: { name: 'unready' }, inputs: {} }, grpc.status.UNAVAILABLE, 'not available'],
      [{ inputs: floats }, grpc.status.INVALID_ARGUMENT, 'Missing ModelSpec'],
      [{ model_spec: { name: 'linear' }, inputs: input('DT_INT32', { int_val: [1, 2, 3, 4] }) }, grpc.status.INVALID_ARGUMENT, 'Expects arg[0] to be float but int32 is provided'],
      [{ model_spec: { name: 'linear' }, inputs: input('DT_FLOAT', { tensor_content: Buffer.alloc(12) }) }, grpc.status.INVALID_ARGUMENT, 'tensor parsing error: INPUT0'],
      [{ model_spec: { name: 'linear' }, inputs: input('DT_FLOAT', { float_val: [1, 2, 3, 4, 5] }) }, grpc.status.INVALID_ARGUMENT, 'tensor parsing error: INPUT0'],
      [{ model_spec: { name: 'linear' }, inputs: input('DT_FLOAT', { double_val: [1, 2, 3, 4] }) }, grpc.status.INVALID_ARGUMENT, 'instead of float_val'],
      [{ model_spec: { name: 'linear' }, inputs: input('DT_COMPLEX64', {}) }, grpc.status.INVALID_ARGUMENT, 'unsupported dtype DT_COMPLEX64'],
      [{ model_spec: { name: 'linear' }, inputs: { ...floats, EXTRA: floats.INPUT0 } }, grpc.status.INVALID_ARGUMENT, 'Sent extra: {EXTRA}'],
      [{ model_spec: { name: 'linear', signature_name: 'nope' }, inputs: floats }, grpc.status.FAILED_PRECONDITION, 'Serving signature key "nope" not found.'],
      [{ model_spec: { name: 'linear' }, inputs: floats, output_filter: ['NOPE'] }, grpc.status.INVALID_ARGUMENT, 'output tensor alias not found in signature: NOPE'],
      [{ model_spec: { name: 'linear' }, inputs: floats, output_filter: ['CLASS', 'CLASS'] }, grpc.status.INVALID_ARGUMENT, 'duplicate output tensor name: CLASS'],
    ];
    for (const [req, code, details] of cases) {
      await expect(grpcPredict(main, req), JSON.stringify(req)).rejects.toEqual(rpcError(code, details));
    }
    await expect(rpc(main.predict, 'GetModelMetadata', { model_spec: { name: 'linear' } })).rejects.toEqual(rpcError(grpc.status.INVALID_ARGUMENT, 'metadata_field'));
    await expect(rpc(main.predict, 'GetModelMetadata', { model_spec: { name: 'linear' }, metadata_field: ['x'] })).rejects.toEqual(rpcError(grpc.status.INVALID_ARGUMENT, 'Metadata field x is not supported'));
    await expect(rpc(main.predict, 'GetModelMetadata', { model_spec: { name: 'nope' }, metadata_field: ['signature_def'] })).rejects.toEqual(rpcError(grpc.status.NOT_FOUND));
    await expect(rpc(main.model, 'GetModelStatus', { model_spec: { name: 'nope' } })).rejects.toEqual(rpcError(grpc.status.NOT_FOUND, 'Could not find any versions of model nope'));
  });

  it('answers UNIMPLEMENTED for the rpcs the trimmed service leaves out', async () => {
    const err = await new Promise<grpc.ServiceError | null>((resolve) => {
      main.predict.makeUnaryRequest('/tensorflow.serving.PredictionService/Classify', (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), (e) => resolve(e));
    });
    expect(err?.code).toBe(grpc.status.UNIMPLEMENTED);
  });
});

describe('server life cycle', () => {
  it('counts predict calls on both protocols, adds latency, and closes', async () => {
    const slow = await startTfServingReference({ latencyMs: 100 });
    const client = new (serving.PredictionService as grpc.ServiceClientConstructor)(slow.grpcEndpoint, grpc.credentials.createInsecure()) as Client;
    try {
      const start = performance.now();
      const r = await request(`http://${slow.httpEndpoint}/v1/models/identity_int8:predict`, { method: 'POST', body: '{"inputs": [[1]]}' });
      expect([r.statusCode, await r.body.text()]).toEqual([200, '{\n    "outputs": [[1]]\n}']);
      expect(performance.now() - start).toBeGreaterThanOrEqual(90);
      await rpc(client, 'Predict', { model_spec: { name: 'nope' } });
    } catch (err) {
      expect(err).toEqual(rpcError(grpc.status.NOT_FOUND));
    } finally {
      client.close();
    }
    await (await request(`http://${slow.httpEndpoint}/v1/models/linear/metadata`)).body.text();
    expect(slow.stats.inferCalls).toBe(2); // the failed gRPC call counts, metadata does not
    await slow.close();
    await slow.close();
    await expect(request(`http://${slow.httpEndpoint}/v1/models/linear`)).rejects.toThrow();
  });

  it('runs as a CLI that prints its endpoints and exits cleanly on SIGTERM', async () => {
    const args = ['--import', 'tsx', 'reference/tfserving/main.ts', '--http-port', '0', '--grpc-port', '0', '--broadcast-scalars', '--response-form', 'typed'];
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
    const endpoints = JSON.parse(line) as { http: string; grpc: string };
    expect(endpoints).toEqual({ http: expect.stringMatching(/^127\.0\.0\.1:\d+$/), grpc: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
    const status = await request(`http://${endpoints.http}/v1/models/linear`);
    await status.body.text();
    expect(status.statusCode).toBe(200);
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(0);
  }, 20_000);
});
