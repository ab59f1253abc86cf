// Tests of the reference TorchServe server itself, over real sockets, with requests built by hand (undici for
// REST, a generic grpc-js client over protos/torchserve for gRPC) so expected values come from this file.
import { Buffer } from 'node:buffer';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { FormData, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTorchServeReference, type TorchServeReference } from '../../reference/torchserve/index.js';
import { startTritonReference } from '../../reference/triton/index.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PROTO_DIR = fileURLToPath(new URL('../../protos/torchserve/', import.meta.url));
const SERVICE = 'org.pytorch.serve.grpc.inference.InferenceAPIsService';
const TOKEN = 's3cr3t-key';
const INVALID_KEY = 'Token Authorization failed. Token either incorrect, expired, or not provided correctly';
const NO_WORKER = 'Model "unready" has no worker to serve inference request. Please use scale workers API to add workers. '
  + 'If this is a sequence inference, please check if it is closed, or expired; or exceeds maxSequenceJobQueueSize';

// ---------- expected values, computed here ----------

const f32 = (x: number): number => new Float32Array([x])[0] ?? NaN;
const W = [[0.5, -1, 0.25], [1.5, 0.5, -0.75], [-0.5, 2, 1], [1, -0.25, 0.5]];
const BIAS: Record<string, number[]> = { '1.0': [0.1, -0.2, 0.3], '2.0': [1, 0, -1] };

/** The linear model in float32, via Float32Array rounding; CLASS is the first argmax. */
function linear(rows: number[][], version = '2.0'): { SCORES: number[][]; CLASS: number[] } {
  const SCORES = rows.map((row) => [0, 1, 2].map((j) => {
    let acc = 0;
    for (let k = 0; k < 4; k++) acc = f32(acc + f32(f32(row[k] ?? 0) * (W[k]?.[j] ?? 0)));
    return f32(acc + f32(BIAS[version]?.[j] ?? 0));
  }));
  const CLASS = SCORES.map((s) => s.indexOf(Math.max(...s)));
  return { SCORES, CLASS };
}
const ROWS = [[1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4], [-1.5, 3.25, 1e-3, 7]];

// ---------- REST helpers ----------

let ts: TorchServeReference;
let tsAuth: TorchServeReference;

interface Reply { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer; text: string; json: () => unknown }

async function rest(ref: TorchServeReference, path: string, init: { method?: string; body?: string | Buffer | FormData; headers?: Record<string, string> } = {}): Promise<Reply> {
  const r = await request(`http://${ref.httpEndpoint}${path}`, {
    method: (init.method ?? (init.body === undefined ? 'GET' : 'POST')) as 'GET',
    ...(init.body !== undefined ? { body: init.body } : {}),
    ...(init.headers ? { headers: init.headers } : {}),
  });
  const body = Buffer.from(await r.body.arrayBuffer());
  const text = body.toString('utf8');
  return { status: r.statusCode, headers: r.headers, body, text, json: () => JSON.parse(text) as unknown };
}
const post = (path: string, body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
  rest(ts, path, { body: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body), headers });
const tsError = (code: number, type: string, message: string) => ({ code, type, message });

// ---------- gRPC helpers (a generic client: method paths and codecs come from the proto, nothing else) ----------

const definition = protoLoader.loadSync('inference.proto', {
  includeDirs: [PROTO_DIR], keepCase: true, longs: String, enums: String, defaults: false, oneofs: true,
});
const METHODS = definition[SERVICE] as grpc.ServiceDefinition;
type Msg = Record<string, unknown>;
const method = (rpc: string): grpc.MethodDefinition<Msg, Msg> => {
  const m = METHODS[rpc];
  if (!m) throw new Error(`no rpc ${rpc}`);
  return m as grpc.MethodDefinition<Msg, Msg>;
};
const clients: grpc.Client[] = [];
function client(ref: TorchServeReference): grpc.Client {
  const c = new grpc.Client(ref.grpcEndpoint, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': 16 << 20 });
  clients.push(c);
  return c;
}
let gc: grpc.Client;
let gcAuth: grpc.Client;

const bearer = (token: string): grpc.Metadata => {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  return md;
};

function unary(c: grpc.Client, rpc: string, req: Msg, md = new grpc.Metadata()): Promise<Msg> {
  const m = method(rpc);
  return new Promise((resolve, reject) => {
    c.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, req, md, { deadline: Date.now() + 10_000 },
      (err, res) => (err ? reject(err) : resolve(res ?? {})));
  });
}

