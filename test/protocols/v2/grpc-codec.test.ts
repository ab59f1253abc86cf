import { describe, expect, it } from 'vitest';
import type { DataType } from '../../../src/core/datatypes.js';
import { GatewayError } from '../../../src/core/errors.js';
import type { InferRequest, InferResponse, ModelMetadata } from '../../../src/core/inference.js';
import type { Tensor } from '../../../src/core/tensor.js';
import {
  inferRequestFromMessage,
  inferRequestToMessage,
  inferResponseFromMessage,
  inferResponseToMessage,
  modelIndexFromMessage,
  modelIndexToMessage,
  modelMetadataFromMessage,
  modelMetadataToMessage,
  parametersFromMessage,
  parametersToMessage,
  serverMetadataFromMessage,
  serverMetadataToMessage,
} from '../../../src/protocols/v2/grpc-codec.js';
import {
  INFERENCE_SERVICE,
  type InferTensorContentsMessage,
  type InferTensorMessage,
  type ModelInferRequestMessage,
  type ModelInferResponseMessage,
} from '../../../src/protocols/v2/grpc-proto.js';

/** Little-endian bytes written with the given writer, one element at a time. */
function le<T>(size: number, values: readonly T[], write: (b: Buffer, v: T, off: number) => void): Buffer {
  const b = Buffer.alloc(size * values.length);
  values.forEach((v, i) => write(b, v, i * size));
  return b;
}

function bytesFraming(...elements: string[]): Buffer {
  return Buffer.concat(
    elements.flatMap((e) => {
      const data = Buffer.from(e, 'utf8');
      const len = Buffer.alloc(4);
      len.writeUInt32LE(data.length);
      return [len, data];
    }),
  );
}

function request(inputs: InferTensorMessage[], raw?: Buffer[]): ModelInferRequestMessage {
  return { model_name: 'm', inputs, ...(raw && { raw_input_contents: raw }) };
}

function typedInput(datatype: string, shape: string[], contents: InferTensorContentsMessage): InferTensorMessage {
  return { name: 'INPUT0', datatype, shape, contents };
}

function expectInvalid(decode: () => unknown, message: RegExp): void {
  let thrown: unknown;
  try {
    decode();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, 'expected a GatewayError').toBeInstanceOf(GatewayError);
  const err = thrown as GatewayError;
  expect(err.code).toBe('INVALID_ARGUMENT');
  expect(err.message).toMatch(message);
}

interface TypedCase {
  datatype: DataType;
  contents: InferTensorContentsMessage;
  expected: Buffer;
}

const TYPED_CASES: TypedCase[] = [
  { datatype: 'BOOL', contents: { bool_contents: [true, false, true] }, expected: Buffer.from([1, 0, 1]) },
  { datatype: 'INT8', contents: { int_contents: [-128, 0, 127] }, expected: le(1, [-128, 0, 127], (b, v, o) => b.writeInt8(v, o)) },
  {
    datatype: 'INT16',
    contents: { int_contents: [-32768, 1, 32767] },
    expected: le(2, [-32768, 1, 32767], (b, v, o) => b.writeInt16LE(v, o)),
  },
  {
    datatype: 'INT32',
    contents: { int_contents: [-2147483648, 2, 2147483647] },
    expected: le(4, [-2147483648, 2, 2147483647], (b, v, o) => b.writeInt32LE(v, o)),
  },
  {
    datatype: 'INT64',
    contents: { int64_contents: ['-9223372036854775808', '9007199254740993', '9223372036854775807'] },
    expected: le(8, [-(2n ** 63n), 2n ** 53n + 1n, 2n ** 63n - 1n], (b, v, o) => b.writeBigInt64LE(v, o)),
  },
  { datatype: 'UINT8', contents: { uint_contents: [0, 1, 255] }, expected: Buffer.from([0, 1, 255]) },
  {
    datatype: 'UINT16',
    contents: { uint_contents: [0, 2, 65535] },
    expected: le(2, [0, 2, 65535], (b, v, o) => b.writeUInt16LE(v, o)),
  },
  {
    datatype: 'UINT32',
    contents: { uint_contents: [0, 3, 4294967295] },
    expected: le(4, [0, 3, 4294967295], (b, v, o) => b.writeUInt32LE(v, o)),
  },
  {
    datatype: 'UINT64',
    contents: { uint64_contents: ['0', '9007199254740993', '18446744073709551615'] },
    expected: le(8, [0n, 2n ** 53n + 1n, 2n ** 64n - 1n], (b, v, o) => b.writeBigUInt64LE(v, o)),
  },
  {
    datatype: 'FP32',
    contents: { fp32_contents: [1.5, -0.25, 3.4028234663852886e38] },
    expected: le(4, [1.5, -0.25, 3.4028234663852886e38], (b, v, o) => b.writeFloatLE(v, o)),
  },
  {
    datatype: 'FP64',
    contents: { fp64_contents: [Math.PI, -1e300, 5e-324] },
    expected: le(8, [Math.PI, -1e300, 5e-324], (b, v, o) => b.writeDoubleLE(v, o)),
  },
  {
    datatype: 'BYTES',
    contents: { bytes_contents: [Buffer.from('héllo'), Buffer.alloc(0), Buffer.from([0, 255])] },
    expected: Buffer.concat([bytesFraming('héllo', ''), Buffer.from([2, 0, 0, 0, 0, 255])]),
  },
];

