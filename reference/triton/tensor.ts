// Datatype facts and little-endian element codecs for the reference Triton server.
// Written independently of src/ on purpose: this server is the oracle the gateway's own codecs are tested against.
import { Buffer } from 'node:buffer';

export const DATATYPES = [
  'BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64',
  'FP16', 'BF16', 'FP32', 'FP64', 'BYTES',
] as const;
export type Datatype = (typeof DATATYPES)[number];

export function isDatatype(value: unknown): value is Datatype {
  return typeof value === 'string' && (DATATYPES as readonly string[]).includes(value);
}

/** A tensor as every codec hands it to the models: row-major little-endian bytes. */
export interface Tensor {
  name: string;
  datatype: Datatype;
  shape: number[];
  data: Buffer;
}

/**
 * One element as the JSON and typed-contents codecs see it: BOOL is a boolean, 64-bit integers are bigints
 * (a double cannot hold them), BYTES is a Buffer, everything else a number.
 */
export type Element = boolean | number | bigint | Buffer;

export const ELEMENT_BYTES: Readonly<Record<Exclude<Datatype, 'BYTES'>, number>> = {
  BOOL: 1, UINT8: 1, UINT16: 2, UINT32: 4, UINT64: 8, INT8: 1, INT16: 2, INT32: 4, INT64: 8,
  FP16: 2, BF16: 2, FP32: 4, FP64: 8,
};

type IntegerType = 'UINT8' | 'UINT16' | 'UINT32' | 'UINT64' | 'INT8' | 'INT16' | 'INT32' | 'INT64';

interface IntegerCodec {
  min: bigint;
  max: bigint;
  write(buf: Buffer, offset: number, value: bigint): void;
  read(buf: Buffer, offset: number): number | bigint;
}

const INTEGERS: Readonly<Record<IntegerType, IntegerCodec>> = {
  UINT8: { min: 0n, max: 0xffn, write: (b, o, v) => b.writeUInt8(Number(v), o), read: (b, o) => b.readUInt8(o) },
  UINT16: { min: 0n, max: 0xffffn, write: (b, o, v) => b.writeUInt16LE(Number(v), o), read: (b, o) => b.readUInt16LE(o) },
  UINT32: { min: 0n, max: 0xffffffffn, write: (b, o, v) => b.writeUInt32LE(Number(v), o), read: (b, o) => b.readUInt32LE(o) },
  UINT64: { min: 0n, max: 2n ** 64n - 1n, write: (b, o, v) => b.writeBigUInt64LE(v, o), read: (b, o) => b.readBigUInt64LE(o) },
  INT8: { min: -0x80n, max: 0x7fn, write: (b, o, v) => b.writeInt8(Number(v), o), read: (b, o) => b.readInt8(o) },
  INT16: { min: -0x8000n, max: 0x7fffn, write: (b, o, v) => b.writeInt16LE(Number(v), o), read: (b, o) => b.readInt16LE(o) },
  INT32: { min: -(2n ** 31n), max: 2n ** 31n - 1n, write: (b, o, v) => b.writeInt32LE(Number(v), o), read: (b, o) => b.readInt32LE(o) },
  INT64: { min: -(2n ** 63n), max: 2n ** 63n - 1n, write: (b, o, v) => b.writeBigInt64LE(v, o), read: (b, o) => b.readBigInt64LE(o) },
};

function isIntegerType(datatype: Datatype): datatype is IntegerType {
  return datatype in INTEGERS;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

/** Shape as Triton prints it in error messages: `[-1,4]`. */
export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

/** Frames BYTES elements: each is a 4-byte little-endian length followed by the bytes. */
export function joinBytes(items: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [];
  for (const item of items) {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(item.length, 0);
    parts.push(len, item);
  }
  return Buffer.concat(parts);
}

/** Inverse of joinBytes; throws if the framing does not cover the buffer exactly. */
export function splitBytes(data: Buffer): Buffer[] {
  const items: Buffer[] = [];
  let offset = 0;
  while (offset < data.length) {
    if (offset + 4 > data.length) throw new RangeError(`truncated BYTES length prefix at byte ${offset}`);
    const len = data.readUInt32LE(offset);
    offset += 4;
    if (offset + len > data.length) throw new RangeError(`BYTES element of ${len} bytes overruns the data at byte ${offset}`);
    items.push(data.subarray(offset, offset + len));
    offset += len;
  }
  return items;
}

/** Encodes elements of one datatype; throws TypeError/RangeError (message without tensor name) on a bad value. */
export function encodeElements(datatype: Datatype, values: readonly Element[]): Buffer {
  if (datatype === 'BYTES') {
    return joinBytes(values.map((v, i) => {
      if (!Buffer.isBuffer(v)) throw new TypeError(`element ${i} must be a string, got ${describe(v)}`);
      return v;
    }));
  }
  if (datatype === 'FP16' || datatype === 'BF16') {
    throw new TypeError(`${datatype} elements have no value encoding; send them as raw bytes`);
  }
  const size = ELEMENT_BYTES[datatype];
  const out = Buffer.alloc(values.length * size);
  values.forEach((v, i) => {
    const offset = i * size;
    if (datatype === 'BOOL') {
      if (typeof v !== 'boolean') throw new TypeError(`element ${i} must be a boolean, got ${describe(v)}`);
      out[offset] = v ? 1 : 0;
    } else if (datatype === 'FP32' || datatype === 'FP64') {
      if (typeof v !== 'number' && typeof v !== 'bigint') throw new TypeError(`element ${i} must be a number, got ${describe(v)}`);
      if (datatype === 'FP32') out.writeFloatLE(Number(v), offset);
      else out.writeDoubleLE(Number(v), offset);
    } else if (isIntegerType(datatype)) {
      const codec = INTEGERS[datatype];
      const n = typeof v === 'bigint' ? v : typeof v === 'number' && Number.isInteger(v) ? BigInt(v) : undefined;
      if (n === undefined) throw new TypeError(`element ${i} must be an integer, got ${describe(v)}`);
      if (n < codec.min || n > codec.max) throw new RangeError(`element ${i} (${n}) is out of range for ${datatype}`);
      codec.write(out, offset, n);
    }
  });
  return out;
}

/** Decodes raw bytes to elements; FP16/BF16 have no element form here (Triton refuses them in JSON). */
export function decodeElements(datatype: Datatype, data: Buffer): Element[] {
  if (datatype === 'BYTES') return splitBytes(data);
  if (datatype === 'FP16' || datatype === 'BF16') throw new TypeError(`${datatype} has no element decoding`);
  const size = ELEMENT_BYTES[datatype];
  const out: Element[] = [];
  for (let offset = 0; offset + size <= data.length; offset += size) {
    if (datatype === 'BOOL') out.push(data[offset] !== 0);
    else if (datatype === 'FP32') out.push(data.readFloatLE(offset));
    else if (datatype === 'FP64') out.push(data.readDoubleLE(offset));
    else if (isIntegerType(datatype)) out.push(INTEGERS[datatype].read(data, offset));
  }
  return out;
}

function describe(v: unknown): string {
  if (Buffer.isBuffer(v)) return 'bytes';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return JSON.stringify(v);
  return v === null ? 'null' : typeof v === 'object' ? 'an object' : String(v);
}
