import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, postBinary, postJson, rawDataText, splitBinaryReply } from '../helpers/http.js';
import { SAMPLES } from '../helpers/samples.js';
import { startStack, type Stack } from '../helpers/stack.js';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.close();
});

interface OutputJson {
  name: string;
  datatype: string;
  shape: number[];
  data?: unknown[];
  parameters?: Record<string, unknown>;
}
interface InferJson {
  model_name: string;
  model_version?: string;
  id?: string;
  outputs: OutputJson[];
}

function expectError(reply: { status: number; headers: Record<string, unknown>; json<T>(): T }, status: number, pattern: RegExp): void {
  expect(reply.status).toBe(status);
  expect(String(reply.headers['content-type'])).toContain('application/json');
  const body = reply.json<{ error: unknown }>();
  expect(typeof body.error).toBe('string');
  expect(body.error).toMatch(pattern);
}

describe('server and health endpoints', () => {
  it('GET /v2 names the server and its extensions', async () => {
    const reply = await call(stack.http, 'GET', '/v2');
    expect(reply.status).toBe(200);
    const body = reply.json<{ name: string; version: string; extensions: string[] }>();
    expect(body.name).toBe('infergate');
    expect(body.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(body.extensions).toContain('binary_tensor_data');
  });

  it('live and ready answer 200 with an empty body', async () => {
    for (const path of ['/v2/health/live', '/v2/health/ready']) {
      const reply = await call(stack.http, 'GET', path);
      expect(reply.status).toBe(200);
      expect(reply.body.length).toBe(0);
    }
  });

  it('echoes a client request id and makes one up otherwise', async () => {
    const given = await call(stack.http, 'GET', '/v2', undefined, { 'x-request-id': 'abc-123' });
    expect(given.headers['x-request-id']).toBe('abc-123');
    const made = await call(stack.http, 'GET', '/v2');
    expect(String(made.headers['x-request-id'])).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('model metadata, readiness and index', () => {
  it('returns the backend metadata under the public name, through either backend protocol', async () => {
    for (const name of ['linear', 'rest.linear']) {
      const reply = await call(stack.http, 'GET', `/v2/models/${name}`);
      expect(reply.status).toBe(200);
      const meta = reply.json<{ name: string; versions: string[]; platform: string; inputs: unknown[]; outputs: unknown[] }>();
      expect(meta.name).toBe(name);
      expect(meta.inputs).toEqual([{ name: 'INPUT0', datatype: 'FP32', shape: [-1, 4] }]);
      expect(meta.outputs).toContainEqual({ name: 'SCORES', datatype: 'FP32', shape: [-1, 3] });
      expect(meta.versions).toEqual(expect.arrayContaining(['1', '2']));
    }
  });

  it('a pinned version is the only version a model shows and serves', async () => {
    const meta = await call(stack.http, 'GET', '/v2/models/linear-v1');
    expect(meta.json<{ versions: string[] }>().versions).toEqual(['1']);
    expect((await call(stack.http, 'GET', '/v2/models/linear-v1/versions/1')).status).toBe(200);
    expectError(await call(stack.http, 'GET', '/v2/models/linear-v1/versions/2'), 404, /no version '2'/);
  });

  it('model ready: 200 when ready, 503 when not, 404 when unknown here or on the backend', async () => {
    expect((await call(stack.http, 'GET', '/v2/models/linear/ready')).status).toBe(200);
    expect((await call(stack.http, 'GET', '/v2/models/rest.linear/versions/1/ready')).status).toBe(200);
    expectError(await call(stack.http, 'GET', '/v2/models/unready/ready'), 503, /not ready/);
    expectError(await call(stack.http, 'GET', '/v2/models/rest.unready/ready'), 503, /not ready/);
    expectError(await call(stack.http, 'GET', '/v2/models/nope/ready'), 404, /unknown model 'nope'/);
    expectError(await call(stack.http, 'GET', '/v2/models/ghost/ready'), 404, /no_such_model/);
  });

  it('unknown version on the backend is 404 with the backend message', async () => {
    expectError(await call(stack.http, 'GET', '/v2/models/linear/versions/7'), 404, /.+/);
  });

  it('POST /v2/repository/index lists every model with its state; ready:true filters', async () => {
    const all = await postJson(stack.http, '/v2/repository/index', {});
    expect(all.status).toBe(200);
    const rows = all.json<{ name: string; version: string; state: string; reason: string }[]>();
    const byName = new Map(rows.map((r) => [r.name, r]));
    expect(byName.get('linear')?.state).toBe('READY');
    expect(byName.get('linear-v1')).toMatchObject({ version: '1', state: 'READY' });
    expect(byName.get('unready')?.state).toBe('UNAVAILABLE');
    expect(byName.get('down')?.state).toBe('UNAVAILABLE');
    expect(byName.get('down')?.reason).toMatch(/unreachable/);
    const ready = (await postJson(stack.http, '/v2/repository/index', { ready: true })).json<{ name: string; state: string }[]>();
    expect(ready.length).toBeGreaterThan(0);
    expect(ready.every((r) => r.state === 'READY')).toBe(true);
    expect(ready.some((r) => r.name === 'unready')).toBe(false);
    expect((await call(stack.http, 'POST', '/v2/repository/index')).status).toBe(200);
    expectError(await postJson(stack.http, '/v2/repository/index', { ready: 'yes' }), 400, /ready/);
  });

  it('repository load/unload answer 501 with a reason', async () => {
    expectError(await call(stack.http, 'POST', '/v2/repository/models/linear/load'), 501, /config/);
  });
});

describe('infer: every datatype, JSON and binary, through a gRPC and a REST backend', () => {
  for (const sample of SAMPLES) {
    for (const prefix of ['', 'rest.']) {
      const model = `${prefix}identity_${sample.datatype.toLowerCase()}`;

      it(`${model}: JSON in, JSON out, values unchanged`, async () => {
        const reply = await postJson(stack.http, `/v2/models/${model}/infer`, {
          id: 'req-1',
          inputs: [{ name: 'INPUT0', datatype: sample.datatype, shape: sample.shape, data: sample.json }],
        });
        expect(reply.status, reply.text()).toBe(200);
        const body = reply.json<InferJson>();
        expect(body.model_name).toBe(model);
        expect(body.id).toBe('req-1');
        const out = body.outputs.find((o) => o.name === 'OUTPUT0')!;
        expect(out.datatype).toBe(sample.datatype);
        expect(out.shape).toEqual(sample.shape);
        if (sample.datatype === 'INT64' || sample.datatype === 'UINT64') {
          // Checked on the literal text: exact 64-bit digits, no rounding through a double.
          expect(rawDataText(reply.text(), 'OUTPUT0').split(',')).toEqual(sample.json.map(String));
        } else {
          expect(out.data).toEqual(sample.json);
        }
      });

      it(`${model}: binary in, binary out, bytes identical`, async () => {
        const reply = await postBinary(
          stack.http,
          `/v2/models/${model}/infer`,
          {
            inputs: [{ name: 'INPUT0', datatype: sample.datatype, shape: sample.shape, parameters: { binary_data_size: sample.raw.length } }],
            parameters: { binary_data_output: true },
          },
          [sample.raw],
        );
        expect(reply.status, reply.text()).toBe(200);
        expect(reply.headers['content-type']).toBe('application/octet-stream');
        const { header, blobs } = splitBinaryReply(reply);
        const outputs = header.outputs as OutputJson[];
        expect(outputs).toHaveLength(1);
        expect(outputs[0]).toMatchObject({ name: 'OUTPUT0', datatype: sample.datatype, shape: sample.shape });
        expect(outputs[0]!.parameters).toEqual({ binary_data_size: sample.raw.length });
        expect(blobs.equals(sample.raw)).toBe(true);
      });
    }
  }

  it('moves an 800 kB tensor both ways byte for byte (one Buffer to the backend, the reply written as its chunks)', async () => {
    // Under the stack's 1 MiB server.max_body_bytes, and far over the 64 kB up to which a reply is merged into one Buffer.
    const values = Float32Array.from({ length: 200_000 }, (_, i) => i / 7);
    const raw = Buffer.from(values.buffer);
    const reply = await postBinary(
      stack.http,
      '/v2/models/identity_fp32/infer',
      {
        inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, values.length], parameters: { binary_data_size: raw.length } }],
        parameters: { binary_data_output: true },
      },
      [raw],
    );
    expect(reply.status, reply.text().slice(0, 200)).toBe(200);
    expect(Number(reply.headers['content-length'])).toBe(reply.body.length);
    const { header, blobs } = splitBinaryReply(reply);
    expect((header.outputs as OutputJson[])[0]).toMatchObject({ name: 'OUTPUT0', shape: [1, values.length], parameters: { binary_data_size: raw.length } });
    expect(blobs.equals(raw)).toBe(true);
  });

  it('mixes binary and JSON outputs as each output asks', async () => {
    const reply = await postJson(stack.http, '/v2/models/simple/infer', {
      inputs: [
        { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: Array.from({ length: 16 }, (_, i) => i) },
        { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: Array.from({ length: 16 }, () => 1) },
      ],
      outputs: [{ name: 'OUTPUT0', parameters: { binary_data: true } }, { name: 'OUTPUT1' }],
    });
    expect(reply.status, reply.text()).toBe(200);
    const { header, blobs } = splitBinaryReply(reply);
    const outputs = header.outputs as OutputJson[];
    const sum = outputs.find((o) => o.name === 'OUTPUT0')!;
    const diff = outputs.find((o) => o.name === 'OUTPUT1')!;
    expect(sum.parameters).toEqual({ binary_data_size: 64 });
    expect(Array.from(new Int32Array(blobs.buffer.slice(blobs.byteOffset, blobs.byteOffset + 64)))).toEqual(
      Array.from({ length: 16 }, (_, i) => i + 1),
    );
    expect(diff.data).toEqual(Array.from({ length: 16 }, (_, i) => i - 1));
  });

  it('linear returns exactly what the backend computes, and versions differ', async () => {
    const request = {
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [2, 4], data: [[1, 2, 3, 4], [-0.5, 0.25, 8, -3]] }],
      parameters: { binary_data_output: true },
    };
    const directPool = new Pool(`http://${stack.triton.httpEndpoint}`);
    const direct = await postJson(directPool, '/v2/models/linear/infer', request).finally(() => directPool.close());
    const viaGrpc = await postJson(stack.http, '/v2/models/linear/infer', request);
    const viaRest = await postJson(stack.http, '/v2/models/rest.linear/infer', request);
    const v1 = await postJson(stack.http, '/v2/models/linear-v1/infer', request);
    expect(direct.status).toBe(200);
    const blobs = (r: typeof direct) => splitBinaryReply(r).blobs;
    expect(blobs(viaGrpc).equals(blobs(direct))).toBe(true);
    expect(blobs(viaRest).equals(blobs(direct))).toBe(true);
    expect(blobs(v1).equals(blobs(direct))).toBe(false);
    expect(splitBinaryReply(v1).header.model_version).toBe('1');
    expect(splitBinaryReply(viaGrpc).header.model_version).toBe('2');
  });
});