describe('inferRequestFromMessage: typed contents', () => {
  it.each(TYPED_CASES)('decodes $datatype into raw little-endian bytes', ({ datatype, contents, expected }) => {
    const req = inferRequestFromMessage(request([typedInput(datatype, ['3'], contents)]));
    expect(req.inputs).toHaveLength(1);
    const input = req.inputs[0]!;
    expect(input).toMatchObject({ name: 'INPUT0', datatype, shape: [3] });
    expect(input.data.equals(expected)).toBe(true);
  });

  it('keeps INT64 and UINT64 exact beyond 2^53', () => {
    const req = inferRequestFromMessage(
      request([
        { name: 'a', datatype: 'INT64', shape: ['2'], contents: { int64_contents: ['9007199254740993', '-9007199254740995'] } },
        { name: 'b', datatype: 'UINT64', shape: ['1'], contents: { uint64_contents: ['18446744073709551614'] } },
      ]),
    );
    const [a, b] = req.inputs;
    expect(a!.data.readBigInt64LE(0)).toBe(9007199254740993n);
    expect(a!.data.readBigInt64LE(8)).toBe(-9007199254740995n);
    expect(b!.data.readBigUInt64LE(0)).toBe(18446744073709551614n);
  });

  it('accepts a zero-element tensor whose contents hold no field', () => {
    const req = inferRequestFromMessage(request([typedInput('FP32', ['0', '4'], {})]));
    expect(req.inputs[0]).toMatchObject({ shape: [0, 4] });
    expect(req.inputs[0]!.data.length).toBe(0);
  });

  it('takes model, version, id, parameters and requested outputs from the message', () => {
    const req = inferRequestFromMessage({
      model_name: 'linear',
      model_version: '2',
      id: 'req-1',
      parameters: { priority: { int64_param: '3', parameter_choice: 'int64_param' } },
      inputs: [typedInput('INT32', ['1', '2'], { int_contents: [1, 2] })],
      outputs: [{ name: 'SCORES', parameters: { top_k: { int64_param: '2', parameter_choice: 'int64_param' } } }, { name: 'CLASS' }],
    });
    expect(req).toMatchObject({
      model: 'linear',
      version: '2',
      id: 'req-1',
      parameters: { priority: 3 },
      outputs: [{ name: 'SCORES', parameters: { top_k: 2 } }, { name: 'CLASS' }],
    });
  });

  it('leaves absent fields out and defaults model/version to empty', () => {
    const req = inferRequestFromMessage({ inputs: [typedInput('BOOL', [], { bool_contents: [true] })] });
    expect(req.model).toBe('');
    expect(req.version).toBe('');
    expect(req).not.toHaveProperty('id');
    expect(req).not.toHaveProperty('parameters');
    expect(req).not.toHaveProperty('outputs');
    expect(req.inputs[0]!.shape).toEqual([]);
  });
});

