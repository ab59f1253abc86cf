// The reference TorchServe's model store: deterministic handlers that, like real TorchServe handlers, take the
// request's named byte inputs and return bytes. The math matches reference/triton/models.ts, so the same
// request through either backend gives the same numbers. Nothing here knows about HTTP or gRPC: rest.ts and
// grpc.ts build a HandlerRequest and map TorchServeError to their own status codes.
import { Buffer } from 'node:buffer';

/**
 * An error as TorchServe reports it: the HTTP status, the Java exception's simple name (the "type" of the REST
 * error JSON) and the message. `frontend` marks errors raised by the frontend before a worker saw the job
 * (unknown model or version, no workers, missing model name): real TorchServe's gRPC service answers those
 * with INTERNAL whatever the HTTP status, while worker errors go through GRPCUtils' HTTP-to-gRPC table.
 */
export class TorchServeError extends Error {
  override readonly name = 'TorchServeError';
  constructor(readonly status: number, readonly type: string, message: string, readonly frontend = false) {
    super(message);
  }
}

const badRequest = (message: string): TorchServeError => new TorchServeError(400, 'BadRequestException', message);

/** An inference request as received, before authentication or decoding: for stats and latency injection. */
export interface ReceivedRequest {
  /** REST headers (lower-case names, repeated ones joined with ", ") or gRPC metadata (binary values base64). */
  headers: Record<string, string>;
  /** REST body bytes, or the gRPC request message exactly as it came off the wire. */
  body: Buffer;
}

/** Called by a front end for every prediction request it receives; index.ts counts, records and delays. */
export type InferHook = (request: ReceivedRequest) => Promise<void>;

/** What a handler gets: the named inputs (REST raw body arrives as "body"; gRPC passes its `input` map). */
export interface HandlerRequest {
  input: ReadonlyMap<string, Buffer>;
  /** The REST request's Content-Type, if any. */
  contentType?: string;
}

/** What a handler returns. `parts` is set only by streaming handlers; `body` is then the unary (whole) answer. */
export interface HandlerReply {
  body: Buffer;
  contentType?: string;
  parts?: Buffer[];
}

