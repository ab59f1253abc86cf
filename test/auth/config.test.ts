import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpAccessRule } from '../../src/api/auth/http-guard.js';
import { ModelScope } from '../../src/api/auth/model-scope.js';
import { diffConfigs, formatChange, liveEffective } from '../../src/config/live-diff.js';
import { ConfigError, parseConfig, validateConfig } from '../../src/config/load.js';
import { startGateway } from '../../src/gateway.js';
import { createLogger } from '../../src/observability/logger.js';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { sha256 } from '../helpers/auth.js';
import { call } from '../helpers/http.js';
import { LINEAR_REQUEST, liveText, startLiveGateway } from '../helpers/live.js';

const BASE = { backends: { t: { kind: 'triton', protocol: 'grpc', endpoints: ['127.0.0.1:1'] } }, models: { linear: { backend: 't' }, 'rank-a': { backend: 't' } } };
const DIGEST = sha256('k');

function problems(raw: Record<string, unknown>): string[] {
  try {
    validateConfig({ ...BASE, ...raw });
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
}

describe('auth and rate_limits config', () => {
  it('defaults: auth on with no key, no rate limits', () => {
    const config = validateConfig(BASE);
    expect(config.auth).toEqual({ enabled: true, api_keys: [], metrics_public: false });
    expect(config.rate_limits).toEqual({ key_prefix: 'infergate', command_timeout_ms: 50, per_key: {}, per_model: {} });
  });

  it('api keys: defaults, digests lower-cased, burst defaulting to a second of rps', () => {
    const config = validateConfig({
      ...BASE,
      auth: { api_keys: [{ name: 'a', key_sha256: DIGEST.toUpperCase() }, { name: 'b', key_env: 'B_KEY', models: ['linear', 'rank*', '*'], admin: true }] },
      rate_limits: { per_key: { default: { rps: 2.5 } }, per_model: { linear: { rps: 10, burst: 50 } } },
    });
    expect(config.auth.api_keys).toEqual([
      { name: 'a', key_sha256: DIGEST, models: [], admin: false, metrics: false },
      { name: 'b', key_env: 'B_KEY', models: ['linear', 'rank*', '*'], admin: true, metrics: false },
    ]);
    expect(config.rate_limits.per_key.default).toEqual({ rps: 2.5, burst: 3 });
    expect(config.rate_limits.per_model.linear).toEqual({ rps: 10, burst: 50 });
  });

  it('names every problem with its key path', () => {
    expect(
      problems({
        auth: {
          enabled: 'no',
          api_keys: [
            { name: 'a', key_sha256: DIGEST, key_env: 'A' },
            { name: 'b' },
            { name: 'a', key_sha256: 'abc', models: ['ra*nk', ''] },
            { name: 'c', key_sha256: DIGEST, admn: true },
          ],
          jwt: { jwks_url: 'ftp://idp/jwks', jwks_file: '/etc/jwks.json', clock_tolerance_s: -1 },
        },
        rate_limits: { redis: 'http://r', per_key: { 'bad name!': { rps: 1 } }, per_model: { ghost: { rps: 0 }, linear: { burst: 3 } } },
      }),
    ).toEqual([
      'auth.enabled: Invalid input: expected boolean, received string',
      'auth.api_keys.0: needs exactly one of key_sha256 (the digest of the key) or key_env (a variable holding the key)',
      'auth.api_keys.1: needs exactly one of key_sha256 (the digest of the key) or key_env (a variable holding the key)',
      'auth.api_keys.2.key_sha256: must be a hex SHA-256 digest (64 hex digits)',
      "auth.api_keys.2.models.0: must be '*', a model name, or a name prefix ending in '*' (e.g. 'rank*')",
      "auth.api_keys.2.models.1: must be '*', a model name, or a name prefix ending in '*' (e.g. 'rank*')",
      "auth.api_keys.3: unknown key 'admn'",
      'auth.jwt.jwks_url: must be an http:// or https:// URL',
      'auth.jwt.clock_tolerance_s: Too small: expected number to be >=0',
      'auth.jwt: needs exactly one of jwks_url or jwks_file',
      'rate_limits.redis: must be a redis:// or rediss:// URL',
      'rate_limits.per_key.bad name!: names use letters, digits, _ . @ : - (at most 128)',
      'rate_limits.per_model.ghost.rps: must be > 0',
      'rate_limits.per_model.linear.rps: Invalid input: expected number, received undefined',
      "rate_limits.per_model.ghost: unknown model 'ghost' (models: linear, rank-a)",
    ]);
    expect(problems({ auth: { api_keys: [{ name: 'a', key_sha256: DIGEST }, { name: 'a', key_sha256: DIGEST.toUpperCase() }, { name: 'b', key_env: 'X' }, { name: 'c', key_env: 'X' }] } })).toEqual([
      "auth.api_keys.1.name: duplicate name 'a': the same as api_keys.0",
      'auth.api_keys.1.key_sha256: the same key as api_keys.0',
      'auth.api_keys.3.key_env: the same variable as api_keys.2',
    ]);
    expect(problems({ auth: { jwt: { issuer: 'x' } } })).toEqual(['auth.jwt: needs exactly one of jwks_url or jwks_file']);
  });

  it('rate limits apply live; their Redis connection needs a restart', () => {
    const before = validateConfig({ ...BASE, rate_limits: { per_key: { a: { rps: 1 } } } });
    const after = validateConfig({ ...BASE, rate_limits: { redis: 'redis://r:6379', key_prefix: 'x', per_key: { a: { rps: 2 } } } });
    expect(diffConfigs(before, after).map(formatChange)).toEqual([
      '+ rate_limits.redis: redis://r:6379 (needs a restart)',
      '~ rate_limits.key_prefix: infergate -> x (needs a restart)',
      '~ rate_limits.per_key.a.rps: 1 -> 2',
      '~ rate_limits.per_key.a.burst: 1 -> 2',
    ]);
    expect(liveEffective(before, after).rate_limits).toEqual({ key_prefix: 'infergate', command_timeout_ms: 50, per_key: { a: { rps: 2, burst: 2 } }, per_model: {} });
  });
});

describe('ModelScope', () => {
  it("'*', exact names and prefixes", () => {
    const scope = ModelScope.compile(['linear', 'rank*', 'a*b', '']);
    expect(['linear', 'rank', 'rank-a', 'ranker'].map((m) => scope.allows(m))).toEqual([true, true, true, true]);
    expect(['linear2', 'lin', 'simple', 'a*b', 'ab', ''].map((m) => scope.allows(m))).toEqual([false, false, false, false, false, false]);
    expect(ModelScope.compile(['x', '*']).allows('anything')).toBe(true);
    expect(ModelScope.compile([]).allows('linear')).toBe(false);
  });
});

describe('httpAccessRule', () => {
  it('decides the rule of every surface from the raw path', () => {
    const rule = (method: string, path: string) => httpAccessRule(method, path);
    expect(rule('GET', '/v2/health/ready')).toEqual({ kind: 'open' });
    expect(rule('GET', '/ping')).toEqual({ kind: 'open' });
    expect(rule('GET', '/v2/health/ready/')).toEqual({ kind: 'authenticated' });
    expect(rule('GET', '/admin/config')).toBe('self');
    expect(rule('GET', '/metrics')).toEqual({ kind: 'metrics' });
    expect(rule('POST', '/v2/models/linear/infer')).toEqual({ kind: 'model', model: 'linear', infer: true });
    expect(rule('POST', '/v2/models/linear/versions/2/infer')).toEqual({ kind: 'model', model: 'linear', infer: true });
    expect(rule('GET', '/v2/models/lin%65ar/ready')).toEqual({ kind: 'model', model: 'linear', infer: false });
    expect(rule('POST', '/v2/repository/models/simple/load')).toEqual({ kind: 'model', model: 'simple', infer: false });
    expect(rule('POST', '/v2/repository/index')).toEqual({ kind: 'authenticated' });
    expect(rule('POST', '/v1/models/linear/labels/stable:predict')).toEqual({ kind: 'model', model: 'linear', infer: true });
    expect(rule('POST', '/v1/Models/lin%3Aear:predict')).toEqual({ kind: 'model', model: 'lin:ear', infer: true });
    expect(rule('GET', '/v1/models/linear/metadata')).toEqual({ kind: 'model', model: 'linear', infer: false });
    expect(rule('POST', '/predictions/echo/1.0')).toEqual({ kind: 'model', model: 'echo', infer: true });
    expect(rule('GET', '/v1/experiments/ab/')).toEqual({ kind: 'experiment', name: 'ab' });
    expect(rule('GET', '/v1/jobs')).toEqual({ kind: 'all_models', what: 'list every job' });
    expect(rule('POST', '/v1/jobs')).toEqual({ kind: 'authenticated' });
    expect(rule('GET', '/v2/models/%E0%A4%A/ready')).toEqual({ kind: 'model', model: '%E0%A4%A', infer: false });
  });
});

/** A logger writing JSON lines into `lines`. */
function capture(): { lines: Record<string, unknown>[]; logger: ReturnType<typeof createLogger> } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { lines, logger: createLogger('info', sink) };
}

