import { randomBytes } from 'node:crypto';
import type { TorchServeModelOptions } from '../../backends/backend.js';
import { invalidArgument } from '../../core/errors.js';
import type { InferRequest, InferResponse, RequestedOutput } from '../../core/inference.js';
import { elementCount, joinBytesElements, type Tensor } from '../../core/tensor.js';
import { jsonAnswerTensors } from './answer.js';
import { tensorJson } from './json-text.js';

/**
 * The documented mapping between v2 tensors and TorchServe's bodies (REST) and
 * input maps (gRPC), driven by a model's TorchServeModelOptions.
 *
 * Request:
 * - `json` (default): every input as JSON nested by its shape, under its name
 *   (or `inputKeys[name]`). REST sends ONE JSON object of all inputs as the body
 *   (TorchServe gives a handler the raw body, as it does for any JSON client);
 *   gRPC sends one input-map entry per input, each holding that input's JSON
 *   (TorchServe gives a handler each map key as its own field, like form fields).
 * - `raw`: the single input's bytes as they are (a fixed-size tensor's raw
 *   little-endian data, typically UINT8, or the one element of a BYTES tensor,
 *   no copy), as the REST body or the gRPC entry `data` (`inputKeys[name]`
 *   renames it); the tensor parameter `content_type` sets the Content-Type
 *   (default application/octet-stream).
 * - Whatever the mode, a request whose only input is a BYTES tensor of ONE
 *   element is sent raw: those bytes are the whole body. This is how a client's
 *   own body (an image, a JSON document) passes through unchanged.
 * - Likewise where each input is a field of its own, a one-element BYTES input
 *   goes as its bytes: on gRPC always (each input-map entry is a field), on
 *   REST when EVERY input is one (several BYTES inputs become multipart/form-data
 *   fields, which TorchServe hands to the handler like gRPC entries). A BYTES
 *   input in a REST JSON object is a string (or embedded JSON, see json-text.ts).
 *
 * Answer: see answer.ts for `json`; `bytes` gives one BYTES output
 * `outputName` holding the body, with `content_type` from the reply (REST). A
 * `json` answer that is not JSON at all is returned the same way.
 */

export const DEFAULT_TORCHSERVE_OPTIONS: TorchServeModelOptions = {
  request: 'json',
  response: 'json',
  inputKeys: {},
  outputName: 'OUTPUT0',
  outputTypes: {},
};

export const OCTET_STREAM = 'application/octet-stream';
const JSON_TYPE = 'application/json';

/** A REST body as chunks (tensor bytes are not copied), its size and its Content-Type. */
export interface RestRequestBody {
  readonly chunks: readonly Buffer[];
  readonly byteLength: number;
  readonly contentType: string;
}

/** The REST body of a request to POST /predictions/{m}[/{v}]. */
export function restRequestBody(req: InferRequest, options: TorchServeModelOptions): RestRequestBody {
  const whole = wholeBodyInput(req, options);
  if (whole !== undefined) {
    const body = rawBytes(whole);
    return { chunks: [body], byteLength: body.length, contentType: contentTypeOf(whole) ?? OCTET_STREAM };
  }
  const inputs = keyedInputs(req, options);
  if (inputs.size > 1 && [...inputs.values()].every(isOneBytesElement)) return multipartBody(inputs);
  let json = '';
  for (const [key, input] of inputs) {
    json += (json === '' ? '{' : ',') + JSON.stringify(key) + ':' + tensorJson(input, `input '${input.name}'`, 'reject');
  }
  const body = Buffer.from(json === '' ? '{}' : json + '}', 'utf8');
  return { chunks: [body], byteLength: body.length, contentType: JSON_TYPE };
}

/** The `input` map of a gRPC PredictionsRequest. */
export function grpcRequestInput(req: InferRequest, options: TorchServeModelOptions): Record<string, Buffer> {
  const whole = wholeBodyInput(req, options);
  if (whole !== undefined) return { [options.inputKeys[whole.name] ?? 'data']: rawBytes(whole) };
  const input: Record<string, Buffer> = {};
  for (const [key, tensor] of keyedInputs(req, options)) {
    input[key] = isOneBytesElement(tensor)
      ? rawBytes(tensor)
      : Buffer.from(tensorJson(tensor, `input '${tensor.name}'`, 'reject'), 'utf8');
  }
  return input;
}

/**
 * Several one-element BYTES inputs as multipart/form-data, one part per input:
 * TorchServe hands each form field to the handler as a named input, exactly as
 * it does gRPC input-map entries. Each part is a file upload (it has a
 * filename), which TorchServe passes on as bytes, never decoded as text.
 */