async function serverStream(c: grpc.Client, req: Msg, md = new grpc.Metadata()): Promise<{ messages: Msg[]; times: number[] }> {
  const m = method('StreamPredictions');
  const call = c.makeServerStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, req, md, { deadline: Date.now() + 10_000 });
  const messages: Msg[] = [];
  const times: number[] = [];
  for await (const msg of call as AsyncIterable<Msg>) {
    messages.push(msg);
    times.push(performance.now());
  }
  return { messages, times };
}

const predictions = (model_name: string, input: Record<string, unknown>, extra: Msg = {}): Msg => ({
  model_name,
  input: Object.fromEntries(Object.entries(input).map(([k, v]) => [k, Buffer.isBuffer(v) ? v : Buffer.from(typeof v === 'string' ? v : JSON.stringify(v))])),
  ...extra,
});
const predictionJson = (res: Msg): unknown => JSON.parse((res.prediction as Buffer).toString('utf8'));
const rpcError = (code: grpc.status, details?: string) =>
  expect.objectContaining({ code, ...(details === undefined ? {} : { details }) });

beforeAll(async () => {
  ts = await startTorchServeReference();
  tsAuth = await startTorchServeReference({ token: TOKEN });
  gc = client(ts);
  gcAuth = client(tsAuth);
});

afterAll(async () => {
  for (const c of clients) c.close();
  await Promise.all([ts?.close(), tsAuth?.close()]);
});

describe('protos/torchserve', () => {
  it('loads with the gateway options and exposes the four rpcs at their TorchServe paths', () => {
    expect(Object.fromEntries(Object.entries(METHODS).map(([k, m]) => [k, [m.path, m.requestStream, m.responseStream]]))).toEqual({
      Ping: [`/${SERVICE}/Ping`, false, false],
      Predictions: [`/${SERVICE}/Predictions`, false, false],
      StreamPredictions: [`/${SERVICE}/StreamPredictions`, false, true],
      StreamPredictions2: [`/${SERVICE}/StreamPredictions2`, true, true],
    });
    expect(Object.keys(definition)).toEqual(expect.arrayContaining(['google.protobuf.Empty', 'google.protobuf.Any', 'google.rpc.Status']));
  });

  it('encodes PredictionsRequest with the upstream field numbers (hand-assembled bytes)', () => {
    const bytes = method('Predictions').requestSerialize({ model_name: 'm', model_version: '1', input: { data: Buffer.from('x') }, sequence_id: 's' });
    // 1:"m"  2:"1"  3:{1:"data" 2:"x"}  4:"s"
    expect(bytes.toString('hex')).toBe('0a016d1201311a090a0464617461120178220173');
    // proto3 optional: an explicitly empty sequence_id is still on the wire (tag 4, length 0).
    expect(method('Predictions').requestSerialize({ model_name: 'm', sequence_id: '' }).toString('hex')).toBe('0a016d2200');
  });

  it('decodes PredictionResponse with google.rpc.Status in field 3', () => {
    // 1:"p"  2:"q"  3:{1:3 2:"bad" 3:{1:"t" 2:"v"}}
    const wire = Buffer.from(['0a0170', '120171', '1a0f', '0803', '1203626164', '1a06', '0a0174120176'].join(''), 'hex');
    const msg = method('Predictions').responseDeserialize(wire);
    expect(msg).toMatchObject({ prediction: Buffer.from('p'), sequence_id: 'q', status: { code: 3, message: 'bad', details: [{ type_url: 't', value: Buffer.from('v') }] } });
  });
});

