import { DATATYPES, parseDataType, type DataType } from '../../core/datatypes.js';
import { GatewayError, invalidArgument } from '../../core/errors.js';
import type {
  InferRequest,
  InferResponse,
  ModelIndexEntry,
  ModelMetadata,
  RequestedOutput,
  ServerMetadata,
  TensorMetadata,
} from '../../core/inference.js';
import type { ParameterValue, Parameters } from '../../core/parameters.js';
import { encodeElements } from '../../core/tensor-values.js';
import { checkShape, checkTensorData, type Tensor } from '../../core/tensor.js';
import type {
  InferParameterMessage,
  InferRequestedOutputTensorMessage,
  InferTensorContentsMessage,
  InferTensorMessage,
  ModelIndexMessage,
  ModelInferRequestMessage,
  ModelInferResponseMessage,
  ModelMetadataResponseMessage,
  ParametersMessage,
  RepositoryIndexResponseMessage,
  ServerMetadataResponseMessage,
  TensorMetadataMessage,
} from './grpc-proto.js';

/**
 * KServe v2 gRPC messages <-> the canonical types of core/. The gateway's gRPC
 * API decodes requests and encodes responses with it; the Triton gRPC backend
 * encodes requests and decodes responses.
 *
 * Decoding trusts nothing: a message may come from any client (or backend),
 * so every field is checked and every failure is an INVALID_ARGUMENT naming
 * the tensor. Encoding always uses raw contents (as Triton does): the tensor's
 * Buffer goes out as is.
 */

// ---------------------------------------------------------------- requests

export function inferRequestFromMessage(msg: ModelInferRequestMessage): InferRequest {
  return guarded('ModelInferRequest', () => {
    const message = messageObject<ModelInferRequestMessage>(msg, 'ModelInferRequest');
    const inputs = tensorsFromMessage(message.inputs, message.raw_input_contents, INPUTS);
    const outputs = requestedOutputsFromMessage(message.outputs);
    const parameters = parametersFromMessage(message.parameters, 'request');
    return {
      model: optionalString(message.model_name, 'model_name') ?? '',
      version: optionalString(message.model_version, 'model_version') ?? '',
      ...idField(message.id),
      ...(parameters && { parameters }),
      inputs,
      ...(outputs && { outputs }),
    };
  });
}

export function inferRequestToMessage(req: InferRequest): ModelInferRequestMessage {
  const msg: ModelInferRequestMessage = {
    model_name: req.model,
    model_version: req.version,
    inputs: req.inputs.map(tensorToMessage),
    raw_input_contents: req.inputs.map((t) => t.data),
  };
  if (req.id) msg.id = req.id;
  const parameters = parametersToMessage(req.parameters);
  if (parameters) msg.parameters = parameters;
  if (req.outputs && req.outputs.length > 0) msg.outputs = req.outputs.map(requestedOutputToMessage);
  return msg;
}

// --------------------------------------------------------------- responses

export function inferResponseToMessage(resp: InferResponse): ModelInferResponseMessage {
  const msg: ModelInferResponseMessage = {
    model_name: resp.model,
    model_version: resp.version,
    outputs: resp.outputs.map(tensorToMessage),
    raw_output_contents: resp.outputs.map((t) => t.data),
  };
  if (resp.id) msg.id = resp.id;
  const parameters = parametersToMessage(resp.parameters);
  if (parameters) msg.parameters = parameters;
  return msg;
}

export function inferResponseFromMessage(msg: ModelInferResponseMessage): InferResponse {
  return guarded('ModelInferResponse', () => {
    const message = messageObject<ModelInferResponseMessage>(msg, 'ModelInferResponse');
    const parameters = parametersFromMessage(message.parameters, 'response');
    return {
      model: optionalString(message.model_name, 'model_name') ?? '',
      version: optionalString(message.model_version, 'model_version') ?? '',
      ...idField(message.id),
      ...(parameters && { parameters }),
      outputs: tensorsFromMessage(message.outputs, message.raw_output_contents, OUTPUTS),
    };
  });
}

