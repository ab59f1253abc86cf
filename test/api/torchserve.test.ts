import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTorchServeReference, type TorchServeReference } from '../../reference/torchserve/index.js';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { validateConfig } from '../../src/config/load.js';
import { startGateway, type RunningGateway } from '../../src/gateway.js';
import { silentLogger } from '../../src/observability/logger.js';
import { grpcError, v2Client, type V2Client } from '../helpers/grpc-client.js';
import { call, postJson } from '../helpers/http.js';
import { ROWS, linear } from '../helpers/torchserve.js';

// ---------- a TorchServe gRPC client, straight from protos/torchserve ----------

const PROTO_DIR = fileURLToPath(new URL('../../protos/torchserve/', import.meta.url));
const definition = protoLoader.loadSync('inference.proto', { includeDirs: [PROTO_DIR], keepCase: true, defaults: true });
const pkg = grpc.loadPackageDefinition(definition) as unknown as {
  org: { pytorch: { serve: { grpc: { inference: { InferenceAPIsService: grpc.ServiceClientConstructor } } } } };
};
type TsClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;
type Prediction = { prediction: Buffer };

function unary<T>(client: TsClient, rpc: string, request: object): Promise<T> {
  return new Promise((resolve, reject) => {
    client[rpc]!.call(client, request, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, res: T) =>
      err ? reject(err) : resolve(res),
    );
  });
}

/** StreamPredictions: every message with the time it arrived. */
async function streamPredictions(client: TsClient, request: object): Promise<{ parts: string[]; times: number[] }> {
  const stream = client.StreamPredictions!.call(client, request, { deadline: Date.now() + 10_000 }) as grpc.ClientReadableStream<Prediction>;
  const parts: string[] = [];
  const times: number[] = [];
  for await (const msg of stream) {
    parts.push((msg as Prediction).prediction.toString());
    times.push(Date.now());
  }
  return { parts, times };
}

// ---------- the stack ----------

let ts: TorchServeReference;
let triton: TritonReference;
let gateway: RunningGateway;
let http: Pool;
let tsClient: TsClient;
let v2: V2Client;

const LINEAR = { output_types: { SCORES: 'FP32', CLASS: 'INT64' } };

beforeAll(async () => {
  ts = await startTorchServeReference({ host: '127.0.0.1' });
  triton = await startTritonReference({ host: '127.0.0.1' });
  const models: Record<string, unknown> = { 'triton.linear': { backend: 'triton', model: 'linear' } };
  models['triton.identity_bytes'] = { backend: 'triton', model: 'identity_bytes' };
  // Every TorchServe model twice: over the REST backend (<name>) and over the gRPC backend (grpc.<name>).
  for (const name of ['echo', 'linear', 'simple', 'stream_tokens', 'failing']) {
    const extra = name === 'linear' ? { torchserve: LINEAR } : {};
    models[name] = { backend: 'ts-rest', ...extra };
    models[`grpc.${name}`] = { backend: 'ts-grpc', model: name, ...extra };
  }
  const config = validateConfig({
    auth: { enabled: false },
    server: {
      http: { host: '127.0.0.1', port: 0 },
      grpc: { host: '127.0.0.1', port: 0 },
      max_body_bytes: 4 * 1024 * 1024,
      request_timeout_ms: 5000,
      log_level: 'silent',
    },
    backends: {
      'ts-rest': { kind: 'torchserve', protocol: 'rest', endpoints: [ts.httpEndpoint] },
      'ts-grpc': { kind: 'torchserve', protocol: 'grpc', endpoints: [ts.grpcEndpoint] },
      triton: { kind: 'triton', protocol: 'grpc', endpoints: [triton.grpcEndpoint] },
    },
    models,
  });
  gateway = await startGateway(config, silentLogger);
  http = new Pool(`http://127.0.0.1:${gateway.httpPort}`, { connections: 4 });
  const address = `127.0.0.1:${gateway.grpcPort}`;
  tsClient = new pkg.org.pytorch.serve.grpc.inference.InferenceAPIsService(address, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': 8 * 1024 * 1024,
  }) as TsClient;
  v2 = v2Client(address);
});

