import { describe, expect, it } from 'vitest';
import type { TorchServeModelOptions } from '../../../src/backends/backend.js';
import type { DataType } from '../../../src/core/datatypes.js';
import { GatewayError } from '../../../src/core/errors.js';
import type { InferRequest } from '../../../src/core/inference.js';
import { joinBytesElements, splitBytesElements, type Tensor } from '../../../src/core/tensor.js';
import { decodeElements, encodeElements } from '../../../src/core/tensor-values.js';
import { topLevelValueTexts } from '../../../src/protocols/torchserve/answer.js';
import {
  answerResponse,
  answerTensors,
  DEFAULT_TORCHSERVE_OPTIONS,
  grpcRequestInput,
  restRequestBody,
  selectOutputs,
} from '../../../src/protocols/torchserve/mapping.js';

const opts = (o: Partial<TorchServeModelOptions> = {}): TorchServeModelOptions => ({ ...DEFAULT_TORCHSERVE_OPTIONS, ...o });

/** The REST body in one piece; `first` is its first chunk (for zero-copy checks). */
function rest(req: InferRequest, o: TorchServeModelOptions) {
  const { chunks, byteLength, contentType } = restRequestBody(req, o);
  const body = Buffer.concat(chunks as Buffer[]);
  expect(body.length).toBe(byteLength);
  return { body, contentType, first: chunks[0]!, chunks };
}

function tensor(name: string, datatype: DataType, shape: number[], values: unknown[], parameters?: Record<string, string>): Tensor {
  return { name, datatype, shape, data: encodeElements(datatype, values, name), ...(parameters ? { parameters } : {}) };
}
const request = (...inputs: Tensor[]): InferRequest => ({ model: 'm', version: '', inputs });
const values = (t: Tensor | undefined) => decodeElements(t!.datatype, t!.data);
const text = (b: Buffer) => b.toString('utf8');
const json = (s: string) => Buffer.from(s, 'utf8');

function errorOf(fn: () => unknown): GatewayError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError);
    return err as GatewayError;
  }
  throw new Error('expected an error');
}

