import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { credentials, grpc, grpcClients, sha256, unary, V2_LINEAR_REQUEST, type GrpcClients, type Message } from '../helpers/auth.js';
import { call, type HttpReply } from '../helpers/http.js';
import { LINEAR_REQUEST, liveText, startLiveGateway, type LiveGateway } from '../helpers/live.js';

/**
 * API keys on every surface: REST (v2, TF Serving and TorchServe front doors,
 * admin, jobs, experiments) and gRPC (v2, TF Serving, TorchServe, streams).
 */
const ALL_KEY = 'key-for-everything';
const LINEAR_KEY = 'key-for-linear-only';
const RANK_KEY = 'key-for-rank-models';
const OPS_KEY = 'key-for-ops';
const SCRAPER_KEY = 'key-for-prometheus';
const ADMIN_SECTION_KEY = 'admin-section-key';

const AUTH = `auth:
  api_keys:
    - { name: all, key_sha256: "${sha256(ALL_KEY)}", models: ["*"] }
    - { name: linear-only, key_env: LINEAR_KEY, models: [linear] }
    - { name: ranker, key_sha256: "${sha256(RANK_KEY).toUpperCase()}", models: ["rank*"] }
    - { name: ops, key_sha256: "${sha256(OPS_KEY)}", admin: true }
    - { name: scraper, key_sha256: "${sha256(SCRAPER_KEY)}", metrics: true }`;

const MODELS = `  rank-a: { backend: triton-grpc, model: linear }
  rank-b: { backend: triton-rest, model: linear }`;

const EXPERIMENT = `experiments:
  rank-ab:
    model: rank-a
    key: { header: x-user-id }
    control: a
    arms:
      a: { weight: 50, backend: triton-grpc, model: linear }
      b: { weight: 50, backend: triton-rest, model: linear }`;

let triton: TritonReference;
let gw: LiveGateway;
let clients: GrpcClients;

beforeAll(async () => {
  triton = await startTritonReference({ host: '127.0.0.1' });
  gw = await startLiveGateway(liveText(triton, { auth: AUTH, models: MODELS, extra: EXPERIMENT }), {
    env: { LINEAR_KEY, INFERGATE_ADMIN_KEY: ADMIN_SECTION_KEY },
  });
  clients = grpcClients(`127.0.0.1:${gw.gateway.grpcPort}`);
});
afterAll(async () => {
  clients?.close();
  await gw?.close();
  await triton?.close();
});

const bearer = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });

function infer(model: string, headers: Record<string, string> = {}): Promise<HttpReply> {
  return call(gw.pool, 'POST', `/v2/models/${model}/infer`, LINEAR_REQUEST, { 'content-type': 'application/json', ...headers });
}

function expectError(res: HttpReply, status: number, pattern: RegExp): void {
  expect(res.status, res.text()).toBe(status);
  expect(res.json<{ error: string }>().error).toMatch(pattern);
  // Never the credential itself.
  for (const key of [ALL_KEY, LINEAR_KEY, RANK_KEY, OPS_KEY, SCRAPER_KEY, ADMIN_SECTION_KEY, 'wrong-key']) expect(res.text()).not.toContain(key);
}