afterAll(async () => {
  tsClient?.close();
  v2?.close();
  await http?.close();
  await gateway?.close(1000);
  await triton?.close();
  await ts?.close();
});

/** 1 MiB holding every byte value. */
const MIB = Buffer.from(Array.from({ length: 1024 * 1024 }, (_, i) => (i * 31 + (i >> 8)) % 256));
const WORDS = ['alpha', 'beta', 'gamma', 'delta'];
const LINEAR_BODY = JSON.stringify({ INPUT0: ROWS });

describe('TorchServe REST front door', () => {
  for (const model of ['echo', 'grpc.echo']) {
    it(`/predictions/${model}: a 1 MiB binary body comes back byte-exact`, async () => {
      const reply = await call(http, 'POST', `/predictions/${model}`, MIB, { 'content-type': 'image/png' });
      expect(reply.status).toBe(200);
      expect(reply.body.equals(MIB)).toBe(true);
      // TorchServe's REST echo returns the content type; gRPC carries none, so it is the default.
      expect(reply.headers['content-type']).toBe(model === 'echo' ? 'image/png' : 'application/octet-stream');
      // An answer in one part goes out whole where the backend's end is known at once (REST); a gRPC
      // stream ends with its trailers, later, so that answer may go chunked.
      if (model === 'echo') expect(reply.headers['content-length']).toBe(String(MIB.length));
      expect(reply.headers['x-request-id']).toBeTruthy();
    });
  }

  it('a chunked upload (no Content-Length) is read whole as well', async () => {
    const pieces = [MIB.subarray(0, 1000), MIB.subarray(1000, 300_000), MIB.subarray(300_000)];
    const res = await http.request({ method: 'POST', path: '/predictions/echo', body: Readable.from(pieces), headers: { 'content-type': 'application/x-thing' } });
    const body = Buffer.from(await res.body.arrayBuffer());
    expect(res.statusCode).toBe(200);
    expect(body.equals(MIB)).toBe(true);
    expect(res.headers['content-type']).toBe('application/x-thing');
  });

  for (const model of ['linear', 'grpc.linear']) {
    it(`/predictions/${model}: the JSON answer equals the float32 math, per version`, async () => {
      const reply = await call(http, 'POST', `/predictions/${model}`, LINEAR_BODY, { 'content-type': 'application/json' });
      expect(reply.status).toBe(200);
      expect(reply.headers['content-type']).toBe('application/json');
      expect(reply.json()).toEqual(linear(ROWS));
      const v1 = await call(http, 'POST', `/predictions/${model}/1.0`, LINEAR_BODY, { 'content-type': 'application/json' });
      expect(v1.json()).toEqual(linear(ROWS, '1.0'));
    });
  }

  for (const model of ['stream_tokens', 'grpc.stream_tokens']) {
    it(`/predictions/${model}: parts arrive as HTTP chunks, in order`, async () => {
      const res = await http.request({ method: 'POST', path: `/predictions/${model}`, body: JSON.stringify({ text: WORDS.join(' ') }) });
      expect(res.statusCode).toBe(200);
      expect(res.headers['transfer-encoding']).toBe('chunked');
      const chunks: string[] = [];
      const times: number[] = [];
      for await (const chunk of res.body) {
        chunks.push(String(chunk));
        times.push(Date.now());
      }
      expect(chunks.length).toBeGreaterThanOrEqual(2);
      expect(chunks.join('')).toBe(WORDS.join(''));
      expect(times[times.length - 1]! - times[0]!).toBeGreaterThanOrEqual(15);
    });
  }

  it('a model on Triton is served too: the body becomes its single input', async () => {
    const reply = await call(http, 'POST', '/predictions/triton.identity_bytes', 'héllo', { 'content-type': 'text/plain' });
    expect(reply.status).toBe(200);
    expect(reply.text()).toBe('héllo');
    expect(reply.headers['content-type']).toBe('application/octet-stream');
  });

  it("a non-JSON body to a JSON model is TorchServe's 400, its message passed on", async () => {
    const reply = await call(http, 'POST', '/predictions/linear', 'not json', { 'content-type': 'application/json' });
    expect(reply.status).toBe(400);
    expect(reply.json()).toMatchObject({ code: 400, type: 'BadRequestException', message: expect.stringMatching(/^request body is not valid JSON/) });
    expect(reply.headers['x-request-id']).toBeTruthy();
  });

  it('an unknown model is a 404 ModelNotFoundException', async () => {
    const reply = await call(http, 'POST', '/predictions/nosuch', '{}');
    expect(reply.status).toBe(404);
    expect(reply.json()).toEqual({ code: 404, type: 'ModelNotFoundException', message: "unknown model 'nosuch'" });
    expect(reply.headers['x-request-id']).toBeTruthy();
  });

  it("a backend failure is TorchServe's 503, passed on", async () => {
    for (const model of ['failing', 'grpc.failing']) {
      const reply = await call(http, 'POST', `/predictions/${model}`, '{}');
      expect(reply.status).toBe(503);
      expect(reply.json()).toMatchObject({ code: 503, message: 'Prediction failed' });
    }
    // Over REST, TorchServe's own exception type survives.
    expect((await call(http, 'POST', '/predictions/failing', '{}')).json()).toMatchObject({ type: 'InternalServerException' });
  });

  it('GET /ping is Healthy', async () => {
    const reply = await call(http, 'GET', '/ping');
    expect(reply.status).toBe(200);
    expect(reply.json()).toEqual({ status: 'Healthy' });
    expect(reply.headers['x-request-id']).toBeTruthy();
  });
});

