import { ELEMENT_SIZE, type DataType } from '../../core/datatypes.js';
import { invalidArgument } from '../../core/errors.js';
import { encodeElements } from '../../core/tensor-values.js';
import { checkTensorData, elementCount, joinBytesElements, splitBytesElements, type Tensor } from '../../core/tensor.js';
import { tfDataType, v2DataType } from './datatypes.js';
import type { TensorProtoMessage, TensorShapeMessage } from './grpc-proto.js';

/**
 * tensorflow.TensorProto <-> the canonical Tensor.
 *
 * Encoding: dense numeric tensors go as `tensor_content`, the tensor's own
 * bytes (TF's layout is the same row-major little-endian; no copy); DT_STRING
 * goes as `string_val`, views into the tensor's data.
 *
 * Decoding accepts every form a TF client or server sends: `tensor_content`,
 * or the dtype's typed `*_val` field (TF Serving answers with these by
 * default), including TF's broadcast form where a single value fills the whole
 * shape. Anything else that disagrees with the shape is refused: TF would pad
 * a short list with its last value, which hides a client's mistake.
 * Decoding errors are INVALID_ARGUMENT naming the tensor; an adapter reading a
 * backend's reply turns them into INTERNAL.
 */

type ValueField =
  | 'float_val'
  | 'double_val'
  | 'int_val'
  | 'int64_val'
  | 'bool_val'
  | 'string_val'
  | 'half_val'
  | 'uint32_val'
  | 'uint64_val';

/** The typed field each datatype travels in (types.proto / tensor.proto). */
const VALUE_FIELD: Readonly<Record<DataType, ValueField>> = {
  FP32: 'float_val',
  FP64: 'double_val',
  INT32: 'int_val',
  INT16: 'int_val',
  INT8: 'int_val',
  UINT8: 'int_val',
  UINT16: 'int_val',
  INT64: 'int64_val',
  UINT64: 'uint64_val',
  UINT32: 'uint32_val',
  BOOL: 'bool_val',
  BYTES: 'string_val',
  FP16: 'half_val',
  BF16: 'half_val',
};

/** Every value field of TensorProto, to name the stray ones in errors. */
const ALL_VALUE_FIELDS = [
  'float_val',
  'double_val',
  'int_val',
  'int64_val',
  'bool_val',
  'string_val',
  'half_val',
  'uint32_val',
  'uint64_val',
  'scomplex_val',
  'dcomplex_val',
  'resource_handle_val',
  'variant_val',
  'float8_val',
] as const;

/**
 * The broadcast form lets a few bytes ask for an arbitrarily large tensor;
 * expansions beyond this are refused rather than allocated.
 */
export const MAX_BROADCAST_BYTES = 256 * 1024 * 1024;

const INT64_TEXT = /^-?\d{1,20}$/;

export function tensorToProto(t: Tensor): TensorProtoMessage {
  const msg: TensorProtoMessage = {
    dtype: tfDataType(t.datatype),
    tensor_shape: { dim: t.shape.map((size) => ({ size: String(size) })) },
  };
  if (t.datatype === 'BYTES') msg.string_val = splitBytesElements(t.data);
  else msg.tensor_content = t.data;
  return msg;
}

/** A tensor from a TensorProto; `what` names it in errors ("input 'x'"). */
export function tensorFromProto(name: string, value: unknown, what: string): Tensor {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalidArgument(`${what} is not a TensorProto`);
  const msg = value as TensorProtoMessage;
  const datatype = v2DataType(msg.dtype, what);
  const shape = shapeFromProto(msg.tensor_shape, what);
  const content = bytesField(msg.tensor_content, `${what} tensor_content`);
  const filled = ALL_VALUE_FIELDS.filter((f) => fieldLength(msg[f]) > 0);
  if (content.length > 0) {
    if (datatype === 'BYTES') throw invalidArgument(`${what}: DT_STRING values travel in string_val, not tensor_content`);
    if (filled.length > 0) throw invalidArgument(`${what}: sets both tensor_content and ${filled.join(', ')}; use one`);
    checkTensorData(datatype, shape, content, what);
    return { name, datatype, shape, data: content };
  }
  const field = VALUE_FIELD[datatype];
  const stray = filled.filter((f) => f !== field);
  if (stray.length > 0) {
    throw invalidArgument(`${what}: a ${tfDataType(datatype)} tensor carries its values in ${field}, not ${stray.join(', ')}`);
  }
  const values = listField(msg[field], `${what} ${field}`);
  const count = elementCount(shape);
  if (values.length === count) return { name, datatype, shape, data: typedData(datatype, values, what) };
  if (values.length === 1 && count > 1) return { name, datatype, shape, data: broadcast(datatype, values, count, shape, what) };
  throw invalidArgument(
    `${what}: shape [${shape.join(',')}] holds ${count} elements but ${field} has ${values.length} values ` +
      '(send one value per element, or exactly one to fill the shape)',
  );
}

