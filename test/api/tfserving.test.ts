import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, type HttpReply } from '../helpers/http.js';
import { grpc, grpcFailure, startTfStack, tensorProto, tfClient, type Message, type TfClient, type TfStack } from '../helpers/tfserving-stack.js';
import { LINEAR_BIAS, fp32, linearScores } from '../helpers/tfserving.js';

/**
 * The gateway's TF Serving front doors (REST and gRPC), called the way TF
 * Serving's own clients call it, for models served by TF Serving and by
 * Triton alike.
 */
let stack: TfStack;
let client: TfClient;
beforeAll(async () => {
  stack = await startTfStack();
  client = tfClient(stack.grpcAddress);
});
afterAll(async () => {
  client?.close();
  await stack?.close();
});

const X = [[1, 2, 3, 4], [0.5, -1, 2, 0]];
const expectedScores = (version: '1' | '2'): number[][] => X.map((row) => linearScores(row, LINEAR_BIAS[version]!));

/** Served by TF Serving over gRPC, TF Serving over REST, and Triton: a TF client cannot tell. */
const LINEAR_MODELS = ['tf.linear', 'tfrest.linear', 'triton.linear', 'tritonrest.linear'] as const;

/**
 * The versions a model's status lists when none is asked for: those its v2
 * metadata names. Triton's metadata names every version; TF Serving's names
 * the one that served it (the latest).
 */
function versionsListed(model: string): string[] {
  return model.startsWith('triton') ? ['2', '1'] : ['2'];
}

function post(path: string, body: string): Promise<HttpReply> {
  return call(stack.http, 'POST', path, body, { 'content-type': 'application/json' });
}

function expectTfError(reply: HttpReply, status: number, pattern: RegExp): void {
  expect(reply.status, reply.text()).toBe(status);
  expect(String(reply.headers['content-type'])).toContain('application/json');
  const body = reply.json<{ error: unknown }>();
  expect(Object.keys(body)).toEqual(['error']);
  expect(body.error).toMatch(pattern);
}

function floats(proto: Message): number[] {
  const content = proto.tensor_content as Buffer;
  if (content.length > 0) return Array.from({ length: content.length / 4 }, (_, i) => content.readFloatLE(i * 4));
  return proto.float_val as number[];
}