describe('request, json mode', () => {
  it('REST: one JSON object of all inputs, nested by shape', () => {
    const req = request(tensor('a', 'FP32', [2, 2], [1, 2.5, 3, 4]), tensor('b', 'INT64', [2], [5, 6]));
    const { body, contentType } = rest(req, opts());
    expect(contentType).toBe('application/json');
    expect(text(body)).toBe('{"a":[[1,2.5],[3,4]],"b":[5,6]}');
  });

  it('gRPC: one entry per input, each holding that input JSON', () => {
    const req = request(tensor('a', 'INT32', [1, 3], [1, -2, 3]), tensor('flag', 'BOOL', [], [true]));
    const input = grpcRequestInput(req, opts());
    expect(Object.keys(input)).toEqual(['a', 'flag']);
    expect(text(input.a!)).toBe('[[1,-2,3]]');
    expect(text(input.flag!)).toBe('true');
  });

  it('renames keys with inputKeys, on REST and gRPC', () => {
    const req = request(tensor('INPUT0', 'INT64', [1], [7]));
    const o = opts({ inputKeys: { INPUT0: 'x' } });
    expect(text(rest(req, o).body)).toBe('{"x":[7]}');
    expect(Object.keys(grpcRequestInput(req, o))).toEqual(['x']);
  });

  it('writes what JSON.stringify cannot: exact int64, NaN / Infinity as Python does, -0.0', () => {
    const req = request(
      tensor('big', 'INT64', [2], [9007199254740993n, -(2n ** 63n)]),
      tensor('u', 'UINT64', [1], [2n ** 64n - 1n]),
      tensor('f', 'FP64', [4], [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0]),
    );
    expect(text(rest(req, opts()).body)).toBe(
      '{"big":[9007199254740993,-9223372036854775808],"u":[18446744073709551615],"f":[NaN,Infinity,-Infinity,-0.0]}',
    );
  });

  it('writes FP32 as the shortest decimal of its exact value, and handles empty dimensions', () => {
    const req = request(tensor('f', 'FP32', [1], [0.1]), tensor('e', 'INT8', [2, 0], []), tensor('z', 'FP16', [0], []));
    expect(text(rest(req, opts()).body)).toBe('{"f":[0.10000000149011612],"e":[[],[]],"z":[]}');
  });

  it('BYTES among several inputs: strings on REST, the bytes themselves as their own gRPC entry', () => {
    const req = request(tensor('s', 'BYTES', [1], ['héllo']), tensor('n', 'INT32', [1], [1]));
    expect(text(rest(req, opts()).body)).toBe('{"s":["héllo"],"n":[1]}');
    const input = grpcRequestInput(req, opts());
    expect(text(input.s!)).toBe('héllo');
    expect(text(input.n!)).toBe('[1]');
  });

  it('REST: several inputs that are all one BYTES element each go as multipart/form-data file fields', async () => {
    const binary = Buffer.from([0, 255, 13, 10, 45, 45]);
    const req = request(
      { name: 'img', datatype: 'BYTES', shape: [1], data: joinBytesElements([binary]), parameters: { content_type: 'image/png' } },
      tensor('say "hi"', 'BYTES', [1, 1], ['hello']),
    );
    const { body, contentType, chunks } = rest(req, opts({ inputKeys: { img: 'image' } }));
    expect(contentType).toMatch(/^multipart\/form-data; boundary=/);
    expect(chunks.some((c) => c.buffer === req.inputs[0]!.data.buffer)).toBe(true); // the tensor bytes, not a copy
    // Read back with the WHATWG form parser, as a server would.
    const form = await new Response(body, { headers: { 'content-type': contentType } }).formData();
    expect([...form.keys()]).toEqual(['image', 'say "hi"']); // the quote escaped as %22 on the wire, and decoded back
    const image = form.get('image') as File;
    expect(image.type).toBe('image/png');
    expect(Buffer.from(await image.arrayBuffer()).equals(binary)).toBe(true);
    expect(await (form.get('say "hi"') as File).text()).toBe('hello');
    expect(body.toString('latin1')).toContain('name="say %22hi%22"');
  });

  it('embeds a BYTES input marked application/json as JSON, not as a string', () => {
    const doc = tensor('cfg', 'BYTES', [1], ['{"k":[1,2]}'], { content_type: 'application/json' });
    const req = request(doc, tensor('n', 'INT32', [1], [1]));
    expect(text(rest(req, opts()).body)).toBe('{"cfg":{"k":[1,2]},"n":[1]}');
    expect(text(grpcRequestInput(req, opts()).cfg!)).toBe('{"k":[1,2]}');
  });

  it('refuses non-UTF-8 BYTES in a JSON body, and two inputs on one key', () => {
    const binary: Tensor = { name: 'b', datatype: 'BYTES', shape: [2], data: joinBytesElements([Buffer.from([0xff]), Buffer.from('x')]) };
    expect(errorOf(() => rest(request(binary), opts())).code).toBe('INVALID_ARGUMENT');
    const clash = request(tensor('a', 'INT32', [1], [1]), tensor('b', 'INT32', [1], [2]));
    const err = errorOf(() => rest(clash, opts({ inputKeys: { b: 'a' } })));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toContain("both map to key 'a'");
  });

  it('sends an empty object when there are no inputs', () => {
    expect(text(rest(request(), opts()).body)).toBe('{}');
    expect(grpcRequestInput(request(), opts())).toEqual({});
  });
});

describe('request, raw', () => {
  const image = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x00, 0xff]);
  const bytesInput = (parameters?: Record<string, string>): Tensor => ({
    name: 'img',
    datatype: 'BYTES',
    shape: [1, 1],
    data: joinBytesElements([image]),
    ...(parameters ? { parameters } : {}),
  });

  it('a lone one-element BYTES input is the body in any mode, zero-copy, with its content_type', () => {
    for (const mode of ['json', 'raw'] as const) {
      const input = bytesInput({ content_type: 'image/png' });
      const { first: body, contentType, chunks } = rest(request(input), opts({ request: mode }));
      expect(chunks).toHaveLength(1);
      expect(body.equals(image)).toBe(true);
      expect(body.buffer).toBe(input.data.buffer);
      expect(body.byteOffset).toBe(input.data.byteOffset + 4);
      expect(contentType).toBe('image/png');
    }
  });

  it('defaults the content type to application/octet-stream', () => {
    expect(rest(request(bytesInput()), opts()).contentType).toBe('application/octet-stream');
  });

  it('gRPC: the bytes under "data", or under inputKeys[name]', () => {
    const input = bytesInput();
    const sent = grpcRequestInput(request(input), opts());
    expect(Object.keys(sent)).toEqual(['data']);
    expect(sent.data!.buffer).toBe(input.data.buffer);
    expect(Object.keys(grpcRequestInput(request(input), opts({ inputKeys: { img: 'image' } })))).toEqual(['image']);
  });

  it('raw mode sends a fixed-size tensor its raw little-endian bytes, as they are', () => {
    const t = tensor('x', 'UINT8', [2, 3], [1, 2, 3, 4, 5, 255]);
    const { first: body, contentType } = rest(request(t), opts({ request: 'raw' }));
    expect(body).toBe(t.data);
    expect(contentType).toBe('application/octet-stream');
    const f = tensor('f', 'FP32', [1], [1.5]);
    expect(grpcRequestInput(request(f), opts({ request: 'raw' })).data).toBe(f.data);
  });

  it('raw mode refuses several inputs, none, or a BYTES tensor of several elements', () => {
    const raw = opts({ request: 'raw' });
    expect(errorOf(() => rest(request(bytesInput(), bytesInput()), raw)).code).toBe('INVALID_ARGUMENT');
    expect(errorOf(() => grpcRequestInput(request(), raw)).code).toBe('INVALID_ARGUMENT');
    const two = tensor('s', 'BYTES', [2], ['a', 'b']);
    expect(errorOf(() => rest(request(two), raw)).message).toContain('must hold one BYTES element');
  });
});

