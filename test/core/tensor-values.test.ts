import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/core/errors.js';
import { checkTensorData } from '../../src/core/tensor.js';
import {
  bf16BitsToFloat64,
  decodeElements,
  encodeElements,
  float64ToBf16Bits,
  float64ToFp16Bits,
  flattenValues,
  fp16BitsToFloat64,
} from '../../src/core/tensor-values.js';
import { SAMPLES } from '../helpers/samples.js';

function rejects(fn: () => unknown, pattern: RegExp): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe('INVALID_ARGUMENT');
    expect((err as Error).message).toMatch(pattern);
    return;
  }
  throw new Error('expected INVALID_ARGUMENT');
}

describe('tensor values', () => {
  it('encodes each datatype to the same bytes as an independent encoder', () => {
    for (const s of SAMPLES) expect(encodeElements(s.datatype, s.json, 'x').equals(s.raw), s.datatype).toBe(true);
  });

  it('decodes raw bytes back to the values', () => {
    for (const s of SAMPLES) {
      const values = decodeElements(s.datatype, s.raw);
      const shown = values.map((v) => (typeof v === 'bigint' ? String(v) : v instanceof Uint8Array ? Buffer.from(v).toString() : v));
      const want = s.json.map((v) => (s.datatype.endsWith('INT64') ? String(v) : v));
      expect(shown, s.datatype).toEqual(want);
    }
  });

  it('round-trips every FP16 and BF16 bit pattern (NaN aside)', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const h = fp16BitsToFloat64(bits);
      if (!Number.isNaN(h)) expect(float64ToFp16Bits(h)).toBe(bits);
      const b = bf16BitsToFloat64(bits);
      if (!Number.isNaN(b)) expect(float64ToBf16Bits(b)).toBe(bits);
    }
  });

  it('rounds to nearest even into FP16, overflowing to infinity', () => {
    expect(float64ToFp16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie, to even
    expect(float64ToFp16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie, to even (up)
    expect(float64ToFp16Bits(65520)).toBe(0x7c00);
    expect(Number.isNaN(fp16BitsToFloat64(float64ToFp16Bits(Number.NaN)))).toBe(true);
  });

  it('accepts NaN and infinities as strings for float types', () => {
    const buf = encodeElements('FP32', ['NaN', 'Infinity', '-Infinity'], 'x');
    expect(Number.isNaN(buf.readFloatLE(0))).toBe(true);
    expect(buf.readFloatLE(4)).toBe(Number.POSITIVE_INFINITY);
    expect(buf.readFloatLE(8)).toBe(Number.NEGATIVE_INFINITY);
  });

  it('rejects out-of-range and wrongly typed elements, naming the element', () => {
    rejects(() => encodeElements('INT8', [1, 128], "input 'a'"), /input 'a': element 1 is 128/);
    rejects(() => encodeElements('UINT32', [-1], 'x'), /element 0/);
    rejects(() => encodeElements('INT32', [1.5], 'x'), /element 0/);
    rejects(() => encodeElements('BOOL', [1], 'x'), /boolean/);
    rejects(() => encodeElements('FP32', ['1.0'], 'x'), /number/);
    rejects(() => encodeElements('BYTES', [5], 'x'), /string/);
    rejects(() => encodeElements('INT64', [2 ** 60], 'x'), /decimal string/);
    rejects(() => encodeElements('UINT64', ['18446744073709551616'], 'x'), /element 0/);
    rejects(() => encodeElements('INT64', ['12a'], 'x'), /element 0/);
  });

  it('flattens nested data row-major and refuses non-arrays', () => {
    expect(flattenValues([[1, 2], [3, [4]]], 'x')).toEqual([1, 2, 3, 4]);
    rejects(() => flattenValues(5, 'x'), /must be an array/);
  });

  it('checks data length against shape, and BYTES framing', () => {
    expect(() => checkTensorData('FP32', [2, 2], Buffer.alloc(16), 'x')).not.toThrow();
    rejects(() => checkTensorData('FP32', [2, 2], Buffer.alloc(15), 'x'), /needs 16 bytes/);
    rejects(() => checkTensorData('BYTES', [1], Buffer.from([5, 0, 0, 0, 1]), 'x'), /declares 5 bytes/);
    rejects(() => checkTensorData('BYTES', [1], Buffer.from([5, 0]), 'x'), /truncated/);
    rejects(() => checkTensorData('BYTES', [2], Buffer.from([0, 0, 0, 0]), 'x'), /needs 2 BYTES elements, got 1/);
  });
});