describe('TorchServe gRPC front door', () => {
  it('Ping answers the health JSON', async () => {
    const reply = await unary<{ health: string }>(tsClient, 'Ping', {});
    expect(JSON.parse(reply.health)).toEqual({ status: 'Healthy' });
  });

  it('Predictions: echo returns a 1 MiB binary input exactly, over either backend', async () => {
    for (const model of ['echo', 'grpc.echo']) {
      const reply = await unary<Prediction>(tsClient, 'Predictions', { model_name: model, input: { data: MIB } });
      expect(reply.prediction.equals(MIB)).toBe(true);
    }
  });

  it('Predictions: linear answers its JSON, over either backend', async () => {
    for (const model of ['linear', 'grpc.linear']) {
      const reply = await unary<Prediction>(tsClient, 'Predictions', { model_name: model, input: { data: Buffer.from(LINEAR_BODY) } });
      expect(JSON.parse(reply.prediction.toString())).toEqual(linear(ROWS));
    }
  });

  it('Predictions: several input keys reach the handler as fields (gRPC entries, or REST form fields)', async () => {
    const a = Array.from({ length: 16 }, (_, i) => i);
    const b = Array.from({ length: 16 }, () => 10);
    const input = { INPUT0: Buffer.from(JSON.stringify([a])), INPUT1: Buffer.from(JSON.stringify([b])) };
    for (const model of ['simple', 'grpc.simple']) {
      const reply = await unary<Prediction>(tsClient, 'Predictions', { model_name: model, input });
      expect(JSON.parse(reply.prediction.toString())).toEqual({ OUTPUT0: [a.map((x) => x + 10)], OUTPUT1: [a.map((x) => x - 10)] });
    }
  });

  for (const model of ['stream_tokens', 'grpc.stream_tokens']) {
    it(`StreamPredictions on ${model}: one message per part, in order`, async () => {
      const { parts, times } = await streamPredictions(tsClient, {
        model_name: model,
        input: { data: Buffer.from(JSON.stringify({ text: WORDS.join(' ') })) },
      });
      expect(parts).toEqual(WORDS);
      expect(times[times.length - 1]! - times[0]!).toBeGreaterThanOrEqual(15);
    });
  }

  it('errors: unknown model NOT_FOUND, failing handler UNAVAILABLE, StreamPredictions2 UNIMPLEMENTED', async () => {
    const missing = await grpcError(unary(tsClient, 'Predictions', { model_name: 'nosuch', input: { data: Buffer.from('{}') } }));
    expect(missing.code).toBe(grpc.status.NOT_FOUND);
    const failing = await grpcError(unary(tsClient, 'Predictions', { model_name: 'failing', input: { data: Buffer.from('{}') } }));
    expect([failing.code, failing.details]).toEqual([grpc.status.UNAVAILABLE, 'Prediction failed']);
    const streamFailing = await grpcError(streamPredictions(tsClient, { model_name: 'grpc.failing', input: { data: Buffer.from('{}') } }));
    expect(streamFailing.code).toBe(grpc.status.UNAVAILABLE);
    const bidi = tsClient.StreamPredictions2!.call(tsClient) as grpc.ClientDuplexStream<object, Prediction>;
    const unimplemented = await grpcError(
      new Promise((resolve, reject) => {
        bidi.on('data', resolve);
        bidi.on('error', reject);
        bidi.write({ model_name: 'echo', input: { data: Buffer.from('x') } });
      }),
    );
    expect(unimplemented.code).toBe(grpc.status.UNIMPLEMENTED);
  });
});