describe('REST :predict', () => {
  for (const model of LINEAR_MODELS) {
    it(`${model}: row format answers predictions, one object per row`, async () => {
      const reply = await post(`/v1/models/${model}/versions/1:predict`, JSON.stringify({ instances: X }));
      expect(reply.status, reply.text()).toBe(200);
      expect(String(reply.headers['content-type'])).toContain('application/json');
      const { predictions } = reply.json<{ predictions: { SCORES: number[]; CLASS: number }[] }>();
      expect(predictions.map((p) => p.SCORES.map(Math.fround))).toEqual(expectedScores('1'));
      expect(predictions.map((p) => p.CLASS)).toEqual(expectedScores('1').map((s) => s.indexOf(Math.max(...s))));
    });

    it(`${model}: columnar format answers outputs by name`, async () => {
      const reply = await post(`/v1/models/${model}/versions/2:predict`, JSON.stringify({ inputs: { INPUT0: X } }));
      expect(reply.status, reply.text()).toBe(200);
      const { outputs } = reply.json<{ outputs: { SCORES: number[][]; CLASS: number[] } }>();
      expect(outputs.SCORES.map((r) => r.map(Math.fround))).toEqual(expectedScores('2'));
      expect(outputs.CLASS).toHaveLength(2);
    });
  }

  it('floats are written as TF writes them: the shortest text of the float32', async () => {
    const reply = await post('/v1/models/tf.identity_fp32:predict', '{"inputs": [[0.1, NaN, -Infinity]]}');
    expect(reply.text()).toBe('{"outputs":[[0.1,NaN,-Infinity]]}');
  });

  it('labels reach a TF Serving model; the latest is the newest version', async () => {
    const canary = await post('/v1/models/tf.linear/labels/canary:predict', JSON.stringify({ instances: X }));
    const latest = await post('/v1/models/tfrest.linear:predict', JSON.stringify({ instances: X }));
    for (const reply of [canary, latest]) {
      expect(reply.status, reply.text()).toBe(200);
      expect(reply.json<{ predictions: { SCORES: number[] }[] }>().predictions.map((p) => p.SCORES.map(Math.fround))).toEqual(expectedScores('2'));
    }
  });

  it('a single output is left unnamed; signature_name picks a TF signature', async () => {
    const reply = await post('/v1/models/tf.linear/versions/1:predict', JSON.stringify({ signature_name: 'scores_only', instances: X }));
    expect(reply.status, reply.text()).toBe(200);
    expect(reply.json<{ predictions: number[][] }>().predictions.map((r) => r.map(Math.fround))).toEqual(expectedScores('1'));
    const configured = await post('/v1/models/tfrest.scores/versions/1:predict', JSON.stringify({ inputs: X }));
    expect(configured.json<{ outputs: number[][] }>().outputs.map((r) => r.map(Math.fround))).toEqual(expectedScores('1'));
  });

  for (const model of ['tf.identity_int64', 'triton.identity_int64']) {
    it(`${model}: INT64 exact both ways`, async () => {
      const reply = await post(`/v1/models/${model}:predict`, '{"instances": [[9223372036854775807, -9223372036854775808, 9007199254740993]]}');
      expect(reply.status, reply.text()).toBe(200);
      expect(reply.text()).toBe('{"predictions":[[9223372036854775807,-9223372036854775808,9007199254740993]]}');
    });
  }

  for (const model of ['tf.identity_bytes', 'triton.identity_bytes']) {
    it(`${model}: binary strings as {"b64"} both ways, text as text`, async () => {
      const reply = await post(`/v1/models/${model}:predict`, '{"inputs": [[{"b64": "AP8="}, "héllo"]]}');
      expect(reply.status, reply.text()).toBe(200);
      expect(reply.json()).toEqual({ outputs: [[{ b64: 'AP8=' }, 'héllo']] });
    });
  }

  it('outputs named *_bytes are always b64 (the bytes_out signature of a TF model)', async () => {
    const reply = await post('/v1/models/tfrest.identity_bytes:predict', '{"signature_name": "bytes_out", "inputs": [["hi"]]}');
    expect(reply.status, reply.text()).toBe(200);
    expect(reply.json()).toEqual({ outputs: [[{ b64: Buffer.from('hi').toString('base64') }]] });
  });
});

describe('REST status and metadata', () => {
  for (const model of ['tf.linear', 'tfrest.linear', 'triton.linear']) {
    it(`${model}: the versions its metadata lists, AVAILABLE, newest first; one version when asked`, async () => {
      const all = await call(stack.http, 'GET', `/v1/models/${model}`);
      expect(all.status, all.text()).toBe(200);
      expect(all.json()).toEqual({
        model_version_status: versionsListed(model).map((version) => ({ version, state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } })),
      });
      const one = await call(stack.http, 'GET', `/v1/models/${model}/versions/1`);
      expect(one.json<{ model_version_status: unknown[] }>().model_version_status).toEqual([
        { version: '1', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } },
      ]);
    });

    it(`${model}: metadata is a serving_default signature_def`, async () => {
      const reply = await call(stack.http, 'GET', `/v1/models/${model}/versions/1/metadata`);
      expect(reply.status, reply.text()).toBe(200);
      const body = reply.json<{ model_spec: unknown; metadata: { signature_def: { signature_def: Record<string, { inputs: Record<string, unknown>; outputs: Record<string, { dtype: string }>; method_name: string }> } } }>();
      expect(body.model_spec).toEqual({ name: model, signature_name: '', version: '1' });
      const sig = body.metadata.signature_def.signature_def.serving_default!;
      expect(sig.method_name).toBe('tensorflow/serving/predict');
      expect(sig.inputs.INPUT0).toEqual({ name: 'INPUT0', dtype: 'DT_FLOAT', tensor_shape: { dim: [{ size: '-1' }, { size: '4' }], unknown_rank: false } });
      expect(Object.keys(sig.outputs).sort()).toEqual(['CLASS', 'SCORES']);
      expect(sig.outputs.CLASS!.dtype).toBe('DT_INT64');
    });
  }

  it('a model that is not ready is listed but not AVAILABLE', async () => {
    for (const model of ['tf.unready', 'triton.unready']) {
      const reply = await call(stack.http, 'GET', `/v1/models/${model}`);
      expect(reply.status, reply.text()).toBe(200);
      const [status] = reply.json<{ model_version_status: { state: string; status: { error_code: string } }[] }>().model_version_status;
      expect(status).toMatchObject({ state: 'UNKNOWN', status: { error_code: 'UNAVAILABLE' } });
    }
  });
});

