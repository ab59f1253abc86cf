/**
 * Sample tensors for every v2 datatype, with edge values, as the JSON values a
 * client sends and as the raw little-endian bytes the wire carries. The raw
 * encoding here is written independently of src/ so it can check the gateway.
 */
export type SampleDatatype =
  | 'BOOL' | 'UINT8' | 'UINT16' | 'UINT32' | 'UINT64' | 'INT8' | 'INT16' | 'INT32' | 'INT64'
  | 'FP16' | 'BF16' | 'FP32' | 'FP64' | 'BYTES';

export interface Sample {
  readonly datatype: SampleDatatype;
  readonly shape: readonly [number, number];
  /** What a JSON client sends (64-bit integers beyond 2^53 as decimal strings). */
  readonly json: readonly (number | string | boolean)[];
  /** The raw row-major little-endian bytes of the same values. */
  readonly raw: Buffer;
}

function raw(size: number, values: readonly unknown[], write: (view: DataView, off: number, v: never) => void): Buffer {
  const buf = Buffer.alloc(size * values.length);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  values.forEach((v, i) => write(view, i * size, v as never));
  return buf;
}

function bytesFraming(values: readonly string[]): Buffer {
  return Buffer.concat(
    values.flatMap((s) => {
      const data = Buffer.from(s, 'utf8');
      const len = Buffer.alloc(4);
      len.writeUInt32LE(data.length);
      return [len, data];
    }),
  );
}

// FP16 bit patterns and their exact values.
const FP16: readonly [number, number][] = [
  [0x0000, 0], [0x3c00, 1], [0xc080, -2.25], [0x7bff, 65504], [0x2e66, 0.0999755859375], [0x0001, 2 ** -24],
];
// BF16 bit patterns and their exact values.
const BF16: readonly [number, number][] = [
  [0x0000, 0], [0x3f80, 1], [0xc000, -2], [0x4049, 3.140625], [0x7f7f, 3.3895313892515355e38], [0x3dcd, 0.10009765625],
];
const FP32 = [0, 1.5, Math.fround(0.1), 3.4028234663852886e38, -Math.fround(1e-45), -123.25];
const FP64 = [0, 0.1, Math.PI, 1.7976931348623157e308, 5e-324, -1e-300];
const BYTES = ['', 'a', 'héllo wörld', 'tab\tand\nnewline', 'x'.repeat(300), '🙂 emoji'];

export const SAMPLES: readonly Sample[] = [
  { datatype: 'BOOL', shape: [2, 3], json: [true, false, true, true, false, false], raw: Buffer.from([1, 0, 1, 1, 0, 0]) },
  { datatype: 'UINT8', shape: [2, 3], json: [0, 1, 127, 128, 254, 255], raw: Buffer.from([0, 1, 127, 128, 254, 255]) },
  { datatype: 'UINT16', shape: [2, 3], json: [0, 1, 255, 256, 65534, 65535], raw: raw(2, [0, 1, 255, 256, 65534, 65535], (d, o, v: number) => d.setUint16(o, v, true)) },
  { datatype: 'UINT32', shape: [2, 3], json: [0, 1, 65535, 65536, 4294967294, 4294967295], raw: raw(4, [0, 1, 65535, 65536, 4294967294, 4294967295], (d, o, v: number) => d.setUint32(o, v, true)) },
  {
    datatype: 'UINT64', shape: [2, 3],
    json: [0, 1, '9007199254740993', '9223372036854775808', '18446744073709551614', '18446744073709551615'],
    raw: raw(8, [0n, 1n, 9007199254740993n, 9223372036854775808n, 18446744073709551614n, 18446744073709551615n], (d, o, v: bigint) => d.setBigUint64(o, v, true)),
  },
  { datatype: 'INT8', shape: [2, 3], json: [-128, -1, 0, 1, 126, 127], raw: raw(1, [-128, -1, 0, 1, 126, 127], (d, o, v: number) => d.setInt8(o, v)) },
  { datatype: 'INT16', shape: [2, 3], json: [-32768, -1, 0, 1, 32766, 32767], raw: raw(2, [-32768, -1, 0, 1, 32766, 32767], (d, o, v: number) => d.setInt16(o, v, true)) },
  { datatype: 'INT32', shape: [2, 3], json: [-2147483648, -1, 0, 1, 2147483646, 2147483647], raw: raw(4, [-2147483648, -1, 0, 1, 2147483646, 2147483647], (d, o, v: number) => d.setInt32(o, v, true)) },
  {
    datatype: 'INT64', shape: [2, 3],
    json: ['-9223372036854775808', -1, 0, '9007199254740993', '4611686018427387904', '9223372036854775807'],
    raw: raw(8, [-9223372036854775808n, -1n, 0n, 9007199254740993n, 4611686018427387904n, 9223372036854775807n], (d, o, v: bigint) => d.setBigInt64(o, v, true)),
  },
  { datatype: 'FP16', shape: [2, 3], json: FP16.map(([, v]) => v), raw: raw(2, FP16.map(([b]) => b), (d, o, v: number) => d.setUint16(o, v, true)) },
  { datatype: 'BF16', shape: [2, 3], json: BF16.map(([, v]) => v), raw: raw(2, BF16.map(([b]) => b), (d, o, v: number) => d.setUint16(o, v, true)) },
  { datatype: 'FP32', shape: [2, 3], json: FP32, raw: raw(4, FP32, (d, o, v: number) => d.setFloat32(o, v, true)) },
  { datatype: 'FP64', shape: [2, 3], json: FP64, raw: raw(8, FP64, (d, o, v: number) => d.setFloat64(o, v, true)) },
  { datatype: 'BYTES', shape: [2, 3], json: BYTES, raw: bytesFraming(BYTES) },
];

/** Parses the JSON values a gateway returned into comparable form (64-bit ints as decimal strings). */
export function normalizeJsonValues(datatype: SampleDatatype, values: readonly unknown[]): unknown[] {
  if (datatype === 'INT64' || datatype === 'UINT64') return values.map((v) => String(v));
  return [...values];
}
