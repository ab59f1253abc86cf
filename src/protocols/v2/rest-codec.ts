import { GatewayError, invalidArgument } from '../../core/errors.js';
import type { InferRequest, InferResponse, ModelMetadata, RequestedOutput, TensorMetadata } from '../../core/inference.js';
import type { Tensor } from '../../core/tensor.js';
import {
  BlobReader,
  booleanParameter,
  isObject,
  kindOf,
  optionalString,
  parseJsonObject,
  parseParameters,
  parseTensors,
  type JsonObject,
} from './rest-decode.js';
import { parametersToJson, valuesToJson } from './rest-values.js';

/**
 * The KServe v2 REST wire format (JSON plus Triton's binary tensor extension)
 * to and from the canonical types. One codec for both directions: the
 * gateway's REST API decodes requests and encodes responses, the Triton REST
 * adapter encodes requests and decodes responses.
 *
 * The transport parameters (`binary_data_size`, `binary_data`,
 * `binary_data_output`) are consumed here and never reach canonical values;
 * every other parameter passes through unchanged.
 */

/** How a client asked for outputs: binary (binary tensor extension) or JSON, per output name. */
export interface OutputEncoding {
  readonly binaryByDefault: boolean;
  readonly binaryOutputs: ReadonlySet<string>;
  readonly jsonOutputs: ReadonlySet<string>;
}

const NO_NAMES: ReadonlySet<string> = new Set();
export const JSON_OUTPUTS: OutputEncoding = { binaryByDefault: false, binaryOutputs: NO_NAMES, jsonOutputs: NO_NAMES };
export const BINARY_OUTPUTS: OutputEncoding = { binaryByDefault: true, binaryOutputs: NO_NAMES, jsonOutputs: NO_NAMES };

/** An encoded HTTP body: `headerLength` set means the binary extension was used (send `Inference-Header-Content-Length`). */
export interface EncodedBody {
  readonly chunks: readonly Buffer[];
  readonly byteLength: number;
  readonly contentType: string;
  readonly headerLength?: number;
}

const BINARY_DATA_SIZE = 'binary_data_size';
const BINARY_DATA = 'binary_data';
const BINARY_DATA_OUTPUT = 'binary_data_output';
const JSON_TYPE = 'application/json';
const BINARY_TYPE = 'application/octet-stream';

function isBinaryOutput(encoding: OutputEncoding, name: string): boolean {
  if (encoding.jsonOutputs.has(name)) return false;
  return encoding.binaryOutputs.has(name) || encoding.binaryByDefault;
}

// ---- requests -------------------------------------------------------------

export function decodeInferRequest(
  body: Buffer,
  headerLength: number | undefined,
  model: string,
  version: string,
): { request: InferRequest; outputEncoding: OutputEncoding } {
  if (headerLength === 0) {
    // Triton's "raw binary request" names no input; mapping it needs the model's metadata, which a codec does not have.
    throw new GatewayError(
      'UNIMPLEMENTED',
      'raw binary requests (Inference-Header-Content-Length: 0) are not supported; send a JSON header describing the inputs',
    );
  }
  const { json, blobs } = splitBody(body, headerLength);
  const { body: raw, exact } = parseJsonObject(json, 'the inference request');
  const id = optionalString(raw, 'id', 'the inference request');
  const params = parseParameters(raw.parameters, 'the inference request', [BINARY_DATA_OUTPUT]);
  const binaryByDefault = booleanParameter(params, BINARY_DATA_OUTPUT, 'the inference request') ?? false;
  const inputs = parseTensors(raw.inputs, 'input', { blobs, exact });
  blobs?.finish();
  const outputs = parseRequestedOutputs(raw.outputs);
  const request: InferRequest = {
    model,
    version,
    ...(id !== undefined ? { id } : {}),
    ...(params.rest !== undefined ? { parameters: params.rest } : {}),
    inputs,
    ...(outputs !== undefined ? { outputs: outputs.outputs } : {}),
  };
  return {
    request,
    outputEncoding: {
      binaryByDefault,
      binaryOutputs: outputs?.binary ?? NO_NAMES,
      jsonOutputs: outputs?.json ?? NO_NAMES,
    },
  };
}

interface ParsedOutputs {
  readonly outputs: RequestedOutput[];
  readonly binary: Set<string>;
  readonly json: Set<string>;
}

