import { describe, expect, it } from 'vitest';
import { GatewayError, type ErrorCode } from '../../../src/core/errors.js';
import type { InferRequest, InferResponse, ModelMetadata } from '../../../src/core/inference.js';
import type { Tensor } from '../../../src/core/tensor.js';
import {
  BINARY_OUTPUTS,
  JSON_OUTPUTS,
  decodeErrorMessage,
  decodeInferRequest,
  decodeInferResponse,
  decodeModelMetadata,
  encodeError,
  encodeInferRequest,
  encodeInferResponse,
  encodeModelMetadata,
  parseHeaderLength,
  type EncodedBody,
  type OutputEncoding,
} from '../../../src/protocols/v2/rest-codec.js';
import { SAMPLES, type Sample } from '../../helpers/samples.js';

function rejects(fn: () => unknown, pattern: RegExp, code: ErrorCode = 'INVALID_ARGUMENT'): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, `expected ${code} matching ${pattern}`).toBeInstanceOf(GatewayError);
  expect((thrown as GatewayError).code).toBe(code);
  expect((thrown as GatewayError).message).toMatch(pattern);
}

const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
const decodeJson = (v: unknown) => decodeInferRequest(json(v), undefined, 'm', '1');

/** A binary-extension body: the JSON header, then the blobs. */
function binaryBody(header: unknown, ...blobs: Buffer[]): { body: Buffer; headerLength: number } {
  const h = json(header);
  return { body: Buffer.concat([h, ...blobs]), headerLength: h.length };
}

const join = (e: EncodedBody): Buffer => Buffer.concat(e.chunks as Buffer[]);

function tensorOf(s: Sample, name = 'T'): Tensor {
  return { name, datatype: s.datatype, shape: [...s.shape], data: s.raw };
}

function response(outputs: Tensor[], extra: Partial<InferResponse> = {}): InferResponse {
  return { model: 'm', version: '1', outputs, ...extra };
}

/** Nests a flat list row-major by shape [rows, cols]. */
function nest(values: readonly unknown[], cols: number): unknown[][] {
  const rows: unknown[][] = [];
  for (let i = 0; i < values.length; i += cols) rows.push(values.slice(i, i + cols));
  return rows;
}