describe('answer, json mode', () => {
  it('types each key of an object: INT64 integers, FP32 floats, BOOL, BYTES strings, with their shapes', () => {
    const out = answerTensors(json('{"SCORES":[[7,5,2.75]],"CLASS":[0],"ok":[true,false],"labels":[["a","b"]]}'), undefined, opts());
    expect(out.map((t) => [t.name, t.datatype, t.shape])).toEqual([
      ['SCORES', 'FP32', [1, 3]],
      ['CLASS', 'INT64', [1]],
      ['ok', 'BOOL', [2]],
      ['labels', 'BYTES', [1, 2]],
    ]);
    expect(values(out[0])).toEqual([7, 5, 2.75]);
    expect(values(out[1])).toEqual([0n]);
    expect(values(out[2])).toEqual([true, false]);
    expect(values(out[3]).map((b) => Buffer.from(b as Uint8Array).toString())).toEqual(['a', 'b']);
  });

  it('keeps floats written as floats: Python [1.0, 2.0] is FP32, not INT64', () => {
    const out = answerTensors(json('{"a": [1.0, 2.0], "b": [1, 2], "c": [1e3], "d": 3}'), undefined, opts());
    expect(out.map((t) => t.datatype)).toEqual(['FP32', 'INT64', 'FP32', 'INT64']);
    expect(out[3]!.shape).toEqual([]);
  });

  it('reads 64-bit integers exactly and Python NaN / Infinity as floats', () => {
    const out = answerTensors(json('{"id": [9007199254740993], "x": [NaN, -Infinity, 1]}'), undefined, opts());
    expect(out[0]!.datatype).toBe('INT64');
    expect(values(out[0])).toEqual([9007199254740993n]);
    expect(out[1]!.datatype).toBe('FP32');
    expect(values(out[1])).toEqual([Number.NaN, Number.NEGATIVE_INFINITY, 1]);
  });

  it('keeps nested objects, null and ragged lists as their exact JSON text', () => {
    const body = '{"meta": {"label": "cat", "p": 0.50}, "none": null, "ragged": [[1], [2, 3]], "mixed": [1, "a"]}';
    const out = answerTensors(json(body), undefined, opts());
    for (const t of out) {
      expect(t.datatype).toBe('BYTES');
      expect(t.shape).toEqual([1]);
      expect(t.parameters).toEqual({ content_type: 'application/json' });
    }
    const texts = out.map((t) => Buffer.from(splitBytesElements(t.data)[0]!).toString());
    expect(texts).toEqual(['{"label": "cat", "p": 0.50}', 'null', '[[1], [2, 3]]', '[1, "a"]']);
  });

  it('names a list or scalar answer outputName', () => {
    const [list] = answerTensors(json('[[1, 2], [3, 4]]'), undefined, opts({ outputName: 'probs' }));
    expect([list!.name, list!.datatype, list!.shape]).toEqual(['probs', 'INT64', [2, 2]]);
    const [scalar] = answerTensors(json('"positive"'), undefined, opts());
    expect([scalar!.name, scalar!.datatype, scalar!.shape]).toEqual(['OUTPUT0', 'BYTES', []]);
    const [empty] = answerTensors(json('[]'), undefined, opts());
    expect([empty!.datatype, empty!.shape]).toEqual(['FP32', [0]]);
  });

  it('applies outputTypes overrides', () => {
    const o = opts({ outputTypes: { SCORES: 'FP64', CLASS: 'INT32', OUTPUT0: 'UINT8', s: 'BYTES' } });
    const out = answerTensors(json('{"SCORES": [[0.1, 2]], "CLASS": [1, 2], "s": [1, 2.5]}'), undefined, o);
    expect(out.map((t) => t.datatype)).toEqual(['FP64', 'INT32', 'BYTES']);
    expect(values(out[0])).toEqual([0.1, 2]);
    expect(values(out[1])).toEqual([1, 2]);
    expect(values(out[2]).map((b) => Buffer.from(b as Uint8Array).toString())).toEqual(['1', '2.5']);
    expect(answerTensors(json('[1, 255]'), undefined, o)[0]!.datatype).toBe('UINT8');
  });

  it('an answer that does not fit its outputTypes is the backend answer at fault: INTERNAL', () => {
    const o = opts({ outputTypes: { x: 'INT32' } });
    const fractional = errorOf(() => answerTensors(json('{"x": [1.5]}'), undefined, o));
    expect(fractional.code).toBe('INTERNAL');
    expect(fractional.message).toContain("output 'x'");
    expect(errorOf(() => answerTensors(json('{"x": {"a": 1}}'), undefined, o)).code).toBe('INTERNAL');
  });

  it('a body that is not JSON becomes one BYTES output with its content type', () => {
    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47]);
    const [out] = answerTensors(png, 'image/png', opts());
    expect([out!.name, out!.datatype, out!.shape, out!.parameters]).toEqual(['OUTPUT0', 'BYTES', [1], { content_type: 'image/png' }]);
    expect(Buffer.from(splitBytesElements(out!.data)[0]!).equals(png)).toBe(true);
    // Looks like JSON but is not valid UTF-8: kept as bytes, never decoded lossily.
    const notUtf8 = Buffer.from([0x22, 0xff, 0x22]);
    expect(answerTensors(notUtf8, undefined, opts())[0]!.datatype).toBe('BYTES');
    expect(Buffer.from(splitBytesElements(answerTensors(notUtf8, undefined, opts())[0]!.data)[0]!).equals(notUtf8)).toBe(true);
    expect(answerTensors(json('hello world'), 'text/plain', opts())[0]!.parameters).toEqual({ content_type: 'text/plain' });
  });

  it('bytes mode returns the body as it is, even when it is JSON', () => {
    const [out] = answerTensors(json('{"a": 1}'), 'application/json', opts({ response: 'bytes', outputName: 'raw' }));
    expect([out!.name, out!.datatype, out!.parameters]).toEqual(['raw', 'BYTES', { content_type: 'application/json' }]);
    expect(Buffer.from(splitBytesElements(out!.data)[0]!).toString()).toBe('{"a": 1}');
    expect(answerTensors(json('x'), undefined, opts({ response: 'bytes' }))[0]!.parameters).toBeUndefined();
  });

  it('tensors survive the round trip through the JSON request and a JSON answer', () => {
    const sent = [tensor('a', 'INT64', [2, 2], [1, -2, 3, 9007199254740993n]), tensor('b', 'FP32', [3], [0.5, -1.25, 3.75])];
    const body = rest(request(...sent), opts()).body;
    const back = answerTensors(body, 'application/json', opts());
    expect(back.map((t) => [t.name, t.datatype, t.shape])).toEqual(sent.map((t) => [t.name, t.datatype, t.shape]));
    expect(back[0]!.data.equals(sent[0]!.data)).toBe(true);
    expect(back[1]!.data.equals(sent[1]!.data)).toBe(true);
  });
});