describe('bad input gets a clear 4xx, never a 5xx', () => {
  const linear = '/v2/models/linear/infer';
  const fp32 = (extra: Record<string, unknown> = {}) => ({ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4], ...extra });

  it('malformed JSON', async () => {
    expectError(await call(stack.http, 'POST', linear, '{"inputs": [', { 'content-type': 'application/json' }), 400, /malformed JSON/i);
  });

  it('a body that is not an object, or has no inputs', async () => {
    expectError(await postJson(stack.http, linear, [1, 2]), 400, /object/);
    expectError(await postJson(stack.http, linear, { outputs: [] }), 400, /inputs/);
  });

  it('a shape that does not match the data length', async () => {
    expectError(await postJson(stack.http, linear, { inputs: [fp32({ shape: [1, 5] })] }), 400, /INPUT0.*shape/);
  });

  it('an unknown datatype', async () => {
    expectError(await postJson(stack.http, linear, { inputs: [fp32({ datatype: 'FLOAT32' })] }), 400, /FLOAT32/);
  });

  it('a value of the wrong type or out of range', async () => {
    expectError(await postJson(stack.http, linear, { inputs: [fp32({ data: [1, 'two', 3, 4] })] }), 400, /element 1/);
    expectError(
      await postJson(stack.http, '/v2/models/identity_uint8/infer', {
        inputs: [{ name: 'INPUT0', datatype: 'UINT8', shape: [1, 1], data: [256] }],
      }),
      400,
      /element 0/,
    );
  });

  it('a BYTES tensor with bad framing', async () => {
    const bad = Buffer.from([10, 0, 0, 0, 65, 66]); // declares 10 bytes, carries 2
    const reply = await postBinary(
      stack.http,
      '/v2/models/identity_bytes/infer',
      { inputs: [{ name: 'INPUT0', datatype: 'BYTES', shape: [1, 1], parameters: { binary_data_size: bad.length } }] },
      [bad],
    );
    expectError(reply, 400, /BYTES/);
  });

  it('binary_data_size that does not match the blobs', async () => {
    const reply = await postBinary(
      stack.http,
      linear,
      { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], parameters: { binary_data_size: 16 } }] },
      [Buffer.alloc(12)],
    );
    expectError(reply, 400, /.+/);
  });

  it('an Inference-Header-Content-Length that is not a length within the body', async () => {
    for (const value of ['abc', '-1', '999999']) {
      const reply = await call(stack.http, 'POST', linear, '{}', { 'inference-header-content-length': value });
      expectError(reply, 400, /Inference-Header-Content-Length/i);
    }
  });

  it('a missing input is the backend 400, passed on with its message', async () => {
    expectError(await postJson(stack.http, linear, { inputs: [fp32({ name: 'WRONG' })] }), 400, /INPUT0|WRONG/);
  });

  it('an unknown model, and an unknown version', async () => {
    expectError(await postJson(stack.http, '/v2/models/nope/infer', { inputs: [fp32()] }), 404, /unknown model 'nope'/);
    expectError(await postJson(stack.http, '/v2/models/linear-v1/versions/3/infer', { inputs: [fp32()] }), 404, /version/);
    expectError(await postJson(stack.http, '/v2/models/linear/versions/9/infer', { inputs: [fp32()] }), 404, /.+/);
  });

  it('model names with a slash, "..", or control characters', async () => {
    for (const name of ['a%2Fb', 'a..b', '..', '%2e%2E', '.', 'bad%01name', 'sp%20ace']) {
      expectError(await postJson(stack.http, `/v2/models/${name}/infer`, { inputs: [fp32()] }), 400, /invalid (model name|path)/);
    }
  });

  it('an oversized body is 413, checked before it is read whole', async () => {
    const big = Buffer.alloc(2 * 1024 * 1024, 0x20);
    expectError(await call(stack.http, 'POST', linear, big, { 'content-type': 'application/json' }), 413, /max_body_bytes/);
    // The gateway still serves after refusing it.
    expect((await postJson(stack.http, linear, { inputs: [fp32()] })).status).toBe(200);
  });

  it('an unreachable backend is 503 through either protocol', async () => {
    for (const model of ['down', 'rest.down']) {
      expectError(await postJson(stack.http, `/v2/models/${model}/infer`, { inputs: [fp32()] }), 503, /unreachable/);
    }
  });

  it('a model that is not ready is 503', async () => {
    expectError(
      await postJson(stack.http, '/v2/models/unready/infer', { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1], data: [1] }] }),
      503,
      /.+/,
    );
  });

  it('an unknown path is 404 and a wrong method 405, both as JSON errors', async () => {
    expectError(await call(stack.http, 'GET', '/v2/nothing/here'), 404, /Not Found/);
    expectError(await call(stack.http, 'GET', linear), 405, /POST/);
    expectError(await call(stack.http, 'DELETE', '/v2/models/linear'), 405, /GET/);
  });
});

describe('order of checks', () => {
  it('an unknown model is 404 even when the body is bad too', async () => {
    expectError(await call(stack.http, 'POST', '/v2/models/nope/infer', '{}'), 404, /unknown model 'nope'/);
    expectError(await call(stack.http, 'POST', '/v2/models/nope/infer', 'not json'), 404, /unknown model 'nope'/);
  });
});