/** A concrete shape: every dimension known. -1 (unknown) and unknown_rank belong in signatures, not in tensors. */
export function shapeFromProto(value: TensorShapeMessage | null | undefined, what: string): number[] {
  if (value === undefined || value === null) return [];
  if (value.unknown_rank === true) throw invalidArgument(`${what}: tensor_shape has unknown_rank set; a tensor needs a known shape`);
  const dims = listField(value.dim, `${what} tensor_shape.dim`);
  return dims.map((d) => {
    const size = dimSize(d);
    if (size === undefined || size < 0) {
      throw invalidArgument(
        `${what}: tensor_shape [${dims.map((x) => String(dimSize(x) ?? '?')).join(',')}] must hold non-negative sizes ` +
          '(-1, an unknown dimension, is for signatures, not tensors)',
      );
    }
    return size;
  });
}

/** A dimension's size as a number (-1 included), or undefined when it is not an integer. */
export function dimSize(dim: unknown): number | undefined {
  if (typeof dim !== 'object' || dim === null) return undefined;
  const size: unknown = (dim as { size?: unknown }).size;
  if (size === undefined) return 0; // proto3 leaves a zero size out
  const n = typeof size === 'string' && INT64_TEXT.test(size) ? Number(size) : size;
  return typeof n === 'number' && Number.isSafeInteger(n) ? n : undefined;
}

function typedData(datatype: DataType, values: readonly unknown[], what: string): Buffer {
  switch (datatype) {
    case 'BYTES':
      return joinBytesElements(values.map((v, i) => bytesElement(v, i, what)));
    case 'INT8':
    case 'UINT8':
    case 'INT16':
    case 'UINT16':
    case 'INT32':
    case 'FP16':
    case 'BF16':
      return narrowInts(datatype, values, what);
    default:
      // float_val, double_val, int64_val, uint64_val, uint32_val, bool_val: checked per element.
      return encodeElements(datatype, values, what);
  }
}

/**
 * int_val (int32 on the wire) for the narrow integer types, and half_val for
 * FP16/BF16 bit patterns: TF keeps the low bits (a static_cast), so an INT8
 * -1 may arrive as -1 or 255 and both mean the same byte.
 */
function narrowInts(datatype: DataType, values: readonly unknown[], what: string): Buffer {
  const size = ELEMENT_SIZE[datatype];
  const out = Buffer.allocUnsafe(values.length * size);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v !== 'number' || !Number.isInteger(v)) {
      throw invalidArgument(`${what}: element ${i} is ${String(v)}, expected an integer`);
    }
    if (size === 1) out[i] = v & 0xff;
    else if (size === 2) out.writeUInt16LE(v & 0xffff, i * 2);
    else out.writeInt32LE(v | 0, i * 4);
  }
  return out;
}

/** TF's version-0 rule: a single value stands for every element of the shape. */
function broadcast(datatype: DataType, values: readonly unknown[], count: number, shape: readonly number[], what: string): Buffer {
  const one = typedData(datatype, values, what);
  const bytes = datatype === 'BYTES' ? count * one.length : count * ELEMENT_SIZE[datatype];
  if (bytes > MAX_BROADCAST_BYTES) {
    throw invalidArgument(
      `${what}: one value broadcast over shape [${shape.join(',')}] would take ${bytes} bytes, over the limit of ${MAX_BROADCAST_BYTES}`,
    );
  }
  return Buffer.alloc(bytes, one);
}

function bytesElement(v: unknown, i: number, what: string): Uint8Array {
  if (v instanceof Uint8Array) return v;
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  throw invalidArgument(`${what}: string_val element ${i} is not bytes`);
}

function bytesField(value: unknown, what: string): Buffer {
  if (value === undefined || value === null) return EMPTY;
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw invalidArgument(`${what} is not bytes`);
}

function listField(value: unknown, what: string): unknown[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalidArgument(`${what} must be a list`);
  return value;
}

function fieldLength(value: unknown): number {
  return Array.isArray(value) || value instanceof Uint8Array ? value.length : 0;
}

const EMPTY = Buffer.alloc(0);