describe('v2 clients, served by TorchServe', () => {
  const v2Body = { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [ROWS.length, 4], data: ROWS.flat() }] };

  it("REST: TorchServe's linear, over its REST and its gRPC backend, answers Triton's tensors", async () => {
    const expected = (await postJson(http, '/v2/models/triton.linear/infer', v2Body)).json<{ outputs: unknown[] }>().outputs;
    expect(expected).toHaveLength(2);
    for (const model of ['linear', 'grpc.linear']) {
      const reply = await postJson(http, `/v2/models/${model}/infer`, v2Body);
      expect(reply.status, reply.text()).toBe(200);
      expect(reply.json<{ outputs: unknown[] }>().outputs).toEqual(expected);
    }
  });

  it("gRPC: the same, with raw tensors", async () => {
    const raw = Buffer.alloc(ROWS.length * 16);
    ROWS.flat().forEach((v, i) => raw.writeFloatLE(v, i * 4));
    const request = (model: string) => ({
      model_name: model,
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [String(ROWS.length), '4'] }],
      raw_input_contents: [raw],
    });
    const expected = await v2.unary('ModelInfer', request('triton.linear'));
    for (const model of ['linear', 'grpc.linear']) {
      const reply = await v2.unary('ModelInfer', request(model));
      expect(reply.outputs).toEqual(expected.outputs);
      expect(reply.raw_output_contents).toEqual(expected.raw_output_contents);
    }
  });
});

describe('clients leaving mid-stream', () => {
  it('REST and gRPC: the stream stops, and the gateway serves on', async () => {
    const words = Array.from({ length: 40 }, (_, i) => `w${i}`).join(' ');
    const res = await http.request({ method: 'POST', path: '/predictions/stream_tokens', body: JSON.stringify({ text: words }) });
    for await (const chunk of res.body) {
      expect(String(chunk)).toBe('w0');
      break; // leaves after the first chunk: undici destroys the body
    }
    const stream = tsClient.StreamPredictions!.call(tsClient, {
      model_name: 'grpc.stream_tokens',
      input: { data: Buffer.from(JSON.stringify({ text: words })) },
    }) as grpc.ClientReadableStream<Prediction>;
    await new Promise<void>((resolve) => stream.once('data', () => resolve()));
    stream.on('error', () => undefined); // CANCELLED, as asked
    stream.cancel();
    const reply = await call(http, 'POST', '/predictions/linear', LINEAR_BODY, { 'content-type': 'application/json' });
    expect(reply.json()).toEqual(linear(ROWS));
  });
});

// Last: draining changes what the gateway answers.
describe('draining', () => {
  it('ping turns Unhealthy (500 over REST, in the health string over gRPC)', async () => {
    gateway.service.startDraining();
    const reply = await call(http, 'GET', '/ping');
    expect([reply.status, reply.json()]).toEqual([500, { status: 'Unhealthy' }]);
    expect(JSON.parse((await unary<{ health: string }>(tsClient, 'Ping', {})).health)).toEqual({ status: 'Unhealthy' });
  });
});
