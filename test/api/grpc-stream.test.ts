// The gateway's v2 gRPC ModelStreamInfer in front of backends that stream: a Triton decoupled model (Triton's
// own ModelStreamInfer) and a TorchServe streaming handler (StreamPredictions, chunked REST), next to models that
// answer once. A client built from the .proto, as any Triton client is.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTorchServeReference, type TorchServeReference } from '../../reference/torchserve/index.js';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { validateConfig } from '../../src/config/load.js';
import { startGateway, type RunningGateway } from '../../src/gateway.js';
import { silentLogger } from '../../src/observability/logger.js';
import { grpc, grpcError, v2Client, type Message, type V2Client } from '../helpers/grpc-client.js';

let triton: TritonReference;
let ts: TorchServeReference;
let gateway: RunningGateway;
let client: V2Client;

beforeAll(async () => {
  triton = await startTritonReference({ host: '127.0.0.1' });
  ts = await startTorchServeReference({ host: '127.0.0.1' });
  const config = validateConfig({
    auth: { enabled: false },
    server: {
      http: { host: '127.0.0.1', port: 0 },
      grpc: { host: '127.0.0.1', port: 0 },
      max_body_bytes: 1024 * 1024,
      request_timeout_ms: 10_000,
      log_level: 'silent',
    },
    backends: {
      'triton-grpc': { kind: 'triton', protocol: 'grpc', endpoints: [triton.grpcEndpoint] },
      'triton-rest': { kind: 'triton', protocol: 'rest', endpoints: [triton.httpEndpoint] },
      'ts-grpc': { kind: 'torchserve', protocol: 'grpc', endpoints: [ts.grpcEndpoint] },
      'ts-rest': { kind: 'torchserve', protocol: 'rest', endpoints: [ts.httpEndpoint] },
    },
    models: {
      repeat: { backend: 'triton-grpc', model: 'repeat_int32' },
      'rest.repeat': { backend: 'triton-rest', model: 'repeat_int32' },
      identity_int32: { backend: 'triton-grpc' },
      'rest.identity_int32': { backend: 'triton-rest', model: 'identity_int32' },
      tokens: { backend: 'ts-grpc', model: 'stream_tokens' },
      'rest.tokens': { backend: 'ts-rest', model: 'stream_tokens' },
      failing: { backend: 'ts-grpc', model: 'failing' },
    },
  });
  gateway = await startGateway(config, silentLogger);
  client = v2Client(`127.0.0.1:${gateway.grpcPort}`);
});

afterAll(async () => {
  client?.close();
  await gateway?.close(1000);
  await ts?.close();
  await triton?.close();
});

// ---------- requests and replies ----------

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

/** repeat_int32: one response per element of IN; DELAY[i] ms before the i-th. */
function repeat(id: string, values: readonly number[], delays?: readonly number[], model = 'repeat'): Message {
  const inputs: Message[] = [{ name: 'IN', datatype: 'INT32', shape: [String(values.length)] }];
  const raw = [int32(values)];
  if (delays !== undefined) {
    inputs.push({ name: 'DELAY', datatype: 'UINT32', shape: [String(delays.length)] });
    raw.push(uint32(delays));
  }
  return { model_name: model, id, inputs, raw_input_contents: raw };
}

/** stream_tokens: one part per word of the text. */
function tokens(id: string, text: string, model = 'tokens'): Message {
  return {
    model_name: model,
    id,
    inputs: [{ name: 'data', datatype: 'BYTES', shape: ['1'] }],
    raw_input_contents: [lengthPrefixed(JSON.stringify({ text }))],
  };
}

function identity(id: string, value: number, model = 'identity_int32'): Message {
  return { model_name: model, id, inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: ['1', '1'] }], raw_input_contents: [int32([value])] };
}

/** One BYTES element as the v2 raw format carries it: a 4-byte little-endian length, then the bytes. */
function lengthPrefixed(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(bytes.length);
  return Buffer.concat([len, bytes]);
}

interface Reply {
  error_message: string;
  infer_response: {
    id: string;
    model_name: string;
    outputs: { name: string; datatype: string; shape: string[] }[];
    raw_output_contents: Buffer[];
    parameters: Record<string, { bool_param?: boolean }>;
  };
}

