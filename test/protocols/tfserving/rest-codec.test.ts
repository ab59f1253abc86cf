import { describe, expect, it } from 'vitest';
import { GatewayError, type ErrorCode } from '../../../src/core/errors.js';
import type { ModelMetadata, TensorMetadata } from '../../../src/core/inference.js';
import type { Tensor } from '../../../src/core/tensor.js';
import {
  decodeModelMetadataJson,
  decodeModelStatusJson,
  decodePredictResponse,
  encodeModelMetadataJson,
  encodeModelStatusJson,
  encodePredictRequest,
  encodePredictResponse,
  parsePredictBody,
  predictInputs,
} from '../../../src/protocols/tfserving/rest-codec.js';
import { float32Text } from '../../../src/protocols/tfserving/rest-json.js';
import { findSignature, signatureToMetadata, versionStatus } from '../../../src/protocols/tfserving/signature.js';
import { SAMPLES } from '../../helpers/samples.js';

const body = (text: string): Buffer => Buffer.from(text, 'utf8');
const meta = (name: string, datatype: string, shape: number[] = [-1, -1]): TensorMetadata => ({ name, datatype, shape });

function fp32(...values: number[]): Buffer {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeFloatLE(v, i * 4));
  return b;
}
function i64(...values: bigint[]): Buffer {
  const b = Buffer.alloc(values.length * 8);
  values.forEach((v, i) => b.writeBigInt64LE(v, i * 8));
  return b;
}
function bytes(...values: (string | Buffer)[]): Buffer {
  return Buffer.concat(values.flatMap((v) => {
    const data = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
    const len = Buffer.alloc(4);
    len.writeUInt32LE(data.length);
    return [len, data];
  }));
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

/** What the front door does with a body: parse, then type by the model's inputs. */
function decodeRequest(text: string, inputs: TensorMetadata[]): { format: string; signatureName?: string; tensors: Tensor[] } {
  const parsed = parsePredictBody(body(text));
  return { format: parsed.format, ...(parsed.signatureName !== undefined ? { signatureName: parsed.signatureName } : {}), tensors: predictInputs(parsed, inputs) };
}

describe('predict requests: every datatype, both layouts, bytes unchanged', () => {
  for (const s of SAMPLES) {
    for (const format of ['row', 'columnar'] as const) {
      it(`${s.datatype} ${format}`, () => {
        const input: Tensor = { name: 'INPUT0', datatype: s.datatype, shape: [...s.shape], data: s.raw };
        const encoded = encodePredictRequest([input], 'serving_default', format);
        expect(encoded.format).toBe(format);
        expect(Object.keys(JSON.parse(encoded.text.replace(/\b(NaN|-?Infinity)\b/g, '0')) as object)).toEqual([
          'signature_name',
          format === 'row' ? 'instances' : 'inputs',
        ]);
        const decoded = decodeRequest(encoded.text, [meta('INPUT0', s.datatype)]);
        expect(decoded).toMatchObject({ format, signatureName: 'serving_default' });
        expect(decoded.tensors).toHaveLength(1);
        expect(decoded.tensors[0]).toMatchObject({ name: 'INPUT0', datatype: s.datatype, shape: [...s.shape] });
        expect(decoded.tensors[0]!.data.equals(s.raw)).toBe(true);
      });
    }
  }
});

describe('predict requests: the JSON TF clients send', () => {
  const linear = [meta('INPUT0', 'FP32', [-1, 4])];
  const simple = [meta('INPUT0', 'INT32', [-1, 2]), meta('INPUT1', 'INT32', [-1, 2])];

  it('row format, unnamed rows for a single input', () => {
    const { tensors } = decodeRequest('{"instances": [[1, 2, 3, 4], [5, 6, 7, 8]]}', linear);
    expect(tensors[0]).toMatchObject({ name: 'INPUT0', datatype: 'FP32', shape: [2, 4], data: fp32(1, 2, 3, 4, 5, 6, 7, 8) });
  });

  it('row format, named rows stack each input along dimension 0', () => {
    const { tensors } = decodeRequest('{"instances": [{"INPUT0": [1, 2], "INPUT1": [3, 4]}, {"INPUT1": [7, 8], "INPUT0": [5, 6]}]}', simple);
    expect(tensors.map((t) => [t.name, t.shape, [...new Int32Array(new Uint8Array(t.data).buffer)]])).toEqual([
      ['INPUT0', [2, 2], [1, 2, 5, 6]],
      ['INPUT1', [2, 2], [3, 4, 7, 8]],
    ]);
  });

  it('columnar format, a bare tensor for one input or named tensors', () => {
    expect(decodeRequest('{"inputs": [[1, 2, 3, 4]]}', linear).tensors[0]).toMatchObject({ shape: [1, 4], data: fp32(1, 2, 3, 4) });
    expect(decodeRequest('{"inputs": {"INPUT0": 2.5}}', linear).tensors[0]).toMatchObject({ shape: [], data: fp32(2.5) });
    expect(decodeRequest('{"inputs": {"INPUT0": [[1, 2]], "INPUT1": [[3, 4]]}}', simple).tensors.map((t) => t.shape)).toEqual([[1, 2], [1, 2]]);
  });

  it('bare NaN, Infinity and -Infinity (TF JSON is not strict)', () => {
    const { tensors } = decodeRequest('{"inputs": [[NaN, Infinity, -Infinity, -0]]}', linear);
    const f = new Float32Array(new Uint8Array(tensors[0]!.data).buffer);
    expect([...f]).toEqual([NaN, Infinity, -Infinity, -0]);
  });

  it('INT64 beyond 2^53 read exactly', () => {
    const { tensors } = decodeRequest('{"inputs": [9223372036854775807, -9223372036854775808, 9007199254740993]}', [meta('X', 'INT64', [-1])]);
    expect(tensors[0]!.data).toEqual(i64(9223372036854775807n, -9223372036854775808n, 9007199254740993n));
  });

  it('b64 and plain strings for BYTES', () => {
    const { tensors } = decodeRequest('{"instances": [{"b64": "AP8="}, "héllo"]}', [meta('S', 'BYTES', [-1])]);
    expect(tensors[0]).toMatchObject({ shape: [2], data: bytes(Buffer.from([0, 255]), 'héllo') });
  });

  const refusals: [string, string, TensorMetadata[], RegExp][] = [
    ['not JSON', '{"inputs": [1,', linear, /the predict request is not valid JSON/],
    ['not an object', '[1, 2]', linear, /must be a JSON object/],
    ['both layouts', '{"inputs": [1], "instances": [1]}', linear, /one of 'instances' .* not both/],
    ['neither layout', '{"signature_name": "x"}', linear, /needs 'instances' .* or 'inputs'/],
    ['a signature_name that is not a string', '{"signature_name": 3, "inputs": [1]}', linear, /'signature_name' must be a string/],
    ['an unknown input name', '{"inputs": {"NOPE": [1]}}', linear, /names 'NOPE', which is not an input of the model \(its inputs: INPUT0\)/],
    ['unnamed values for two inputs', '{"inputs": [[1, 2]]}', simple, /unnamed values, but the model has 2 inputs/],
    ['rows that name different inputs', '{"instances": [{"INPUT0": [1, 2], "INPUT1": [1, 2]}, {"INPUT0": [1, 2]}]}', simple, /row 1 names inputs \{INPUT0\} but row 0 names \{INPUT0,INPUT1\}/],
    ['mixed named and unnamed rows', '{"instances": [[1, 2, 3, 4], {"INPUT0": [1, 2, 3, 4]}]}', linear, /mixes named/],
    ['no rows', '{"instances": []}', linear, /'instances' is empty/],
    ['ragged lists', '{"inputs": [[1, 2, 3, 4], [1, 2]]}', linear, /not rectangular/],
    ['a string for a float input', '{"inputs": [["1", 2, 3, 4]]}', linear, /input 'INPUT0': element 0 is "1", expected a number \(FP32\)/],
    ['a number for a BYTES input', '{"inputs": [1]}', [meta('S', 'BYTES', [-1])], /element 0 is 1, expected a string or \{"b64"/],
    ['bad base64', '{"inputs": [{"b64": "!!"}]}', [meta('S', 'BYTES', [-1])], /not valid base64/],
    ['an out-of-range integer', '{"inputs": [[1, 2147483648]]}', [meta('INPUT0', 'INT32')], /element 1 is 2147483648, expected an integer in/],
  ];
  for (const [label, text, inputs, message] of refusals) {
    it(`refuses ${label}`, () => expectError(() => decodeRequest(text, inputs), 'INVALID_ARGUMENT', message));
  }
});

describe('predict requests as the REST adapter writes them', () => {
  it('writes INT64 exactly, floats as their shortest float32, non-finite bare, binary strings as b64', () => {
    const text = encodePredictRequest(
      [
        { name: 'L', datatype: 'INT64', shape: [2], data: i64(9223372036854775807n, -1n) },
        { name: 'F', datatype: 'FP32', shape: [4], data: fp32(0.1, NaN, -Infinity, -0) },
        { name: 'S', datatype: 'BYTES', shape: [2], data: bytes('ok', Buffer.from([0xff, 0])) },
      ],
      undefined,
      'columnar',
    ).text;
    expect(text).toBe('{"inputs":{"L":[9223372036854775807,-1],"F":[0.1,NaN,-Infinity,-0],"S":["ok",{"b64":"/wA="}]}}');
  });

  it('row layout: one object per batch item', () => {
    const text = encodePredictRequest(
      [
        { name: 'A', datatype: 'INT32', shape: [2, 1], data: Buffer.from([1, 0, 0, 0, 2, 0, 0, 0]) },
        { name: 'B', datatype: 'BOOL', shape: [2], data: Buffer.from([1, 0]) },
      ],
      'sig',
      'row',
    );
    expect(text).toEqual({ text: '{"signature_name":"sig","instances":[{"A":[1],"B":true},{"A":[2],"B":false}]}', format: 'row' });
  });

  it('falls back to columnar when the inputs do not share dimension 0, or one is a scalar', () => {
    const a: Tensor = { name: 'A', datatype: 'UINT8', shape: [2], data: Buffer.from([1, 2]) };
    const b: Tensor = { name: 'B', datatype: 'UINT8', shape: [3], data: Buffer.from([1, 2, 3]) };
    const s: Tensor = { name: 'S', datatype: 'UINT8', shape: [], data: Buffer.from([9]) };
    expect(encodePredictRequest([a, b], undefined, 'row').format).toBe('columnar');
    expect(encodePredictRequest([s], undefined, 'row')).toEqual({ text: '{"inputs":{"S":9}}', format: 'columnar' });
  });

  it('float32 text is the shortest that reads back as the same float32', () => {
    for (const v of [0.1, 1 / 3, 3.4028234663852886e38, 1.401298464324817e-45, 16777217, -123.25, 1e-7]) {
      const f = Math.fround(v);
      const text = float32Text(f);
      expect(Math.fround(Number(text))).toBe(f);
      expect(text.replace(/^-|e.*$|\./g, '').replace(/^0+/, '').length).toBeLessThanOrEqual(9);
    }
    expect(float32Text(Math.fround(0.1))).toBe('0.1');
  });
});

describe('predict replies', () => {
  const scores: Tensor = { name: 'SCORES', datatype: 'FP32', shape: [2, 3], data: fp32(0.1, 2, 3, 4, 5, 6.5) };
  const classes: Tensor = { name: 'CLASS', datatype: 'INT64', shape: [2], data: i64(9223372036854775807n, 1n) };
  const outputs = [meta('SCORES', 'FP32', [-1, 3]), meta('CLASS', 'INT64', [-1])];

  it('columnar: a bare value for one output, named otherwise', () => {
    expect(encodePredictResponse([scores], 'columnar')).toBe('{"outputs":[[0.1,2,3],[4,5,6.5]]}');
    expect(encodePredictResponse([scores, classes], 'columnar')).toBe('{"outputs":{"SCORES":[[0.1,2,3],[4,5,6.5]],"CLASS":[9223372036854775807,1]}}');
  });

  it('rows: a list per batch item, unnamed for one output', () => {
    expect(encodePredictResponse([classes], 'row')).toBe('{"predictions":[9223372036854775807,1]}');
    expect(encodePredictResponse([scores, classes], 'row')).toBe(
      '{"predictions":[{"SCORES":[0.1,2,3],"CLASS":9223372036854775807},{"SCORES":[4,5,6.5],"CLASS":1}]}',
    );
  });

  it('rows need outputs that share dimension 0', () => {
    const odd: Tensor = { name: 'ODD', datatype: 'UINT8', shape: [3], data: Buffer.from([1, 2, 3]) };
    expectError(() => encodePredictResponse([scores, odd], 'row'), 'INVALID_ARGUMENT', /output 'ODD' has shape \[3\] .*columnar/);
  });

  it('BYTES: outputs named *_bytes always as b64, others as text unless not UTF-8', () => {
    const data = bytes('héllo', Buffer.from([0xc3]));
    expect(encodePredictResponse([{ name: 'OUT_bytes', datatype: 'BYTES', shape: [2], data }], 'columnar')).toBe(
      `{"outputs":[{"b64":"${Buffer.from('héllo').toString('base64')}"},{"b64":"ww=="}]}`,
    );
    expect(encodePredictResponse([{ name: 'OUT', datatype: 'BYTES', shape: [2], data }], 'columnar')).toBe('{"outputs":["héllo",{"b64":"ww=="}]}');
  });

  it('FP16/BF16 as the float32 TF widens them to', () => {
    const half = Buffer.from([0x66, 0x2e]); // fp16 0.0999755859375
    expect(encodePredictResponse([{ name: 'H', datatype: 'FP16', shape: [1], data: half }], 'columnar')).toBe('{"outputs":[0.099975586]}');
  });

  for (const format of ['row', 'columnar'] as const) {
    it(`decodes what TF answers (${format}), exactly`, () => {
      const text = encodePredictResponse([scores, classes], format);
      const decoded = decodePredictResponse(body(text), outputs, format);
      expect(decoded.map((t) => [t.name, t.datatype, t.shape])).toEqual([['SCORES', 'FP32', [2, 3]], ['CLASS', 'INT64', [2]]]);
      expect(decoded[0]!.data.equals(scores.data)).toBe(true);
      expect(decoded[1]!.data.equals(classes.data)).toBe(true);
      const single = decodePredictResponse(body(encodePredictResponse([classes], format)), [outputs[1]!], format);
      expect(single[0]!.data.equals(classes.data)).toBe(true);
    });
  }

  it('decodes TF’s pretty-printed, non-strict replies', () => {
    const text = '{\n    "predictions": [[NaN, -Infinity, 1.5]\n    ]\n}';
    const [t] = decodePredictResponse(body(text), [meta('Y', 'FP64', [-1, 3])], 'row');
    expect(t!.shape).toEqual([1, 3]);
    expect([t!.data.readDoubleLE(0), t!.data.readDoubleLE(8), t!.data.readDoubleLE(16)]).toEqual([NaN, -Infinity, 1.5]);
  });

  it('refuses replies that do not fit the signature', () => {
    expectError(() => decodePredictResponse(body('{"outputs": {"X": [1]}}'), outputs, 'columnar'), 'INVALID_ARGUMENT', /output 'X', which the signature does not list/);
    expectError(() => decodePredictResponse(body('{"predictions": [1]}'), outputs, 'columnar'), 'INVALID_ARGUMENT', /no 'outputs'/);
    expectError(() => decodePredictResponse(body('{"outputs": [1]}'), [meta('C', 'DT_COMPLEX64')], 'columnar'), 'INVALID_ARGUMENT', /TF type DT_COMPLEX64 has no KServe v2 datatype/);
    expectError(() => decodePredictResponse(body('{"predictions": [{"SCORES": [1, 2, 3], "CLASS": 1}, {"SCORES": [1, 2, 3]}]}'), outputs, 'row'), 'INVALID_ARGUMENT', /'CLASS' is missing from some predictions/);
  });
});

describe('metadata and status JSON', () => {
  const linearJson = JSON.stringify({
    model_spec: { name: 'linear', signature_name: '', version: '2' },
    metadata: {
      signature_def: {
        signature_def: {
          serving_default: {
            inputs: { INPUT0: { dtype: 'DT_FLOAT', tensor_shape: { dim: [{ size: '-1', name: '' }, { size: '4', name: '' }], unknown_rank: false }, name: 'INPUT0:0' } },
            outputs: {
              SCORES: { dtype: 'DT_FLOAT', tensor_shape: { dim: [{ size: '-1' }, { size: '3' }] }, name: 'SCORES:0' },
              CLASS: { dtype: 'DT_INT64', tensor_shape: { dim: [{ size: '-1' }] }, name: 'CLASS:0' },
              ANY: { dtype: 'DT_VARIANT', tensor_shape: { unknown_rank: true }, name: 'ANY:0' },
            },
            method_name: 'tensorflow/serving/predict',
          },
          other: { inputs: {}, outputs: {}, method_name: 'tensorflow/serving/predict' },
        },
      },
    },
  });

  it('a signature_def becomes v2 metadata: v2 datatypes, -1 for unknown dims, the served version', () => {
    const { signatures, version } = decodeModelMetadataJson(body(linearJson));
    expect(version).toBe('2');
    const m = signatureToMetadata(findSignature(signatures, 'serving_default', 'linear'), 'serving_default', 'linear', [version!]);
    expect(m).toEqual({
      name: 'linear',
      versions: ['2'],
      platform: 'tensorflow_serving',
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [-1, 4] }],
      outputs: [
        { name: 'SCORES', datatype: 'FP32', shape: [-1, 3] },
        { name: 'CLASS', datatype: 'INT64', shape: [-1] },
        { name: 'ANY', datatype: 'DT_VARIANT', shape: [-1] },
      ],
    });
  });

  it('an unknown signature is FAILED_PRECONDITION naming the ones there are', () => {
    const { signatures } = decodeModelMetadataJson(body(linearJson));
    expectError(() => findSignature(signatures, 'nope', 'linear'), 'FAILED_PRECONDITION', /model 'linear' has no signature 'nope' \(its signatures: serving_default, other\)/);
  });

  it('v2 metadata becomes a serving_default signature and reads back the same', () => {
    const m: ModelMetadata = {
      name: 'simple',
      versions: ['1'],
      platform: 'triton',
      inputs: [meta('A', 'INT32', [-1, 16]), meta('B', 'BYTES', [])],
      outputs: [meta('C', 'BF16', [2])],
    };
    const text = encodeModelMetadataJson(m, '1');
    const parsed = JSON.parse(text) as { model_spec: unknown; metadata: { signature_def: { signature_def: Record<string, { method_name: string; inputs: Record<string, unknown> }> } } };
    expect(parsed.model_spec).toEqual({ name: 'simple', signature_name: '', version: '1' });
    const sig = parsed.metadata.signature_def.signature_def.serving_default!;
    expect(sig.method_name).toBe('tensorflow/serving/predict');
    expect(sig.inputs.A).toEqual({ name: 'A', dtype: 'DT_INT32', tensor_shape: { dim: [{ size: '-1' }, { size: '16' }], unknown_rank: false } });
    const back = decodeModelMetadataJson(body(text));
    expect(signatureToMetadata(findSignature(back.signatures, 'serving_default', 'simple'), 'serving_default', 'simple', ['1'])).toEqual({ ...m, platform: 'tensorflow_serving' });
  });

  it('refuses metadata without a signature map', () => {
    expectError(() => decodeModelMetadataJson(body('{"model_spec": {}}')), 'INVALID_ARGUMENT', /no 'metadata.signature_def.signature_def' map/);
  });

  it('status: AVAILABLE is ready; anything else is not', () => {
    const ready = encodeModelStatusJson([versionStatus('2', true, 'm'), versionStatus('1', false, 'm')]);
    expect(JSON.parse(ready)).toEqual({
      model_version_status: [
        { version: '2', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } },
        { version: '1', state: 'UNKNOWN', status: { error_code: 'UNAVAILABLE', error_message: "model 'm' version 1 is not ready" } },
      ],
    });
    expect(decodeModelStatusJson(body(ready))).toBe(true);
    expect(decodeModelStatusJson(body('{"model_version_status":[{"version":"1","state":"LOADING"}]}'))).toBe(false);
    expect(decodeModelStatusJson(body('{"model_version_status":[{"version":"1","state":30}]}'))).toBe(true);
    expectError(() => decodeModelStatusJson(body('{"model_version_status": 3}')), 'INVALID_ARGUMENT', /must be a list/);
  });
});