describe('decodeInferRequest: JSON data for every datatype', () => {
  for (const s of SAMPLES) {
    it(`${s.datatype}: flat and nested data give the same raw bytes`, () => {
      for (const data of [s.json, nest(s.json, s.shape[1])]) {
        const { request } = decodeJson({ inputs: [{ name: 'X', datatype: s.datatype, shape: s.shape, data }] });
        const input = request.inputs[0]!;
        expect(input.data.equals(s.raw)).toBe(true);
        expect(input).toMatchObject({ name: 'X', datatype: s.datatype, shape: [...s.shape] });
      }
    });
  }

  it('reads 64-bit integer literals beyond 2^53 exactly (as Triton does)', () => {
    const body = Buffer.from(
      '{"inputs":[{"name":"A","datatype":"INT64","shape":[3],"data":[9007199254740993,-9223372036854775808,9223372036854775807]},' +
        '{"name":"B","datatype":"UINT64","shape":[1],"data":[18446744073709551615]},' +
        '{"name":"C","datatype":"FP64","shape":[1],"data":[12345678901234567890]}]}',
    );
    const { request } = decodeInferRequest(body, undefined, 'm', '');
    const [a, b, c] = request.inputs;
    expect([0, 8, 16].map((o) => a!.data.readBigInt64LE(o))).toEqual([9007199254740993n, -(2n ** 63n), 2n ** 63n - 1n]);
    expect(b!.data.readBigUInt64LE(0)).toBe(2n ** 64n - 1n);
    expect(c!.data.readDoubleLE(0)).toBe(12345678901234567890);
  });

  it('accepts FP16 and BF16 as JSON numbers (rounding to nearest even) and the special float strings', () => {
    // Written by hand: JSON.stringify would turn -0 into 0.
    const body =
      '{"inputs":[{"name":"H","datatype":"FP16","shape":[4],"data":[1,0.1,"NaN","-Infinity"]},' +
      '{"name":"B","datatype":"BF16","shape":[3],"data":[1,"Infinity",-2]},' +
      '{"name":"F","datatype":"FP32","shape":[3],"data":["NaN","Infinity",-0]}]}';
    const { request } = decodeInferRequest(Buffer.from(body), undefined, 'm', '');
    const [h, b, f] = request.inputs;
    expect([0, 2, 4, 6].map((o) => h!.data.readUInt16LE(o))).toEqual([0x3c00, 0x2e66, 0x7e00, 0xfc00]);
    expect([0, 2, 4].map((o) => b!.data.readUInt16LE(o))).toEqual([0x3f80, 0x7f80, 0xc000]);
    expect(Number.isNaN(f!.data.readFloatLE(0))).toBe(true);
    expect(f!.data.readFloatLE(4)).toBe(Infinity);
    expect(Object.is(f!.data.readFloatLE(8), -0)).toBe(true);
  });

  it('passes id and other parameters through and consumes the transport ones', () => {
    const { request, outputEncoding } = decodeJson({
      id: 'req-1',
      parameters: { binary_data_output: true, priority: 2, tag: 'x', flag: false },
      inputs: [{ name: 'X', datatype: 'INT32', shape: [1], parameters: { note: 'n' }, data: [1] }],
      outputs: [
        { name: 'A', parameters: { binary_data: false, classification: 2 } },
        { name: 'B', parameters: { binary_data: true } },
        { name: 'C' },
      ],
    });
    expect(request).toEqual({
      model: 'm',
      version: '1',
      id: 'req-1',
      parameters: { priority: 2, tag: 'x', flag: false },
      inputs: [{ name: 'X', datatype: 'INT32', shape: [1], parameters: { note: 'n' }, data: Buffer.from([1, 0, 0, 0]) }],
      outputs: [{ name: 'A', parameters: { classification: 2 } }, { name: 'B' }, { name: 'C' }],
    });
    expect(outputEncoding.binaryByDefault).toBe(true);
    expect([...outputEncoding.jsonOutputs]).toEqual(['A']);
    expect([...outputEncoding.binaryOutputs]).toEqual(['B']);
  });

  it('defaults to JSON outputs and leaves optional fields out', () => {
    const { request, outputEncoding } = decodeJson({ inputs: [{ name: 'X', datatype: 'BOOL', shape: [0], data: [] }] });
    expect(request).toEqual({ model: 'm', version: '1', inputs: [{ name: 'X', datatype: 'BOOL', shape: [0], data: Buffer.alloc(0) }] });
    expect(outputEncoding).toMatchObject({ binaryByDefault: false });
    expect(outputEncoding.binaryOutputs.size + outputEncoding.jsonOutputs.size).toBe(0);
  });
});

describe('decodeInferRequest: binary tensor extension', () => {
  for (const s of SAMPLES) {
    it(`${s.datatype}: the blob is the tensor data, as a view of the body`, () => {
      const { body, headerLength } = binaryBody(
        { inputs: [{ name: 'X', datatype: s.datatype, shape: s.shape, parameters: { binary_data_size: s.raw.length } }] },
        s.raw,
      );
      const { request } = decodeInferRequest(body, headerLength, 'm', '');
      const input = request.inputs[0]!;
      expect(input.data.equals(s.raw)).toBe(true);
      expect(input.data.buffer).toBe(body.buffer); // no copy
      expect(input.parameters).toBeUndefined(); // binary_data_size consumed
    });
  }

  it('mixes JSON and binary inputs, blobs in the order of the binary ones', () => {
    const a = Buffer.from([1, 0, 0, 0, 2, 0, 0, 0]);
    const c = Buffer.from([9]);
    const { body, headerLength } = binaryBody(
      {
        inputs: [
          { name: 'A', datatype: 'INT32', shape: [2], parameters: { binary_data_size: 8 } },
          { name: 'B', datatype: 'INT8', shape: [1], data: [5] },
          { name: 'C', datatype: 'UINT8', shape: [1], parameters: { binary_data_size: 1, keep: 'me' } },
        ],
      },
      a,
      c,
    );
    const { request } = decodeInferRequest(body, headerLength, 'm', '');
    expect(request.inputs.map((t) => [...t.data])).toEqual([[...a], [5], [9]]);
    expect(request.inputs[2]!.parameters).toEqual({ keep: 'me' });
  });

  it('a header length with no binary data is plain JSON', () => {
    const { body, headerLength } = binaryBody({ inputs: [{ name: 'A', datatype: 'INT8', shape: [1], data: [1] }] });
    expect(decodeInferRequest(body, headerLength, 'm', '').request.inputs[0]!.data).toEqual(Buffer.from([1]));
  });

  it('refuses a raw binary request (header length 0) as unimplemented', () => {
    rejects(() => decodeInferRequest(Buffer.from([1, 2, 3, 4]), 0, 'm', ''), /raw binary requests/, 'UNIMPLEMENTED');
  });
});