function parseRequestedOutputs(raw: unknown): ParsedOutputs | undefined {
  if (raw === undefined) return undefined;
  if (!Array.isArray(raw)) throw invalidArgument(`'outputs' must be an array, got ${kindOf(raw)}`);
  const parsed: ParsedOutputs = { outputs: [], binary: new Set(), json: new Set() };
  for (let i = 0; i < raw.length; i++) {
    const entry: unknown = raw[i];
    if (!isObject(entry)) throw invalidArgument(`requested output ${i} must be an object, got ${kindOf(entry)}`);
    const name = entry.name;
    if (typeof name !== 'string' || name === '') throw invalidArgument(`requested output ${i}: 'name' must be a non-empty string`);
    const what = `requested output '${name}'`;
    if (parsed.outputs.some((o) => o.name === name)) throw invalidArgument(`${what} appears more than once`);
    const params = parseParameters(entry.parameters, what, [BINARY_DATA]);
    const binary = booleanParameter(params, BINARY_DATA, what);
    if (binary === true) parsed.binary.add(name);
    if (binary === false) parsed.json.add(name);
    parsed.outputs.push(params.rest !== undefined ? { name, parameters: params.rest } : { name });
  }
  return parsed;
}

export function encodeInferRequest(req: InferRequest, opts: { binaryInputs: boolean; outputs: OutputEncoding }): EncodedBody {
  const { binaryInputs, outputs: encoding } = opts;
  const blobs: Buffer[] = [];
  let s = '{';
  if (req.id !== undefined) s += `"id":${JSON.stringify(req.id)},`;
  const params = parametersToJson(req.parameters, BINARY_DATA_OUTPUT, encoding.binaryByDefault ? [BINARY_DATA_OUTPUT, 'true'] : undefined);
  if (params !== '') s += `"parameters":${params},`;
  s += '"inputs":[';
  req.inputs.forEach((input, i) => {
    if (i > 0) s += ',';
    s += tensorToJson(input, binaryInputs, `input '${input.name}'`);
    if (binaryInputs) blobs.push(input.data);
  });
  s += ']';
  if (req.outputs !== undefined) {
    s += ',"outputs":[';
    req.outputs.forEach((output, i) => {
      if (i > 0) s += ',';
      s += requestedOutputToJson(output, encoding);
    });
    s += ']';
  }
  s += '}';
  return encodedBody(s, blobs, binaryInputs && req.inputs.length > 0, BINARY_TYPE);
}

function requestedOutputToJson(output: RequestedOutput, encoding: OutputEncoding): string {
  // Only a choice that differs from the request-wide default needs saying.
  const binary = isBinaryOutput(encoding, output.name);
  const extra = binary !== encoding.binaryByDefault ? ([BINARY_DATA, String(binary)] as const) : undefined;
  const params = parametersToJson(output.parameters, BINARY_DATA, extra);
  return `{"name":${JSON.stringify(output.name)}${params !== '' ? `,"parameters":${params}` : ''}}`;
}

// ---- responses ------------------------------------------------------------

export function encodeInferResponse(resp: InferResponse, encoding: OutputEncoding): EncodedBody {
  const blobs: Buffer[] = [];
  let s = `{"model_name":${JSON.stringify(resp.model)}`;
  if (resp.version !== '') s += `,"model_version":${JSON.stringify(resp.version)}`;
  if (resp.id !== undefined) s += `,"id":${JSON.stringify(resp.id)}`;
  const params = parametersToJson(resp.parameters, BINARY_DATA_OUTPUT);
  if (params !== '') s += `,"parameters":${params}`;
  s += ',"outputs":[';
  resp.outputs.forEach((output, i) => {
    if (i > 0) s += ',';
    const binary = isBinaryOutput(encoding, output.name);
    s += tensorToJson(output, binary, `output '${output.name}'`);
    if (binary) blobs.push(output.data);
  });
  s += ']}';
  return encodedBody(s, blobs, blobs.length > 0, BINARY_TYPE);
}

export function decodeInferResponse(body: Buffer, headerLength: number | undefined): InferResponse {
  const { json, blobs } = splitBody(body, headerLength);
  const { body: raw, exact } = parseJsonObject(json, 'the inference response');
  const what = 'the inference response';
  const model = optionalString(raw, 'model_name', what) ?? '';
  const version = optionalString(raw, 'model_version', what) ?? '';
  const id = optionalString(raw, 'id', what);
  const params = parseParameters(raw.parameters, what, []);
  const outputs = parseTensors(raw.outputs, 'output', { blobs, exact });
  blobs?.finish();
  return {
    model,
    version,
    ...(id !== undefined ? { id } : {}),
    ...(params.rest !== undefined ? { parameters: params.rest } : {}),
    outputs,
  };
}

// ---- shared ---------------------------------------------------------------

/** `{"name","datatype","shape","parameters"?,"data"?}`: binary tensors carry `binary_data_size` instead of `data`. */
function tensorToJson(t: Tensor, binary: boolean, what: string): string {
  let s = `{"name":${JSON.stringify(t.name)},"datatype":"${t.datatype}","shape":[${t.shape.join(',')}]`;
  const params = parametersToJson(t.parameters, BINARY_DATA_SIZE, binary ? [BINARY_DATA_SIZE, String(t.data.length)] : undefined);
  if (params !== '') s += `,"parameters":${params}`;
  if (!binary) s += `,"data":${valuesToJson(t.datatype, t.data, what)}`;
  return s + '}';
}