describe('REST: health, headers, management', () => {
  it('GET /ping answers pretty-printed {"status": "Healthy"} with an x-request-id', async () => {
    const r = await rest(ts, '/ping');
    expect(r.status).toBe(200);
    expect(r.text).toBe('{\n  "status": "Healthy"\n}\n');
    expect(r.headers['content-type']).toBe('application/json');
    expect(r.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("echoes the client's x-request-id, on errors too", async () => {
    expect((await rest(ts, '/ping', { headers: { 'x-request-id': 'abc-123' } })).headers['x-request-id']).toBe('abc-123');
    const r = await rest(ts, '/predictions/nope', { body: '{}', headers: { 'x-request-id': 'err-1' } });
    expect(r.headers['x-request-id']).toBe('err-1');
    expect(r.headers.connection).toBe('close'); // TorchServe closes the connection after an error
  });

  it('describes models like the management API, with no workers for unready', async () => {
    const linear = await rest(ts, '/models/linear');
    expect(linear.status).toBe(200);
    expect(linear.json()).toEqual([expect.objectContaining({ modelName: 'linear', modelVersion: '2.0', workers: [expect.objectContaining({ status: 'READY' })] })]);
    expect((await rest(ts, '/models/linear/1.0')).json()).toEqual([expect.objectContaining({ modelVersion: '1.0' })]);
    expect(((await rest(ts, '/models/linear/all')).json() as { modelVersion: string }[]).map((m) => m.modelVersion)).toEqual(['1.0', '2.0']);
    expect((await rest(ts, '/models/unready')).json()).toEqual([expect.objectContaining({ modelName: 'unready', workers: [] })]);
    const missing = await rest(ts, '/models/nope');
    expect([missing.status, missing.json()]).toEqual([404, tsError(404, 'ModelNotFoundException', 'Model not found: nope')]);
    const list = (await rest(ts, '/models')).json() as { models: { modelName: string }[] };
    expect(list.models.map((m) => m.modelName)).toEqual(['echo', 'failing', 'identity_json', 'linear', 'simple', 'stream_tokens', 'unready']);
  });
});

describe('REST predictions', () => {
  it('linear: INPUT0, data and bare-list bodies; default version 2.0; float32 math', async () => {
    for (const body of [{ INPUT0: ROWS }, { data: ROWS }, ROWS]) {
      const r = await post('/predictions/linear', body);
      expect(r.status).toBe(200);
      expect(r.headers['content-type']).toBe('application/json');
      expect(r.json()).toEqual(linear(ROWS));
    }
    expect((await post('/predictions/linear', [[1, 2, 3, 4]])).text).toBe('{"SCORES":[[7,5,2.75]],"CLASS":[0]}');
    expect((await post('/predictions/linear/2.0', ROWS)).json()).toEqual(linear(ROWS, '2.0'));
    expect((await post('/predictions/linear/1.0', ROWS)).json()).toEqual(linear(ROWS, '1.0'));
    // Printed as the float32 value's double: 0.1*0.5+... rounds to 1.600000023841858, not 1.6.
    expect((await post('/predictions/linear/2.0', [[0.1, 0.2, 0.3, 0.4]])).text).toContain('1.600000023841858');
  });

  it('linear gives the same numbers as the reference Triton model', async () => {
    const triton = await startTritonReference();
    try {
      for (const [ver, tver] of [['1.0', '1'], ['2.0', '2']] as const) {
        const t = await request(`http://${triton.httpEndpoint}/v2/models/linear/versions/${tver}/infer`, {
          method: 'POST',
          body: JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [ROWS.length, 4], data: ROWS.flat() }] }),
        });
        const outputs = ((await t.body.json()) as { outputs: { name: string; data: number[] }[] }).outputs;
        const mine = (await post(`/predictions/linear/${ver}`, ROWS)).json() as { SCORES: number[][]; CLASS: number[] };
        expect(mine.SCORES.flat()).toEqual(outputs.find((o) => o.name === 'SCORES')?.data);
        expect(mine.CLASS).toEqual(outputs.find((o) => o.name === 'CLASS')?.data);
      }
    } finally {
      await triton.close();
    }
  });

  it('simple: int32 sums and differences with wrap-around', async () => {
    const a = Array.from({ length: 16 }, (_, i) => i);
    const b = Array.from({ length: 16 }, () => 1);
    a[0] = 2147483647;
    b[1] = -2147483648;
    const r = await post('/predictions/simple', { INPUT0: [a], INPUT1: [b] });
    expect(r.status).toBe(200);
    const sums = a.map((x, i) => x + (b[i] ?? 0));
    const diffs = a.map((x, i) => x - (b[i] ?? 0));
    sums[0] = -2147483648; // 2147483647 + 1 wraps
    diffs[1] = -2147483647; // 1 - (-2147483648) = 2147483649 wraps
    expect(r.json()).toEqual({ OUTPUT0: [sums], OUTPUT1: [diffs] });
  });

  it('echo: returns the exact bytes with the request content-type, and none when none was sent', async () => {
    const bytes = Buffer.from(Array.from({ length: 1024 }, (_, i) => (i * 37) & 0xff));
    const r = await post('/predictions/echo', bytes, { 'content-type': 'image/png' });
    expect(r.status).toBe(200);
    expect(r.body.equals(bytes)).toBe(true);
    expect(r.headers['content-type']).toBe('image/png');
    const bare = await rest(ts, '/predictions/echo', { method: 'POST', body: bytes });
    expect(bare.body.equals(bytes)).toBe(true);
    expect(bare.headers['content-type']).toBeUndefined();
  });

  it('identity_json: re-serialises the JSON body', async () => {
    const doc = { a: [1.5, -2, 0], b: 'ünï "q"', c: [[true, null]], d: { e: 1e-7 } };
    const r = await post('/predictions/identity_json', JSON.stringify(doc, null, 4));
    expect(r.status).toBe(200);
    expect(r.text).toBe(JSON.stringify(doc));
  });

  it('stream_tokens: HTTP/1.1 chunked, one chunk per token (raw socket)', async () => {
    const body = JSON.stringify({ text: 'alpha  beta\ngamma' });
    const socket = connect(ts.httpPort, '127.0.0.1');
    await once(socket, 'connect');
    socket.write(`POST /predictions/stream_tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    const chunks: Buffer[] = [];
    for await (const c of socket) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('latin1');
    const split = raw.indexOf('\r\n\r\n');
    const head = raw.slice(0, split);
    const rest = raw.slice(split + 4);
    expect(head).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(head.toLowerCase()).toContain('transfer-encoding: chunked');
    expect(head.toLowerCase()).not.toContain('content-length');
    expect(rest).toBe('5\r\nalpha\r\n4\r\nbeta\r\n5\r\ngamma\r\n0\r\n\r\n');
  });

  it('stream_tokens: chunks arrive spread in time (undici)', async () => {
    const r = await request(`http://${ts.httpEndpoint}/predictions/stream_tokens`, { method: 'POST', body: JSON.stringify({ text: 'a b c d' }) });
    expect(r.statusCode).toBe(200);
    const got: string[] = [];
    const times: number[] = [];
    for await (const c of r.body) {
      got.push((c as Buffer).toString());
      times.push(performance.now());
    }
    expect(got.join('')).toBe('abcd');
    expect((times.at(-1) ?? 0) - (times[0] ?? 0)).toBeGreaterThanOrEqual(30); // 3 gaps of ~15 ms
  });

  it('accepts multipart and urlencoded forms as named inputs', async () => {
    const form = new FormData();
    form.set('INPUT0', JSON.stringify([[1, 2, 3, 4]]));
    const multipart = await rest(ts, '/predictions/linear', { method: 'POST', body: form });
    expect([multipart.status, multipart.json()]).toEqual([200, linear([[1, 2, 3, 4]])]);
    const urlencoded = await post('/predictions/linear/1.0', `data=${encodeURIComponent(JSON.stringify(ROWS))}`, { 'content-type': 'application/x-www-form-urlencoded' });
    expect(urlencoded.json()).toEqual(linear(ROWS, '1.0'));
  });
});

