// KServe v2 REST front end with Triton's binary tensor extension, on bare node:http so that what goes on the
// wire is exactly what this file writes.
import { Buffer } from 'node:buffer';
import http from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import zlib from 'node:zlib';
import { HttpError, createBufferedServer, readLimitedBody } from '../common/http.js';
import { parseJson, stringifyJson, type JsonObject, type JsonValue } from './json.js';
import {
  SERVER_METADATA, TritonError, infer, modelMetadata, refuseDecoupled, repositoryIndex, resolveModel, resolveServable,
  type ErrorCode, type InferHook, type InferRequest, type InferResult, type RequestedOutput,
} from './models.js';
import {
  ELEMENT_BYTES, decodeElements, elementCount, encodeElements, isDatatype, joinBytes, type Element, type Tensor,
} from './tensor.js';

const MAX_BODY_BYTES = 64 * 1024 * 1024; // Triton's default HTTP input limit
const MAX_HEADER_LENGTH = 2 ** 31 - 1; // Triton parses Inference-Header-Content-Length as an int32
const MODEL_ROUTE = /^\/v2\/models\/([^/]+)(?:\/versions\/([0-9]+))?(?:\/(infer|ready))?$/;
const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = { INVALID_ARG: 400, NOT_FOUND: 404, UNAVAILABLE: 503, UNSUPPORTED: 501, INTERNAL: 500 };

const badRequest = (message: string): HttpError => new HttpError(400, message);

/** Request headers as one string each (lower-case names, repeated ones joined with ", "). */
function flattenHeaders(headers: IncomingMessage['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) out[name] = Array.isArray(value) ? value.join(', ') : value;
  return out;
}

export function createRestServer(onInfer: InferHook): Server {
  return createBufferedServer(readBody, (req, res, body, path) => handle(req, res, body, path, onInfer), sendError);
}

async function handle(req: IncomingMessage, res: ServerResponse, body: Buffer, path: string, onInfer: InferHook): Promise<void> {
  if (path === '/v2') {
    allow(req, 'GET');
    return sendJson(res, 200, SERVER_METADATA);
  }
  if (path === '/v2/health/live' || path === '/v2/health/ready') {
    allow(req, 'GET');
    return send(res, 200);
  }
  if (path === '/v2/repository/index') {
    allow(req, 'POST');
    return sendJson(res, 200, repositoryIndex(readyOnly(body)));
  }
  const route = MODEL_ROUTE.exec(path);
  if (!route) throw new HttpError(404, 'Not Found');
  const name = decodeSegment(route[1] ?? '');
  const version = route[2];
  if (route[3] === 'infer') {
    allow(req, 'POST');
    await onInfer(flattenHeaders(req.headers));
    // Like Triton, an unknown, unready or decoupled model fails before the body is parsed.
    refuseDecoupled(resolveServable(name, version).model, 'HTTP end point');
    const decoded = decodeInferRequest(body, req.headers['inference-header-content-length'], name, version);
    const reply = encodeInferResponse(infer(decoded.request), decoded);
    return send(res, 200, reply.body, reply.headers);
  }
  allow(req, 'GET');
  if (route[3] === 'ready') {
    const { model } = resolveModel(name, version);
    return model.ready ? send(res, 200) : sendJson(res, 400, { error: 'Model version not ready' });
  }
  return sendJson(res, 200, modelMetadata(name, version));
}

function allow(req: IncomingMessage, method: string): void {
  if (req.method !== method) throw new HttpError(405, 'Method Not Allowed');
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw badRequest(`malformed model name in path: '${segment}'`);
  }
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const raw = await readLimitedBody(req, MAX_BODY_BYTES, (size) => badRequest(`request body of ${size} bytes exceeds the ${MAX_BODY_BYTES} byte limit`));
  return decompress(req.headers['content-encoding'], raw);
}

function decompress(encoding: string | undefined, raw: Buffer): Buffer {
  const kind = (encoding ?? 'identity').trim().toLowerCase();
  if (kind === 'identity' || kind === '') return raw;
  if (kind !== 'gzip' && kind !== 'deflate') throw badRequest(`unsupported Content-Encoding '${kind}'`);
  try {
    const options = { maxOutputLength: MAX_BODY_BYTES };
    return kind === 'gzip' ? zlib.gunzipSync(raw, options) : zlib.inflateSync(raw, options);
  } catch (err) {
    throw badRequest(`failed to decompress the ${kind} request body: ${(err as Error).message}`);
  }
}

function parseBody(bytes: Buffer): JsonValue {
  try {
    return parseJson(bytes.toString('utf8'));
  } catch (err) {
    throw badRequest(`failed to parse the request JSON buffer: ${(err as Error).message}`);
  }
}

function asObject(value: JsonValue | undefined, what: string): JsonObject {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw badRequest(`${what} must be a JSON object`);
  return value;
}

function asBool(value: JsonValue | undefined, what: string): boolean | undefined {
  if (value !== undefined && typeof value !== 'boolean') throw badRequest(`${what} must be a boolean`);
  return value;
}

