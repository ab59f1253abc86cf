// TensorFlow data types as the reference TF Serving server handles them: names, element sizes, the TensorProto
// field each one travels in, little-endian codecs for tensor_content, and the 16-bit float conversions.
// Written independently of src/ on purpose: this server is the oracle the gateway's own codecs are tested against.
import { Buffer } from 'node:buffer';

/** The TF types the server's models use (every type a KServe v2 datatype maps to). */
export const DTYPES = [
  'DT_FLOAT', 'DT_DOUBLE', 'DT_INT32', 'DT_UINT8', 'DT_INT16', 'DT_INT8', 'DT_STRING', 'DT_INT64', 'DT_BOOL',
  'DT_BFLOAT16', 'DT_UINT16', 'DT_HALF', 'DT_UINT32', 'DT_UINT64',
] as const;
export type DType = (typeof DTYPES)[number];

export function isDType(value: unknown): value is DType {
  return typeof value === 'string' && (DTYPES as readonly string[]).includes(value);
}

/**
 * One element. Integers up to 32 bits and floats are numbers, INT64/UINT64 bigints, BOOL booleans, STRING
 * Buffers, and HALF/BFLOAT16 their 16-bit patterns (numbers 0..0xffff), exactly as half_val carries them.
 */
export type Element = number | bigint | boolean | Buffer;

export interface Tensor {
  dtype: DType;
  shape: number[];
  /** Row-major, elementCount(shape) of them. */
  values: Element[];
}

/** The repeated TensorProto field that holds each type's values when tensor_content is not used. */
export type ValField =
  | 'float_val' | 'double_val' | 'int_val' | 'int64_val' | 'bool_val' | 'string_val' | 'half_val' | 'uint32_val' | 'uint64_val';

export const VAL_FIELD: Readonly<Record<DType, ValField>> = {
  DT_FLOAT: 'float_val', DT_DOUBLE: 'double_val',
  DT_INT32: 'int_val', DT_INT16: 'int_val', DT_INT8: 'int_val', DT_UINT8: 'int_val', DT_UINT16: 'int_val',
  DT_INT64: 'int64_val', DT_UINT64: 'uint64_val', DT_UINT32: 'uint32_val',
  DT_BOOL: 'bool_val', DT_STRING: 'string_val', DT_HALF: 'half_val', DT_BFLOAT16: 'half_val',
};

/** Type names as TF's DataTypeString() prints them in error messages. */
export const TF_NAME: Readonly<Record<DType, string>> = {
  DT_FLOAT: 'float', DT_DOUBLE: 'double', DT_INT32: 'int32', DT_UINT8: 'uint8', DT_INT16: 'int16', DT_INT8: 'int8',
  DT_STRING: 'string', DT_INT64: 'int64', DT_BOOL: 'bool', DT_BFLOAT16: 'bfloat16', DT_UINT16: 'uint16',
  DT_HALF: 'half', DT_UINT32: 'uint32', DT_UINT64: 'uint64',
};

interface Codec {
  size: number;
  read(buf: Buffer, offset: number): Element;
  write(buf: Buffer, offset: number, value: Element): void;
}

const num = (v: Element): number => Number(v);
const big = (v: Element): bigint => (typeof v === 'bigint' ? v : BigInt(Number(v)));

const CODECS: Readonly<Record<Exclude<DType, 'DT_STRING'>, Codec>> = {
  DT_FLOAT: { size: 4, read: (b, o) => b.readFloatLE(o), write: (b, o, v) => b.writeFloatLE(num(v), o) },
  DT_DOUBLE: { size: 8, read: (b, o) => b.readDoubleLE(o), write: (b, o, v) => b.writeDoubleLE(num(v), o) },
  DT_INT32: { size: 4, read: (b, o) => b.readInt32LE(o), write: (b, o, v) => b.writeInt32LE(num(v), o) },
  DT_UINT8: { size: 1, read: (b, o) => b.readUInt8(o), write: (b, o, v) => b.writeUInt8(num(v), o) },
  DT_INT16: { size: 2, read: (b, o) => b.readInt16LE(o), write: (b, o, v) => b.writeInt16LE(num(v), o) },
  DT_INT8: { size: 1, read: (b, o) => b.readInt8(o), write: (b, o, v) => b.writeInt8(num(v), o) },
  DT_INT64: { size: 8, read: (b, o) => b.readBigInt64LE(o), write: (b, o, v) => b.writeBigInt64LE(big(v), o) },
  DT_BOOL: { size: 1, read: (b, o) => b[o] !== 0, write: (b, o, v) => void (b[o] = v ? 1 : 0) },
  DT_BFLOAT16: { size: 2, read: (b, o) => b.readUInt16LE(o), write: (b, o, v) => b.writeUInt16LE(num(v), o) },
  DT_UINT16: { size: 2, read: (b, o) => b.readUInt16LE(o), write: (b, o, v) => b.writeUInt16LE(num(v), o) },
  DT_HALF: { size: 2, read: (b, o) => b.readUInt16LE(o), write: (b, o, v) => b.writeUInt16LE(num(v), o) },
  DT_UINT32: { size: 4, read: (b, o) => b.readUInt32LE(o), write: (b, o, v) => b.writeUInt32LE(num(v), o) },
  DT_UINT64: { size: 8, read: (b, o) => b.readBigUInt64LE(o), write: (b, o, v) => b.writeBigUInt64LE(big(v), o) },
};

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