const RAW_CASES: [DataType, number][] = [
  ['BOOL', 1],
  ['UINT8', 1],
  ['UINT16', 2],
  ['UINT32', 4],
  ['UINT64', 8],
  ['INT8', 1],
  ['INT16', 2],
  ['INT32', 4],
  ['INT64', 8],
  ['FP16', 2],
  ['BF16', 2],
  ['FP32', 4],
  ['FP64', 8],
];

describe('inferRequestFromMessage: raw contents', () => {
  it.each(RAW_CASES)('passes %s raw bytes through without a copy', (datatype, size) => {
    const raw = Buffer.alloc(2 * 3 * size, 0xa5);
    const req = inferRequestFromMessage(request([{ name: 'x', datatype, shape: ['2', '3'] }], [raw]));
    expect(req.inputs[0]!.data).toBe(raw);
    expect(req.inputs[0]!.shape).toEqual([2, 3]);
  });

  it('passes BYTES raw data through after checking its framing', () => {
    const raw = bytesFraming('a', 'bc', '');
    const req = inferRequestFromMessage(request([{ name: 'x', datatype: 'BYTES', shape: ['3'] }], [raw]));
    expect(req.inputs[0]!.data).toBe(raw);
  });

  it('wraps a plain Uint8Array without copying it', () => {
    const bytes = new Uint8Array([1, 2, 3, 4]);
    const req = inferRequestFromMessage(request([{ name: 'x', datatype: 'INT32', shape: ['1'] }], [bytes as Buffer]));
    const data = req.inputs[0]!.data;
    expect(Buffer.isBuffer(data)).toBe(true);
    expect(data.buffer).toBe(bytes.buffer);
  });

  it('keeps several inputs in order with their own raw entries', () => {
    const a = Buffer.alloc(4, 1);
    const b = Buffer.alloc(8, 2);
    const req = inferRequestFromMessage(
      request(
        [
          { name: 'a', datatype: 'FP32', shape: ['1'] },
          { name: 'b', datatype: 'FP32', shape: ['2'] },
        ],
        [a, b],
      ),
    );
    expect(req.inputs.map((t) => t.name)).toEqual(['a', 'b']);
    expect(req.inputs[0]!.data).toBe(a);
    expect(req.inputs[1]!.data).toBe(b);
  });
});

describe('parameters', () => {
  it('decodes each kind of parameter', () => {
    const params = parametersFromMessage(
      {
        b: { bool_param: false, parameter_choice: 'bool_param' },
        s: { string_param: 'text', parameter_choice: 'string_param' },
        d: { double_param: 0.5, parameter_choice: 'double_param' },
        i: { int64_param: '-42', parameter_choice: 'int64_param' },
        big: { int64_param: '-9223372036854775808', parameter_choice: 'int64_param' },
        u: { uint64_param: '7', parameter_choice: 'uint64_param' },
        ubig: { uint64_param: '18446744073709551615', parameter_choice: 'uint64_param' },
      },
      'request',
    );
    expect(params).toEqual({
      b: false,
      s: 'text',
      d: 0.5,
      i: -42,
      big: -9223372036854775808n,
      u: 7,
      ubig: 18446744073709551615n,
    });
  });

  it('finds the set field when parameter_choice is absent (in-process messages)', () => {
    expect(parametersFromMessage({ x: { int64_param: '5' }, y: { bool_param: true } }, 'request')).toEqual({
      x: 5,
      y: true,
    });
  });

  it('returns undefined for no parameters', () => {
    expect(parametersFromMessage(undefined, 'request')).toBeUndefined();
    expect(parametersFromMessage({}, 'request')).toBeUndefined();
    expect(parametersToMessage(undefined)).toBeUndefined();
    expect(parametersToMessage({})).toBeUndefined();
  });

  it('encodes each kind into the matching field', () => {
    expect({
      ...parametersToMessage({
        flag: true,
        name: 'n',
        count: 3,
        negative: -7,
        ratio: 0.25,
        huge: 1e300,
        exact: 9223372036854775807n,
        unsigned: 18446744073709551615n,
      }),
    }).toEqual({
      flag: { bool_param: true },
      name: { string_param: 'n' },
      count: { int64_param: '3' },
      negative: { int64_param: '-7' },
      ratio: { double_param: 0.25 },
      huge: { double_param: 1e300 },
      exact: { int64_param: '9223372036854775807' },
      unsigned: { uint64_param: '18446744073709551615' },
    });
  });

  it('round-trips through encode and decode', () => {
    const params = { a: true, b: 'x', c: 12, d: 1.25, e: -(2n ** 63n), f: 2n ** 64n - 1n };
    expect(parametersFromMessage(parametersToMessage(params), 'request')).toEqual(params);
  });

  it('refuses a bigint that does not fit in 64 bits', () => {
    expectInvalid(() => parametersToMessage({ x: 2n ** 64n }), /parameter 'x'.*64 bits/);
    expectInvalid(() => parametersToMessage({ x: -(2n ** 63n) - 1n }), /parameter 'x'/);
  });

  it('keeps a "__proto__" key as a plain key', () => {
    const msg = JSON.parse('{"__proto__": {"string_param": "v"}}') as Record<string, { string_param: string }>;
    const params = parametersFromMessage(msg, 'request');
    expect(Object.keys(params!)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(params)).toBe(Object.prototype);
  });
});

