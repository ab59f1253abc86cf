import { ELEMENT_SIZE, type DataType } from './datatypes.js';
import { invalidArgument } from './errors.js';
import { joinBytesElements, splitBytesElements } from './tensor.js';

/**
 * Conversions between a tensor's raw bytes and plain JavaScript values, for the
 * codecs whose wire form is a list of values (v2 JSON, gRPC typed contents).
 *
 * Values per datatype:
 *   BOOL            boolean
 *   (U)INT8..32     number (integer in range)
 *   (U)INT64        bigint on the way out; on the way in a safe-integer number,
 *                   a bigint, or a decimal string (exact 64-bit values in JSON)
 *   FP16/BF16/32/64 number; NaN and ±Infinity also as "NaN" / "Infinity" / "-Infinity"
 *   BYTES           Uint8Array on the way out; string (UTF-8) or Uint8Array in
 */
export type ElementValue = boolean | number | bigint | string | Uint8Array;

const INT_RANGE: Partial<Record<DataType, readonly [number, number]>> = {
  INT8: [-128, 127],
  INT16: [-32768, 32767],
  INT32: [-2147483648, 2147483647],
  UINT8: [0, 255],
  UINT16: [0, 65535],
  UINT32: [0, 4294967295],
};

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

/** Row-major flattening of nested arrays ([[1,2],[3,4]] -> [1,2,3,4]); a flat array is returned as is. */
export function flattenValues(data: unknown, what: string): unknown[] {
  if (!Array.isArray(data)) throw invalidArgument(`${what}: 'data' must be an array`);
  if (!data.some(Array.isArray)) return data;
  const out: unknown[] = [];
  const walk = (v: unknown, depth: number): void => {
    if (depth > 64) throw invalidArgument(`${what}: 'data' is nested too deeply`);
    if (Array.isArray(v)) for (const x of v) walk(x, depth + 1);
    else out.push(v);
  };
  walk(data, 0);
  return out;
}

/** Raw little-endian bytes for `values` of `datatype`; every element is checked. */
export function encodeElements(datatype: DataType, values: readonly unknown[], what: string): Buffer {
  if (datatype === 'BYTES') return joinBytesElements(values.map((v, i) => toBytesElement(v, i, what)));
  const n = values.length;
  const buf = Buffer.allocUnsafe(n * ELEMENT_SIZE[datatype]);
  switch (datatype) {
    case 'BOOL':
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (typeof v !== 'boolean') throw badElement(what, i, v, 'a boolean');
        buf[i] = v ? 1 : 0;
      }
      return buf;
    case 'INT8':
    case 'INT16':
    case 'INT32':
    case 'UINT8':
    case 'UINT16':
    case 'UINT32': {
      const [lo, hi] = INT_RANGE[datatype]!;
      const write = INT_WRITERS[datatype];
      const size = ELEMENT_SIZE[datatype];
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
          throw badElement(what, i, v, `an integer in [${lo}, ${hi}]`);
        }
        write(buf, v, i * size);
      }
      return buf;
    }
    case 'INT64':
    case 'UINT64': {
      const signed = datatype === 'INT64';
      for (let i = 0; i < n; i++) {
        const v = toBigInt(values[i], signed, what, i);
        if (signed) buf.writeBigInt64LE(v, i * 8);
        else buf.writeBigUInt64LE(v, i * 8);
      }
      return buf;
    }
    case 'FP32':
      for (let i = 0; i < n; i++) buf.writeFloatLE(toFloat(values[i], what, i), i * 4);
      return buf;
    case 'FP64':
      for (let i = 0; i < n; i++) buf.writeDoubleLE(toFloat(values[i], what, i), i * 8);
      return buf;
    case 'FP16':
      for (let i = 0; i < n; i++) buf.writeUInt16LE(float64ToFp16Bits(toFloat(values[i], what, i)), i * 2);
      return buf;
    case 'BF16':
      for (let i = 0; i < n; i++) buf.writeUInt16LE(float64ToBf16Bits(toFloat(values[i], what, i)), i * 2);
      return buf;
  }
}