describe('decodeInferRequest: bad input is INVALID_ARGUMENT naming the problem', () => {
  const input = (extra: Record<string, unknown>) => ({ name: 'INPUT0', datatype: 'FP32', shape: [2], data: [1, 2], ...extra });
  const cases: [string, unknown, RegExp][] = [
    ['body is an array', [], /must be a JSON object, got an array/],
    ['body is a number', 3, /must be a JSON object, got a number/],
    ['body is null', null, /must be a JSON object, got null/],
    ['inputs missing', {}, /'inputs' is missing/],
    ['inputs not an array', { inputs: {} }, /'inputs' must be an array/],
    ['input not an object', { inputs: [7] }, /input 0 must be an object/],
    ['input name missing', { inputs: [{ datatype: 'FP32', shape: [1], data: [1] }] }, /input 0: 'name' must be a non-empty string/],
    ['input name empty', { inputs: [input({ name: '' })] }, /input 0: 'name'/],
    ['input name not a string', { inputs: [input({ name: 5 })] }, /input 0: 'name'/],
    ['duplicate input', { inputs: [input({}), input({})] }, /input 'INPUT0' appears more than once/],
    ['datatype missing', { inputs: [input({ datatype: undefined })] }, /input 'INPUT0': 'datatype' is missing/],
    ['unknown datatype', { inputs: [input({ datatype: 'FLOAT32' })] }, /input 'INPUT0': unknown datatype 'FLOAT32'; valid datatypes are BOOL, .*BYTES/],
    ['lower-case datatype', { inputs: [input({ datatype: 'fp32' })] }, /unknown datatype 'fp32'/],
    ['datatype not a string', { inputs: [input({ datatype: 3 })] }, /unknown datatype a number/],
    ['shape missing', { inputs: [input({ shape: undefined })] }, /input 'INPUT0': 'shape' is missing/],
    ['shape not an array', { inputs: [input({ shape: 2 })] }, /input 'INPUT0': 'shape' must be an array/],
    ['negative shape', { inputs: [input({ shape: [-1] })] }, /input 'INPUT0': shape \[-1\] must hold non-negative integers/],
    ['fractional shape', { inputs: [input({ shape: [1.5] })] }, /shape \[1.5\] must hold non-negative integers/],
    ['string shape', { inputs: [input({ shape: ['2'] })] }, /must hold non-negative integers/],
    ['too few elements', { inputs: [input({ shape: [3] })] }, /input 'INPUT0': shape \[3\] needs 3 elements, 'data' holds 2/],
    ['too many elements', { inputs: [input({ shape: [2, 2], data: [[1, 2], [3, 4], [5, 6]] })] }, /needs 4 elements, 'data' holds 6/],
    ['data missing', { inputs: [input({ data: undefined })] }, /input 'INPUT0': 'data' is missing/],
    ['data not an array', { inputs: [input({ data: 'abc', shape: [1] })] }, /input 'INPUT0': 'data' must be an array/],
    ['bad float element', { inputs: [input({ data: [1, 'x'] })] }, /input 'INPUT0': element 1 is "x", expected a number/],
    ['null element', { inputs: [input({ data: [1, null] })] }, /element 1 is null/],
    ['object element', { inputs: [input({ data: [{}, 1] })] }, /element 0 is/],
    ['int out of range', { inputs: [{ name: 'I', datatype: 'INT8', shape: [1], data: [128] }] }, /input 'I': element 0 is 128, expected an integer in \[-128, 127\]/],
    ['fractional int', { inputs: [{ name: 'I', datatype: 'UINT16', shape: [1], data: [1.5] }] }, /element 0 is 1.5/],
    ['bool as number', { inputs: [{ name: 'B', datatype: 'BOOL', shape: [1], data: [1] }] }, /expected a boolean/],
    ['bytes as number', { inputs: [{ name: 'S', datatype: 'BYTES', shape: [1], data: [1] }] }, /expected a string/],
    ['uint64 negative', { inputs: [{ name: 'U', datatype: 'UINT64', shape: [1], data: ['-1'] }] }, /input 'U': element 0/],
    ['nested too deep', { inputs: [input({ shape: [1], data: JSON.parse('['.repeat(80) + '1' + ']'.repeat(80)) })] }, /nested too deeply/],
    ['parameters not an object', { parameters: [1], inputs: [input({})] }, /the inference request: 'parameters' must be an object/],
    ['parameter value an object', { parameters: { a: {} }, inputs: [input({})] }, /parameter 'a' must be a string, a number or a boolean/],
    ['parameter value null', { inputs: [input({ parameters: { a: null } })] }, /input 'INPUT0': parameter 'a' must be/],
    ['binary_data_output not a boolean', { parameters: { binary_data_output: 1 }, inputs: [input({})] }, /'binary_data_output' must be a boolean/],
    ['id not a string', { id: 5, inputs: [input({})] }, /'id' must be a string/],
    ['outputs not an array', { inputs: [input({})], outputs: {} }, /'outputs' must be an array/],
    ['output not an object', { inputs: [input({})], outputs: ['A'] }, /requested output 0 must be an object/],
    ['output name missing', { inputs: [input({})], outputs: [{}] }, /requested output 0: 'name' must be a non-empty string/],
    ['duplicate output', { inputs: [input({})], outputs: [{ name: 'A' }, { name: 'A' }] }, /requested output 'A' appears more than once/],
    ['binary_data not a boolean', { inputs: [input({})], outputs: [{ name: 'A', parameters: { binary_data: 'yes' } }] }, /requested output 'A': parameter 'binary_data' must be a boolean/],
    ['binary_data_size without a binary section', { inputs: [input({ data: undefined, parameters: { binary_data_size: 8 } })] }, /input 'INPUT0': has binary_data_size but the body has no binary data/],
    ['binary_data_size not an integer', { inputs: [input({ data: undefined, parameters: { binary_data_size: 'x' } })] }, /'binary_data_size' must be a non-negative integer/],
    ['binary_data_size negative', { inputs: [input({ data: undefined, parameters: { binary_data_size: -8 } })] }, /'binary_data_size' must be a non-negative integer/],
    ['both data and binary_data_size', { inputs: [input({ parameters: { binary_data_size: 8 } })] }, /input 'INPUT0': has both 'data' and a binary_data_size/],
  ];
  for (const [name, body, pattern] of cases) {
    it(name, () => rejects(() => decodeJson(body), pattern));
  }

  it('malformed JSON', () => {
    rejects(() => decodeInferRequest(Buffer.from('{"inputs": ['), undefined, 'm', ''), /^malformed JSON: /);
    rejects(() => decodeInferRequest(Buffer.from(''), undefined, 'm', ''), /^malformed JSON: /);
    rejects(() => decodeInferRequest(Buffer.from('{"a": 12345678901234567890,}'), undefined, 'm', ''), /^malformed JSON: /);
    rejects(() => decodeInferRequest(Buffer.from('[' + '['.repeat(5000)), undefined, 'm', ''), /^malformed JSON: /);
  });

  it('binary_data_size past the end of the body', () => {
    const { body, headerLength } = binaryBody(
      { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [2], parameters: { binary_data_size: 8 } }] },
      Buffer.alloc(4),
    );
    rejects(() => decodeInferRequest(body, headerLength, 'm', ''), /input 'INPUT0': binary_data_size 8 exceeds the 4 bytes of binary data left/);
  });

  it('binary data left over after the tensors', () => {
    const { body, headerLength } = binaryBody(
      { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1], parameters: { binary_data_size: 4 } }] },
      Buffer.alloc(12),
    );
    rejects(() => decodeInferRequest(body, headerLength, 'm', ''), /binary data section holds 12 bytes but the tensors' binary_data_size add up to 4/);
  });

  it('a binary size that does not fit the shape', () => {
    const { body, headerLength } = binaryBody(
      { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], parameters: { binary_data_size: 12 } }] },
      Buffer.alloc(12),
    );
    rejects(() => decodeInferRequest(body, headerLength, 'm', ''), /input 'INPUT0': shape \[1,4\] of FP32 needs 16 bytes of data, got 12/);
  });

  it('BYTES framing errors in a blob', () => {
    const truncated = Buffer.from([5, 0, 0, 0, 0x61]); // declares 5 bytes, has 1
    const short = Buffer.from([1, 0]); // a 2-byte length prefix
    for (const [blob, pattern] of [
      [truncated, /input 'S': BYTES element 0 declares 5 bytes but the data ends first/],
      [short, /input 'S': BYTES element 0 has a truncated 4-byte length prefix/],
    ] as const) {
      const { body, headerLength } = binaryBody(
        { inputs: [{ name: 'S', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: blob.length } }] },
        blob,
      );
      rejects(() => decodeInferRequest(body, headerLength, 'm', ''), pattern);
    }
  });

  it('never lets anything but a GatewayError escape (mutation fuzz)', () => {
    const seed = JSON.stringify({
      id: 'x',
      parameters: { binary_data_output: true, p: 1 },
      inputs: [
        { name: 'A', datatype: 'INT64', shape: [2, 1], data: [[1], ['9223372036854775807']] },
        { name: 'B', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: 7 } },
        { name: 'C', datatype: 'FP16', shape: [2], data: [0.5, 'NaN'] },
      ],
      outputs: [{ name: 'O', parameters: { binary_data: false } }],
    });
    const blob = Buffer.from([3, 0, 0, 0, 0x61, 0x62, 0x63]);
    const tokens = ['null', '[]', '{}', '-1', '1e400', '"x"', 'true', '[[[', '12345678901234567890', '"__proto__"', ':', ','];
    let state = 42;
    const rand = (n: number): number => {
      state = (state * 1103515245 + 12345) & 0x7fffffff;
      return state % n;
    };
    for (let i = 0; i < 3000; i++) {
      const at = rand(seed.length);
      const cut = rand(8);
      const text = seed.slice(0, at) + (tokens[rand(tokens.length)] ?? '') + seed.slice(at + cut);
      const header = Buffer.from(text);
      const tail = rand(3) === 0 ? blob.subarray(0, rand(blob.length)) : blob;
      const body = Buffer.concat([header, tail]);
      try {
        decodeInferRequest(body, rand(5) === 0 ? undefined : header.length, 'm', '');
      } catch (err) {
        if (!(err instanceof GatewayError)) throw new Error(`non-GatewayError for ${text}: ${String(err)}`);
      }
    }
  });
});