function tensor(name: string, datatype: DataType, shape: number[], data: Buffer, extra?: Partial<Tensor>): Tensor {
  return { name, datatype, shape, data, ...extra };
}

const SAMPLE_REQUEST: InferRequest = {
  model: 'simple',
  version: '1',
  id: 'abc',
  parameters: { sequence_id: 12n ** 17n, priority: 1, binary: true, note: 'x', temperature: 0.7 },
  inputs: [
    tensor('INPUT0', 'INT32', [1, 4], le(4, [1, -2, 3, -4], (b, v, o) => b.writeInt32LE(v, o)), {
      parameters: { shared_memory_region: 'none' },
    }),
    tensor('TEXT', 'BYTES', [2], bytesFraming('hello', 'wörld')),
    tensor('HALF', 'FP16', [3], Buffer.from([0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b])),
    tensor('EMPTY', 'FP32', [0, 3], Buffer.alloc(0)),
  ],
  outputs: [{ name: 'OUTPUT0', parameters: { binary_data: true } }, { name: 'OUTPUT1' }],
};

const SAMPLE_RESPONSE: InferResponse = {
  model: 'simple',
  version: '1',
  id: 'abc',
  parameters: { sequence_end: false },
  outputs: [
    tensor('OUTPUT0', 'INT64', [2], le(8, [2n ** 62n + 1n, -1n], (b, v, o) => b.writeBigInt64LE(v, o))),
    tensor('OUTPUT1', 'BF16', [1], Buffer.from([0x80, 0x3f]), { parameters: { note: 'raw' } }),
  ],
};

describe('encoding', () => {
  it('encodes a request with raw_input_contents only', () => {
    const msg = inferRequestToMessage(SAMPLE_REQUEST);
    expect(msg.model_name).toBe('simple');
    expect(msg.model_version).toBe('1');
    expect(msg.id).toBe('abc');
    expect(msg.inputs!.every((t) => t.contents === undefined)).toBe(true);
    expect(msg.inputs![0]).toEqual({
      name: 'INPUT0',
      datatype: 'INT32',
      shape: ['1', '4'],
      parameters: { shared_memory_region: { string_param: 'none' } },
    });
    expect(msg.raw_input_contents).toHaveLength(4);
    msg.raw_input_contents!.forEach((raw, i) => expect(raw).toBe(SAMPLE_REQUEST.inputs[i]!.data));
    expect(msg.outputs).toEqual([{ name: 'OUTPUT0', parameters: { binary_data: { bool_param: true } } }, { name: 'OUTPUT1' }]);
  });

  it('omits id, parameters and outputs when there are none', () => {
    const msg = inferRequestToMessage({ model: 'm', version: '', inputs: [], outputs: [] });
    expect(msg).toEqual({ model_name: 'm', model_version: '', inputs: [], raw_input_contents: [] });
  });

  it('round-trips a request', () => {
    expect(inferRequestFromMessage(inferRequestToMessage(SAMPLE_REQUEST))).toEqual(SAMPLE_REQUEST);
  });

  it('encodes a response with raw_output_contents and round-trips it', () => {
    const msg = inferResponseToMessage(SAMPLE_RESPONSE);
    expect(msg.raw_output_contents).toHaveLength(2);
    expect(msg.outputs![1]).toEqual({
      name: 'OUTPUT1',
      datatype: 'BF16',
      shape: ['1'],
      parameters: { note: { string_param: 'raw' } },
    });
    expect(inferResponseFromMessage(msg)).toEqual(SAMPLE_RESPONSE);
  });

  it('decodes a response that uses typed contents', () => {
    const resp = inferResponseFromMessage({
      model_name: 'm',
      model_version: '3',
      outputs: [
        { name: 'CLASS', datatype: 'INT64', shape: ['2'], contents: { int64_contents: ['1', '9223372036854775807'] } },
        { name: 'LABEL', datatype: 'BYTES', shape: ['1'], contents: { bytes_contents: [Buffer.from('cat')] } },
      ],
    });
    expect(resp.outputs[0]!.data.readBigInt64LE(8)).toBe(2n ** 63n - 1n);
    expect(resp.outputs[1]!.data.equals(bytesFraming('cat'))).toBe(true);
    expect(resp).not.toHaveProperty('id');
  });
});