/** The elements of raw `data` as JavaScript values (see the table above). Assumes checked data. */
export function decodeElements(datatype: DataType, data: Buffer): ElementValue[] {
  if (datatype === 'BYTES') return splitBytesElements(data);
  const size = ELEMENT_SIZE[datatype];
  const n = data.length / size;
  const out: ElementValue[] = new Array<ElementValue>(n);
  switch (datatype) {
    case 'BOOL':
      for (let i = 0; i < n; i++) out[i] = data[i] !== 0;
      break;
    case 'INT8':
      for (let i = 0; i < n; i++) out[i] = data.readInt8(i);
      break;
    case 'UINT8':
      for (let i = 0; i < n; i++) out[i] = data[i]!;
      break;
    case 'INT16':
      for (let i = 0; i < n; i++) out[i] = data.readInt16LE(i * 2);
      break;
    case 'UINT16':
      for (let i = 0; i < n; i++) out[i] = data.readUInt16LE(i * 2);
      break;
    case 'INT32':
      for (let i = 0; i < n; i++) out[i] = data.readInt32LE(i * 4);
      break;
    case 'UINT32':
      for (let i = 0; i < n; i++) out[i] = data.readUInt32LE(i * 4);
      break;
    case 'INT64':
      for (let i = 0; i < n; i++) out[i] = data.readBigInt64LE(i * 8);
      break;
    case 'UINT64':
      for (let i = 0; i < n; i++) out[i] = data.readBigUInt64LE(i * 8);
      break;
    case 'FP16':
      for (let i = 0; i < n; i++) out[i] = fp16BitsToFloat64(data.readUInt16LE(i * 2));
      break;
    case 'BF16':
      for (let i = 0; i < n; i++) out[i] = bf16BitsToFloat64(data.readUInt16LE(i * 2));
      break;
    case 'FP32':
      for (let i = 0; i < n; i++) out[i] = data.readFloatLE(i * 4);
      break;
    case 'FP64':
      for (let i = 0; i < n; i++) out[i] = data.readDoubleLE(i * 8);
      break;
  }
  return out;
}

type IntWriter = (buf: Buffer, v: number, off: number) => void;
const INT_WRITERS: Record<'INT8' | 'INT16' | 'INT32' | 'UINT8' | 'UINT16' | 'UINT32', IntWriter> = {
  INT8: (b, v, o) => b.writeInt8(v, o),
  INT16: (b, v, o) => b.writeInt16LE(v, o),
  INT32: (b, v, o) => b.writeInt32LE(v, o),
  UINT8: (b, v, o) => b.writeUInt8(v, o),
  UINT16: (b, v, o) => b.writeUInt16LE(v, o),
  UINT32: (b, v, o) => b.writeUInt32LE(v, o),
};

const SPECIAL_FLOATS: ReadonlyMap<string, number> = new Map([
  ['NaN', Number.NaN],
  ['Infinity', Number.POSITIVE_INFINITY],
  ['-Infinity', Number.NEGATIVE_INFINITY],
]);

function toFloat(v: unknown, what: string, i: number): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') {
    const special = SPECIAL_FLOATS.get(v);
    if (special !== undefined) return special;
  }
  throw badElement(what, i, v, 'a number');
}

function toBigInt(v: unknown, signed: boolean, what: string, i: number): bigint {
  let b: bigint | undefined;
  if (typeof v === 'bigint') b = v;
  else if (typeof v === 'number' && Number.isSafeInteger(v)) b = BigInt(v);
  else if (typeof v === 'string' && /^-?\d{1,20}$/.test(v)) b = BigInt(v);
  const [lo, hi] = signed ? [INT64_MIN, INT64_MAX] : [0n, UINT64_MAX];
  if (b === undefined || b < lo || b > hi) {
    const hint =
      typeof v === 'number' && Number.isInteger(v)
        ? ' (beyond 2^53 a JSON number loses precision: send it as a decimal string or as binary data)'
        : '';
    throw badElement(what, i, v, `an integer in [${lo}, ${hi}]${hint}`);
  }
  return b;
}

function toBytesElement(v: unknown, i: number, what: string): Uint8Array {
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  if (v instanceof Uint8Array) return v;
  throw badElement(what, i, v, 'a string');
}

function badElement(what: string, i: number, v: unknown, expected: string) {
  const shown = typeof v === 'string' ? JSON.stringify(v.length > 32 ? `${v.slice(0, 32)}…` : v) : String(v);
  return invalidArgument(`${what}: element ${i} is ${shown}, expected ${expected}`);
}

// IEEE 754 half and bfloat16 conversions, rounding to nearest even, as
// numpy and the model servers do.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function float64ToFp16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
  // Rounding happens from the float32 value; a double between float32 values
  // can double-round, which matches how frameworks convert (via float32).
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && (r & 1) === 1)) r++;
    return sign | r;
  }
  let r = mant >>> 13;
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1) === 1)) {
    r++;
    if (r === 0x400) {
      r = 0;
      e++;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | r;
}

export function fp16BitsToFloat64(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export function float64ToBf16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return ((x >>> 16) | 0x40) & 0xffff;
  const rounded = x + 0x7fff + ((x >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

export function bf16BitsToFloat64(bits: number): number {
  u32[0] = (bits & 0xffff) << 16;
  return f32[0]!;
}