describe('REST bad input: the right status and a clear message', () => {
  it('a value of the wrong type for the signature', async () => {
    expectTfError(await post('/v1/models/tf.linear:predict', '{"instances": [["a", 2, 3, 4]]}'), 400, /input 'INPUT0': element 0 is "a", expected a number \(FP32\)/);
    expectTfError(await post('/v1/models/triton.linear:predict', '{"instances": [[true, 2, 3, 4]]}'), 400, /element 0 is true/);
  });

  it('a missing input: the backend says so, in its own words', async () => {
    expectTfError(await post('/v1/models/tf.simple:predict', JSON.stringify({ inputs: { INPUT0: [Array(16).fill(1)] } })), 400, /Missing but required: \{INPUT1\}/);
    expectTfError(await post('/v1/models/triton.simple:predict', JSON.stringify({ inputs: { INPUT0: [Array(16).fill(1)] } })), 400, /INPUT1/);
  });

  it('an input the model does not have', async () => {
    expectTfError(await post('/v1/models/triton.linear:predict', '{"inputs": {"X": [1]}}'), 400, /names 'X', which is not an input of the model \(its inputs: INPUT0\)/);
  });

  it('a body that is not JSON, or not a predict request', async () => {
    expectTfError(await post('/v1/models/tf.linear:predict', '{"instances": [1, 2'), 400, /not valid JSON/);
    expectTfError(await post('/v1/models/tf.linear:predict', '{"instances": [[1,2,3,4]], "inputs": [[1,2,3,4]]}'), 400, /not both/);
  });

  it('an unknown signature: FAILED_PRECONDITION (400), from TF or from the gateway', async () => {
    expectTfError(await post('/v1/models/tf.linear:predict', '{"signature_name": "nope", "instances": [[1,2,3,4]]}'), 400, /Serving signature key "nope" not found/);
    expectTfError(await post('/v1/models/triton.linear:predict', '{"signature_name": "nope", "instances": [[1,2,3,4]]}'), 400, /Serving signature key "nope" not found: .* triton backend/);
  });

  it('an unknown model, here or on the backend; an unknown version on the backend', async () => {
    expectTfError(await post('/v1/models/nope:predict', '{"instances": [1]}'), 404, /unknown model 'nope'/);
    expectTfError(await post('/v1/models/tf.ghost:predict', '{"instances": [1]}'), 404, /Servable not found for request: Latest\(no_such_model\)/);
    expectTfError(await post('/v1/models/tf.linear/versions/7:predict', '{"instances": [[1,2,3,4]]}'), 404, /Specific\(linear, 7\)/);
    expectTfError(await call(stack.http, 'GET', '/v1/models/nope'), 404, /unknown model 'nope'/);
    expectTfError(await call(stack.http, 'GET', '/v1/models/tf.ghost/metadata'), 404, /Servable not found/);
  });

  it('an unreachable backend is 503', async () => {
    expectTfError(await post('/v1/models/tf.down:predict', '{"instances": [[1,2,3,4]]}'), 503, /unreachable/);
  });

  it("TF's routing errors: other verbs, malformed paths, no model", async () => {
    expectTfError(await post('/v1/models/tf.linear:classify', '{}'), 501, /:classify is not served/);
    expectTfError(await call(stack.http, 'GET', '/v1/models/tf.linear/versions/x'), 400, /Malformed request: GET \/v1\/models\/tf.linear\/versions\/x/);
    expectTfError(await call(stack.http, 'PUT', '/v1/models/tf.linear'), 400, /Malformed request: PUT/);
    expectTfError(await call(stack.http, 'GET', '/v1/models'), 400, /Missing model name/);
  });
});