describe('the real wire path', () => {
  it('keeps raw request bytes byte-exact through the proto serializer', () => {
    const rpc = INFERENCE_SERVICE.ModelInfer!;
    const random = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) & 0xff));
    const req: InferRequest = {
      ...SAMPLE_REQUEST,
      inputs: [...SAMPLE_REQUEST.inputs, tensor('RANDOM', 'UINT8', [64, 64], random)],
    };
    const wire = rpc.requestSerialize(inferRequestToMessage(req));
    const decoded = inferRequestFromMessage(rpc.requestDeserialize(wire) as ModelInferRequestMessage);
    expect(decoded).toEqual(req);
    for (const [i, input] of decoded.inputs.entries()) {
      expect(input.data.equals(req.inputs[i]!.data), input.name).toBe(true);
    }
  });

  it('keeps raw response bytes byte-exact through the proto serializer', () => {
    const rpc = INFERENCE_SERVICE.ModelInfer!;
    const wire = rpc.responseSerialize(inferResponseToMessage(SAMPLE_RESPONSE));
    const decoded = inferResponseFromMessage(rpc.responseDeserialize(wire) as ModelInferResponseMessage);
    expect(decoded).toEqual(SAMPLE_RESPONSE);
  });

  it('decodes typed contents sent over the wire, int64 exactly', () => {
    const rpc = INFERENCE_SERVICE.ModelInfer!;
    const wire = rpc.requestSerialize(
      request([
        typedInput('INT64', ['2'], { int64_contents: ['-9223372036854775808', '9007199254740993'] }),
        { name: 'B', datatype: 'UINT64', shape: ['1'], contents: { uint64_contents: ['18446744073709551615'] } },
        { name: 'C', datatype: 'FP32', shape: ['2'], contents: { fp32_contents: [0.1, -2] } },
      ]),
    );
    const decoded = inferRequestFromMessage(rpc.requestDeserialize(wire) as ModelInferRequestMessage);
    expect(decoded.inputs[0]!.data.readBigInt64LE(0)).toBe(-(2n ** 63n));
    expect(decoded.inputs[0]!.data.readBigInt64LE(8)).toBe(2n ** 53n + 1n);
    expect(decoded.inputs[1]!.data.readBigUInt64LE(0)).toBe(2n ** 64n - 1n);
    expect(decoded.inputs[2]!.data.readFloatLE(0)).toBeCloseTo(0.1, 6);
  });
});

