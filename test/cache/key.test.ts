import { describe, expect, it } from 'vitest';
import { cacheKey } from '../../src/cache/key.js';
import type { InferRequest } from '../../src/core/inference.js';
import type { Tensor } from '../../src/core/tensor.js';
import { inferRequestFromMessage } from '../../src/protocols/v2/grpc-codec.js';
import type { ModelInferRequestMessage } from '../../src/protocols/v2/grpc-proto.js';
import { decodeInferRequest } from '../../src/protocols/v2/rest-codec.js';

const SCOPE = 'triton-a|linear|2';

const fp32 = Buffer.alloc(16);
[1.5, -2, 0.25, 1e6].forEach((v, i) => fp32.writeFloatLE(v, 4 * i));
const int64 = Buffer.alloc(16);
int64.writeBigInt64LE(9007199254740993n, 0);
int64.writeBigInt64LE(-7n, 8);
const words = ['hello', '', 'wörld'];
const bytes = Buffer.concat(
  words.flatMap((w) => {
    const b = Buffer.from(w, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    return [len, b];
  }),
);

/** One request three ways: JSON data, the binary extension, gRPC (raw or typed). */
function restJson(extra: { parameters?: object; outputs?: object[]; binaryOutput?: boolean } = {}): InferRequest {
  const body = {
    id: 'json-1',
    parameters: { temperature: 0.5, top_k: 3, ...(extra.binaryOutput !== undefined ? { binary_data_output: extra.binaryOutput } : {}), ...extra.parameters },
    inputs: [
      { name: 'X', datatype: 'FP32', shape: [2, 2], data: [1.5, -2, 0.25, 1e6] },
      { name: 'IDS', datatype: 'INT64', shape: [2], data: [9007199254740993n, -7] },
      { name: 'TEXT', datatype: 'BYTES', shape: [3], data: words },
    ],
    outputs: extra.outputs ?? [{ name: 'Y', parameters: { classification: 2 } }, { name: 'Z' }],
  };
  const json = JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? `@@${v}@@` : v)).replace(/"@@(-?\d+)@@"/g, '$1');
  return decodeInferRequest(Buffer.from(json), undefined, 'linear', '2').request;
}

function restBinary(binaryOutputs = true): InferRequest {
  const header = JSON.stringify({
    parameters: { top_k: 3, temperature: 0.5, binary_data_output: binaryOutputs },
    // Another order of inputs, and another id.
    id: 'bin-7',
    inputs: [
      { name: 'TEXT', datatype: 'BYTES', shape: [3], parameters: { binary_data_size: bytes.length } },
      { name: 'X', datatype: 'FP32', shape: [2, 2], parameters: { binary_data_size: 16 } },
      { name: 'IDS', datatype: 'INT64', shape: [2], parameters: { binary_data_size: 16 } },
    ],
    outputs: [
      { name: 'Y', parameters: { classification: 2, binary_data: !binaryOutputs } },
      { name: 'Z', parameters: { binary_data: binaryOutputs } },
    ],
  });
  const h = Buffer.from(header);
  return decodeInferRequest(Buffer.concat([h, bytes, fp32, int64]), h.length, 'linear', '2').request;
}

const grpcParams = {
  temperature: { double_param: 0.5, parameter_choice: 'double_param' as const },
  top_k: { int64_param: '3', parameter_choice: 'int64_param' as const },
};

function grpcRaw(extra: Record<string, unknown> = {}): InferRequest {
  const msg: ModelInferRequestMessage = {
    model_name: 'linear',
    model_version: '2',
    id: 'grpc-raw',
    parameters: { ...grpcParams, ...extra },
    inputs: [
      { name: 'IDS', datatype: 'INT64', shape: ['2'] },
      { name: 'X', datatype: 'FP32', shape: ['2', '2'] },
      { name: 'TEXT', datatype: 'BYTES', shape: ['3'] },
    ],
    raw_input_contents: [int64, fp32, bytes],
    outputs: [{ name: 'Y', parameters: { classification: { int64_param: '2', parameter_choice: 'int64_param' } } }, { name: 'Z' }],
  } as ModelInferRequestMessage;
  return inferRequestFromMessage(msg);
}

function grpcTyped(): InferRequest {
  const msg = {
    model_name: 'linear',
    model_version: '2',
    parameters: grpcParams,
    inputs: [
      { name: 'X', datatype: 'FP32', shape: ['2', '2'], contents: { fp32_contents: [1.5, -2, 0.25, 1e6] } },
      { name: 'TEXT', datatype: 'BYTES', shape: ['3'], contents: { bytes_contents: words.map((w) => Buffer.from(w)) } },
      { name: 'IDS', datatype: 'INT64', shape: ['2'], contents: { int64_contents: ['9007199254740993', '-7'] } },
    ],
    outputs: [
      // A gRPC client may send the REST transport flags too: they still do not count.
      { name: 'Y', parameters: { classification: { int64_param: '2', parameter_choice: 'int64_param' }, binary_data: { bool_param: true, parameter_choice: 'bool_param' } } },
      { name: 'Z' },
    ],
  } as unknown as ModelInferRequestMessage;
  return inferRequestFromMessage(msg);
}

const base = (): InferRequest => restJson();
const key = (req: InferRequest, scope = SCOPE): string => cacheKey(scope, req);

function withInput(req: InferRequest, name: string, change: (t: Tensor) => Tensor): InferRequest {
  return { ...req, inputs: req.inputs.map((t) => (t.name === name ? change(t) : t)) };
}