describe('parseHeaderLength', () => {
  it('accepts an integer in [0, body length]', () => {
    expect(parseHeaderLength(undefined, 10)).toBeUndefined();
    expect(parseHeaderLength('0', 10)).toBe(0);
    expect(parseHeaderLength('10', 10)).toBe(10);
    expect(parseHeaderLength(' 7 ', 10)).toBe(7);
  });
  for (const bad of ['', '11', '-1', '1.5', 'abc', '0x10', '1e1', '99999999999999999999']) {
    it(`refuses ${JSON.stringify(bad)}`, () => rejects(() => parseHeaderLength(bad, 10), /Inference-Header-Content-Length .* must be an integer between 0 and the body length \(10 bytes\)/));
  }
});

describe('encodeInferResponse', () => {
  for (const s of SAMPLES) {
    it(`${s.datatype}: JSON output decodes back to the same bytes`, () => {
      const encoded = encodeInferResponse(response([tensorOf(s)]), JSON_OUTPUTS);
      expect(encoded.contentType).toBe('application/json');
      expect(encoded.headerLength).toBeUndefined();
      expect(encoded.chunks).toHaveLength(1);
      expect(encoded.byteLength).toBe(encoded.chunks[0]!.length);
      const decoded = decodeInferResponse(join(encoded), undefined);
      expect(decoded.outputs[0]!.data.equals(s.raw)).toBe(true);
      expect(decoded.outputs[0]!.parameters).toBeUndefined();
    });

    it(`${s.datatype}: binary output is the tensor's own Buffer after the JSON`, () => {
      const t = tensorOf(s);
      const encoded = encodeInferResponse(response([t]), BINARY_OUTPUTS);
      expect(encoded.contentType).toBe('application/octet-stream');
      expect(encoded.headerLength).toBe(encoded.chunks[0]!.length);
      expect(encoded.chunks[1]).toBe(t.data); // no copy
      expect(encoded.byteLength).toBe(encoded.headerLength! + s.raw.length);
      const header = JSON.parse(encoded.chunks[0]!.toString()) as { outputs: { parameters: unknown; data?: unknown }[] };
      expect(header.outputs[0]!.parameters).toEqual({ binary_data_size: s.raw.length });
      expect(header.outputs[0]!.data).toBeUndefined();
      const decoded = decodeInferResponse(join(encoded), encoded.headerLength);
      expect(decoded.outputs[0]!.data.equals(s.raw)).toBe(true);
    });
  }

  it('writes JSON values as a v2 client expects them', () => {
    const values = (s: Sample): unknown => {
      const text = encodeInferResponse(response([tensorOf(s)]), JSON_OUTPUTS).chunks[0]!.toString();
      return (JSON.parse(text) as { outputs: { data: unknown }[] }).outputs[0]!.data;
    };
    for (const s of SAMPLES.filter((x) => x.datatype !== 'INT64' && x.datatype !== 'UINT64')) {
      expect(values(s), s.datatype).toEqual(s.json);
    }
  });

  it('writes INT64 and UINT64 beyond 2^53 as exact integer literals', () => {
    for (const s of SAMPLES.filter((x) => x.datatype === 'INT64' || x.datatype === 'UINT64')) {
      const text = encodeInferResponse(response([tensorOf(s)]), JSON_OUTPUTS).chunks[0]!.toString();
      const literal = /"data":\[([^\]]*)\]/.exec(text)![1];
      expect(literal).toBe(s.json.map(String).join(','));
    }
  });

  it('writes exact 64-bit integers in large tensors too', () => {
    const n = 10_000;
    const data = Buffer.alloc(n * 8);
    for (let i = 0; i < n; i++) data.writeBigInt64LE(BigInt(i) - 5000n, i * 8);
    const plain = encodeInferResponse(response([{ name: 'L', datatype: 'INT64', shape: [n], data }]), JSON_OUTPUTS);
    expect(decodeInferResponse(join(plain), undefined).outputs[0]!.data.equals(data)).toBe(true);
    data.writeBigInt64LE(2n ** 62n + 1n, 8 * 123);
    const big = encodeInferResponse(response([{ name: 'L', datatype: 'INT64', shape: [n], data }]), JSON_OUTPUTS);
    expect(join(big).toString()).toContain(',4611686018427387905,');
    expect(decodeInferResponse(join(big), undefined).outputs[0]!.data.equals(data)).toBe(true);
  });

  it('writes NaN, ±Infinity and -0 so they come back bit-exact, in small and large tensors', () => {
    for (const n of [4, 5000]) {
      const data = Buffer.alloc(n * 4);
      for (let i = 0; i < n; i++) data.writeFloatLE(i * 0.25, i * 4);
      data.writeFloatLE(Number.NaN, 0);
      data.writeFloatLE(Infinity, 4);
      data.writeFloatLE(-Infinity, 8);
      data.writeFloatLE(-0, 12);
      const text = join(encodeInferResponse(response([{ name: 'F', datatype: 'FP32', shape: [n], data }]), JSON_OUTPUTS)).toString();
      expect(text).toContain('"data":["NaN","Infinity","-Infinity",-0');
      expect(decodeInferResponse(Buffer.from(text), undefined).outputs[0]!.data.equals(data)).toBe(true);
    }
  });

  it('follows the per-output choice over the default, and passes parameters through', () => {
    const a: Tensor = { name: 'A', datatype: 'INT32', shape: [1], data: Buffer.from([1, 0, 0, 0]), parameters: { note: 'a' } };
    const b: Tensor = { name: 'B', datatype: 'INT32', shape: [1], data: Buffer.from([2, 0, 0, 0]) };
    const encoding: OutputEncoding = { binaryByDefault: true, binaryOutputs: new Set(), jsonOutputs: new Set(['A']) };
    const encoded = encodeInferResponse(response([a, b], { id: 'r', parameters: { seq: 3 } }), encoding);
    const header = JSON.parse(encoded.chunks[0]!.toString()) as unknown;
    expect(header).toEqual({
      model_name: 'm',
      model_version: '1',
      id: 'r',
      parameters: { seq: 3 },
      outputs: [
        { name: 'A', datatype: 'INT32', shape: [1], parameters: { note: 'a' }, data: [1] },
        { name: 'B', datatype: 'INT32', shape: [1], parameters: { binary_data_size: 4 } },
      ],
    });
    expect(encoded.chunks.slice(1)).toEqual([b.data]);
    const back = decodeInferResponse(join(encoded), encoded.headerLength);
    expect(back).toEqual(response([a, b], { id: 'r', parameters: { seq: 3 } }));

    const onlyB: OutputEncoding = { binaryByDefault: false, binaryOutputs: new Set(['B']), jsonOutputs: new Set() };
    expect(encodeInferResponse(response([a, b]), onlyB).chunks.slice(1)).toEqual([b.data]);
  });

  it('omits an empty model_version', () => {
    const text = encodeInferResponse(response([], { version: '' }), JSON_OUTPUTS).chunks[0]!.toString();
    expect(JSON.parse(text)).toEqual({ model_name: 'm', outputs: [] });
  });
});