describe('malformed messages are INVALID_ARGUMENT', () => {
  const fp32 = (shape: string[], raw = Buffer.alloc(4)): ModelInferRequestMessage =>
    request([{ name: 'INPUT0', datatype: 'FP32', shape }], [raw]);

  it('rejects an unknown datatype, listing the valid ones', () => {
    expectInvalid(
      () => inferRequestFromMessage(request([{ name: 'INPUT0', datatype: 'FLOAT32', shape: ['1'] }], [Buffer.alloc(4)])),
      /input 'INPUT0': unknown datatype 'FLOAT32' \(valid: BOOL, .*FP32.*BYTES\)/,
    );
  });

  it('rejects a missing datatype', () => {
    expectInvalid(() => inferRequestFromMessage(request([{ name: 'INPUT0', shape: ['1'] }], [Buffer.alloc(4)])), /input 'INPUT0': missing datatype/);
  });

  it.each([
    ['a negative dimension', ['-1']],
    ['a dimension beyond 2^53', ['9007199254740993']],
    ['a non-numeric dimension', ['x']],
  ])('rejects a shape with %s', (_, shape) => {
    expectInvalid(() => inferRequestFromMessage(fp32(shape)), /input 'INPUT0': shape \[.*\] must hold non-negative integers/);
  });

  it('rejects a duplicate input name', () => {
    expectInvalid(
      () =>
        inferRequestFromMessage(
          request(
            [
              { name: 'INPUT0', datatype: 'FP32', shape: ['1'] },
              { name: 'INPUT0', datatype: 'FP32', shape: ['1'] },
            ],
            [Buffer.alloc(4), Buffer.alloc(4)],
          ),
        ),
      /input 'INPUT0' appears more than once/,
    );
  });

  it('rejects an input without a name', () => {
    expectInvalid(() => inferRequestFromMessage(request([{ datatype: 'FP32', shape: ['1'] }], [Buffer.alloc(4)])), /input 0 has no name/);
  });

  it('rejects a raw_input_contents count that differs from the inputs count', () => {
    expectInvalid(
      () =>
        inferRequestFromMessage(
          request(
            [
              { name: 'a', datatype: 'FP32', shape: ['1'] },
              { name: 'b', datatype: 'FP32', shape: ['1'] },
            ],
            [Buffer.alloc(4)],
          ),
        ),
      /raw_input_contents holds 1 entries for 2 inputs/,
    );
  });

  it('rejects raw and typed contents on the same request', () => {
    expectInvalid(
      () =>
        inferRequestFromMessage(
          request([{ name: 'INPUT0', datatype: 'FP32', shape: ['1'], contents: { fp32_contents: [1] } }], [Buffer.alloc(4)]),
        ),
      /input 'INPUT0': uses both raw_input_contents and typed contents/,
    );
  });

  it('rejects typed contents in the wrong field for the datatype', () => {
    expectInvalid(
      () => inferRequestFromMessage(request([typedInput('FP32', ['1'], { int_contents: [1] })])),
      /input 'INPUT0': FP32 data belongs in fp32_contents, got int_contents/,
    );
    expectInvalid(
      () => inferRequestFromMessage(request([typedInput('INT64', ['1'], { int_contents: [1] })])),
      /INT64 data belongs in int64_contents/,
    );
  });

  it('rejects typed contents with more than one field set', () => {
    expectInvalid(
      () => inferRequestFromMessage(request([typedInput('FP32', ['1'], { fp32_contents: [1], fp64_contents: [1] })])),
      /input 'INPUT0': typed contents set more than one field \(fp32_contents, fp64_contents\)/,
    );
  });

  it.each(['FP16', 'BF16'])('rejects %s in typed contents', (datatype) => {
    expectInvalid(
      () => inferRequestFromMessage(request([typedInput(datatype, ['1'], { fp32_contents: [1] })])),
      new RegExp(`input 'INPUT0': ${datatype} has no typed contents field; send it in raw_input_contents`),
    );
  });

  it('rejects raw data whose length does not match the shape', () => {
    expectInvalid(
      () => inferRequestFromMessage(fp32(['2'], Buffer.alloc(4))),
      /input 'INPUT0': shape \[2\] of FP32 needs 8 bytes of data, got 4/,
    );
  });

  it('rejects typed contents whose count does not match the shape', () => {
    expectInvalid(
      () => inferRequestFromMessage(request([typedInput('INT32', ['3'], { int_contents: [1, 2] })])),
      /input 'INPUT0': shape \[3\] of INT32 needs 12 bytes of data, got 8/,
    );
    expectInvalid(
      () => inferRequestFromMessage(request([typedInput('BYTES', ['2'], { bytes_contents: [Buffer.from('a')] })])),
      /input 'INPUT0': shape \[2\] needs 2 BYTES elements, got 1/,
    );
  });

  it('rejects broken BYTES framing in raw data', () => {
    const bytes = (raw: Buffer) => request([{ name: 'INPUT0', datatype: 'BYTES', shape: ['1'] }], [raw]);
    expectInvalid(() => inferRequestFromMessage(bytes(Buffer.from([5, 0]))), /input 'INPUT0': BYTES element 0 has a truncated 4-byte length prefix/);
    expectInvalid(
      () => inferRequestFromMessage(bytes(Buffer.from([9, 0, 0, 0, 1, 2]))),
      /input 'INPUT0': BYTES element 0 declares 9 bytes but the data ends first/,
    );
    expectInvalid(() => inferRequestFromMessage(bytes(bytesFraming('a', 'b'))), /needs 1 BYTES elements, got 2/);
  });

  it('rejects an input with neither raw nor typed contents', () => {
    expectInvalid(
      () => inferRequestFromMessage(request([{ name: 'INPUT0', datatype: 'FP32', shape: ['1'] }])),
      /input 'INPUT0': has no data; set its typed contents or send raw_input_contents/,
    );
  });

  it('rejects typed elements out of range for the datatype', () => {
    expectInvalid(
      () => inferRequestFromMessage(request([typedInput('INT8', ['1'], { int_contents: [300] })])),
      /input 'INPUT0': element 0 is 300, expected an integer in \[-128, 127\]/,
    );
    expectInvalid(
      () => inferRequestFromMessage(request([typedInput('UINT16', ['1'], { uint_contents: [70000] })])),
      /input 'INPUT0': element 0 is 70000/,
    );
  });

  it('rejects parameters without a value or with a bad integer', () => {
    expectInvalid(
      () => inferRequestFromMessage({ ...fp32(['1']), parameters: { p: {} } }),
      /request: parameter 'p' has no value/,
    );
    expectInvalid(
      () => inferRequestFromMessage({ ...fp32(['1']), parameters: { p: { uint64_param: '-1', parameter_choice: 'uint64_param' } } }),
      /request: parameter 'p': -1 is not an integer/,
    );
    expectInvalid(
      () =>
        inferRequestFromMessage(
          request([{ name: 'INPUT0', datatype: 'FP32', shape: ['1'], parameters: { q: { parameter_choice: 'bool_param' } } }], [Buffer.alloc(4)]),
        ),
      /input 'INPUT0': parameter 'q': bool_param must be a boolean/,
    );
  });

  it('rejects requested outputs without a name or listed twice', () => {
    expectInvalid(() => inferRequestFromMessage({ ...fp32(['1']), outputs: [{}] }), /requested output 0 has no name/);
    expectInvalid(
      () => inferRequestFromMessage({ ...fp32(['1']), outputs: [{ name: 'o' }, { name: 'o' }] }),
      /requested output 'o' appears more than once/,
    );
  });

  it('names outputs and raw_output_contents when decoding a response', () => {
    expectInvalid(
      () => inferResponseFromMessage({ outputs: [{ name: 'OUT', datatype: 'FP16', shape: ['1'], contents: {} }] }),
      /output 'OUT': FP16 has no typed contents field; send it in raw_output_contents/,
    );
    expectInvalid(
      () => inferResponseFromMessage({ outputs: [{ name: 'OUT', datatype: 'FP32', shape: ['1'] }], raw_output_contents: [] }),
      /output 'OUT': has no data/,
    );
  });

  it('never lets a TypeError escape for structurally broken messages', () => {
    const broken: unknown[] = [
      null,
      42,
      'text',
      { inputs: 'nope' },
      { inputs: [null] },
      { inputs: [7] },
      { inputs: [{ name: 5, datatype: 'FP32' }] },
      { inputs: [{ name: 'a', datatype: 'FP32', shape: 'x' }], raw_input_contents: [Buffer.alloc(4)] },
      { inputs: [{ name: 'a', datatype: 'FP32', shape: [{}] }], raw_input_contents: [Buffer.alloc(4)] },
      { inputs: [{ name: 'a', datatype: 'FP32', shape: ['1'] }], raw_input_contents: ['abcd'] },
      { inputs: [{ name: 'a', datatype: 'FP32', shape: ['1'] }], raw_input_contents: [null] },
      { inputs: [{ name: 'a', datatype: 'FP32', shape: ['1'], contents: 5 }] },
      { inputs: [{ name: 'a', datatype: 'FP32', shape: ['1'], contents: { fp32_contents: 'x' } }] },
      { inputs: [{ name: 'a', datatype: 'FP32', shape: ['1'], contents: { fp32_contents: [null] } }] },
      { inputs: [{ name: 'a', datatype: 'BYTES', shape: ['1'], contents: { bytes_contents: [5] } }] },
      { inputs: [{ name: 'a', datatype: 'BOOL', shape: ['1'], contents: { bool_contents: [1] } }] },
      { inputs: [], parameters: 'x' },
      { inputs: [], parameters: { p: null } },
      { inputs: [], parameters: { p: { int64_param: {} } } },
      { inputs: [], outputs: [3] },
      { inputs: [], model_name: 3 },
      { inputs: [], id: {} },
    ];
    for (const msg of broken) {
      expectInvalid(() => inferRequestFromMessage(msg as ModelInferRequestMessage), /./);
    }
  });

  it('survives random mutations of a valid message without a non-gateway error', () => {
    const junk: unknown[] = [null, undefined, 0, -1, 'x', '-5', [], {}, [null], Buffer.alloc(3), true, 2n ** 70n];
    let seed = 7;
    const next = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let round = 0; round < 500; round++) {
      const msg = structuredClone(inferRequestToMessage(SAMPLE_REQUEST)) as unknown as Record<string, unknown>;
      // structuredClone turns Buffers into Uint8Arrays, which the codec also accepts.
      const paths: [Record<string, unknown> | unknown[], string | number][] = [];
      const walk = (node: unknown) => {
        if (node instanceof Uint8Array || typeof node !== 'object' || node === null) return;
        for (const key of Object.keys(node)) {
          paths.push([node as Record<string, unknown>, key]);
          walk((node as Record<string, unknown>)[key]);
        }
      };
      walk(msg);
      const [parent, key] = paths[next(paths.length)]!;
      (parent as Record<string | number, unknown>)[key] = junk[next(junk.length)];
      try {
        inferRequestFromMessage(msg as ModelInferRequestMessage);
      } catch (err) {
        expect(err).toBeInstanceOf(GatewayError);
        expect((err as GatewayError).code).toBe('INVALID_ARGUMENT');
      }
    }
  });
});