describe('REST', () => {
  it('health and server metadata stay open', async () => {
    for (const path of ['/v2/health/live', '/v2/health/ready', '/v2', '/ping']) {
      expect((await call(gw.pool, 'GET', path)).status, path).toBe(200);
    }
  });

  it('no credential: 401 with WWW-Authenticate: Bearer and the request id, on every surface', async () => {
    const requests: [('GET' | 'POST'), string][] = [
      ['POST', '/v2/models/linear/infer'],
      ['GET', '/v2/models/linear'],
      ['GET', '/v2/models/linear/ready'],
      ['POST', '/v2/repository/index'],
      ['POST', '/v1/models/linear:predict'],
      ['GET', '/v1/models/linear'],
      ['POST', '/predictions/linear'],
      ['GET', '/v1/jobs'],
      ['GET', '/v1/experiments/rank-ab'],
      ['GET', '/metrics'],
      ['GET', '/no/such/path'],
    ];
    for (const [method, path] of requests) {
      const res = await call(gw.pool, method, path, method === 'POST' ? LINEAR_REQUEST : undefined, { 'x-request-id': 'req-401' });
      expectError(res, 401, /missing credentials: send Authorization: Bearer/);
      expect(res.headers['www-authenticate'], path).toBe('Bearer');
      expect(res.headers['x-request-id']).toBe('req-401');
    }
  });

  it('a wrong key, an empty one or another scheme: 401', async () => {
    const wrong = await infer('linear', bearer('wrong-key'));
    expectError(wrong, 401, /^invalid API key$/);
    expect(wrong.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
    expectError(await infer('linear', { 'x-api-key': 'wrong-key' }), 401, /invalid API key/);
    expectError(await infer('linear', { authorization: 'Bearer ' }), 401, /missing credentials/);
    expectError(await infer('linear', { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` }), 401, /unsupported authorization scheme 'Basic'/);
    // A key that only starts like a real one, or the digest instead of the key.
    expectError(await infer('linear', bearer(`${LINEAR_KEY}x`)), 401, /invalid API key/);
    expectError(await infer('linear', bearer(sha256(ALL_KEY))), 401, /invalid API key/);
  });

  it('a key from the environment, as Bearer or x-api-key, calls its model', async () => {
    expect((await infer('linear', bearer(LINEAR_KEY))).status).toBe(200);
    expect((await infer('linear', { 'x-api-key': LINEAR_KEY })).status).toBe(200);
    expect((await call(gw.pool, 'GET', '/v2/models/linear', undefined, bearer(LINEAR_KEY))).status).toBe(200);
    expect((await call(gw.pool, 'POST', '/v1/models/linear:predict', '{"instances":[[1,2,3,4]]}', bearer(LINEAR_KEY))).status).toBe(200);
  });

  it("a key outside the model's scope: 403 naming the model, on every surface", async () => {
    const denied = /API key 'linear-only' has no access to model 'simple'/;
    expectError(await infer('simple', bearer(LINEAR_KEY)), 403, denied);
    expectError(await call(gw.pool, 'POST', '/v2/models/simple/versions/1/infer', LINEAR_REQUEST, bearer(LINEAR_KEY)), 403, denied);
    expectError(await call(gw.pool, 'GET', '/v2/models/simple', undefined, bearer(LINEAR_KEY)), 403, denied);
    expectError(await call(gw.pool, 'GET', '/v2/models/simple/ready', undefined, bearer(LINEAR_KEY)), 403, denied);
    expectError(await call(gw.pool, 'POST', '/v1/models/simple:predict', '{"instances":[[1,2,3,4]]}', bearer(LINEAR_KEY)), 403, denied);
    expectError(await call(gw.pool, 'GET', '/v1/models/simple/metadata', undefined, bearer(LINEAR_KEY)), 403, denied);
    expectError(await call(gw.pool, 'POST', '/predictions/simple', 'x', bearer(LINEAR_KEY)), 403, denied);
    // An unknown model is no different: the scope is checked first, so a key cannot probe which models exist.
    expectError(await infer('no-such-model', bearer(LINEAR_KEY)), 403, /no access to model 'no-such-model'/);
    expect((await infer('no-such-model', bearer(ALL_KEY))).status).toBe(404);
  });

  it('no spelling of a path reaches a model outside the scope', async () => {
    // rank-a serves linear: the same request is answered 200 for a key with its scope.
    expect((await infer('rank-a', bearer(ALL_KEY))).status).toBe(200);
    const tricks: [('GET' | 'POST'), string][] = [
      ['POST', '/v2/models/%72ank-a/infer'],
      ['POST', '/v2/models/rank%2Da/infer'],
      ['POST', '/v2/models/%2572ank-a/infer'],
      ['POST', '/V2/models/rank-a/infer'],
      ['POST', '/v2/MODELS/rank-a/infer'],
      ['POST', '/v2//models/rank-a/infer'],
      ['POST', '/v2/models//rank-a/infer'],
      ['POST', '/v2/models/rank-a/infer/'],
      ['POST', '/v2/models/rank-a/INFER'],
      ['POST', '/v2/models/linear/../rank-a/infer'],
      ['POST', '/v2/models/linear/%2e%2e/rank-a/infer'],
      ['POST', '/v2/models/rank-a/infer?model=linear'],
      ['POST', '/v2/models/rank-a/versions/2/infer'],
      ['POST', '/v1/MODELS/rank-a:predict'],
      ['POST', '/v1/models/rank-a/versions/2:predict'],
      ['POST', '/v1/models/%72ank-a:predict'],
      ['GET', '/v1/models/rank-a/labels/x/metadata'],
      ['POST', '/predictions/%72ank-a'],
      ['POST', '/predictions/rank-a/2'],
    ];
    for (const [method, path] of tricks) {
      const body = path.startsWith('/v1') ? '{"instances":[[1,2,3,4]]}' : LINEAR_REQUEST;
      const res = await call(gw.pool, method, path, method === 'POST' ? body : undefined, bearer(LINEAR_KEY));
      expect([400, 403, 404], `${method} ${path}: ${res.status} ${res.text()}`).toContain(res.status);
    }
  });

  it("prefix scopes: 'rank*' calls every model starting with rank and nothing else (digests in any case)", async () => {
    expect((await infer('rank-a', bearer(RANK_KEY))).status).toBe(200);
    expect((await infer('rank-b', bearer(RANK_KEY))).status).toBe(200);
    expectError(await infer('linear', bearer(RANK_KEY)), 403, /API key 'ranker' has no access to model 'linear'/);
  });

  it("'*' calls every model, and the model index needs any key", async () => {
    for (const model of ['linear', 'simple', 'rank-a']) {
      expect((await call(gw.pool, 'GET', `/v2/models/${model}`, undefined, bearer(ALL_KEY))).status, model).toBe(200);
    }
    expect((await call(gw.pool, 'POST', '/v2/repository/index', '{}', bearer(RANK_KEY))).status).toBe(200);
  });

  it('the admin API refuses keys without the admin scope (403) and takes admin keys of both kinds', async () => {
    expectError(await call(gw.pool, 'GET', '/admin/config', undefined, bearer(ALL_KEY)), 403, /API key 'all' lacks the admin scope/);
    expectError(await call(gw.pool, 'GET', '/admin/backends', undefined, bearer(LINEAR_KEY)), 403, /lacks the admin scope/);
    expectError(await call(gw.pool, 'GET', '/admin/config', undefined), 401, /missing credentials/);
    expectError(await call(gw.pool, 'GET', '/admin/config', undefined, bearer('wrong-key')), 401, /invalid admin API key/);
    expect((await call(gw.pool, 'GET', '/admin/config', undefined, bearer(OPS_KEY))).status).toBe(200);
    expect((await call(gw.pool, 'GET', '/admin/config', undefined, { 'x-api-key': OPS_KEY })).status).toBe(200);
    // The `admin:` section's key (INFERGATE_ADMIN_KEY): admin, and no model.
    expect((await call(gw.pool, 'GET', '/admin/backends', undefined, bearer(ADMIN_SECTION_KEY))).status).toBe(200);
    expectError(await infer('linear', bearer(ADMIN_SECTION_KEY)), 403, /the admin key has no access to model 'linear'/);
    expectError(await infer('linear', bearer(OPS_KEY)), 403, /API key 'ops' has no access to model 'linear'/);
  });

  it('/metrics needs an admin or metrics key', async () => {
    expectError(await call(gw.pool, 'GET', '/metrics', undefined, bearer(ALL_KEY)), 403, /lacks the metrics scope/);
    for (const key of [SCRAPER_KEY, OPS_KEY, ADMIN_SECTION_KEY]) {
      // 200 once the metrics endpoint is there; never refused for access.
      expect([200, 404]).toContain((await call(gw.pool, 'GET', '/metrics', undefined, bearer(key))).status);
    }
  });

  it("experiment results need the scope of the experiment's model", async () => {
    expectError(await call(gw.pool, 'GET', '/v1/experiments/rank-ab', undefined, bearer(LINEAR_KEY)), 403, /no access to model 'rank-a' \(experiment 'rank-ab'\)/);
    expect((await call(gw.pool, 'GET', '/v1/experiments/rank-ab', undefined, bearer(RANK_KEY))).status).toBe(200);
    const outcome = await call(gw.pool, 'POST', '/v1/experiments/rank-ab/outcomes', '{"key":"u1","outcome":"click"}', bearer(LINEAR_KEY));
    expectError(outcome, 403, /no access to model 'rank-a'/);
  });

  it("listing every job needs '*' (the jobs API answers 501 here: no jobs section)", async () => {
    expectError(await call(gw.pool, 'GET', '/v1/jobs', undefined, bearer(LINEAR_KEY)), 403, /needs access to every model \('\*'\) to list every job/);
    expect((await call(gw.pool, 'GET', '/v1/jobs', undefined, bearer(ALL_KEY))).status).toBe(501);
  });
});

describe('gRPC', () => {
  const denied = (error: grpc.ServiceError | undefined, code: grpc.status, pattern: RegExp): void => {
    expect(error?.code, error?.details).toBe(code);
    expect(error?.details).toMatch(pattern);
  };

  it('health and server metadata stay open; TorchServe Ping too', async () => {
    for (const rpc of ['ServerLive', 'ServerReady', 'ServerMetadata']) {
      expect((await unary(clients.v2, rpc, {}, credentials(null))).error, rpc).toBeUndefined();
    }
    expect((await unary(clients.torchserve, 'Ping', {}, credentials(null))).error).toBeUndefined();
  });

  it('no credential or a wrong one: UNAUTHENTICATED', async () => {
    denied((await unary(clients.v2, 'ModelInfer', V2_LINEAR_REQUEST('linear'), credentials(null))).error, grpc.status.UNAUTHENTICATED, /missing credentials/);
    denied((await unary(clients.v2, 'ModelInfer', V2_LINEAR_REQUEST('linear'), credentials('wrong-key'))).error, grpc.status.UNAUTHENTICATED, /invalid API key/);
    denied((await unary(clients.v2, 'RepositoryIndex', {}, credentials(null))).error, grpc.status.UNAUTHENTICATED, /missing credentials/);
    const ts = await unary(clients.torchserve, 'Predictions', { model_name: 'linear', input: { data: Buffer.from('x') } }, credentials(null));
    denied(ts.error, grpc.status.UNAUTHENTICATED, /missing credentials/);
  });

  it("the model's scope: allowed with Bearer or x-api-key, PERMISSION_DENIED outside it, on every service", async () => {
    const ok = await unary(clients.v2, 'ModelInfer', V2_LINEAR_REQUEST('linear'), credentials(LINEAR_KEY));
    expect(ok.error).toBeUndefined();
    expect((ok.reply as Message).model_name).toBe('linear');
    expect((await unary(clients.v2, 'ModelInfer', V2_LINEAR_REQUEST('linear'), credentials(LINEAR_KEY, 'x-api-key'))).error).toBeUndefined();
    expect((await unary(clients.v2, 'ModelInfer', V2_LINEAR_REQUEST('rank-b'), credentials(RANK_KEY))).error).toBeUndefined();

    const scope = /API key 'linear-only' has no access to model 'simple'/;
    denied((await unary(clients.v2, 'ModelInfer', V2_LINEAR_REQUEST('simple'), credentials(LINEAR_KEY))).error, grpc.status.PERMISSION_DENIED, scope);
    denied((await unary(clients.v2, 'ModelMetadata', { name: 'simple' }, credentials(LINEAR_KEY))).error, grpc.status.PERMISSION_DENIED, scope);
    denied((await unary(clients.v2, 'ModelReady', { name: 'simple' }, credentials(LINEAR_KEY))).error, grpc.status.PERMISSION_DENIED, scope);
    const spec = { model_spec: { name: 'simple' } };
    denied((await unary(clients.tfPrediction, 'Predict', spec, credentials(LINEAR_KEY))).error, grpc.status.PERMISSION_DENIED, scope);
    denied(
      (await unary(clients.tfPrediction, 'GetModelMetadata', { ...spec, metadata_field: ['signature_def'] }, credentials(LINEAR_KEY))).error,
      grpc.status.PERMISSION_DENIED,
      scope,
    );
    denied((await unary(clients.tfModel, 'GetModelStatus', spec, credentials(LINEAR_KEY))).error, grpc.status.PERMISSION_DENIED, scope);
    const ts = await unary(clients.torchserve, 'Predictions', { model_name: 'simple', input: { data: Buffer.from('x') } }, credentials(LINEAR_KEY));
    denied(ts.error, grpc.status.PERMISSION_DENIED, scope);
    expect((await unary(clients.tfModel, 'GetModelStatus', { model_spec: { name: 'linear' } }, credentials(LINEAR_KEY))).error).toBeUndefined();
  });

  it('TorchServe StreamPredictions checks like Predictions', async () => {
    const error = await new Promise<grpc.ServiceError | undefined>((resolve) => {
      const stream = (clients.torchserve.StreamPredictions as (req: Message, md: grpc.Metadata) => grpc.ClientReadableStream<Message>).call(
        clients.torchserve,
        { model_name: 'simple', input: { data: Buffer.from('x') } },
        credentials(LINEAR_KEY),
      );
      stream.on('data', () => undefined);
      stream.on('error', (err: grpc.ServiceError) => resolve(err));
      stream.on('end', () => resolve(undefined));
    });
    denied(error, grpc.status.PERMISSION_DENIED, /no access to model 'simple'/);
  });

  it('ModelStreamInfer: the credential when the stream opens, each message against the scope (in band)', async () => {
    type Stream = grpc.ClientDuplexStream<Message, Message>;
    const open = (metadata: grpc.Metadata): Stream => (clients.v2.ModelStreamInfer as (md: grpc.Metadata) => Stream).call(clients.v2, metadata);

    const refused = open(credentials(null));
    const error = await new Promise<grpc.ServiceError>((resolve) => {
      refused.on('data', () => undefined);
      refused.on('error', resolve);
      refused.write(V2_LINEAR_REQUEST('linear'));
    });
    denied(error, grpc.status.UNAUTHENTICATED, /missing credentials/);

    const stream = open(credentials(LINEAR_KEY));
    const replies: Message[] = [];
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', (m: Message) => replies.push(m));
      stream.on('error', reject);
      stream.on('end', () => resolve());
    });
    stream.write(V2_LINEAR_REQUEST('linear'));
    stream.write(V2_LINEAR_REQUEST('simple'));
    stream.write(V2_LINEAR_REQUEST('linear'));
    stream.end();
    await done;
    expect(replies.map((r) => r.error_message)).toEqual(['', "API key 'linear-only' has no access to model 'simple'", '']);
  });
});
