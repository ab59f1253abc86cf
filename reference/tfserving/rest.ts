// TF Serving's REST API (the --rest_api_port one, 8501 in Docker) on bare node:http, so that what goes on the
// wire is exactly what this file writes. Routing, body formats and error statuses follow
// model_servers/http_rest_api_handler.cc and util/json_tensor.cc as summarised in PROTOCOLS.md §3.
import { Buffer } from 'node:buffer';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import {
  INT_RANGE, TF_NAME, fromBf16Bits, fromHalfBits, shortestDecimal, toBf16Bits, toHalfBits,
  type DType, type Element, type Tensor,
} from './dtypes.js';
import { HttpError, createBufferedServer } from '../common/http.js';
import { parseJson, stringifyJson, type JsonObject, type JsonValue } from './json.js';
import {
  ServingError, modelStatus, predict, resolveServable, resolveSignature,
  type ErrorCode, type InferHook, type PredictResult, type ServableRequest, type Signature, type TensorSpec,
} from './models.js';

// TF matches these with RE2::FullMatch and (?i), on the path without the query string.
const PREDICT_ROUTE = /^\/v1\/models\/([^/:]+)(?:\/versions\/(\d+)|\/labels\/([^/:]+))?:(classify|regress|predict)$/i;
const GET_ROUTE = /^\/v1\/models(?:\/([^/:]+))?(?:\/versions\/(\d+)|\/labels\/([^/:]+))?(?:\/(metadata))?$/i;
const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: 400, FAILED_PRECONDITION: 400, NOT_FOUND: 404, UNAVAILABLE: 503, INTERNAL: 500,
};

const invalidArg = (message: string): ServingError => new ServingError('INVALID_ARGUMENT', message);

export function createRestServer(onInfer: InferHook): Server {
  return createBufferedServer(readBody, (req, res, body, path) => handle(req, res, body, path, onInfer), sendError);
}