/** Byte size of one element in tensor_content; DT_STRING has none (it can only travel in string_val). */
export function elementSize(dtype: DType): number | undefined {
  return dtype === 'DT_STRING' ? undefined : CODECS[dtype].size;
}

export function fromLittleEndian(dtype: Exclude<DType, 'DT_STRING'>, data: Buffer): Element[] {
  const { size, read } = CODECS[dtype];
  const out: Element[] = [];
  for (let o = 0; o + size <= data.length; o += size) out.push(read(data, o));
  return out;
}

export function toLittleEndian(dtype: Exclude<DType, 'DT_STRING'>, values: readonly Element[]): Buffer {
  const { size, write } = CODECS[dtype];
  const out = Buffer.alloc(values.length * size);
  values.forEach((v, i) => write(out, i * size, v));
  return out;
}

/**
 * Integer range of each integer type. Values in int_val/uint32_val are cast into range the way TF's
 * static_cast does (INT8 -1 and 255 are the same bits), so a client may send either form.
 */
export const INT_RANGE: Readonly<Partial<Record<DType, readonly [bigint, bigint]>>> = {
  DT_INT8: [-(2n ** 7n), 2n ** 7n - 1n], DT_UINT8: [0n, 2n ** 8n - 1n],
  DT_INT16: [-(2n ** 15n), 2n ** 15n - 1n], DT_UINT16: [0n, 2n ** 16n - 1n],
  DT_INT32: [-(2n ** 31n), 2n ** 31n - 1n], DT_UINT32: [0n, 2n ** 32n - 1n],
  DT_INT64: [-(2n ** 63n), 2n ** 63n - 1n], DT_UINT64: [0n, 2n ** 64n - 1n],
};

/** static_cast of an int32 wire value to a narrower integer type (two's complement wrap-around). */
export function castInt(dtype: DType, v: number): number {
  switch (dtype) {
    case 'DT_INT8': return (v << 24) >> 24;
    case 'DT_UINT8': return v & 0xff;
    case 'DT_INT16': return (v << 16) >> 16;
    case 'DT_UINT16': return v & 0xffff;
    case 'DT_UINT32': return v >>> 0;
    default: return v | 0;
  }
}

// ---- 16-bit floats -------------------------------------------------------------------------------------------

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function roundHalfEven(v: number): number {
  const floor = Math.floor(v);
  const frac = v - floor;
  if (frac !== 0.5) return frac < 0.5 ? floor : floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** IEEE binary16 bits of a number, rounded to nearest even. Like TF, the number is first made a float32. */
export function toHalfBits(x: number): number {
  const v = Math.fround(x);
  if (Number.isNaN(v)) return 0x7e00;
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a >= 65520) return sign | 0x7c00; // 65504 is the largest half; from the midpoint 65520 up it rounds to infinity
  if (a < 2 ** -14) return sign | roundHalfEven(a * 2 ** 24); // subnormal: multiples of 2^-24 (1024 carries to normal)
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--; // log2 may be off by one near powers of two
  else if (2 ** (e + 1) <= a) e++;
  // A mantissa that rounds up to 1024 carries into the exponent, which the addition does by itself.
  return sign | (((e + 15) << 10) + roundHalfEven((a / 2 ** e - 1) * 1024));
}

export function fromHalfBits(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : Number.NaN;
  if (exp === 0) return sign * mant * 2 ** -24;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** bfloat16 bits: the top half of the float32, rounded to nearest even (as tensorflow::bfloat16 does). */
export function toBf16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0] ?? 0;
  if (Number.isNaN(f32[0])) return ((bits >>> 16) | 0x40) & 0xffff; // keep it a (quiet) NaN after truncation
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

export function fromBf16Bits(bits: number): number {
  u32[0] = (bits & 0xffff) << 16;
  return f32[0] ?? 0;
}

/**
 * The shortest decimal that reads back as the same value of a narrow float type, like TF's FloatToBuffer:
 * float32 0.1 is written 0.1, not 0.10000000149011612.
 */
export function shortestDecimal(v: number, sameValue: (candidate: number) => boolean): number {
  if (!Number.isFinite(v) || v === 0) return v;
  for (let precision = 1; precision < 17; precision++) {
    const candidate = Number(v.toPrecision(precision));
    if (sameValue(candidate)) return candidate;
  }
  return v;
}