function asCount(value: JsonValue | undefined, what: string): number {
  const n = typeof value === 'bigint' ? Number.NaN : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw badRequest(`${what} must be a non-negative integer`);
  return n;
}

function readyOnly(body: Buffer): boolean {
  if (body.length === 0) return false;
  return asBool(asObject(parseBody(body), 'repository index request').ready, "'ready'") ?? false;
}

interface DecodedInfer {
  request: InferRequest;
  id?: string;
  /** Whether an output goes back as a binary blob rather than JSON `data`. */
  binaryOutput(name: string): boolean;
}

function decodeInferRequest(
  body: Buffer, header: string | string[] | undefined, modelName: string, modelVersion: string | undefined,
): DecodedInfer {
  try {
    return decodeInferBody(body, header, modelName, modelVersion);
  } catch (err) {
    // A decoder can only fail on the client's bytes (even a stack overflow on absurdly nested data): a 400.
    if (err instanceof HttpError || err instanceof TritonError) throw err;
    throw badRequest(`malformed inference request: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function decodeInferBody(
  body: Buffer, header: string | string[] | undefined, modelName: string, modelVersion: string | undefined,
): DecodedInfer {
  if (header === undefined) return decodeJsonRequest(parseBody(body), Buffer.alloc(0), modelName, modelVersion);
  const value = Array.isArray(header) ? header.join(',') : header.trim();
  const jsonLength = /^[0-9]+$/.test(value) ? Number(value) : Number.NaN;
  if (!(jsonLength <= body.length && jsonLength <= MAX_HEADER_LENGTH)) {
    throw badRequest(`Unable to parse Inference-Header-Content-Length '${value}': expected an integer in [0, ${body.length}]`);
  }
  if (jsonLength === 0) return decodeRawRequest(body, modelName, modelVersion);
  return decodeJsonRequest(parseBody(body.subarray(0, jsonLength)), body.subarray(jsonLength), modelName, modelVersion);
}

function decodeJsonRequest(json: JsonValue, blobs: Buffer, modelName: string, modelVersion: string | undefined): DecodedInfer {
  const root = asObject(json, 'inference request');
  if (root.id !== undefined && typeof root.id !== 'string') throw badRequest("'id' must be a string");
  const params = root.parameters === undefined ? {} : asObject(root.parameters, "'parameters'");
  const binaryDefault = asBool(params.binary_data_output, "parameter 'binary_data_output'") ?? false;
  if (!Array.isArray(root.inputs)) throw badRequest("inference request must have an 'inputs' array");

  let offset = 0;
  const takeBlob = (size: number, name: string): Buffer => {
    if (offset + size > blobs.length) {
      throw badRequest(`unexpected size for input '${name}', expecting ${size} bytes but the body has ${blobs.length - offset} left`);
    }
    offset += size;
    return blobs.subarray(offset - size, offset);
  };
  const inputs = root.inputs.map((raw) => decodeInput(raw, takeBlob));
  if (offset !== blobs.length) {
    throw badRequest(`unexpected additional input data: ${blobs.length - offset} bytes follow the last binary input`);
  }

  const binary = new Map<string, boolean>();
  const outputs: RequestedOutput[] = [];
  if (root.outputs !== undefined && !Array.isArray(root.outputs)) throw badRequest("'outputs' must be an array");
  for (const raw of root.outputs ?? []) {
    const o = asObject(raw, 'requested output');
    if (typeof o.name !== 'string') throw badRequest("requested output must have a string 'name'");
    const p = o.parameters === undefined ? {} : asObject(o.parameters, `parameters of output '${o.name}'`);
    const perOutput = asBool(p.binary_data, `'binary_data' of output '${o.name}'`);
    if (perOutput !== undefined) binary.set(o.name, perOutput);
    const k = p.classification === undefined ? undefined : asCount(p.classification, `'classification' of output '${o.name}'`);
    outputs.push(k === undefined ? { name: o.name } : { name: o.name, classification: k });
  }
  return {
    request: { modelName, modelVersion, inputs, outputs },
    id: root.id,
    binaryOutput: (name) => binary.get(name) ?? binaryDefault,
  };
}

function decodeInput(raw: JsonValue, takeBlob: (size: number, name: string) => Buffer): Tensor {
  const o = asObject(raw, 'input');
  if (typeof o.name !== 'string') throw badRequest("input must have a string 'name'");
  const name = o.name;
  if (!isDatatype(o.datatype)) throw badRequest(`invalid datatype '${String(o.datatype)}' for input '${name}'`);
  const datatype = o.datatype;
  if (!Array.isArray(o.shape)) throw badRequest(`input '${name}' must have a 'shape' array`);
  const shape = o.shape.map((d) => asCount(d, `every dimension of the shape of input '${name}'`));
  const params = o.parameters === undefined ? {} : asObject(o.parameters, `parameters of input '${name}'`);

  const hasBinary = params.binary_data_size !== undefined;
  if (hasBinary === (o.data !== undefined)) {
    throw badRequest(`input '${name}' must set exactly one of 'data' and 'binary_data_size' in 'parameters'`);
  }
  if (hasBinary) return { name, datatype, shape, data: takeBlob(asCount(params.binary_data_size, `'binary_data_size' of input '${name}'`), name) };

  if (datatype === 'FP16' || datatype === 'BF16') {
    throw badRequest(`receiving ${datatype} data via JSON is not supported. Please use the binary data format for input ${name}`);
  }
  const flat: JsonValue[] = Array.isArray(o.data) ? o.data.flat(Infinity as 1) : [o.data ?? null];
  if (flat.length !== elementCount(shape)) {
    throw badRequest(`Unable to parse 'data' for input '${name}': it holds ${flat.length} elements but shape [${shape.join(',')}] needs ${elementCount(shape)}`);
  }
  const values = flat.map((v): Element | JsonValue => (datatype === 'BYTES' && typeof v === 'string' ? Buffer.from(v, 'utf8') : v));
  try {
    return { name, datatype, shape, data: encodeElements(datatype, values as Element[]) };
  } catch (err) {
    throw badRequest(`Unable to parse 'data' for input '${name}': ${(err as Error).message}`);
  }
}

/**
 * Inference-Header-Content-Length: 0 means the body is the raw data of the model's only input, one batch item
 * whose single variable dimension follows from the body size; BYTES bodies are one element. All outputs are binary.
 */
function decodeRawRequest(body: Buffer, modelName: string, modelVersion: string | undefined): DecodedInfer {
  const { model } = resolveModel(modelName, modelVersion);
  const [spec] = model.inputs;
  if (!spec || model.inputs.length !== 1) {
    throw badRequest(`Raw request must only have 1 input (found 1) to be deduced but got ${model.inputs.length} inputs in '${model.name}' model configuration`);
  }
  const dims = spec.shape.slice(1); // dim 0 is the batch
  if (dims.filter((d) => d < 0).length > 1) {
    throw badRequest(`The shape of the raw input '${spec.name}' can not be deduced because there are more than one variable-sized dimension`);
  }
  let shape: number[];
  let data = body;
  if (spec.datatype === 'BYTES') {
    if (dims.some((d) => d !== 1)) throw badRequest('For BYTE datatype raw input, the model must have input shape [1]');
    shape = [1, ...dims];
    data = joinBytes([body]);
  } else {
    const rowBytes = elementCount(dims.filter((d) => d >= 0)) * ELEMENT_BYTES[spec.datatype];
    const variable = rowBytes === 0 ? 0 : Math.floor(body.length / rowBytes);
    shape = [1, ...dims.map((d) => (d < 0 ? variable : d))];
  }
  return {
    request: { modelName, modelVersion, inputs: [{ name: spec.name, datatype: spec.datatype, shape, data }] },
    binaryOutput: () => true,
  };
}

function encodeInferResponse(result: InferResult, decoded: DecodedInfer): { body: string | Buffer; headers: http.OutgoingHttpHeaders } {
  const blobs: Buffer[] = [];
  const outputs = result.outputs.map((t) => {
    const meta = { name: t.name, datatype: t.datatype, shape: t.shape };
    if (!decoded.binaryOutput(t.name)) return { ...meta, data: jsonData(t) };
    blobs.push(t.data);
    return { ...meta, parameters: { binary_data_size: t.data.length } };
  });
  const header = stringifyJson({
    model_name: result.modelName,
    model_version: result.modelVersion,
    id: decoded.id || undefined, // Triton echoes only a non-empty id
    outputs,
  });
  if (blobs.length === 0) return { body: header, headers: { 'Content-Type': 'application/json' } };
  const json = Buffer.from(header, 'utf8');
  return {
    body: Buffer.concat([json, ...blobs]),
    headers: { 'Content-Type': 'application/octet-stream', 'Inference-Header-Content-Length': json.length },
  };
}

function jsonData(t: Tensor): (boolean | number | bigint | string)[] {
  if (t.datatype === 'FP16' || t.datatype === 'BF16') {
    throw new TritonError('INVALID_ARG', `sending ${t.datatype} data via JSON is not supported. Please use the binary data format for output`);
  }
  return decodeElements(t.datatype, t.data).map((v) => (Buffer.isBuffer(v) ? v.toString('utf8') : v));
}

function send(res: ServerResponse, status: number, body?: string | Buffer, headers: http.OutgoingHttpHeaders = {}): void {
  res.writeHead(status, { ...headers, 'Content-Length': body === undefined ? 0 : Buffer.byteLength(body) });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, stringifyJson(value), { 'Content-Type': 'application/json' });
}

function sendError(res: ServerResponse, err: unknown): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  if (err instanceof HttpError) return sendJson(res, err.status, { error: err.message });
  if (err instanceof TritonError) return sendJson(res, HTTP_STATUS[err.code], { error: err.message });
  // A bug of ours, not of the request: still answer rather than leave the client hanging.
  sendJson(res, 500, { error: `internal error: ${err instanceof Error ? err.message : String(err)}` });
}
