import { describe, expect, it } from 'vitest';
import { DATATYPES } from '../../../src/core/datatypes.js';
import { GatewayError } from '../../../src/core/errors.js';
import {
  TF_DATATYPE_NUMBERS,
  tfDataType,
  tfDataTypeName,
  tfDataTypeOfName,
  v2DataType,
  v2DataTypeOrTfName,
} from '../../../src/protocols/tfserving/datatypes.js';

/** The mapping as PROTOCOLS.md §3 and types.proto state it, written out independently. */
const EXPECTED = {
  BOOL: ['DT_BOOL', 10],
  UINT8: ['DT_UINT8', 4],
  UINT16: ['DT_UINT16', 17],
  UINT32: ['DT_UINT32', 22],
  UINT64: ['DT_UINT64', 23],
  INT8: ['DT_INT8', 6],
  INT16: ['DT_INT16', 5],
  INT32: ['DT_INT32', 3],
  INT64: ['DT_INT64', 9],
  FP16: ['DT_HALF', 19],
  BF16: ['DT_BFLOAT16', 14],
  FP32: ['DT_FLOAT', 1],
  FP64: ['DT_DOUBLE', 2],
  BYTES: ['DT_STRING', 7],
} as const;

const NO_COUNTERPART = [
  ['DT_INVALID', 0, /no type was set/],
  ['DT_COMPLEX64', 8, /complex/],
  ['DT_COMPLEX128', 18, /complex/],
  ['DT_QINT8', 11, /quantized/],
  ['DT_QUINT8', 12, /quantized/],
  ['DT_QINT16', 15, /quantized/],
  ['DT_QUINT16', 16, /quantized/],
  ['DT_QINT32', 13, /quantized/],
  ['DT_RESOURCE', 20, /resource/],
  ['DT_VARIANT', 21, /variant/],
  ['DT_FLOAT8_E5M2', 24, /float8/],
  ['DT_FLOAT8_E4M3FN', 25, /float8/],
  ['DT_INT4', 29, /4-bit/],
  ['DT_UINT4', 30, /4-bit/],
] as const;

function errorOf(fn: () => unknown): GatewayError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError);
    return err as GatewayError;
  }
  throw new Error('expected an error');
}

describe('TF DataType <-> v2 datatype', () => {
  it('covers every v2 datatype', () => {
    expect(Object.keys(EXPECTED).sort()).toEqual([...DATATYPES].sort());
  });

  for (const [v2, [tf, number]] of Object.entries(EXPECTED)) {
    it(`${v2} <-> ${tf} (${number}), by name and by number`, () => {
      expect(tfDataType(v2 as keyof typeof EXPECTED)).toBe(tf);
      expect(TF_DATATYPE_NUMBERS[tf]).toBe(number);
      expect(v2DataType(tf, 'input x')).toBe(v2);
      expect(v2DataType(number, 'input x')).toBe(v2);
      expect(v2DataTypeOrTfName(tf)).toBe(v2);
      expect(tfDataTypeOfName(v2)).toBe(tf);
    });
  }

  for (const [tf, number, reason] of NO_COUNTERPART) {
    it(`${tf} has no v2 counterpart: INVALID_ARGUMENT naming it`, () => {
      for (const given of [tf, number]) {
        const err = errorOf(() => v2DataType(given, "input 'x'"));
        expect(err.code).toBe('INVALID_ARGUMENT');
        expect(err.message).toMatch(new RegExp(`^input 'x': TF type ${tf} is not supported: `));
        expect(err.message).toMatch(reason);
      }
      // Metadata may describe such tensors: they keep their TF name.
      expect(v2DataTypeOrTfName(tf)).toBe(tf);
    });
  }

  it('reference types (*_REF, base + 100) and unknown numbers are refused by name', () => {
    expect(tfDataTypeName(101)).toBe('DT_FLOAT_REF');
    expect(errorOf(() => v2DataType(101, 'x')).message).toMatch(/DT_FLOAT_REF .*reference types/);
    expect(errorOf(() => v2DataType('DT_HALF_REF', 'x')).message).toMatch(/DT_HALF_REF .*reference types/);
    expect(errorOf(() => v2DataType(27, 'x')).message).toMatch(/DataType 27 .*not a TF DataType/);
    expect(errorOf(() => v2DataType(undefined, 'x')).message).toMatch(/DT_INVALID/);
  });

  it('a v2 name with no TF twin becomes DT_INVALID in metadata', () => {
    expect(tfDataTypeOfName('FP8')).toBe('DT_INVALID');
    expect(tfDataTypeOfName('DT_COMPLEX64')).toBe('DT_COMPLEX64');
  });
});