function openStream(): grpc.ClientDuplexStream<Message, Reply> {
  const fn = client.raw.ModelStreamInfer as (metadata: grpc.Metadata, options: grpc.CallOptions) => grpc.ClientDuplexStream<Message, Reply>;
  return fn.call(client.raw, new grpc.Metadata(), { deadline: Date.now() + 20_000 });
}

/** Writes the requests, half-closes, and collects every reply until the gateway ends the stream. */
async function streamAll(requests: readonly Message[]): Promise<Reply[]> {
  const call = openStream();
  const replies: Reply[] = [];
  const done = new Promise<void>((resolve, reject) => {
    call.on('data', (m: Reply) => replies.push(m));
    call.on('end', resolve);
    call.on('error', reject);
  });
  for (const r of requests) call.write(r);
  call.end();
  await done;
  return replies;
}

/** A reply as [request id, what it carries]: OUT's value for repeat, the text for tokens and identity's value. */
function summary(reply: Reply): [string, string | number] {
  const response = reply.infer_response;
  if (reply.error_message !== '') return [response.id, `error: ${reply.error_message}`];
  const out = response.raw_output_contents[0];
  if (out === undefined) return [response.id, 'empty'];
  if (response.outputs[0]?.datatype === 'BYTES') return [response.id, out.subarray(4).toString('utf8')];
  return [response.id, out.readInt32LE(0)];
}

const final = (reply: Reply | undefined): boolean | undefined => reply?.infer_response.parameters?.triton_final_response?.bool_param;

// ---------- tests ----------