describe('gRPC PredictionService/Predict', () => {
  const request = (model: string, fields: Message, spec: Message = {}): Message => ({
    model_spec: { name: model, ...spec },
    inputs: { INPUT0: tensorProto('DT_FLOAT', [2, 4], fields) },
  });

  for (const model of LINEAR_MODELS) {
    it(`${model}: tensor_content in, the model's outputs back; model_spec names what ran`, async () => {
      const reply = await client.predict(request(model, { tensor_content: fp32(X.flat()) }, { version: { value: '1' } }));
      const outputs = reply.outputs as Record<string, Message>;
      expect(Object.keys(outputs).sort()).toEqual(['CLASS', 'SCORES']);
      expect(outputs.SCORES).toMatchObject({ dtype: 'DT_FLOAT', tensor_shape: { dim: [{ size: '2' }, { size: '3' }] } });
      expect(floats(outputs.SCORES!)).toEqual(expectedScores('1').flat());
      expect(outputs.CLASS!.dtype).toBe('DT_INT64');
      expect(reply.model_spec).toMatchObject({ name: model, version: { value: '1' }, signature_name: 'serving_default' });
    });

    it(`${model}: typed float_val in, as older clients send`, async () => {
      const reply = await client.predict(request(model, { float_val: X.flat() }, { version: { value: '2' } }));
      expect(floats((reply.outputs as Record<string, Message>).SCORES!)).toEqual(expectedScores('2').flat());
    });
  }

  it('version_label and output_filter', async () => {
    const reply = await client.predict({ ...request('tf.linear', { tensor_content: fp32(X.flat()) }, { version_label: 'stable' }), output_filter: ['SCORES'] });
    expect(Object.keys(reply.outputs as object)).toEqual(['SCORES']);
    expect(floats((reply.outputs as Record<string, Message>).SCORES!)).toEqual(expectedScores('1').flat());
    expect(reply.model_spec).toMatchObject({ version: { value: '1' } });
  });

  it('signature_name picks a TF signature; a Triton model has none but serving_default', async () => {
    const reply = await client.predict(request('tf.linear', { tensor_content: fp32(X.flat()) }, { signature_name: 'scores_only' }));
    expect(Object.keys(reply.outputs as object)).toEqual(['SCORES']);
    expect(reply.model_spec).toMatchObject({ signature_name: 'scores_only' });
    const err = await grpcFailure(client.predict(request('triton.linear', { tensor_content: fp32(X.flat()) }, { signature_name: 'scores_only' })));
    expect(err.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(err.details).toMatch(/Serving signature key "scores_only" not found/);
  });

  it('bad input: the right code and a clear message', async () => {
    const wrongType = { model_spec: { name: 'tf.linear' }, inputs: { INPUT0: tensorProto('DT_INT32', [1, 4], { int_val: [1, 2, 3, 4] }) } };
    let err = await grpcFailure(client.predict(wrongType));
    expect([err.code, err.details]).toEqual([grpc.status.INVALID_ARGUMENT, 'Expects arg[0] to be float but int32 is provided']);
    err = await grpcFailure(client.predict({ ...wrongType, model_spec: { name: 'triton.linear' } }));
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/INT32|datatype/);
    err = await grpcFailure(client.predict({ model_spec: { name: 'tf.simple' }, inputs: { INPUT0: tensorProto('DT_INT32', [1, 16], { int_val: [1] }) } }));
    expect([err.code, err.details]).toEqual([grpc.status.INVALID_ARGUMENT, expect.stringMatching(/Missing but required: \{INPUT1\}/)]);
    err = await grpcFailure(client.predict(request('tf.linear', { float_val: [1, 2, 3] })));
    expect([err.code, err.details]).toEqual([grpc.status.INVALID_ARGUMENT, expect.stringMatching(/input 'INPUT0': shape \[2,4\] holds 8 elements but float_val has 3 values/)]);
    err = await grpcFailure(client.predict({ model_spec: { name: 'tf.linear' }, inputs: { INPUT0: tensorProto('DT_COMPLEX64', [1], { scomplex_val: [1, 2] }) } }));
    expect([err.code, err.details]).toEqual([grpc.status.INVALID_ARGUMENT, expect.stringMatching(/TF type DT_COMPLEX64 is not supported/)]);
    err = await grpcFailure(client.predict({ inputs: {} }));
    expect([err.code, err.details]).toEqual([grpc.status.INVALID_ARGUMENT, expect.stringMatching(/Missing ModelSpec/)]);
  });

  it('unknown models: NOT_FOUND here or from the backend, with its message', async () => {
    let err = await grpcFailure(client.predict(request('nope', { float_val: [1] })));
    expect([err.code, err.details]).toEqual([grpc.status.NOT_FOUND, "unknown model 'nope'"]);
    err = await grpcFailure(client.predict(request('tf.ghost', { tensor_content: fp32(X.flat()) })));
    expect([err.code, err.details]).toEqual([grpc.status.NOT_FOUND, 'Servable not found for request: Latest(no_such_model)']);
    err = await grpcFailure(client.predict(request('tf.linear', { tensor_content: fp32(X.flat()) }, { version_label: 'beta' })));
    expect([err.code, err.details]).toEqual([grpc.status.INVALID_ARGUMENT, 'Unrecognized servable version label: beta']);
  });
});

