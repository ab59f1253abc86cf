import type { ErrorCode, GatewayError } from '../../core/errors.js';
import type { InferResponse } from '../../core/inference.js';
import { elementCount, type Tensor } from '../../core/tensor.js';
import { bytesTensor, OCTET_STREAM } from './mapping.js';
import { tensorJson } from './json-text.js';

/**
 * TorchServe's client-facing formats, for the gateway's TorchServe front doors
 * (REST /predictions, gRPC InferenceAPIsService): a TorchServe client's body or
 * input map as canonical tensors, and a canonical answer as TorchServe bytes.
 *
 * Requests: the body (REST) or a lone `data` / `body` entry (gRPC) becomes ONE
 * BYTES element, unparsed, with its Content-Type as parameter `content_type`,
 * named `data` (or the model's single input, see BodyInputSpec): a TorchServe
 * backend sends it on unchanged (the raw rule of mapping.ts), other backends
 * get it as a BYTES tensor. Any other input map gives one BYTES input per key,
 * named by the key, which a TorchServe backend sends on as fields.
 *
 * Answers: a single BYTES output of one element is sent as its bytes, with its
 * `content_type` (default application/octet-stream). Anything else is JSON
 * (json-text.ts): the bare value when the only output is the model's
 * `outputName`, else an object of output name -> values nested by shape; JSON
 * text outputs are embedded as JSON, non-UTF-8 BYTES as {"b64": "..."}.
 */

/**
 * Name and shape of the tensor a client's whole body becomes: the model's
 * single input where its backend reports exactly one (shaped all ones to that
 * input's rank, so a backend that checks ranks accepts it), else `data`, [1].
 */
export interface BodyInputSpec {
  readonly name: string;
  readonly shape: readonly number[];
}

export const DEFAULT_BODY_INPUT: BodyInputSpec = { name: 'data', shape: [1] };

/** The body spec for a model whose metadata lists `inputs`. */
export function bodyInputSpec(inputs: readonly { readonly name: string; readonly shape: readonly number[] }[]): BodyInputSpec {
  const [only, ...others] = inputs;
  if (only === undefined || others.length > 0) return DEFAULT_BODY_INPUT;
  return { name: only.name, shape: only.shape.length === 0 ? [] : only.shape.map(() => 1) };
}

/** The body read with 4 spare bytes in front (readBody's `reserve: 4`) as a one-element BYTES tensor, framed in place. */
export function bodyInput(spec: BodyInputSpec, framed: Buffer, contentType: string | undefined): Tensor {
  framed.writeUInt32LE(framed.length - 4, 0);
  return {
    name: spec.name,
    datatype: 'BYTES',
    shape: spec.shape,
    data: framed,
    ...(contentType !== undefined && contentType !== '' ? { parameters: { content_type: contentType } } : {}),
  };
}

/** A gRPC input map as inputs; a lone `data` / `body` entry is the request's body, as `body` describes it. */
export function inputMapInputs(input: Readonly<Record<string, Buffer>>, body: BodyInputSpec): Tensor[] {
  const keys = Object.keys(input);
  if (isLoneBody(input)) return [{ ...bytesTensor(body.name, input[keys[0]!]!), shape: body.shape }];
  return keys.map((key) => bytesTensor(key, input[key]!));
}

/** Whether a gRPC input map is a lone body, which takes the model's input name (see inputMapInputs). */
export function isLoneBody(input: Readonly<Record<string, Buffer>>): boolean {
  const keys = Object.keys(input);
  return keys.length === 1 && (keys[0] === 'data' || keys[0] === 'body');
}

export interface RenderedAnswer {
  readonly body: Buffer;
  readonly contentType: string;
}

/** One answer (or one streamed part) as TorchServe would send it; `outputName` is the model's bare-value output. */
export function renderAnswer(resp: InferResponse, outputName: string): RenderedAnswer {
  const [only, ...others] = resp.outputs;
  if (only !== undefined && others.length === 0 && only.datatype === 'BYTES' && elementCount(only.shape) === 1) {
    const type = only.parameters?.content_type;
    // The element past its 4-byte length prefix: a view, not a copy.
    return { body: only.data.subarray(4), contentType: typeof type === 'string' && type !== '' ? type : OCTET_STREAM };
  }
  let json: string;
  if (only !== undefined && others.length === 0 && only.name === outputName) {
    json = tensorJson(only, `output '${only.name}'`, 'base64');
  } else {
    json = '{' + resp.outputs.map((t) => JSON.stringify(t.name) + ':' + tensorJson(t, `output '${t.name}'`, 'base64')).join(',') + '}';
  }
  return { body: Buffer.from(json, 'utf8'), contentType: 'application/json' };
}

/** TorchServe's exception name for each gateway error code (its REST error `type`). */
const EXCEPTION_TYPE: Partial<Record<ErrorCode, string>> = {
  INVALID_ARGUMENT: 'BadRequestException',
  FAILED_PRECONDITION: 'BadRequestException',
  OUT_OF_RANGE: 'BadRequestException',
  NOT_FOUND: 'ModelNotFoundException',
  UNAVAILABLE: 'ServiceUnavailableException',
  DEADLINE_EXCEEDED: 'RequestTimeoutException',
  RESOURCE_EXHAUSTED: 'ServiceUnavailableException',
  UNIMPLEMENTED: 'MethodNotAllowedException',
  UNAUTHENTICATED: 'InvalidKeyException',
  PERMISSION_DENIED: 'InvalidKeyException',
  CANCELLED: 'RequestCancelledException',
};

/** A status and a JSON body, as TorchServe's frontend writes them. */
export interface TorchServeReply {
  readonly status: number;
  readonly body: string;
}

/**
 * An error in TorchServe's shape, `{"code": <status>, "type": "...", "message": "..."}`.
 * A TorchServe backend's own error keeps its status and exception type
 * (`origin`); any other takes the status its code maps to and a type by code.
 */
export function errorReply(error: GatewayError, origin?: { readonly status: number; readonly type: string }): TorchServeReply {
  const status = origin !== undefined && origin.status >= 400 ? origin.status : error.httpStatus;
  const type = origin !== undefined && origin.type !== '' ? origin.type : (EXCEPTION_TYPE[error.code] ?? 'InternalServerException');
  return { status, body: gsonPretty({ code: status, type, message: error.message }) };
}

/** TorchServe's /ping answer (200 Healthy, or 500 Unhealthy). */
export function pingReply(healthy: boolean): TorchServeReply {
  return { status: healthy ? 200 : 500, body: gsonPretty({ status: healthy ? 'Healthy' : 'Unhealthy' }) };
}

/** The health string of gRPC Ping: the same pretty JSON, as TorchServe sends it. */
export function pingHealth(healthy: boolean): string {
  return JSON.stringify({ status: healthy ? 'Healthy' : 'Unhealthy' }, null, 2);
}

/** TorchServe writes its own JSON (ping, errors) with Gson's pretty printer: two-space indent and a newline. */
function gsonPretty(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