describe('encodeInferRequest', () => {
  const request = (inputs: Tensor[], extra: Partial<InferRequest> = {}): InferRequest => ({ model: 'm', version: '1', inputs, ...extra });

  for (const s of SAMPLES) {
    it(`${s.datatype}: JSON and binary requests decode back to the same bytes`, () => {
      for (const binaryInputs of [false, true]) {
        const encoded = encodeInferRequest(request([tensorOf(s, 'X')]), { binaryInputs, outputs: JSON_OUTPUTS });
        const { request: back } = decodeInferRequest(join(encoded), encoded.headerLength, 'm', '1');
        expect(back.inputs[0]!.data.equals(s.raw), `binary=${binaryInputs}`).toBe(true);
      }
    });
  }

  it('binary inputs: octet-stream, the tensors as chunks, binary_data_size in the JSON', () => {
    const a: Tensor = { name: 'A', datatype: 'FP32', shape: [1], data: Buffer.alloc(4, 1), parameters: { binary_data_size: 999, p: 'q' } };
    const encoded = encodeInferRequest(request([a], { id: 'i', parameters: { binary_data_output: false, priority: 1 } }), {
      binaryInputs: true,
      outputs: BINARY_OUTPUTS,
    });
    expect(encoded.contentType).toBe('application/octet-stream');
    expect(encoded.chunks[1]).toBe(a.data);
    expect(encoded.byteLength).toBe(encoded.headerLength! + 4);
    expect(JSON.parse(encoded.chunks[0]!.toString())).toEqual({
      id: 'i',
      parameters: { priority: 1, binary_data_output: true },
      inputs: [{ name: 'A', datatype: 'FP32', shape: [1], parameters: { p: 'q', binary_data_size: 4 } }],
    });
  });

  it('JSON inputs: application/json and no header length', () => {
    const encoded = encodeInferRequest(request([{ name: 'A', datatype: 'INT8', shape: [2], data: Buffer.from([1, 255]) }]), {
      binaryInputs: false,
      outputs: JSON_OUTPUTS,
    });
    expect(encoded).toMatchObject({ contentType: 'application/json', chunks: [expect.any(Buffer)] });
    expect(encoded.headerLength).toBeUndefined();
    expect(JSON.parse(encoded.chunks[0]!.toString())).toEqual({ inputs: [{ name: 'A', datatype: 'INT8', shape: [2], data: [1, -1] }] });
  });

  it('says binary_data per requested output only where it differs from the default, and round-trips the encoding', () => {
    const outputs = [{ name: 'A', parameters: { classification: 3 } }, { name: 'B' }, { name: 'C' }];
    const encoding: OutputEncoding = { binaryByDefault: true, binaryOutputs: new Set(['B']), jsonOutputs: new Set(['C']) };
    const encoded = encodeInferRequest(request([], { outputs }), { binaryInputs: true, outputs: encoding });
    const header = JSON.parse(join(encoded).toString()) as { outputs: unknown };
    expect(header.outputs).toEqual([
      { name: 'A', parameters: { classification: 3 } },
      { name: 'B' },
      { name: 'C', parameters: { binary_data: false } },
    ]);
    const { request: back, outputEncoding } = decodeInferRequest(join(encoded), encoded.headerLength, 'm', '1');
    expect(back.outputs).toEqual(outputs);
    expect(outputEncoding.binaryByDefault).toBe(true);
    expect([...outputEncoding.jsonOutputs]).toEqual(['C']);
  });

  it('writes bigint parameters as exact integers', () => {
    const encoded = encodeInferRequest(request([], { parameters: { big: 2n ** 63n - 1n } }), { binaryInputs: false, outputs: JSON_OUTPUTS });
    expect(encoded.chunks[0]!.toString()).toContain('"big":9223372036854775807');
    expect(decodeInferRequest(encoded.chunks[0]!, undefined, 'm', '').request.parameters).toEqual({ big: 2n ** 63n - 1n });
  });
});