describe('gRPC GetModelMetadata and GetModelStatus', () => {
  for (const model of ['tf.linear', 'tfrest.linear', 'triton.linear']) {
    it(`${model}: a SignatureDefMap in an Any, with serving_default`, async () => {
      const reply = await client.metadata({ model_spec: { name: model }, metadata_field: ['signature_def'] });
      expect(reply.model_spec).toMatchObject({ name: model, version: { value: '2' } });
      const sig = client.signatures(reply).serving_default!;
      expect(sig.method_name).toBe('tensorflow/serving/predict');
      expect(sig.inputs.INPUT0).toMatchObject({ dtype: 'DT_FLOAT', tensor_shape: { dim: [{ size: '-1' }, { size: '4' }] } });
      expect(sig.outputs.SCORES).toMatchObject({ dtype: 'DT_FLOAT' });
      expect(sig.outputs.CLASS).toMatchObject({ dtype: 'DT_INT64' });
    });

    it(`${model}: status AVAILABLE for the versions its metadata lists, newest first`, async () => {
      const reply = await client.status({ model_spec: { name: model } });
      expect(reply.model_version_status).toEqual(
        versionsListed(model).map((version) => ({ version, state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } })),
      );
    });
  }

  it('metadata_field must be signature_def', async () => {
    let err = await grpcFailure(client.metadata({ model_spec: { name: 'tf.linear' } }));
    expect([err.code, err.details]).toEqual([grpc.status.INVALID_ARGUMENT, expect.stringMatching(/at least one metadata_field/)]);
    err = await grpcFailure(client.metadata({ model_spec: { name: 'tf.linear' }, metadata_field: ['nope'] }));
    expect([err.code, err.details]).toEqual([grpc.status.INVALID_ARGUMENT, expect.stringMatching(/Metadata field nope is not supported/)]);
  });

  it('status of a model not ready, one version, and an unknown model', async () => {
    const unready = await client.status({ model_spec: { name: 'triton.unready' } });
    expect((unready.model_version_status as Message[])[0]).toMatchObject({ state: 'UNKNOWN', status: { error_code: 'UNAVAILABLE' } });
    const one = await client.status({ model_spec: { name: 'tf.linear', version: { value: '1' } } });
    expect(one.model_version_status).toEqual([{ version: '1', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } }]);
    const err = await grpcFailure(client.status({ model_spec: { name: 'nope' } }));
    expect(err.code).toBe(grpc.status.NOT_FOUND);
  });
});