// ------------------------------------------------------------------ tensors

/** Which list of a message is being decoded, for the field names in errors. */
interface TensorSide {
  readonly kind: 'input' | 'output';
  readonly rawField: 'raw_input_contents' | 'raw_output_contents';
}
const INPUTS: TensorSide = { kind: 'input', rawField: 'raw_input_contents' };
const OUTPUTS: TensorSide = { kind: 'output', rawField: 'raw_output_contents' };

function tensorsFromMessage(tensorsField: unknown, rawField: unknown, side: TensorSide): Tensor[] {
  const tensors = optionalList(tensorsField, `${side.kind}s`);
  const raw = optionalList(rawField, side.rawField);
  // Raw contents are all or nothing: raw[i] belongs to tensors[i].
  if (raw.length > 0 && raw.length !== tensors.length) {
    throw invalidArgument(
      `${side.rawField} holds ${raw.length} entries for ${tensors.length} ${side.kind}s; it needs one per ${side.kind}`,
    );
  }
  const seen = new Set<string>();
  return tensors.map((t, i) => {
    const tensor = tensorFromMessage(t, i, raw.length > 0 ? raw[i] : undefined, side);
    if (seen.has(tensor.name)) throw invalidArgument(`${side.kind} '${tensor.name}' appears more than once`);
    seen.add(tensor.name);
    return tensor;
  });
}

function tensorFromMessage(value: unknown, index: number, raw: unknown, side: TensorSide): Tensor {
  const t = messageObject<InferTensorMessage>(value, `${side.kind} ${index}`);
  const name = optionalString(t.name, `${side.kind} ${index} name`);
  if (!name) throw invalidArgument(`${side.kind} ${index} has no name`);
  const what = `${side.kind} '${name}'`;
  const datatype = datatypeFromMessage(t.datatype, what);
  const shape = shapeFromMessage(t.shape, what);
  const data =
    raw === undefined ? typedContentsData(datatype, t.contents, what, side) : rawData(raw, t.contents, what, side);
  checkTensorData(datatype, shape, data, what);
  const parameters = parametersFromMessage(t.parameters, what);
  return { name, datatype, shape, data, ...(parameters && { parameters }) };
}

function tensorToMessage(t: Tensor): InferTensorMessage {
  const msg: InferTensorMessage = { name: t.name, datatype: t.datatype, shape: t.shape.map(String) };
  const parameters = parametersToMessage(t.parameters);
  if (parameters) msg.parameters = parameters;
  return msg;
}

function datatypeFromMessage(value: unknown, what: string): DataType {
  const name = optionalString(value, `${what} datatype`);
  if (!name) throw invalidArgument(`${what}: missing datatype (valid: ${DATATYPES.join(', ')})`);
  const datatype = parseDataType(name);
  if (!datatype) throw invalidArgument(`${what}: unknown datatype '${name}' (valid: ${DATATYPES.join(', ')})`);
  return datatype;
}

/** int64 dims arrive as decimal strings; in-process messages may carry numbers. */
function shapeFromMessage(value: unknown, what: string): number[] {
  const dims = optionalList(value, `${what} shape`).map(dimFromMessage);
  checkShape(dims, what);
  return dims;
}

function dimFromMessage(d: unknown): unknown {
  if (typeof d === 'string') return /^-?\d{1,20}$/.test(d) ? Number(d) : d;
  return d;
}

function rawData(raw: unknown, contents: unknown, what: string, side: TensorSide): Buffer {
  if (contents !== undefined && contentsFieldsSet(contents, what).length > 0) {
    throw invalidArgument(`${what}: uses both ${side.rawField} and typed contents; use one or the other`);
  }
  if (Buffer.isBuffer(raw)) return raw;
  if (raw instanceof Uint8Array) return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  throw invalidArgument(`${what}: its ${side.rawField} entry is not bytes`);
}

type ContentsField = keyof InferTensorContentsMessage;

const CONTENTS_FIELDS: readonly ContentsField[] = [
  'bool_contents',
  'int_contents',
  'int64_contents',
  'uint_contents',
  'uint64_contents',
  'fp32_contents',
  'fp64_contents',
  'bytes_contents',
];