describe('decodeInferResponse', () => {
  it('reads a Triton reply with mixed binary and JSON outputs', () => {
    const { body, headerLength } = binaryBody(
      {
        model_name: 'simple',
        model_version: '1',
        id: '7',
        outputs: [
          { name: 'A', datatype: 'INT32', shape: [1], parameters: { binary_data_size: 4 } },
          { name: 'B', datatype: 'BYTES', shape: [2], data: ['héllo', ''] },
        ],
      },
      Buffer.from([7, 0, 0, 0]),
    );
    const resp = decodeInferResponse(body, headerLength);
    expect(resp).toMatchObject({ model: 'simple', version: '1', id: '7' });
    expect(resp.outputs[0]!.data).toEqual(Buffer.from([7, 0, 0, 0]));
    expect(resp.outputs[1]!.data.toString('latin1')).toBe('\u0006\0\0\0' + Buffer.from('héllo').toString('latin1') + '\0\0\0\0');
  });

  it('refuses a malformed reply with INVALID_ARGUMENT (the adapter rewraps it)', () => {
    rejects(() => decodeInferResponse(Buffer.from('{"model_name":"m"}'), undefined), /'outputs' is missing/);
    rejects(() => decodeInferResponse(Buffer.from('<html>'), undefined), /malformed JSON/);
  });
});