describe('ModelStreamInfer through backends that stream', () => {
  it('a decoupled Triton model: one response per element of IN, with its values, in order, and no empty final part', async () => {
    const values = [3, -1, 2147483647, 0, 42];
    const replies = await streamAll([repeat('r1', values)]);
    expect(replies).toHaveLength(values.length);
    replies.forEach((reply, i) => {
      expect(reply.error_message).toBe('');
      expect(reply.infer_response).toMatchObject({ id: 'r1', model_name: 'repeat' });
      expect(reply.infer_response.outputs.map((o) => [o.name, o.datatype, o.shape])).toEqual([['OUT', 'INT32', ['1']], ['IDX', 'UINT32', ['1']]]);
      expect(reply.infer_response.raw_output_contents[0]!.equals(int32([values[i]!]))).toBe(true);
      expect(reply.infer_response.raw_output_contents[1]!.equals(uint32([i]))).toBe(true);
      expect(final(reply)).toBe(false);
    });
  });

  it('with triton_enable_empty_final_response, the request ends with an empty response flagged final, as Triton sends it', async () => {
    const ask = { parameters: { triton_enable_empty_final_response: { bool_param: true } } };
    const replies = await streamAll([
      { ...repeat('r2', [7, 8]), ...ask },
      repeat('r3', [9]),
      { ...identity('once', 4), ...ask }, // answered by a unary call, unflagged: the gateway ends it
      { ...tokens('words', 'a b'), ...ask }, // TorchServe's parts carry no flag: the gateway ends them
    ]);
    expect(replies.map(summary)).toEqual([['r2', 7], ['r2', 8], ['r2', 'empty'], ['r3', 9], ['once', 4], ['once', 'empty'], ['words', 'a'], ['words', 'b'], ['words', 'empty']]);
    expect(replies[2]!.infer_response.outputs).toEqual([]);
    expect(replies.map(final)).toEqual([false, false, true, false, undefined, true, undefined, undefined, true]);
  });

  it("a streaming TorchServe model: one response per part of the handler's answer, over gRPC and REST backends", async () => {
    const replies = await streamAll([tokens('t1', 'alpha beta gamma'), tokens('t2', 'one two', 'rest.tokens')]);
    expect(replies.map(summary)).toEqual([['t1', 'alpha'], ['t1', 'beta'], ['t1', 'gamma'], ['t2', 'one'], ['t2', 'two']]);
    for (const reply of replies) expect(reply.infer_response.model_name).toBe(reply.infer_response.id === 't1' ? 'tokens' : 'rest.tokens');
  });

  it('requests on one stream are answered in request order, every part of one before the next, however fast each is', async () => {
    const replies = await streamAll([
      repeat('slow', [1, 2, 3], [20, 20, 20]), // the slowest first: the others finish before it and wait
      tokens('words', 'x y'),
      identity('once', 5),
      repeat('fast', [9]),
      identity('rest-once', 6, 'rest.identity_int32'),
    ]);
    expect(replies.map(summary)).toEqual([
      ['slow', 1], ['slow', 2], ['slow', 3], ['words', 'x'], ['words', 'y'], ['once', 5], ['fast', 9], ['rest-once', 6],
    ]);
  });

  it('more requests than are processed at once: all answered, in order (the stream pauses and resumes)', async () => {
    const requests: Message[] = [];
    const expected: [string, number][] = [];
    for (let i = 0; i < 50; i++) {
      requests.push(repeat(`q${i}`, [i, 1000 + i]));
      expected.push([`q${i}`, i], [`q${i}`, 1000 + i]);
    }
    expect((await streamAll(requests)).map(summary)).toEqual(expected);
  });

  it('failures come in-band with error_message, each for its own request, and the stream goes on', async () => {
    const wrongType = { ...repeat('bad-input', [1]), inputs: [{ name: 'IN', datatype: 'INT64', shape: ['1'] }], raw_input_contents: [Buffer.alloc(8)] };
    const replies = await streamAll([
      repeat('before', [1, 2]),
      repeat('unknown', [1], undefined, 'nope'),
      wrongType,
      tokens('crash', 'a b', 'failing'),
      repeat('after', [3]),
    ]);
    expect(replies.map(summary)).toEqual([
      ['before', 1],
      ['before', 2],
      ['unknown', expect.stringMatching(/^error: .*unknown model 'nope'/)],
      ['bad-input', expect.stringMatching(/^error: .*data-type is 'INT64'/)],
      ['crash', 'error: Prediction failed'],
      ['after', 3],
    ]);
  });

  it('models that answer once still give one response per request, through gRPC and REST backends', async () => {
    const requests = Array.from({ length: 6 }, (_, i) => identity(`i${i}`, i * 11, i % 2 === 0 ? 'identity_int32' : 'rest.identity_int32'));
    const replies = await streamAll(requests);
    expect(replies.map(summary)).toEqual(requests.map((_, i) => [`i${i}`, i * 11]));
    // Both backends call such a model unary (no stream per request), so no final flag comes with the answers.
    expect(replies.map(final)).toEqual([undefined, undefined, undefined, undefined, undefined, undefined]);
  });

  it('a client cancelling mid-stream closes the backend streams of every request still open and ends its admission', async () => {
    const busyBackend = () => gateway.backendStatus().find((b) => b.name === 'triton-grpc')?.concurrency.inFlight;
    const call = openStream();
    const cancelled = new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
    const replies: Reply[] = [];
    call.on('data', (m: Reply) => replies.push(m));
    // The head request sends one part and then waits a minute; the second one waits behind it with its first part.
    call.write(repeat('head', [1, 2], [0, 60_000]));
    call.write(repeat('behind', [5, 6], [0, 60_000]));
    await expect.poll(() => replies.length).toBe(1);
    await expect.poll(() => triton.stats.activeStreams).toBe(2);
    expect(gateway.inFlight).toBe(1);
    expect(busyBackend()).toBe(2);
    call.cancel();
    expect((await cancelled).code).toBe(grpc.status.CANCELLED);
    await expect.poll(() => triton.stats.activeStreams).toBe(0);
    await expect.poll(() => gateway.inFlight).toBe(0);
    await expect.poll(() => busyBackend()).toBe(0);
    expect(summary(replies[0]!)).toEqual(['head', 1]);
  });
});

describe('ModelInfer (unary) on a decoupled model', () => {
  it("fails with the backend's own message: Triton's gRPC ModelInfer and its HTTP endpoint refuse decoupled models", async () => {
    const viaGrpc = await grpcError(client.unary('ModelInfer', repeat('u', [1])));
    expect(viaGrpc.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(viaGrpc.details).toBe("ModelInfer RPC doesn't support models with decoupled transaction policy");
    const viaRest = await grpcError(client.unary('ModelInfer', repeat('u', [1], undefined, 'rest.repeat')));
    expect(viaRest.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(viaRest.details).toMatch(/HTTP end point doesn't support models with decoupled transaction policy/);
  });
});