/** The typed-contents field of each datatype; FP16 and BF16 have none and travel raw only. */
const CONTENTS_FIELD_OF: Readonly<Record<DataType, ContentsField | undefined>> = {
  BOOL: 'bool_contents',
  INT8: 'int_contents',
  INT16: 'int_contents',
  INT32: 'int_contents',
  INT64: 'int64_contents',
  UINT8: 'uint_contents',
  UINT16: 'uint_contents',
  UINT32: 'uint_contents',
  UINT64: 'uint64_contents',
  FP16: undefined,
  BF16: undefined,
  FP32: 'fp32_contents',
  FP64: 'fp64_contents',
  BYTES: 'bytes_contents',
};

/** Converts typed contents to raw bytes once; encodeElements checks every element's type and range. */
function typedContentsData(datatype: DataType, contentsField: unknown, what: string, side: TensorSide): Buffer {
  if (contentsField === undefined) {
    throw invalidArgument(`${what}: has no data; set its typed contents or send ${side.rawField}`);
  }
  const contents = messageObject<InferTensorContentsMessage>(contentsField, `${what} contents`);
  const field = CONTENTS_FIELD_OF[datatype];
  if (field === undefined) {
    throw invalidArgument(`${what}: ${datatype} has no typed contents field; send it in ${side.rawField}`);
  }
  const set = contentsFieldsSet(contents, what);
  if (set.length > 1) throw invalidArgument(`${what}: typed contents set more than one field (${set.join(', ')})`);
  const used = set[0];
  if (used !== undefined && used !== field) {
    throw invalidArgument(`${what}: ${datatype} data belongs in ${field}, got ${used}`);
  }
  return encodeElements(datatype, optionalList(contents[field], `${what} ${field}`), what);
}

/** The contents fields that hold elements; an empty repeated field does not count (proto3 cannot tell them apart). */
function contentsFieldsSet(contentsField: unknown, what: string): ContentsField[] {
  const contents = messageObject<InferTensorContentsMessage>(contentsField, `${what} contents`);
  return CONTENTS_FIELDS.filter((f) => optionalList(contents[f], `${what} ${f}`).length > 0);
}

// ---------------------------------------------------------- requested outputs

function requestedOutputsFromMessage(value: unknown): RequestedOutput[] | undefined {
  const list = optionalList(value, 'outputs');
  if (list.length === 0) return undefined;
  const seen = new Set<string>();
  return list.map((v, i) => {
    const o = messageObject<InferRequestedOutputTensorMessage>(v, `requested output ${i}`);
    const name = optionalString(o.name, `requested output ${i} name`);
    if (!name) throw invalidArgument(`requested output ${i} has no name`);
    if (seen.has(name)) throw invalidArgument(`requested output '${name}' appears more than once`);
    seen.add(name);
    const parameters = parametersFromMessage(o.parameters, `requested output '${name}'`);
    return { name, ...(parameters && { parameters }) };
  });
}

function requestedOutputToMessage(o: RequestedOutput): InferRequestedOutputTensorMessage {
  const parameters = parametersToMessage(o.parameters);
  return parameters ? { name: o.name, parameters } : { name: o.name };
}

// --------------------------------------------------------------- parameters

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

/** Canonical parameters from a parameters map; undefined when there are none. `what` names the owner in errors. */
export function parametersFromMessage(p: ParametersMessage | undefined, what: string): Parameters | undefined {
  if (p === undefined || p === null) return undefined;
  if (typeof p !== 'object' || Array.isArray(p)) throw invalidArgument(`${what}: parameters must be a map`);
  const keys = Object.keys(p);
  if (keys.length === 0) return undefined;
  // fromEntries defines own properties, so a key such as "__proto__" stays a plain key.
  return Object.fromEntries(keys.map((k) => [k, parameterFromMessage(p[k], `${what}: parameter '${k}'`)]));
}

const PARAMETER_FIELDS = ['bool_param', 'int64_param', 'string_param', 'double_param', 'uint64_param'] as const;

