import type { DataType } from '../../core/datatypes.js';
import { invalidArgument } from '../../core/errors.js';

/**
 * TensorFlow's DataType enum (tensorflow/core/framework/types.proto) and its
 * mapping to the KServe v2 datatypes. Fourteen TF types have a v2 twin with
 * the same element layout, so a tensor crosses with its bytes unchanged; the
 * rest (complex, quantized, resource, variant, float8, int4, the *_REF types)
 * have none and are refused by name.
 */
export const TF_DATATYPE_NUMBERS = {
  DT_INVALID: 0,
  DT_FLOAT: 1,
  DT_DOUBLE: 2,
  DT_INT32: 3,
  DT_UINT8: 4,
  DT_INT16: 5,
  DT_INT8: 6,
  DT_STRING: 7,
  DT_COMPLEX64: 8,
  DT_INT64: 9,
  DT_BOOL: 10,
  DT_QINT8: 11,
  DT_QUINT8: 12,
  DT_QINT32: 13,
  DT_BFLOAT16: 14,
  DT_QINT16: 15,
  DT_QUINT16: 16,
  DT_UINT16: 17,
  DT_COMPLEX128: 18,
  DT_HALF: 19,
  DT_RESOURCE: 20,
  DT_VARIANT: 21,
  DT_UINT32: 22,
  DT_UINT64: 23,
  DT_FLOAT8_E5M2: 24,
  DT_FLOAT8_E4M3FN: 25,
  DT_INT4: 29,
  DT_UINT4: 30,
} as const;

export type TfDataType = keyof typeof TF_DATATYPE_NUMBERS;

/** Where a *_REF type starts: the base type's number plus 100. */
const REF_OFFSET = 100;

export const V2_TO_TF: Readonly<Record<DataType, TfDataType>> = {
  BOOL: 'DT_BOOL',
  UINT8: 'DT_UINT8',
  UINT16: 'DT_UINT16',
  UINT32: 'DT_UINT32',
  UINT64: 'DT_UINT64',
  INT8: 'DT_INT8',
  INT16: 'DT_INT16',
  INT32: 'DT_INT32',
  INT64: 'DT_INT64',
  FP16: 'DT_HALF',
  BF16: 'DT_BFLOAT16',
  FP32: 'DT_FLOAT',
  FP64: 'DT_DOUBLE',
  BYTES: 'DT_STRING',
};

const TF_TO_V2: ReadonlyMap<string, DataType> = new Map(
  (Object.entries(V2_TO_TF) as [DataType, TfDataType][]).map(([v2, tf]) => [tf, v2]),
);

const NAME_OF_NUMBER: ReadonlyMap<number, TfDataType> = new Map(
  (Object.entries(TF_DATATYPE_NUMBERS) as [TfDataType, number][]).map(([name, n]) => [n, name]),
);

/** Why a TF type has no v2 counterpart, for the error message. */
const NO_COUNTERPART: Readonly<Partial<Record<TfDataType, string>>> = {
  DT_INVALID: 'no type was set',
  DT_COMPLEX64: 'complex numbers have no KServe v2 datatype',
  DT_COMPLEX128: 'complex numbers have no KServe v2 datatype',
  DT_QINT8: 'quantized types have no KServe v2 datatype',
  DT_QUINT8: 'quantized types have no KServe v2 datatype',
  DT_QINT16: 'quantized types have no KServe v2 datatype',
  DT_QUINT16: 'quantized types have no KServe v2 datatype',
  DT_QINT32: 'quantized types have no KServe v2 datatype',
  DT_RESOURCE: 'resource handles cannot leave the TF runtime',
  DT_VARIANT: 'variant tensors cannot leave the TF runtime',
  DT_FLOAT8_E5M2: 'float8 has no KServe v2 datatype',
  DT_FLOAT8_E4M3FN: 'float8 has no KServe v2 datatype',
  DT_INT4: '4-bit integers have no KServe v2 datatype',
  DT_UINT4: '4-bit integers have no KServe v2 datatype',
};

/** The TF name of a DataType as a message carries it: a name (enums as strings) or a number (one the proto does not know). */
export function tfDataTypeName(dtype: unknown): string {
  if (typeof dtype === 'string') return dtype;
  if (typeof dtype === 'number') {
    const name = NAME_OF_NUMBER.get(dtype);
    if (name !== undefined) return name;
    const base = NAME_OF_NUMBER.get(dtype - REF_OFFSET);
    return base !== undefined && dtype > REF_OFFSET ? `${base}_REF` : `DataType ${dtype}`;
  }
  return dtype === undefined || dtype === null ? 'DT_INVALID' : String(dtype);
}

export function tfDataType(datatype: DataType): TfDataType {
  return V2_TO_TF[datatype];
}

/**
 * The v2 datatype of a TF dtype (name or number). Throws INVALID_ARGUMENT
 * naming the type when it has none; a backend adapter turns that into
 * INTERNAL (see HttpEndpoint / GrpcEndpoint decodeReply), since then the
 * server, not the client, sent it. `what` names the tensor.
 */
export function v2DataType(dtype: unknown, what: string): DataType {
  const name = tfDataTypeName(dtype);
  const v2 = TF_TO_V2.get(name);
  if (v2 !== undefined) return v2;
  throw invalidArgument(`${what}: TF type ${name} is not supported: ${unsupportedReason(name)}`);
}

/** For metadata, which may describe tensors the gateway cannot carry: the v2 name, or the TF name when there is none. */
export function v2DataTypeOrTfName(dtype: unknown): string {
  const name = tfDataTypeName(dtype);
  return TF_TO_V2.get(name) ?? name;
}

/** The TF type of a v2 datatype name from metadata; names with no TF twin (another server's types) become DT_INVALID. */
export function tfDataTypeOfName(datatype: string): TfDataType {
  return V2_TO_TF[datatype as DataType] ?? (datatype in TF_DATATYPE_NUMBERS ? (datatype as TfDataType) : 'DT_INVALID');
}

function unsupportedReason(name: string): string {
  const known = NO_COUNTERPART[name as TfDataType];
  if (known !== undefined) return known;
  if (name.endsWith('_REF')) return 'reference types are graph-internal and never travel in a request or response';
  return 'it is not a TF DataType this gateway knows';
}