describe('REST errors', () => {
  it('answers TorchServe error JSON, pretty-printed, per failure', async () => {
    const cases: [string, unknown, number, string, string][] = [
      ['/predictions/nope', {}, 404, 'ModelNotFoundException', 'Model not found: nope'],
      ['/predictions/linear/9.0', ROWS, 404, 'ModelVersionNotFoundException', 'Model version: 9.0 does not exist for model: linear'],
      ['/predictions/unready', {}, 503, 'ServiceUnavailableException', NO_WORKER],
      ['/predictions/failing', ROWS, 503, 'InternalServerException', 'Prediction failed'],
    ];
    for (const [path, body, status, type, message] of cases) {
      const r = await post(path, body);
      expect([path, r.status, r.json()]).toEqual([path, status, tsError(status, type, message)]);
      expect(r.text).toBe(`${JSON.stringify(tsError(status, type, message), null, 2)}\n`);
    }
  });

  it('400 BadRequestException for malformed JSON or wrong keys', async () => {
    for (const [path, body] of [
      ['/predictions/linear', '{"INPUT0": [[1,2'],
      ['/predictions/linear', { WRONG: ROWS }],
      ['/predictions/linear', { INPUT0: [[1, 2, 3]] }],
      ['/predictions/linear', { INPUT0: [[1, 2, 'x', 4]] }],
      ['/predictions/simple', { INPUT0: [[1]] }],
      ['/predictions/simple', { INPUT0: [Array(16).fill(1.5)], INPUT1: [Array(16).fill(1)] }],
      ['/predictions/identity_json', 'not json'],
      ['/predictions/stream_tokens', { text: 5 }],
    ] as const) {
      const r = await post(path, body);
      expect([path, r.status, r.json()]).toEqual([path, 400, expect.objectContaining({ code: 400, type: 'BadRequestException' })]);
    }
  });

  it('405 for other methods on predictions, 404 for unknown paths, 413 over max_request_size', async () => {
    for (const m of ['PUT', 'DELETE', 'GET']) {
      const r = await rest(ts, '/predictions/linear', { method: m });
      expect([m, r.status, (r.json() as { type: string }).type]).toEqual([m, 405, 'MethodNotAllowedException']);
    }
    const unknown = await rest(ts, '/v2/whatever');
    expect([unknown.status, (unknown.json() as { type: string }).type]).toEqual([404, 'ResourceNotFoundException']);
    expect((await rest(ts, '/predictions')).status).toBe(404);
    const big = await post('/predictions/echo', Buffer.alloc(6_553_501), { 'content-type': 'application/octet-stream' });
    expect(big.status).toBe(413);
    expect((await post('/predictions/echo', Buffer.alloc(6_553_500), { 'content-type': 'application/octet-stream' })).body.length).toBe(6_553_500);
  });
});