function parameterFromMessage(value: unknown, what: string): ParameterValue {
  const p = messageObject<InferParameterMessage>(value, what);
  // parameter_choice comes with decoded messages; in-process ones may only set the field.
  const choice = p.parameter_choice ?? PARAMETER_FIELDS.find((f) => p[f] !== undefined);
  switch (choice) {
    case 'bool_param':
      if (typeof p.bool_param !== 'boolean') throw invalidArgument(`${what}: bool_param must be a boolean`);
      return p.bool_param;
    case 'string_param':
      if (typeof p.string_param !== 'string') throw invalidArgument(`${what}: string_param must be a string`);
      return p.string_param;
    case 'double_param':
      if (typeof p.double_param !== 'number') throw invalidArgument(`${what}: double_param must be a number`);
      return p.double_param;
    case 'int64_param':
      return integerFromMessage(p.int64_param, INT64_MIN, INT64_MAX, what);
    case 'uint64_param':
      return integerFromMessage(p.uint64_param, 0n, UINT64_MAX, what);
    case undefined:
      throw invalidArgument(`${what} has no value`);
    default:
      throw invalidArgument(`${what} has an unknown kind '${String(choice)}'`);
  }
}

/** A 64-bit integer as a number when that is exact, else as a bigint. */
function integerFromMessage(value: unknown, min: bigint, max: bigint, what: string): number | bigint {
  let b: bigint | undefined;
  if (typeof value === 'string' && /^-?\d{1,20}$/.test(value)) b = BigInt(value);
  else if (typeof value === 'number' && Number.isSafeInteger(value)) b = BigInt(value);
  else if (typeof value === 'bigint') b = value;
  if (b === undefined || b < min || b > max) {
    throw invalidArgument(`${what}: ${String(value)} is not an integer in [${min}, ${max}]`);
  }
  const n = Number(b);
  return Number.isSafeInteger(n) ? n : b;
}

/** A parameters map for canonical parameters; undefined when there are none. */
export function parametersToMessage(p: Parameters | undefined): ParametersMessage | undefined {
  if (p === undefined) return undefined;
  const keys = Object.keys(p);
  if (keys.length === 0) return undefined;
  const out: ParametersMessage = Object.create(null) as ParametersMessage;
  for (const k of keys) out[k] = parameterToMessage(p[k]!, k);
  return out;
}

const TWO_63 = 2 ** 63;

function parameterToMessage(v: ParameterValue, key: string): InferParameterMessage {
  switch (typeof v) {
    case 'boolean':
      return { bool_param: v };
    case 'string':
      return { string_param: v };
    case 'number':
      // Integers go as int64 so they stay integers for the receiver; the rest as double.
      return Number.isInteger(v) && v >= -TWO_63 && v < TWO_63
        ? { int64_param: BigInt(v).toString() }
        : { double_param: v };
    case 'bigint':
      if (v >= INT64_MIN && v <= INT64_MAX) return { int64_param: v.toString() };
      if (v > 0n && v <= UINT64_MAX) return { uint64_param: v.toString() };
      throw invalidArgument(`parameter '${key}': ${v} does not fit in 64 bits`);
  }
}

// ----------------------------------------------------------------- metadata

export function modelMetadataToMessage(m: ModelMetadata): ModelMetadataResponseMessage {
  return {
    name: m.name,
    versions: [...m.versions],
    platform: m.platform,
    inputs: m.inputs.map(tensorMetadataToMessage),
    outputs: m.outputs.map(tensorMetadataToMessage),
  };
}

export function modelMetadataFromMessage(msg: ModelMetadataResponseMessage): ModelMetadata {
  return guarded('ModelMetadataResponse', () => {
    const m = messageObject<ModelMetadataResponseMessage>(msg, 'ModelMetadataResponse');
    return {
      name: optionalString(m.name, 'name') ?? '',
      versions: stringList(m.versions, 'versions'),
      platform: optionalString(m.platform, 'platform') ?? '',
      inputs: optionalList(m.inputs, 'inputs').map((t, i) => tensorMetadataFromMessage(t, `input ${i}`)),
      outputs: optionalList(m.outputs, 'outputs').map((t, i) => tensorMetadataFromMessage(t, `output ${i}`)),
    };
  });
}