export interface Model {
  readonly name: string;
  /** Registered versions; `defaultVersion` is what a request without a version gets. */
  readonly versions: readonly string[];
  readonly defaultVersion: string;
  /** 0 models a registered model whose workers are all gone: every prediction is refused with 503. */
  readonly workers: number;
  /** Input names a gRPC request may send as separate map keys, each holding that input's JSON. */
  readonly inputs: readonly string[];
  handle(version: string, request: HandlerRequest): HandlerReply;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
const isObject = (v: Json | undefined): v is { [key: string]: Json } => typeof v === 'object' && v !== null && !Array.isArray(v);

const JSON_TYPE = 'application/json';
const jsonReply = (value: unknown): HandlerReply => ({ body: Buffer.from(JSON.stringify(value), 'utf8'), contentType: JSON_TYPE });

function parseJson(bytes: Buffer, what: string): Json {
  try {
    return JSON.parse(bytes.toString('utf8')) as Json;
  } catch (err) {
    throw badRequest(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * The JSON a JSON handler works on. A request whose map has keys named after the model's inputs gives one
 * JSON document per input, assembled into an object; otherwise the whole document is under "data" or "body"
 * (what the stock TorchServe handlers read). For a model without declared inputs, any other keys are taken
 * as inputs, so identity_json can round-trip a per-key map too.
 */
export function requestJson(model: Model, request: HandlerRequest): Json {
  const { input } = request;
  let named = [...input.keys()].filter((k) => model.inputs.includes(k));
  if (named.length === 0) {
    const whole = input.get('data') ?? input.get('body');
    if (whole !== undefined) return parseJson(whole, 'request body');
    if (input.size === 0) throw badRequest('request has no input');
    if (model.inputs.length > 0) {
      const expected = ['data', 'body', ...model.inputs].map((n) => `"${n}"`).join(', ');
      throw badRequest(`expected input keys among ${expected}, got ${[...input.keys()].map((k) => `"${k}"`).join(', ')}`);
    }
    named = [...input.keys()];
  }
  const out: { [key: string]: Json } = {};
  for (const name of named) out[name] = parseJson(input.get(name) ?? Buffer.alloc(0), `input "${name}"`);
  return out;
}

/** A [rows][width] matrix of numbers, or a 400 naming what is wrong. */
function matrix(value: Json | undefined, name: string, width: number, check: (n: number) => boolean, kind: string): number[][] {
  if (!Array.isArray(value)) throw badRequest(`"${name}" must be a list of rows, got ${JSON.stringify(value) ?? 'nothing'}`);
  return value.map((row, r) => {
    if (!Array.isArray(row) || row.length !== width) throw badRequest(`"${name}" row ${r} must be a list of ${width} ${kind}`);
    return row.map((v, c) => {
      if (typeof v !== 'number' || !check(v)) throw badRequest(`"${name}"[${r}][${c}] must be ${kind.replace(/s$/, '')}, got ${JSON.stringify(v)}`);
      return v;
    });
  });
}

const LINEAR_W = [[0.5, -1, 0.25], [1.5, 0.5, -0.75], [-0.5, 2, 1], [1, -0.25, 0.5]] as const;
/** TorchServe versions "1.0"/"2.0" carry the Triton reference's version 1/2 biases. */
const LINEAR_BIAS: Readonly<Record<string, readonly number[]>> = { '1.0': [0.1, -0.2, 0.3], '2.0': [1, 0, -1] };

/**
 * SCORES = x·W + b in float32, in the Triton reference's fixed order (x is rounded to float32 first, as an
 * FP32 tensor would be): acc = f32(acc + f32(x[k]*W[k][j])) over k, then acc = f32(acc + f32(b[j])).
 * CLASS is the argmax, the first maximum winning. JSON prints each float32 as its double's shortest repr.
 */
function runLinear(version: string, json: Json): HandlerReply {
  const rows = Array.isArray(json) ? json : isObject(json) ? json.INPUT0 ?? json.data : undefined;
  if (rows === undefined) throw badRequest('expected {"INPUT0": [[4 floats], ...]}, {"data": [[...]]} or [[...]]');
  const x = matrix(rows, 'INPUT0', 4, Number.isFinite, 'numbers');
  const bias = LINEAR_BIAS[version] ?? [];
  const scores: number[][] = [];
  const classes: number[] = [];
  for (const row of x) {
    const out: number[] = [];
    let best = 0;
    for (let j = 0; j < 3; j++) {
      let acc = 0;
      for (let k = 0; k < 4; k++) acc = Math.fround(acc + Math.fround(Math.fround(row[k] ?? 0) * (LINEAR_W[k]?.[j] ?? 0)));
      acc = Math.fround(acc + Math.fround(bias[j] ?? 0));
      out.push(acc);
      if (acc > (out[best] ?? -Infinity)) best = j;
    }
    scores.push(out);
    classes.push(best);
  }
  return jsonReply({ SCORES: scores, CLASS: classes });
}

const isInt32 = (n: number): boolean => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31;

function runSimple(json: Json): HandlerReply {
  if (!isObject(json)) throw badRequest('expected {"INPUT0": [[16 ints]], "INPUT1": [[16 ints]]}');
  const a = matrix(json.INPUT0, 'INPUT0', 16, isInt32, 'int32 numbers');
  const b = matrix(json.INPUT1, 'INPUT1', 16, isInt32, 'int32 numbers');
  if (a.length !== b.length) throw badRequest(`INPUT0 has ${a.length} rows but INPUT1 has ${b.length}`);
  const sums = a.map((row, r) => row.map((v, c) => (v + (b[r]?.[c] ?? 0)) | 0)); // '| 0' is int32 wrap-around
  const diffs = a.map((row, r) => row.map((v, c) => (v - (b[r]?.[c] ?? 0)) | 0));
  return jsonReply({ OUTPUT0: sums, OUTPUT1: diffs });
}

const TEXT_TYPE = 'text/plain; charset=utf-8';

/** One part per whitespace-separated token; the unary answer is the text as given. */
function runStreamTokens(json: Json): HandlerReply {
  const text = isObject(json) ? json.text : undefined;
  if (typeof text !== 'string') throw badRequest('expected {"text": "<string>"}');
  const parts = text.split(/\s+/).filter((t) => t !== '').map((t) => Buffer.from(t, 'utf8'));
  return { body: Buffer.from(text, 'utf8'), contentType: TEXT_TYPE, parts };
}

function jsonModel(name: string, inputs: readonly string[], run: (version: string, json: Json) => HandlerReply, versions = ['1.0']): Model {
  const model: Model = {
    name,
    versions,
    defaultVersion: versions[versions.length - 1] ?? '1.0',
    workers: 1,
    inputs,
    handle: (version, request) => run(version, requestJson(model, request)),
  };
  return model;
}

const MODEL_LIST: readonly Model[] = [
  jsonModel('linear', ['INPUT0'], runLinear, ['1.0', '2.0']),
  jsonModel('simple', ['INPUT0', 'INPUT1'], (_v, json) => runSimple(json)),
  {
    name: 'echo',
    versions: ['1.0'],
    defaultVersion: '1.0',
    workers: 1,
    inputs: [],
    // The exact bytes back; over gRPC "data", else "body", else the only key.
    handle: (_v, { input, contentType }) => {
      const body = input.get('data') ?? input.get('body') ?? (input.size === 1 ? [...input.values()][0] : undefined);
      if (body === undefined) throw badRequest('echo takes one input, "data" or "body"');
      return { body, ...(contentType ? { contentType } : {}) };
    },
  },
  // JSON.parse/stringify round trip: integers beyond 2^53 lose precision, as they would in a Python handler
  // that parsed into floats; -0 becomes 0. Key order and strings survive.
  jsonModel('identity_json', [], (_v, json) => jsonReply(json)),
  jsonModel('stream_tokens', ['text'], (_v, json) => runStreamTokens(json)),
  {
    name: 'failing',
    versions: ['1.0'],
    defaultVersion: '1.0',
    workers: 1,
    inputs: [],
    // Raises before looking at its input, so any request fails the way a crashing handler does.
    handle: () => {
      throw new TorchServeError(503, 'InternalServerException', 'Prediction failed');
    },
  },
  { ...jsonModel('unready', [], () => jsonReply(null)), workers: 0 },
];

export const MODELS: ReadonlyMap<string, Model> = new Map(MODEL_LIST.map((m) => [m.name, m]));

/** The model and version a request addresses; an empty or absent version is the default one. */
export function resolveModel(name: string, version?: string): { model: Model; version: string } {
  if (name === '') throw new TorchServeError(400, 'BadRequestException', 'Parameter model_name is required.', true);
  const model = MODELS.get(name);
  if (!model) throw new TorchServeError(404, 'ModelNotFoundException', `Model not found: ${name}`, true);
  if (!version) return { model, version: model.defaultVersion };
  if (!model.versions.includes(version)) {
    throw new TorchServeError(404, 'ModelVersionNotFoundException', `Model version: ${version} does not exist for model: ${name}`, true);
  }
  return { model, version };
}

/** Runs a prediction the way the frontend would queue it: resolve, refuse if no worker, then the handler. */
export function predict(name: string, version: string | undefined, request: HandlerRequest): HandlerReply {
  const resolved = resolveModel(name, version);
  if (resolved.model.workers === 0) {
    throw new TorchServeError(503, 'ServiceUnavailableException',
      `Model "${name}" has no worker to serve inference request. Please use scale workers API to add workers. `
      + 'If this is a sequence inference, please check if it is closed, or expired; or exceeds maxSequenceJobQueueSize', true);
  }
  return resolved.model.handle(resolved.version, request);
}

/** The management API's describe-model answer (a subset of DescribeModelResponse's fields). */
export function describeModel(name: string, version?: string): object[] {
  const model = MODELS.get(name);
  if (!model) throw new TorchServeError(404, 'ModelNotFoundException', `Model not found: ${name}`);
  const versions = version === 'all' ? model.versions : [resolveModel(name, version).version];
  return versions.map((v) => ({
    modelName: model.name,
    modelVersion: v,
    modelUrl: `${model.name}.mar`,
    runtime: 'python',
    minWorkers: model.workers,
    maxWorkers: model.workers,
    batchSize: 1,
    maxBatchDelay: 100,
    responseTimeout: 120,
    loadedAtStartup: true,
    workers: Array.from({ length: model.workers }, (_, i) => ({
      id: String(9000 + i),
      startTime: '2024-01-01T00:00:00.000Z',
      status: 'READY',
      memoryUsage: 0,
      pid: 4242 + i,
      gpu: false,
      gpuUsage: 'N/A',
    })),
    jobQueueStatus: { remainingCapacity: 1000, pendingRequests: 0 },
  }));
}

/** The management API's list-models answer. */
export function listModels(): { models: { modelName: string; modelUrl: string }[] } {
  return { models: [...MODELS.keys()].sort().map((m) => ({ modelName: m, modelUrl: `${m}.mar` })) };
}