describe('token auth', () => {
  it('REST: 400 InvalidKeyException without the right bearer token, on /ping too', async () => {
    for (const headers of [undefined, { authorization: 'Bearer wrong' }, { authorization: TOKEN }]) {
      for (const [path, body] of [['/ping', undefined], ['/predictions/linear', JSON.stringify(ROWS)]] as const) {
        const r = await rest(tsAuth, path, { ...(body ? { body } : {}), ...(headers ? { headers } : {}) });
        expect([path, r.status, r.json()]).toEqual([path, 400, tsError(400, 'InvalidKeyException', INVALID_KEY)]);
      }
    }
    const ok = await rest(tsAuth, '/predictions/linear', { body: JSON.stringify(ROWS), headers: { authorization: `Bearer ${TOKEN}` } });
    expect([ok.status, ok.json()]).toEqual([200, linear(ROWS)]);
    expect((await rest(tsAuth, '/ping', { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
  });

  it('gRPC: PERMISSION_DENIED without authorization metadata, Ping included', async () => {
    const req = predictions('linear', { data: ROWS });
    await expect(unary(gcAuth, 'Predictions', req)).rejects.toEqual(rpcError(grpc.status.PERMISSION_DENIED, INVALID_KEY));
    await expect(unary(gcAuth, 'Predictions', req, bearer('wrong'))).rejects.toEqual(rpcError(grpc.status.PERMISSION_DENIED));
    await expect(unary(gcAuth, 'Ping', {})).rejects.toEqual(rpcError(grpc.status.PERMISSION_DENIED));
    await expect(serverStream(gcAuth, predictions('stream_tokens', { data: { text: 'a b' } }))).rejects.toEqual(rpcError(grpc.status.PERMISSION_DENIED));
    expect(predictionJson(await unary(gcAuth, 'Predictions', req, bearer(TOKEN)))).toEqual(linear(ROWS));
    expect(await unary(gcAuth, 'Ping', {}, bearer(TOKEN))).toEqual({ health: '{\n  "status": "Healthy"\n}' });
  });
});

describe('gRPC', () => {
  it('Ping returns the pretty-printed health JSON', async () => {
    expect(await unary(gc, 'Ping', {})).toEqual({ health: '{\n  "status": "Healthy"\n}' });
  });

  it('linear: whole JSON under "data" or "body", or one key per input; versions', async () => {
    for (const input of [{ data: { INPUT0: ROWS } }, { body: ROWS }, { data: { data: ROWS } }, { INPUT0: ROWS }]) {
      expect(predictionJson(await unary(gc, 'Predictions', predictions('linear', input)))).toEqual(linear(ROWS));
    }
    const v1 = await unary(gc, 'Predictions', predictions('linear', { INPUT0: ROWS }, { model_version: '1.0' }));
    expect(predictionJson(v1)).toEqual(linear(ROWS, '1.0'));
  });

  it('simple: per-input keys or one document', async () => {
    const a = [Array.from({ length: 16 }, (_, i) => i * 3)];
    const b = [Array.from({ length: 16 }, (_, i) => -i)];
    const want = { OUTPUT0: [a[0]?.map((x, i) => x - i)], OUTPUT1: [a[0]?.map((x, i) => x + i)] };
    expect(predictionJson(await unary(gc, 'Predictions', predictions('simple', { INPUT0: a, INPUT1: b })))).toEqual(want);
    expect(predictionJson(await unary(gc, 'Predictions', predictions('simple', { data: { INPUT0: a, INPUT1: b } })))).toEqual(want);
  });

  it('echo returns exact bytes; identity_json re-serialises; sequence_id is echoed', async () => {
    const bytes = Buffer.from([0, 255, 1, 254, 0x80, 0x7f]);
    const echoed = await unary(gc, 'Predictions', predictions('echo', { data: bytes }, { sequence_id: 'seq-1' }));
    expect(echoed).toEqual({ prediction: bytes, sequence_id: 'seq-1', _sequence_id: 'sequence_id' });
    const doc = { x: [1, 2.5, 'three'], y: { z: null } };
    const id = await unary(gc, 'Predictions', predictions('identity_json', { data: JSON.stringify(doc, null, 1) }));
    expect((id.prediction as Buffer).toString()).toBe(JSON.stringify(doc));
  });

  it('stream_tokens: StreamPredictions sends one response per token; Predictions the full text', async () => {
    const { messages, times } = await serverStream(gc, predictions('stream_tokens', { data: { text: 'one two  three' } }));
    expect(messages.map((m) => (m.prediction as Buffer).toString())).toEqual(['one', 'two', 'three']);
    expect((times.at(-1) ?? 0) - (times[0] ?? 0)).toBeGreaterThanOrEqual(20);
    const unaryReply = await unary(gc, 'Predictions', predictions('stream_tokens', { text: Buffer.from(JSON.stringify('one two  three')) }));
    expect((unaryReply.prediction as Buffer).toString()).toBe('one two  three');
  });

  it('StreamPredictions on a non-streaming model sends a single response', async () => {
    const { messages } = await serverStream(gc, predictions('linear', { data: ROWS }));
    expect(messages.map(predictionJson)).toEqual([linear(ROWS)]);
  });

  it('errors: INTERNAL for frontend failures, UNAVAILABLE for a failing handler, INVALID_ARGUMENT for bad input', async () => {
    const cases: [Msg, grpc.status, string | undefined][] = [
      [predictions('nope', { data: '{}' }), grpc.status.INTERNAL, 'Model not found: nope'],
      [predictions('linear', { data: ROWS }, { model_version: '9.0' }), grpc.status.INTERNAL, 'Model version: 9.0 does not exist for model: linear'],
      [predictions('unready', { data: '{}' }), grpc.status.INTERNAL, NO_WORKER],
      [predictions('', { data: '{}' }), grpc.status.INTERNAL, 'Parameter model_name is required.'],
      [predictions('failing', { data: ROWS }), grpc.status.UNAVAILABLE, 'Prediction failed'],
      [predictions('linear', { data: '[[1,2' }), grpc.status.INVALID_ARGUMENT, undefined],
      [predictions('linear', { WRONG: ROWS }), grpc.status.INVALID_ARGUMENT, undefined],
      [predictions('linear', {}), grpc.status.INVALID_ARGUMENT, undefined],
    ];
    for (const [req, code, details] of cases) {
      await expect(unary(gc, 'Predictions', req)).rejects.toEqual(rpcError(code, details));
      await expect(serverStream(gc, req)).rejects.toEqual(rpcError(code, details));
    }
  });

  it('StreamPredictions2 answers each request in order, errors in-band', async () => {
    const m = method('StreamPredictions2');
    const call = gc.makeBidiStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, new grpc.Metadata(), { deadline: Date.now() + 10_000 });
    call.write(predictions('linear', { data: [[1, 2, 3, 4]] }, { sequence_id: 's1' }));
    call.write(predictions('nope', { data: '{}' }, { sequence_id: 's1' }));
    call.write(predictions('stream_tokens', { data: { text: 'x y' } }, { sequence_id: 's1' }));
    call.end();
    const got: Msg[] = [];
    for await (const msg of call as AsyncIterable<Msg>) got.push(msg);
    expect(got.map((g) => g.sequence_id)).toEqual(['s1', 's1', 's1', 's1']);
    expect(predictionJson(got[0] ?? {})).toEqual(linear([[1, 2, 3, 4]]));
    expect(got[1]?.status).toEqual({ code: grpc.status.INTERNAL, message: 'Model not found: nope' });
    expect(got.slice(2).map((g) => (g.prediction as Buffer).toString())).toEqual(['x', 'y']);
  });

  it('rejects messages over max_request_size with RESOURCE_EXHAUSTED', async () => {
    await expect(unary(gc, 'Predictions', predictions('echo', { data: Buffer.alloc(6_553_600) }))).rejects.toEqual(rpcError(grpc.status.RESOURCE_EXHAUSTED));
  });
});

describe('stats and lifecycle', () => {
  it('counts predictions and records the last request as received, REST and gRPC', async () => {
    const ref = await startTorchServeReference({ latencyMs: 100 });
    const c = client(ref);
    try {
      const start = performance.now();
      const r = await rest(ref, '/predictions/echo', { body: 'hello', headers: { 'content-type': 'text/plain', 'x-custom': 'v' } });
      expect(performance.now() - start).toBeGreaterThanOrEqual(90);
      expect(r.text).toBe('hello');
      expect(ref.stats.inferCalls).toBe(1);
      expect(ref.stats.lastRequest?.body.toString()).toBe('hello');
      expect(ref.stats.lastRequest?.headers).toMatchObject({ 'content-type': 'text/plain', 'x-custom': 'v' });
      await rest(ref, '/ping');
      await rest(ref, '/models/linear');
      expect(ref.stats.inferCalls).toBe(1); // health and describe are not predictions

      const req = predictions('linear', { data: ROWS });
      const md = bearer('tok');
      md.set('x-trace', 't1');
      await unary(c, 'Predictions', req, md);
      expect(ref.stats.inferCalls).toBe(2);
      expect(ref.stats.lastRequest?.headers).toMatchObject({ authorization: 'Bearer tok', 'x-trace': 't1' });
      expect(ref.stats.lastRequest?.body.equals(method('Predictions').requestSerialize(req))).toBe(true);
      await rest(ref, '/predictions/nope', { body: '{}' });
      expect(ref.stats.inferCalls).toBe(3); // failed ones count
    } finally {
      await ref.close();
    }
    await expect(request(`http://${ref.httpEndpoint}/ping`)).rejects.toThrow();
  });

  it('runs as a CLI that prints its endpoints and exits cleanly on SIGTERM', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'reference/torchserve/main.ts', '--http-port', '0', '--grpc-port', '0', '--token', 'k'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
    const endpoints = JSON.parse(line) as { http: string; grpc: string };
    expect(endpoints).toEqual({ http: expect.stringMatching(/^127\.0\.0\.1:\d+$/), grpc: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
    const ping = await request(`http://${endpoints.http}/ping`, { headers: { authorization: 'Bearer k' } });
    expect(await ping.body.json()).toEqual({ status: 'Healthy' });
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(0);
  }, 20_000);
});