describe('cacheKey', () => {
  it('is a SHA-256 hex digest', () => {
    expect(key(base())).toMatch(/^[0-9a-f]{64}$/);
  });

  it('is the same for REST JSON, REST binary, gRPC raw and gRPC typed contents', () => {
    const k = key(restJson());
    expect(key(restBinary(true))).toBe(k);
    expect(key(restBinary(false))).toBe(k);
    expect(key(grpcRaw())).toBe(k);
    expect(key(grpcTyped())).toBe(k);
  });

  it('ignores the transport flags binary_data_output / binary_data / binary_data_size wherever they appear', () => {
    const k = key(base());
    expect(key(restJson({ binaryOutput: true }))).toBe(k);
    expect(key(restJson({ binaryOutput: false }))).toBe(k);
    expect(key(grpcRaw({ binary_data_output: { bool_param: true, parameter_choice: 'bool_param' } }))).toBe(k);
    const req = base();
    const flagged: InferRequest = {
      ...req,
      parameters: { ...req.parameters, binary_data_output: true },
      inputs: req.inputs.map((t) => ({ ...t, parameters: { binary_data_size: t.data.length } })),
      outputs: req.outputs!.map((o) => ({ ...o, parameters: { ...o.parameters, binary_data: true } })),
    };
    expect(key(flagged)).toBe(k);
  });

  it('ignores the request id, the input order and the canonical model name (the scope names the target)', () => {
    const req = base();
    const k = key(req);
    expect(key({ ...req, id: 'other' })).toBe(k);
    expect(key({ ...req, inputs: [...req.inputs].reverse() })).toBe(k);
    expect(key({ ...req, model: 'public-name', version: '' })).toBe(k);
  });

  it('treats no requested outputs and an empty list alike', () => {
    const req = base();
    const { outputs: _drop, ...all } = req;
    expect(key({ ...all, outputs: [] })).toBe(key(all));
    expect(key(all)).not.toBe(key(req));
  });

  it('differs on any byte, shape, datatype or input name', () => {
    const req = base();
    const k = key(req);
    const seen = new Set([k]);
    const variants: InferRequest[] = [];
    // Every single byte of every input.
    for (const t of req.inputs) {
      for (let i = 0; i < t.data.length; i++) {
        variants.push(
          withInput(req, t.name, (x) => {
            const data = Buffer.from(x.data);
            data[i] = data[i]! ^ 0x01;
            return { ...x, data };
          }),
        );
      }
    }
    variants.push(withInput(req, 'X', (x) => ({ ...x, shape: [4] })));
    variants.push(withInput(req, 'X', (x) => ({ ...x, shape: [1, 4] })));
    variants.push(withInput(req, 'X', (x) => ({ ...x, shape: [4, 1] })));
    variants.push(withInput(req, 'X', (x) => ({ ...x, datatype: 'INT32' })));
    variants.push(withInput(req, 'X', (x) => ({ ...x, name: 'X2' })));
    variants.push(withInput(req, 'X', (x) => ({ ...x, parameters: { layout: 'NCHW' } })));
    variants.push({ ...req, inputs: req.inputs.slice(1) });
    for (const v of variants) {
      const vk = key(v);
      expect(seen.has(vk)).toBe(false);
      seen.add(vk);
    }
  });

  it('differs on requested outputs, their parameters, result-changing request parameters and the scope', () => {
    const k = key(base());
    const others = [
      key(restJson({ outputs: [{ name: 'Y', parameters: { classification: 2 } }] })),
      key(restJson({ outputs: [{ name: 'Z' }, { name: 'Y', parameters: { classification: 2 } }] })),
      key(restJson({ outputs: [{ name: 'Y', parameters: { classification: 3 } }, { name: 'Z' }] })),
      key(restJson({ outputs: [{ name: 'Y' }, { name: 'Z' }] })),
      key(restJson({ parameters: { temperature: 0.6 } })),
      key(restJson({ parameters: { top_k: '3' } })),
      key(restJson({ parameters: { seed: 1 } })),
      key(base(), 'triton-b|linear|2'),
      key(base(), 'triton-a|linear|1'),
    ];
    expect(new Set([k, ...others]).size).toBe(others.length + 1);
  });

  it('frames every field, so moving bytes between fields never collides', () => {
    const t = (name: string, data: string): Tensor => ({ name, datatype: 'UINT8', shape: [data.length], data: Buffer.from(data) });
    const req = (inputs: Tensor[]): InferRequest => ({ model: 'm', version: '', inputs });
    const keys = [
      key(req([t('a', 'bc')])),
      key(req([t('ab', 'c')])),
      key(req([t('a', 'b'), t('b', 'c')])),
      key(req([t('a', ''), t('b', 'bc')])),
      cacheKey('s1', req([t('a', 'bc')])),
      cacheKey('s', req([t('1a', 'bc')])),
      key({ model: 'm', version: '', inputs: [t('a', 'bc')], parameters: { x: 'yz' } }),
      key({ model: 'm', version: '', inputs: [t('a', 'bc')], parameters: { xy: 'z' } }),
      key({ model: 'm', version: '', inputs: [t('a', 'bc')], parameters: { x: true } }),
      key({ model: 'm', version: '', inputs: [t('a', 'bc')], parameters: { x: 'true' } }),
      key({ model: 'm', version: '', inputs: [t('a', 'bc')], parameters: { x: 1 } }),
      key({ model: 'm', version: '', inputs: [t('a', 'bc')], parameters: { x: '1' } }),
      key({ model: 'm', version: '', inputs: [t('a', 'bc')], outputs: [{ name: 'x' }] }),
    ];
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('gives an integer parameter one key whether it came as a number or a bigint', () => {
    const req = base();
    expect(key({ ...req, parameters: { n: 5 } })).toBe(key({ ...req, parameters: { n: 5n } }));
    expect(key({ ...req, parameters: { n: 5 } })).not.toBe(key({ ...req, parameters: { n: 5.5 } }));
  });
});