describe('requested outputs', () => {
  const outputs = answerTensors(json('{"A": [1], "B": [2], "C": [3]}'), undefined, opts());

  it('keeps only the requested outputs, in the order asked', () => {
    expect(selectOutputs(outputs, [{ name: 'C' }, { name: 'A' }], 'm').map((t) => t.name)).toEqual(['C', 'A']);
    expect(selectOutputs(outputs, [], 'm').map((t) => t.name)).toEqual(['A', 'B', 'C']);
  });

  it('an unknown requested output is INVALID_ARGUMENT naming what there is', () => {
    const err = errorOf(() => selectOutputs(outputs, [{ name: 'Z' }], 'm'));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toContain("'A', 'B', 'C'");
  });

  it('answerResponse filters, and answers with the model, version and id asked', () => {
    const req: InferRequest = { model: 'lin', version: '2.0', id: 'r1', inputs: [], outputs: [{ name: 'B' }] };
    const resp = answerResponse(req, json('{"A": [1], "B": [2]}'), 'application/json', opts());
    expect(resp).toMatchObject({ model: 'lin', version: '2.0', id: 'r1' });
    expect(resp.outputs.map((t) => t.name)).toEqual(['B']);
  });
});

describe('topLevelValueTexts', () => {
  it('finds each value text, past strings with escapes and nested brackets', () => {
    const spans = topLevelValueTexts(' { "a\\"]}" : [1, {"x": "]}"}] , "b":2.0,"c" : "s\\\\" } ');
    expect([...spans]).toEqual([
      ['a"]}', '[1, {"x": "]}"}]'],
      ['b', '2.0'],
      ['c', '"s\\\\"'],
    ]);
  });
});
