/**
 * The KServe v2 tensor datatypes and their element sizes.
 *
 * Every tensor inside the gateway carries its data as raw row-major
 * little-endian bytes, so the element size is all most code needs to know.
 * BYTES is the one variable-size type: each element is a 4-byte little-endian
 * length followed by that many bytes (the v2 raw / binary-extension framing).
 */
export const DATATYPES = [
  'BOOL',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'FP16',
  'BF16',
  'FP32',
  'FP64',
  'BYTES',
] as const;

export type DataType = (typeof DATATYPES)[number];

/** Bytes per element; 0 for BYTES, whose elements carry their own length. */
export const ELEMENT_SIZE: Readonly<Record<DataType, number>> = {
  BOOL: 1,
  UINT8: 1,
  UINT16: 2,
  UINT32: 4,
  UINT64: 8,
  INT8: 1,
  INT16: 2,
  INT32: 4,
  INT64: 8,
  FP16: 2,
  BF16: 2,
  FP32: 4,
  FP64: 8,
  BYTES: 0,
};

const BY_NAME: ReadonlyMap<string, DataType> = new Map(DATATYPES.map((d) => [d, d]));

/** The datatype named `name` (exact, upper-case as the protocol spells it), or undefined. */
export function parseDataType(name: string): DataType | undefined {
  return BY_NAME.get(name);
}