function multipartBody(inputs: ReadonlyMap<string, Tensor>): RestRequestBody {
  const boundary = `----infergate-${randomBytes(12).toString('hex')}`;
  const chunks: Buffer[] = [];
  for (const [key, input] of inputs) {
    const bytes = rawBytes(input);
    if (bytes.includes(boundary)) return multipartBody(inputs); // astronomically unlikely; a new boundary fixes it
    const name = formName(key);
    const head = `--${boundary}\r\nContent-Disposition: form-data; name="${name}"; filename="${name}"\r\n` +
      `Content-Type: ${contentTypeOf(input) ?? OCTET_STREAM}\r\n\r\n`;
    chunks.push(Buffer.from(head, 'utf8'), bytes, CRLF);
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`, 'utf8'));
  return {
    chunks,
    byteLength: chunks.reduce((n, c) => n + c.length, 0),
    contentType: `multipart/form-data; boundary=${boundary}`,
  };
}

const CRLF = Buffer.from('\r\n');

/** A form field name as the HTML spec escapes it inside Content-Disposition's quotes. */
function formName(key: string): string {
  return key.replace(/["\r\n]/g, (c) => ({ '"': '%22', '\r': '%0D', '\n': '%0A' })[c]!);
}

/** The input sent as the whole body, if the request goes raw (see the rules above). */
function wholeBodyInput(req: InferRequest, options: TorchServeModelOptions): Tensor | undefined {
  const [first, ...rest] = req.inputs;
  if (first !== undefined && rest.length === 0 && isOneBytesElement(first)) return first;
  if (options.request !== 'raw') return undefined;
  if (first === undefined || rest.length > 0) {
    throw invalidArgument(`model '${req.model}' takes raw bytes: send exactly one input, got ${req.inputs.length}`);
  }
  if (first.datatype === 'BYTES') {
    throw invalidArgument(
      `model '${req.model}' takes raw bytes: input '${first.name}' must hold one BYTES element, got ${elementCount(first.shape)}`,
    );
  }
  return first;
}

function isOneBytesElement(t: Tensor): boolean {
  return t.datatype === 'BYTES' && elementCount(t.shape) === 1;
}

/** The bytes of a raw input, without a copy: a BYTES element's view past its length prefix, or the raw data. */
function rawBytes(t: Tensor): Buffer {
  if (t.datatype !== 'BYTES') return t.data;
  const length = t.data.length >= 4 ? t.data.readUInt32LE(0) : -1;
  if (length !== t.data.length - 4) throw invalidArgument(`input '${t.name}': malformed BYTES element framing`);
  return t.data.subarray(4);
}

function contentTypeOf(t: Tensor): string | undefined {
  const type = t.parameters?.content_type;
  return typeof type === 'string' && type !== '' ? type : undefined;
}

/** Inputs under their wire keys; two inputs may not land on one key. */
function keyedInputs(req: InferRequest, options: TorchServeModelOptions): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const input of req.inputs) {
    const key = options.inputKeys[input.name] ?? input.name;
    if (out.has(key)) throw invalidArgument(`inputs '${out.get(key)!.name}' and '${input.name}' both map to key '${key}'`);
    out.set(key, input);
  }
  return out;
}

/** The outputs of one TorchServe answer (a whole body, or one streamed part). */
export function answerTensors(body: Buffer, contentType: string | undefined, options: TorchServeModelOptions): Tensor[] {
  if (options.response === 'json') {
    const typed = jsonAnswerTensors(body, options);
    if (typed !== undefined) return typed;
  }
  return [bytesTensor(options.outputName, body, contentType)];
}

/** A one-element BYTES tensor holding `bytes` (one copy, to put the length prefix in front). */
export function bytesTensor(name: string, bytes: Uint8Array, contentType?: string): Tensor {
  return {
    name,
    datatype: 'BYTES',
    shape: [1],
    data: joinBytesElements([bytes]),
    ...(contentType !== undefined && contentType !== '' ? { parameters: { content_type: contentType } } : {}),
  };
}

/** Only the requested outputs, in the order asked; all of them when none is named. */
export function selectOutputs(outputs: readonly Tensor[], requested: readonly RequestedOutput[] | undefined, model: string): Tensor[] {
  if (requested === undefined || requested.length === 0) return [...outputs];
  return requested.map(({ name }) => {
    const found = outputs.find((t) => t.name === name);
    if (found === undefined) {
      const have = outputs.map((t) => `'${t.name}'`).join(', ') || 'none';
      throw invalidArgument(`model '${model}' has no output '${name}' in its answer (outputs: ${have})`);
    }
    return found;
  });
}

/** The InferResponse for one answer body; TorchServe does not say which version answered, so it is the one asked for. */
export function answerResponse(
  req: InferRequest,
  body: Buffer,
  contentType: string | undefined,
  options: TorchServeModelOptions,
): InferResponse {
  const outputs = selectOutputs(answerTensors(body, contentType, options), req.outputs, req.model);
  return { model: req.model, version: req.version, ...(req.id !== undefined ? { id: req.id } : {}), outputs };
}