async function handle(req: IncomingMessage, res: ServerResponse, body: Buffer, path: string, onInfer: InferHook): Promise<void> {
  if (!/^\/v1\//i.test(path)) return send(res, 404); // TF dispatches only /v1/…; anything else is a bare 404
  const post = req.method === 'POST' ? PREDICT_ROUTE.exec(path) : null;
  if (post) {
    const servable = servableOf(post[1] ?? '', post[2], post[3]);
    const verb = (post[4] ?? '').toLowerCase();
    if (verb !== 'predict') throw new HttpError(501, `${verb} is not implemented by this reference server`);
    await onInfer();
    return sendJson(res, 200, predictJson(servable, body), { indent: 4, singleLineArrays: true });
  }
  const get = req.method === 'GET' ? GET_ROUTE.exec(path) : null;
  if (!get) throw new HttpError(400, `Malformed request: ${req.method ?? ''} ${path}`);
  if (get[1] === undefined) throw invalidArg('Missing model name in request.');
  const servable = servableOf(get[1], get[2], get[3]);
  if (get[4] !== undefined) return sendJson(res, 200, metadataJson(servable), { indent: 1 });
  const statuses = modelStatus(servable).map((s) => ({
    version: String(s.version),
    state: s.state,
    status: { error_code: 'OK', error_message: '' },
  }));
  return sendJson(res, 200, { model_version_status: statuses }, { indent: 1 });
}

function servableOf(name: string, version: string | undefined, label: string | undefined): ServableRequest {
  if (version !== undefined) return { name, version: BigInt(version).toString() };
  return label === undefined ? { name } : { name, label };
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

// ---- predict ---------------------------------------------------------------------------------------------------

function predictJson(servable: ServableRequest, body: Buffer): Record<string, unknown> {
  let json: JsonValue;
  try {
    json = parseJson(body.toString('utf8'));
  } catch (err) {
    throw invalidArg((err as Error).message);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw invalidArg('JSON Value: request body is not an object');
  const signatureName = json.signature_name ?? '';
  if (typeof signatureName !== 'string') throw invalidArg("'signature_name' must be a string");
  // Like TF, the servable and signature are looked up before the body is decoded: parsing needs their dtypes.
  const { model } = resolveServable(servable);
  const { signature } = resolveSignature(model, signatureName);
  const rows = json.instances !== undefined;
  if (rows && json.inputs !== undefined) {
    throw invalidArg("Not formatted correctly expecting only one of 'inputs' or 'instances' keys exclusively");
  }
  if (!rows && json.inputs === undefined) throw invalidArg("Missing 'inputs' or 'instances' key");
  const inputs = rows ? decodeInstances(json.instances ?? null, signature) : decodeColumns(json.inputs ?? null, signature);
  const result = predict({ servable, signatureName, inputs, outputFilter: [] });
  return rows ? { predictions: predictionsJson(result) } : { outputs: outputsJson(result) };
}

const isB64 = (v: JsonValue): v is { b64: string } =>
  v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 1 && typeof v.b64 === 'string';
const isNamed = (v: JsonValue): v is JsonObject => v !== null && typeof v === 'object' && !Array.isArray(v) && !isB64(v);

function specFor(signature: Signature, alias: string): TensorSpec {
  const spec = signature.inputs.find((s) => s.alias === alias);
  if (!spec) {
    const names = signature.inputs.map((s) => s.alias).join(',');
    throw invalidArg(`JSON object: does not have named input: ${alias} (signature inputs are {${names}})`);
  }
  return spec;
}

/** Row format: a list with one entry per batch item, stacked along a new dimension 0. */
function decodeInstances(instances: JsonValue, signature: Signature): Map<string, Tensor> {
  if (!Array.isArray(instances)) throw invalidArg("Expecting 'instances' to be an list/array");
  if (instances.length === 0) throw invalidArg("No values in 'instances' list");
  const columns = new Map<string, JsonValue[]>();
  const first = instances[0] ?? null;
  if (!isNamed(first)) {
    // Unnamed rows are the values of the signature's only input.
    const single = signature.inputs[0];
    if (signature.inputs.length !== 1 || !single) {
      throw invalidArg(`Expecting object but got list at item 0 of input list: the signature has ${signature.inputs.length} inputs`);
    }
    if (instances.some(isNamed)) throw invalidArg("Mixed named and unnamed values in 'instances' list");
    columns.set(single.alias, instances);
  } else {
    // Named rows: every row must name the same inputs as the first.
    for (const alias of Object.keys(first)) columns.set(alias, []);
    instances.forEach((row, i) => {
      if (!isNamed(row)) throw invalidArg(`Mixed named and unnamed values in 'instances' list at element: ${i}`);
      const keys = Object.keys(row);
      if (keys.length !== columns.size || keys.some((k) => !columns.has(k))) {
        throw invalidArg(`Failed to process element: ${i} of 'instances' list. JSON object: keys {${keys.join(',')}} differ from element 0's {${[...columns.keys()].join(',')}}`);
      }
      for (const [alias, value] of Object.entries(row)) columns.get(alias)?.push(value);
    });
  }
  const out = new Map<string, Tensor>();
  for (const [alias, values] of columns) {
    const spec = specFor(signature, alias);
    const rows = values.map((v, i) => jsonTensor(v, spec.dtype, `element: ${i} key: ${alias} of 'instances' list`));
    const rowShape = rows[0]?.shape ?? [];
    rows.forEach((r, i) => {
      if (r.shape.join() !== rowShape.join()) {
        throw invalidArg(`Expecting tensor size: [${rowShape.join(',')}] but got: [${r.shape.join(',')}] at element: ${i} key: ${alias} of 'instances' list`);
      }
    });
    out.set(alias, { dtype: spec.dtype, shape: [values.length, ...rowShape], values: rows.flatMap((r) => r.values) });
  }
  return out;
}

/** Columnar format: a bare tensor for a one-input signature, or an object of named tensors. */
function decodeColumns(inputs: JsonValue, signature: Signature): Map<string, Tensor> {
  const single = signature.inputs[0];
  if (!isNamed(inputs)) {
    if (signature.inputs.length !== 1 || !single) {
      throw invalidArg(`'inputs' must be an object of named tensors: the signature has ${signature.inputs.length} inputs`);
    }
    return new Map([[single.alias, jsonTensor(inputs, single.dtype, `key: ${single.alias} of 'inputs'`)]]);
  }
  return new Map(Object.entries(inputs).map(([alias, v]) => {
    const spec = specFor(signature, alias);
    return [alias, jsonTensor(v, spec.dtype, `key: ${alias} of 'inputs'`)];
  }));
}

/** A nested JSON list as a tensor: its nesting gives the shape, which must be rectangular. */
function jsonTensor(value: JsonValue, dtype: DType, where: string): Tensor {
  const shape: number[] = [];
  const values: Element[] = [];
  let leafDepth: number | undefined;
  const walk = (v: JsonValue, depth: number): void => {
    if (Array.isArray(v)) {
      if (shape.length === depth && leafDepth === undefined) shape.push(v.length);
      else if (shape[depth] !== v.length) throw invalidArg(`Failed to process ${where}. Error: the nested lists are not rectangular`);
      for (const x of v) walk(x, depth + 1);
      return;
    }
    if (leafDepth === undefined) leafDepth = depth;
    if (depth !== leafDepth || shape.length !== depth) throw invalidArg(`Failed to process ${where}. Error: the nested lists are not rectangular`);
    values.push(jsonElement(v, dtype, where));
  };
  walk(value, 0);
  return { dtype, shape, values };
}

function jsonElement(v: JsonValue, dtype: DType, where: string): Element {
  const wrong = (): never => {
    const kind = Array.isArray(v) ? 'Array' : v === null ? 'Null' : typeof v === 'object' ? 'Object' : typeof v === 'bigint' ? 'Number' : `${typeof v}`;
    throw invalidArg(`Failed to process ${where}. Error: JSON Value: ${stringifyJson(v)} Type: ${kind} is not of expected type: ${TF_NAME[dtype]}`);
  };
  if (dtype === 'DT_STRING') {
    if (typeof v === 'string') return Buffer.from(v, 'utf8');
    if (!isB64(v)) return wrong();
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(v.b64) || v.b64.length % 4 !== 0) {
      throw invalidArg(`Failed to process ${where}. Error: Unable to base64 decode`);
    }
    return Buffer.from(v.b64, 'base64');
  }
  if (dtype === 'DT_BOOL') return typeof v === 'boolean' ? v : wrong();
  if (typeof v !== 'number' && typeof v !== 'bigint') return wrong();
  const n = Number(v);
  switch (dtype) {
    case 'DT_FLOAT': return Math.fround(n);
    case 'DT_DOUBLE': return n;
    case 'DT_HALF': return toHalfBits(n); // TF reads numbers for half/bfloat16 and rounds them
    case 'DT_BFLOAT16': return toBf16Bits(n);
    default: {
      const range = INT_RANGE[dtype];
      const i = typeof v === 'bigint' ? v : Number.isInteger(v) ? BigInt(v) : undefined;
      if (i === undefined || !range || i < range[0] || i > range[1]) return wrong();
      return dtype === 'DT_INT64' || dtype === 'DT_UINT64' ? i : Number(i);
    }
  }
}

/** One element as TF writes it: floats in the shortest form that reads back as the same float32, strings as UTF-8 or b64. */
function elementJson(v: Element, dtype: DType, alias: string): unknown {
  switch (dtype) {
    case 'DT_STRING': {
      const bytes = v as Buffer;
      return alias.endsWith('_bytes') ? { b64: bytes.toString('base64') } : bytes.toString('utf8');
    }
    case 'DT_FLOAT': return float32Json(v as number);
    // Like TF, 16-bit floats are widened to float32 and written as such: the exact value, not the shortest half.
    case 'DT_HALF': return float32Json(fromHalfBits(v as number));
    case 'DT_BFLOAT16': return float32Json(fromBf16Bits(v as number));
    default: return v;
  }
}

const float32Json = (v: number): number => shortestDecimal(v, (c) => Math.fround(c) === v);

function nest(values: readonly unknown[], shape: readonly number[], offset = 0): unknown {
  if (shape.length === 0) return values[offset];
  const [dim = 0, ...rest] = shape;
  const stride = rest.reduce((n, d) => n * d, 1);
  return Array.from({ length: dim }, (_, i) => nest(values, rest, offset + i * stride));
}

function tensorJson(alias: string, t: Tensor): { shape: number[]; flat: unknown[] } {
  return { shape: t.shape, flat: t.values.map((v) => elementJson(v, t.dtype, alias)) };
}

/** Columnar reply: the bare tensor for a single output, else an object keyed by alias. */
function outputsJson(result: PredictResult): unknown {
  const tensors = result.outputs.map((o) => [o.alias, tensorJson(o.alias, o.tensor)] as const);
  const only = tensors.length === 1 ? tensors[0] : undefined;
  if (only) return nest(only[1].flat, only[1].shape);
  return Object.fromEntries(tensors.map(([alias, t]) => [alias, nest(t.flat, t.shape)]));
}

/** Row reply: the outputs split along dimension 0, which they must share; one output's rows are left unnamed. */
function predictionsJson(result: PredictResult): unknown[] {
  let batch: number | undefined;
  const columns = result.outputs.map((o) => {
    const { shape, flat } = tensorJson(o.alias, o.tensor);
    const [rows, ...rowShape] = shape;
    if (rows === undefined) throw invalidArg(`Tensor name: ${o.alias} has no shape information`);
    if (batch !== undefined && rows !== batch) {
      throw invalidArg(`Tensor name: ${o.alias} has inconsistent batch size: ${rows} expecting: ${batch}`);
    }
    batch = rows;
    const stride = rowShape.reduce((n, d) => n * d, 1);
    return { alias: o.alias, rows: Array.from({ length: rows }, (_, r) => nest(flat, rowShape, r * stride)) };
  });
  const only = columns.length === 1 ? columns[0] : undefined;
  if (only) return only.rows;
  return Array.from({ length: batch ?? 0 }, (_, r) => Object.fromEntries(columns.map((c) => [c.alias, c.rows[r]])));
}

// ---- metadata --------------------------------------------------------------------------------------------------

function tensorInfoJson(spec: TensorSpec): unknown {
  return {
    dtype: spec.dtype,
    tensor_shape: { dim: spec.shape.map((size) => ({ size: String(size), name: '' })), unknown_rank: false },
    name: `${spec.tensor}:0`,
  };
}

/** GetModelMetadataResponse as TF's REST handler prints it: the SignatureDefMap inline, without an "@type". */
function metadataJson(servable: ServableRequest): unknown {
  const { model, version } = resolveServable(servable);
  const signatures = Object.entries(model.signatures).map(([name, sig]) => [name, {
    inputs: Object.fromEntries(sig.inputs.map((s) => [s.alias, tensorInfoJson(s)])),
    outputs: Object.fromEntries(sig.outputs.map((s) => [s.alias, tensorInfoJson(s)])),
    method_name: sig.methodName,
  }]);
  return {
    model_spec: { name: model.name, signature_name: '', version: String(version) },
    metadata: { signature_def: { signature_def: Object.fromEntries(signatures) } },
  };
}

// ---- responses -------------------------------------------------------------------------------------------------

function send(res: ServerResponse, status: number, body?: string): void {
  const headers = body === undefined ? { 'Content-Length': 0 } : { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) };
  res.writeHead(status, headers);
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, value: unknown, format: { indent: number; singleLineArrays?: boolean }): void {
  send(res, status, stringifyJson(value, format));
}

function sendError(res: ServerResponse, err: unknown): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const status = err instanceof HttpError ? err.status : err instanceof ServingError ? HTTP_STATUS[err.code] : 500;
  const message = err instanceof Error ? err.message : String(err);
  // Errors are {"error": "<msg>"}, pretty-printed by rapidjson's PrettyWriter (4-space indent).
  sendJson(res, status, { error: status === 500 && !(err instanceof ServingError) ? `internal error: ${message}` : message }, { indent: 4 });
}