function tensorMetadataToMessage(t: TensorMetadata): TensorMetadataMessage {
  return { name: t.name, datatype: t.datatype, shape: t.shape.map(String) };
}

/** Metadata shapes may hold -1 for a variable dimension; the datatype stays a string. */
function tensorMetadataFromMessage(value: unknown, label: string): TensorMetadata {
  const t = messageObject<TensorMetadataMessage>(value, label);
  const name = optionalString(t.name, `${label} name`) ?? '';
  const what = name ? `tensor '${name}'` : label;
  const shape = optionalList(t.shape, `${what} shape`).map(dimFromMessage);
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < -1) {
      throw invalidArgument(`${what}: shape [${shape.join(',')}] must hold integers >= -1`);
    }
  }
  return { name, datatype: optionalString(t.datatype, `${what} datatype`) ?? '', shape: shape as number[] };
}

export function serverMetadataToMessage(m: ServerMetadata): ServerMetadataResponseMessage {
  return { name: m.name, version: m.version, extensions: [...m.extensions] };
}

export function serverMetadataFromMessage(msg: ServerMetadataResponseMessage): ServerMetadata {
  return guarded('ServerMetadataResponse', () => {
    const m = messageObject<ServerMetadataResponseMessage>(msg, 'ServerMetadataResponse');
    return {
      name: optionalString(m.name, 'name') ?? '',
      version: optionalString(m.version, 'version') ?? '',
      extensions: stringList(m.extensions, 'extensions'),
    };
  });
}

export function modelIndexToMessage(entries: readonly ModelIndexEntry[]): RepositoryIndexResponseMessage {
  return { models: entries.map((e) => ({ name: e.name, version: e.version, state: e.state, reason: e.reason })) };
}

/** Index rows; a state other than READY (Triton also reports LOADING, UNLOADING...) counts as UNAVAILABLE. */
export function modelIndexFromMessage(msg: RepositoryIndexResponseMessage): ModelIndexEntry[] {
  return guarded('RepositoryIndexResponse', () => {
    const m = messageObject<RepositoryIndexResponseMessage>(msg, 'RepositoryIndexResponse');
    return optionalList(m.models, 'models').map((v, i) => {
      const e = messageObject<ModelIndexMessage>(v, `model ${i}`);
      return {
        name: optionalString(e.name, `model ${i} name`) ?? '',
        version: optionalString(e.version, `model ${i} version`) ?? '',
        state: e.state === 'READY' ? 'READY' : 'UNAVAILABLE',
        reason: optionalString(e.reason, `model ${i} reason`) ?? '',
      };
    });
  });
}

// ------------------------------------------------------------ field checks

/**
 * Runs a decoder, turning anything but a GatewayError into INVALID_ARGUMENT:
 * a malformed message must never surface as a JS TypeError.
 */
function guarded<T>(message: string, decode: () => T): T {
  try {
    return decode();
  } catch (err) {
    if (err instanceof GatewayError) throw err;
    throw invalidArgument(`malformed ${message}: ${err instanceof Error ? err.message : String(err)}`, err);
  }
}

function messageObject<T extends object>(value: unknown, what: string): T {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalidArgument(`${what} is not a message`);
  }
  return value as T;
}

function optionalList(value: unknown, what: string): unknown[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalidArgument(`${what} must be a list`);
  return value;
}

function optionalString(value: unknown, what: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw invalidArgument(`${what} must be a string`);
  return value;
}

function stringList(value: unknown, what: string): string[] {
  return optionalList(value, what).map((s) => {
    if (typeof s !== 'string') throw invalidArgument(`${what} must hold strings`);
    return s;
  });
}

/** proto3 cannot tell an empty id from none; an empty one is left out. */
function idField(value: unknown): { id?: string } {
  const id = optionalString(value, 'id');
  return id ? { id } : {};
}
