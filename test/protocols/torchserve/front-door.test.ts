import { describe, expect, it } from 'vitest';
import { GatewayError, notFound } from '../../../src/core/errors.js';
import type { InferResponse } from '../../../src/core/inference.js';
import { joinBytesElements, splitBytesElements, type Tensor } from '../../../src/core/tensor.js';
import { encodeElements } from '../../../src/core/tensor-values.js';
import { TorchServeError } from '../../../src/protocols/torchserve/error.js';
import {
  bodyInput,
  bodyInputSpec,
  DEFAULT_BODY_INPUT,
  errorReply,
  inputMapInputs,
  pingHealth,
  pingReply,
  renderAnswer,
} from '../../../src/protocols/torchserve/front-door.js';

const answer = (...outputs: Tensor[]): InferResponse => ({ model: 'm', version: '', outputs });
const typed = (name: string, datatype: 'FP32' | 'INT64', shape: number[], values: unknown[]): Tensor => ({
  name,
  datatype,
  shape,
  data: encodeElements(datatype, values, name),
});
const bytes = (name: string, elements: Buffer[], parameters?: Record<string, string>): Tensor => ({
  name,
  datatype: 'BYTES',
  shape: [elements.length],
  data: joinBytesElements(elements),
  ...(parameters ? { parameters } : {}),
});

describe('requests from TorchServe clients', () => {
  it('frames a body read with 4 spare bytes as a one-element BYTES tensor, in place', () => {
    const framed = Buffer.concat([Buffer.alloc(4), Buffer.from('payload')]);
    const t = bodyInput({ name: 'data', shape: [1] }, framed, 'text/plain');
    expect(t.data).toBe(framed);
    expect(t.shape).toEqual([1]);
    expect(splitBytesElements(t.data).map(String)).toEqual(['payload']);
    expect(t.parameters).toEqual({ content_type: 'text/plain' });
    expect(bodyInput(DEFAULT_BODY_INPUT, Buffer.alloc(4), undefined).parameters).toBeUndefined();
  });

  it("names and shapes the body after the model's single input, else data [1]", () => {
    expect(bodyInputSpec([{ name: 'INPUT0', shape: [-1, -1] }])).toEqual({ name: 'INPUT0', shape: [1, 1] });
    expect(bodyInputSpec([{ name: 'x', shape: [] }])).toEqual({ name: 'x', shape: [] });
    expect(bodyInputSpec([])).toEqual(DEFAULT_BODY_INPUT);
    expect(bodyInputSpec([{ name: 'a', shape: [1] }, { name: 'b', shape: [1] }])).toEqual({ name: 'data', shape: [1] });
  });

  it('a lone data or body entry is the body (named as the model input); other maps give one input per key', () => {
    for (const key of ['data', 'body']) {
      const [t] = inputMapInputs({ [key]: Buffer.from('x') }, { name: 'INPUT0', shape: [1, 1] });
      expect([t!.name, t!.datatype, t!.shape, splitBytesElements(t!.data).map(String)]).toEqual(['INPUT0', 'BYTES', [1, 1], ['x']]);
    }
    const inputs = inputMapInputs({ INPUT0: Buffer.from('[[1]]'), INPUT1: Buffer.from('[[2]]') }, DEFAULT_BODY_INPUT);
    expect(inputs.map((t) => [t.name, splitBytesElements(t.data).map(String)[0]])).toEqual([
      ['INPUT0', '[[1]]'],
      ['INPUT1', '[[2]]'],
    ]);
    expect(inputMapInputs({ text: Buffer.from('"a"') }, DEFAULT_BODY_INPUT)[0]!.name).toBe('text');
  });
});

describe('answers to TorchServe clients', () => {
  it('a single one-element BYTES output is its bytes (a view), with its content type', () => {
    const out = bytes('OUTPUT0', [Buffer.from([0, 1, 255])], { content_type: 'image/png' });
    const rendered = renderAnswer(answer(out), 'OUTPUT0');
    expect([...rendered.body]).toEqual([0, 1, 255]);
    expect(rendered.body.buffer).toBe(out.data.buffer);
    expect(rendered.contentType).toBe('image/png');
    expect(renderAnswer(answer(bytes('x', [Buffer.from('a')])), 'OUTPUT0').contentType).toBe('application/octet-stream');
  });

  it('the model outputName alone is the bare value; anything else an object of outputs', () => {
    const bare = renderAnswer(answer(typed('OUTPUT0', 'INT64', [2, 2], [1, 2, 3, 4])), 'OUTPUT0');
    expect([bare.body.toString(), bare.contentType]).toEqual(['[[1,2],[3,4]]', 'application/json']);
    expect(renderAnswer(answer(typed('probs', 'FP32', [1], [0.5])), 'OUTPUT0').body.toString()).toBe('{"probs":[0.5]}');
    const two = renderAnswer(answer(typed('SCORES', 'FP32', [1, 2], [7, 2.75]), typed('CLASS', 'INT64', [1], [0])), 'OUTPUT0');
    expect(two.body.toString()).toBe('{"SCORES":[[7,2.75]],"CLASS":[0]}');
  });

  it('embeds JSON-text outputs as JSON, and binary BYTES in JSON as {"b64": ...}', () => {
    const meta = bytes('meta', [Buffer.from('{"label": "cat"}')], { content_type: 'application/json' });
    const blob = bytes('blob', [Buffer.from([0xff, 0x00]), Buffer.from('ok')]);
    expect(renderAnswer(answer(meta, typed('n', 'INT64', [1], [1])), 'OUTPUT0').body.toString()).toBe('{"meta":{"label": "cat"},"n":[1]}');
    expect(renderAnswer(answer(blob), 'OUTPUT0').body.toString()).toBe('{"blob":[{"b64":"/wA="},"ok"]}');
  });
});

describe('errors and ping', () => {
  it("passes a TorchServe backend's own status and exception type on", () => {
    const reply = errorReply(new TorchServeError('UNAVAILABLE', 'Prediction failed', 503, 'InternalServerException'), {
      status: 503,
      type: 'InternalServerException',
    });
    expect(reply.status).toBe(503);
    expect(JSON.parse(reply.body)).toEqual({ code: 503, type: 'InternalServerException', message: 'Prediction failed' });
  });

  it('names other errors by code, pretty-printed as TorchServe writes them', () => {
    const reply = errorReply(notFound("unknown model 'x'"));
    expect(reply.status).toBe(404);
    expect(reply.body).toBe(`{\n  "code": 404,\n  "type": "ModelNotFoundException",\n  "message": "unknown model 'x'"\n}\n`);
    expect(JSON.parse(errorReply(new GatewayError('INTERNAL', 'boom')).body).type).toBe('InternalServerException');
    expect(errorReply(new GatewayError('DEADLINE_EXCEEDED', 'slow')).status).toBe(504);
  });

  it('ping: Healthy 200 or Unhealthy 500; the gRPC health string is the same JSON', () => {
    expect(pingReply(true)).toEqual({ status: 200, body: '{\n  "status": "Healthy"\n}\n' });
    expect(pingReply(false).status).toBe(500);
    expect(JSON.parse(pingHealth(false))).toEqual({ status: 'Unhealthy' });
  });
});