describe('metadata', () => {
  const meta: ModelMetadata = {
    name: 'linear',
    versions: ['1', '2'],
    platform: 'onnxruntime_onnx',
    inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [-1, 4] }],
    outputs: [
      { name: 'SCORES', datatype: 'FP32', shape: [-1, 3] },
      { name: 'CLASS', datatype: 'INT64', shape: [-1] },
    ],
  };

  it('round-trips model metadata, -1 dims included, through the wire', () => {
    const msg = modelMetadataToMessage(meta);
    expect(msg.inputs![0]!.shape).toEqual(['-1', '4']);
    const rpc = INFERENCE_SERVICE.ModelMetadata!;
    const wire = rpc.responseSerialize(msg);
    expect(modelMetadataFromMessage(rpc.responseDeserialize(wire) as typeof msg)).toEqual(meta);
  });

  it('fills absent metadata fields with empty values', () => {
    expect(modelMetadataFromMessage({ name: 'x' })).toEqual({ name: 'x', versions: [], platform: '', inputs: [], outputs: [] });
  });

  it('rejects a metadata shape below -1', () => {
    expectInvalid(
      () => modelMetadataFromMessage({ name: 'x', inputs: [{ name: 'a', datatype: 'FP32', shape: ['-2'] }] }),
      /tensor 'a': shape \[-2\] must hold integers >= -1/,
    );
  });

  it('round-trips server metadata and the model index', () => {
    const server = { name: 'triton', version: '2.50.0', extensions: ['binary_tensor_data'] };
    expect(serverMetadataFromMessage(serverMetadataToMessage(server))).toEqual(server);
    const index = [
      { name: 'linear', version: '1', state: 'READY' as const, reason: '' },
      { name: 'unready', version: '1', state: 'UNAVAILABLE' as const, reason: 'not ready' },
    ];
    expect(modelIndexFromMessage(modelIndexToMessage(index))).toEqual(index);
    expect(modelIndexFromMessage({ models: [{ name: 'x', state: 'LOADING' }] })).toEqual([
      { name: 'x', version: '', state: 'UNAVAILABLE', reason: '' },
    ]);
  });
});