describe('the gateway with auth', () => {
  let triton: TritonReference;
  beforeAll(async () => {
    triton = await startTritonReference({ host: '127.0.0.1' });
  });
  afterAll(async () => {
    await triton?.close();
  });

  it('auth disabled: a warning at start, and calls need no key', async () => {
    const { lines, logger } = capture();
    const text = liveText(triton);
    const gateway = await startGateway(parseConfig(text, 'test', {}), logger, { configText: text, env: {} });
    try {
      const warning = lines.find((l) => l.level === 'warn' && /auth is disabled/.test(String(l.msg)));
      expect(warning?.msg).toMatch(/auth is disabled \(auth.enabled: false\): inference, jobs, experiments and metrics are open/);
      const res = await fetch(`http://127.0.0.1:${gateway.httpPort}/v2/models/linear/infer`, { method: 'POST', body: LINEAR_REQUEST });
      expect(res.status).toBe(200);
    } finally {
      await gateway.close(1_000);
    }
  });

  it('auth on without any credential: a warning, and every call but health checks is 401', async () => {
    const { lines, logger } = capture();
    const text = liveText(triton, { auth: '' });
    const gateway = await startGateway(parseConfig(text, 'test', {}), logger, { configText: text, env: {} });
    try {
      expect(lines.some((l) => l.level === 'warn' && /auth is enabled but no credential may call a model/.test(String(l.msg)))).toBe(true);
      const base = `http://127.0.0.1:${gateway.httpPort}`;
      expect((await fetch(`${base}/v2/models/linear/infer`, { method: 'POST', body: LINEAR_REQUEST })).status).toBe(401);
      expect((await fetch(`${base}/v2/health/ready`)).status).toBe(200);
      // The refusal is logged, without any credential.
      await fetch(`${base}/v2/models/linear/infer`, { method: 'POST', body: LINEAR_REQUEST, headers: { authorization: 'Bearer secret-in-a-header' } });
      const refusals = lines.filter((l) => l.code === 'UNAUTHENTICATED');
      expect(refusals.length).toBeGreaterThanOrEqual(2);
      expect(JSON.stringify(lines)).not.toContain('secret-in-a-header');
    } finally {
      await gateway.close(1_000);
    }
  });

  it('a key_env that is not set stops the start, and refuses a reload naming it', async () => {
    const text = liveText(triton, { auth: 'auth:\n  api_keys:\n    - { name: app, key_env: APP_KEY, models: ["*"] }' });
    await expect(startGateway(parseConfig(text, 'test', {}), createLogger('silent'), { configText: text, env: {} })).rejects.toThrow(
      "auth.api_keys 'app': environment variable APP_KEY is not set (key_env)",
    );
    const gw = await startLiveGateway(liveText(triton), { env: {} });
    try {
      const result = await gw.gateway.live.propose(text, 'admin');
      expect(result).toEqual({ accepted: false, problems: ["cannot build the runtime: auth.api_keys 'app': environment variable APP_KEY is not set (key_env)"] });
    } finally {
      await gw.close();
    }
  });

  it('a live reload that removes a key makes it 401; one that narrows a scope makes it 403', async () => {
    const keys = (second: string) => `auth:
  api_keys:
    - { name: stays, key_sha256: "${sha256('stays')}", models: ["*"] }
${second}`;
    const both = liveText(triton, { auth: keys(`    - { name: goes, key_sha256: "${sha256('goes')}", models: ["*"] }`) });
    const gw = await startLiveGateway(both, { env: {} });
    const infer = (key: string) => call(gw.pool, 'POST', '/v2/models/linear/infer', LINEAR_REQUEST, { authorization: `Bearer ${key}` });
    try {
      expect((await infer('goes')).status).toBe(200);
      const removed = await gw.gateway.live.propose(liveText(triton, { auth: keys('') }), 'admin');
      expect(removed).toMatchObject({ accepted: true });
      expect((await infer('goes')).status).toBe(401);
      expect((await infer('stays')).status).toBe(200);
      const narrowed = await gw.gateway.live.propose(liveText(triton, { auth: keys('').replace('models: ["*"]', 'models: [simple]') }), 'admin');
      expect(narrowed).toMatchObject({ accepted: true });
      expect((await infer('stays')).status).toBe(403);
    } finally {
      await gw.close();
    }
  });
});
