import { describe, expect, it } from 'vitest';
import { GatewayError, type ErrorCode } from '../../../src/core/errors.js';
import type { Tensor } from '../../../src/core/tensor.js';
import {
  PREDICTION_SERVICE,
  type PredictRequestMessage,
  type TensorProtoMessage,
} from '../../../src/protocols/tfserving/grpc-proto.js';
import { MAX_BROADCAST_BYTES, tensorFromProto, tensorToProto } from '../../../src/protocols/tfserving/tensor-proto.js';
import { SAMPLES, type Sample } from '../../helpers/samples.js';

const TF_NAME: Record<Sample['datatype'], string> = {
  BOOL: 'DT_BOOL', UINT8: 'DT_UINT8', UINT16: 'DT_UINT16', UINT32: 'DT_UINT32', UINT64: 'DT_UINT64',
  INT8: 'DT_INT8', INT16: 'DT_INT16', INT32: 'DT_INT32', INT64: 'DT_INT64',
  FP16: 'DT_HALF', BF16: 'DT_BFLOAT16', FP32: 'DT_FLOAT', FP64: 'DT_DOUBLE', BYTES: 'DT_STRING',
};

/** The typed field and values TF Serving would answer with, read from the sample's raw bytes. */
function typedForm(s: Sample): [keyof TensorProtoMessage, unknown[]] {
  const r = s.raw;
  const n = (size: number) => Array.from({ length: r.length / size }, (_, i) => i * size);
  switch (s.datatype) {
    case 'BOOL': return ['bool_val', [...r].map((b) => b !== 0)];
    case 'UINT8': return ['int_val', [...r]];
    case 'INT8': return ['int_val', n(1).map((o) => r.readInt8(o))];
    case 'UINT16': return ['int_val', n(2).map((o) => r.readUInt16LE(o))];
    case 'INT16': return ['int_val', n(2).map((o) => r.readInt16LE(o))];
    case 'INT32': return ['int_val', n(4).map((o) => r.readInt32LE(o))];
    case 'UINT32': return ['uint32_val', n(4).map((o) => r.readUInt32LE(o))];
    case 'INT64': return ['int64_val', n(8).map((o) => r.readBigInt64LE(o).toString())];
    case 'UINT64': return ['uint64_val', n(8).map((o) => r.readBigUInt64LE(o).toString())];
    case 'FP16':
    case 'BF16': return ['half_val', n(2).map((o) => r.readUInt16LE(o))];
    case 'FP32': return ['float_val', n(4).map((o) => r.readFloatLE(o))];
    case 'FP64': return ['double_val', n(8).map((o) => r.readDoubleLE(o))];
    case 'BYTES': return ['string_val', (s.json as string[]).map((v) => Buffer.from(v, 'utf8'))];
  }
}

const predict = PREDICTION_SERVICE.Predict!;
/** Through the real wire: serialized and parsed back as a PredictRequest input. */
function overTheWire(proto: TensorProtoMessage): TensorProtoMessage {
  const bytes = predict.requestSerialize({ model_spec: { name: 'm' }, inputs: { x: proto } } satisfies PredictRequestMessage);
  return (predict.requestDeserialize(bytes) as PredictRequestMessage).inputs!.x!;
}

function shape(dims: number[]) {
  return { dim: dims.map((size) => ({ size: String(size) })) };
}

function expectError(fn: () => unknown, code: ErrorCode, message: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected an error').toBeInstanceOf(GatewayError);
  expect((caught as GatewayError).code).toBe(code);
  expect((caught as GatewayError).message).toMatch(message);
}

describe('TensorProto encoding', () => {
  for (const s of SAMPLES) {
    it(`${s.datatype}: ${s.datatype === 'BYTES' ? 'string_val' : 'tensor_content'} carries the exact bytes and decodes back`, () => {
      const t: Tensor = { name: 'x', datatype: s.datatype, shape: [...s.shape], data: s.raw };
      const proto = tensorToProto(t);
      expect(proto.dtype).toBe(TF_NAME[s.datatype]);
      expect(proto.tensor_shape).toEqual(shape([...s.shape]));
      if (s.datatype === 'BYTES') {
        expect(proto.tensor_content).toBeUndefined();
        expect(proto.string_val!.map((b) => b.toString('utf8'))).toEqual(s.json);
      } else {
        expect(proto.tensor_content).toBe(s.raw); // the tensor's own bytes, not a copy
      }
      const back = tensorFromProto('x', overTheWire(proto), 'output x');
      expect(back).toMatchObject({ name: 'x', datatype: s.datatype, shape: [...s.shape] });
      expect(back.data.equals(s.raw)).toBe(true);
    });
  }

  it('a scalar has no dims, and an empty tensor no values', () => {
    const scalar = tensorToProto({ name: 's', datatype: 'FP32', shape: [], data: Buffer.from([0, 0, 128, 63]) });
    expect(scalar.tensor_shape).toEqual({ dim: [] });
    expect(tensorFromProto('s', overTheWire(scalar), 's')).toMatchObject({ shape: [], data: Buffer.from([0, 0, 128, 63]) });
    const empty = tensorFromProto('e', overTheWire(tensorToProto({ name: 'e', datatype: 'INT64', shape: [0, 3], data: Buffer.alloc(0) })), 'e');
    expect(empty).toMatchObject({ shape: [0, 3], data: Buffer.alloc(0) });
  });
});