describe('model metadata', () => {
  const meta: ModelMetadata = {
    name: 'linear',
    versions: ['1', '2'],
    platform: 'onnxruntime_onnx',
    inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [-1, 4] }],
    outputs: [{ name: 'SCORES', datatype: 'FP32', shape: [-1, 3] }],
  };

  it('round-trips in the v2 shape', () => {
    const text = encodeModelMetadata(meta);
    expect(JSON.parse(text)).toEqual(meta);
    expect(decodeModelMetadata(Buffer.from(text))).toEqual(meta);
  });

  it('defaults absent versions and platform', () => {
    expect(decodeModelMetadata(Buffer.from('{"name":"m","inputs":[],"outputs":[]}'))).toEqual({
      name: 'm',
      versions: [],
      platform: '',
      inputs: [],
      outputs: [],
    });
  });

  it('refuses malformed metadata', () => {
    rejects(() => decodeModelMetadata(Buffer.from('{"name":"m","versions":[1]}')), /'versions' must be an array of strings/);
    rejects(() => decodeModelMetadata(Buffer.from('{"name":"m","inputs":[{"name":"x","datatype":"FP32","shape":[-2]}]}')), /inputs\[0\]: 'shape'/);
    rejects(() => decodeModelMetadata(Buffer.from('{"name":"m","outputs":[{"name":"x"}]}')), /outputs\[0\]: 'name' and 'datatype' are required/);
    rejects(() => decodeModelMetadata(Buffer.from('nope')), /malformed JSON/);
  });
});

describe('errors', () => {
  it('encodes {"error": message}', () => {
    expect(JSON.parse(encodeError('bad "thing"'))).toEqual({ error: 'bad "thing"' });
  });

  it('decodes the error field, else a text excerpt, else the status', () => {
    expect(decodeErrorMessage(Buffer.from('{"error":"Request for unknown model"}'), 404)).toBe('Request for unknown model');
    expect(decodeErrorMessage(Buffer.from('  upstream\n  exploded  '), 502)).toBe('upstream exploded');
    expect(decodeErrorMessage(Buffer.from('x'.repeat(1000)), 500)).toHaveLength(201);
    expect(decodeErrorMessage(Buffer.alloc(0), 503)).toBe('HTTP 503');
    expect(decodeErrorMessage(Buffer.from('{"code":1}'), 400)).toBe('{"code":1}');
  });
});