function encodedBody(json: string, blobs: Buffer[], binary: boolean, binaryType: string): EncodedBody {
  const header = Buffer.from(json, 'utf8');
  if (!binary) return { chunks: [header], byteLength: header.length, contentType: JSON_TYPE };
  let byteLength = header.length;
  for (const b of blobs) byteLength += b.length;
  return { chunks: [header, ...blobs], byteLength, contentType: binaryType, headerLength: header.length };
}

/** The JSON section and, with the binary extension, a reader over the blobs after it. */
function splitBody(body: Buffer, headerLength: number | undefined): { json: Buffer; blobs: BlobReader | undefined } {
  if (headerLength === undefined) return { json: body, blobs: undefined };
  if (!Number.isSafeInteger(headerLength) || headerLength < 0 || headerLength > body.length) {
    throw invalidArgument(`Inference-Header-Content-Length ${headerLength} is outside the body of ${body.length} bytes`);
  }
  return { json: body.subarray(0, headerLength), blobs: new BlobReader(body.subarray(headerLength)) };
}

/** The `Inference-Header-Content-Length` header: an integer in [0, bodyLength], or absent. */
export function parseHeaderLength(value: string | undefined, bodyLength: number): number | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  const n = /^\d{1,15}$/.test(trimmed) ? Number(trimmed) : Number.NaN;
  if (!(n <= bodyLength)) {
    const shown = JSON.stringify(value.length > 32 ? `${value.slice(0, 32)}…` : value);
    throw invalidArgument(
      `Inference-Header-Content-Length ${shown} must be an integer between 0 and the body length (${bodyLength} bytes)`,
    );
  }
  return n;
}

// ---- metadata and errors --------------------------------------------------

export function encodeModelMetadata(m: ModelMetadata): string {
  const tensor = (t: TensorMetadata) => ({ name: t.name, datatype: t.datatype, shape: t.shape });
  return JSON.stringify({
    name: m.name,
    versions: m.versions,
    platform: m.platform,
    inputs: m.inputs.map(tensor),
    outputs: m.outputs.map(tensor),
  });
}

export function decodeModelMetadata(body: Buffer): ModelMetadata {
  const what = 'the model metadata';
  const { body: raw } = parseJsonObject(body, what);
  const name = optionalString(raw, 'name', what) ?? '';
  const versions = raw.versions ?? [];
  if (!Array.isArray(versions) || !versions.every((v) => typeof v === 'string')) {
    throw invalidArgument(`${what}: 'versions' must be an array of strings`);
  }
  return {
    name,
    versions,
    platform: optionalString(raw, 'platform', what) ?? '',
    inputs: parseTensorMetadata(raw, 'inputs'),
    outputs: parseTensorMetadata(raw, 'outputs'),
  };
}

function parseTensorMetadata(raw: JsonObject, field: 'inputs' | 'outputs'): TensorMetadata[] {
  const list = raw[field] ?? [];
  if (!Array.isArray(list)) throw invalidArgument(`the model metadata: '${field}' must be an array, got ${kindOf(list)}`);
  return list.map((t: unknown, i) => {
    const what = `the model metadata: ${field}[${i}]`;
    if (!isObject(t)) throw invalidArgument(`${what} must be an object, got ${kindOf(t)}`);
    const name = optionalString(t, 'name', what);
    const datatype = optionalString(t, 'datatype', what);
    const shape = t.shape;
    if (name === undefined || datatype === undefined) throw invalidArgument(`${what}: 'name' and 'datatype' are required`);
    if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= -1)) {
      throw invalidArgument(`${what}: 'shape' must be an array of integers (-1 for a variable dimension)`);
    }
    return { name, datatype, shape: shape as number[] };
  });
}

export function encodeError(message: string): string {
  return JSON.stringify({ error: message });
}

const MAX_ERROR_EXCERPT = 200;

/** The `error` field of a JSON error body, else a short excerpt of the body's text, else `HTTP <status>`. */
export function decodeErrorMessage(body: Buffer, status: number): string {
  const text = body.toString('utf8', 0, Math.min(body.length, 64 * 1024));
  try {
    const parsed: unknown = JSON.parse(text);
    if (isObject(parsed) && typeof parsed.error === 'string' && parsed.error !== '') return parsed.error;
  } catch {
    // not JSON: fall back to the text itself
  }
  const excerpt = text.replace(/\s+/g, ' ').trim();
  if (excerpt === '') return `HTTP ${status}`;
  return excerpt.length > MAX_ERROR_EXCERPT ? `${excerpt.slice(0, MAX_ERROR_EXCERPT)}…` : excerpt;
}