describe('TensorProto decoding: typed fields', () => {
  for (const s of SAMPLES) {
    const [field, values] = typedForm(s);
    it(`${s.datatype} from ${field}`, () => {
      const proto = overTheWire({ dtype: TF_NAME[s.datatype], tensor_shape: shape([...s.shape]), [field]: values });
      const t = tensorFromProto('x', proto, "input 'x'");
      expect(t).toMatchObject({ datatype: s.datatype, shape: [...s.shape] });
      expect(t.data.equals(s.raw)).toBe(true);
    });

    it(`${s.datatype}: one value in ${field} is broadcast over the shape`, () => {
      const proto = overTheWire({ dtype: TF_NAME[s.datatype], tensor_shape: shape([2, 2]), [field]: values.slice(1, 2) });
      const t = tensorFromProto('x', proto, "input 'x'");
      const one = tensorFromProto('x', overTheWire({ dtype: TF_NAME[s.datatype], tensor_shape: shape([1]), [field]: values.slice(1, 2) }), 'x');
      expect(t.shape).toEqual([2, 2]);
      expect(t.data.equals(Buffer.concat([one.data, one.data, one.data, one.data]))).toBe(true);
    });
  }

  it('narrow integers keep their low bits, as TF static_casts (INT8 255 is -1)', () => {
    const t = tensorFromProto('x', { dtype: 'DT_INT8', tensor_shape: shape([3]), int_val: [255, -1, 128] }, 'x');
    expect([...t.data]).toEqual([255, 255, 128]);
  });

  it('an empty value list for zero elements', () => {
    const t = tensorFromProto('x', overTheWire({ dtype: 'DT_FLOAT', tensor_shape: shape([2, 0]) }), 'x');
    expect(t).toMatchObject({ shape: [2, 0], data: Buffer.alloc(0) });
  });

  it('accepts the dtype as a number too', () => {
    expect(tensorFromProto('x', { dtype: 3, tensor_shape: shape([1]), int_val: [7] }, 'x').data).toEqual(Buffer.from([7, 0, 0, 0]));
  });
});

describe('TensorProto decoding: refusals', () => {
  it('a shape that disagrees with the values', () => {
    expectError(() => tensorFromProto('x', { dtype: 'DT_FLOAT', tensor_shape: shape([2, 2]), float_val: [1, 2, 3] }, "input 'x'"), 'INVALID_ARGUMENT', /^input 'x': shape \[2,2\] holds 4 elements but float_val has 3 values/);
    expectError(() => tensorFromProto('x', { dtype: 'DT_FLOAT', tensor_shape: shape([2]), float_val: [1, 2, 3] }, 'x'), 'INVALID_ARGUMENT', /holds 2 elements but float_val has 3/);
    expectError(() => tensorFromProto('x', { dtype: 'DT_FLOAT', tensor_shape: shape([2]) }, 'x'), 'INVALID_ARGUMENT', /holds 2 elements but float_val has 0/);
    expectError(
      () => tensorFromProto('x', { dtype: 'DT_INT32', tensor_shape: shape([3]), tensor_content: Buffer.alloc(8) }, "input 'x'"),
      'INVALID_ARGUMENT',
      /input 'x': shape \[3\] of INT32 needs 12 bytes of data, got 8/,
    );
  });

  it('-1 dims and unknown rank: a tensor needs a concrete shape', () => {
    expectError(() => tensorFromProto('x', { dtype: 'DT_FLOAT', tensor_shape: shape([-1, 2]), float_val: [1, 2] }, 'x'), 'INVALID_ARGUMENT', /-1, an unknown dimension/);
    expectError(() => tensorFromProto('x', { dtype: 'DT_FLOAT', tensor_shape: { unknown_rank: true }, float_val: [1] }, 'x'), 'INVALID_ARGUMENT', /unknown_rank/);
  });

  it('values in the wrong field, or in two forms at once', () => {
    expectError(() => tensorFromProto('x', { dtype: 'DT_FLOAT', tensor_shape: shape([1]), double_val: [1] }, 'x'), 'INVALID_ARGUMENT', /DT_FLOAT tensor carries its values in float_val, not double_val/);
    expectError(() => tensorFromProto('x', { dtype: 'DT_FLOAT', tensor_shape: shape([1]), float_val: [1], tensor_content: Buffer.alloc(4) }, 'x'), 'INVALID_ARGUMENT', /both tensor_content and float_val/);
    expectError(() => tensorFromProto('x', { dtype: 'DT_STRING', tensor_shape: shape([1]), tensor_content: Buffer.from('abcd') }, 'x'), 'INVALID_ARGUMENT', /string_val, not tensor_content/);
  });

  it('values out of range for their type', () => {
    expectError(() => tensorFromProto('x', { dtype: 'DT_UINT32', tensor_shape: shape([1]), uint32_val: [-1] }, 'x'), 'INVALID_ARGUMENT', /element 0/);
    expectError(() => tensorFromProto('x', { dtype: 'DT_INT64', tensor_shape: shape([1]), int64_val: ['99999999999999999999'] }, 'x'), 'INVALID_ARGUMENT', /element 0/);
  });

  it('types with no v2 counterpart, named', () => {
    expectError(() => tensorFromProto('x', { dtype: 'DT_COMPLEX64', tensor_shape: shape([1]), scomplex_val: [1, 2] }, "output 'x'"), 'INVALID_ARGUMENT', /output 'x': TF type DT_COMPLEX64 is not supported/);
    expectError(() => tensorFromProto('x', { tensor_shape: shape([1]) }, 'x'), 'INVALID_ARGUMENT', /DT_INVALID/);
  });

  it('a broadcast that would allocate past the limit', () => {
    const dims = [MAX_BROADCAST_BYTES / 4 + 1];
    expectError(() => tensorFromProto('x', { dtype: 'DT_FLOAT', tensor_shape: shape(dims), float_val: [1] }, 'x'), 'INVALID_ARGUMENT', /over the limit/);
  });

  it('something that is not a message', () => {
    expectError(() => tensorFromProto('x', null, "input 'x'"), 'INVALID_ARGUMENT', /input 'x' is not a TensorProto/);
  });
});
