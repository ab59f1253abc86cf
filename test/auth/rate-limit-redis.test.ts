import { mkdir, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { sha256 } from '../helpers/auth.js';
import { call } from '../helpers/http.js';
import { LINEAR_REQUEST, liveText, startLiveGateway } from '../helpers/live.js';
import { spawnGateway, type ChildServer } from '../helpers/processes.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';

/** Rate limits shared by gateway processes through one Redis; and the jobs API's scopes (it needs Redis too). */
let redis: RedisServer;
let triton: TritonReference;
let dir: string;

beforeAll(async () => {
  dir = await realpath(await mkdtemp(join(tmpdir(), 'infergate-ratelimit-')));
  redis = await startRedis();
  triton = await startTritonReference({ host: '127.0.0.1' });
});
afterAll(async () => {
  await triton?.close();
  await redis?.stop();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('rate limits shared through Redis', () => {
  it('two gateway processes hold one limit between them: about burst + rps x elapsed accepted, not twice that', async () => {
    const RPS = 5;
    const BURST = 10;
    const file = join(dir, 'shared.yaml');
    await writeFile(
      file,
      liveText(triton, {
        logLevel: 'info',
        auth: 'auth:\n  api_keys:\n    - { name: client, key_env: CLIENT_KEY, models: ["*"] }',
        extra: `rate_limits:\n  redis: "${redis.url}"\n  key_prefix: rl-test\n  command_timeout_ms: 500\n  per_key:\n    client: { rps: ${RPS}, burst: ${BURST} }`,
      }),
    );
    const env = { CLIENT_KEY: 'shared-client-key' };
    const gateways: ChildServer[] = [];
    const pools: Pool[] = [];
    try {
      gateways.push(...(await Promise.all([spawnGateway(file, { env }), spawnGateway(file, { env })])));
      pools.push(...gateways.map((g) => new Pool(`http://${g.http}`, { connections: 8 })));
      // Both connected to Redis (a request through each warms its connection without using the client's bucket).
      for (const pool of pools) expect((await call(pool, 'GET', '/v2/health/ready')).status).toBe(200);

      const started = Date.now();
      const statuses = await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          call(pools[i % 2]!, 'POST', '/v2/models/linear/infer', LINEAR_REQUEST, {
            'content-type': 'application/json',
            authorization: 'Bearer shared-client-key',
          }).then((r) => r.status),
        ),
      );
      const elapsedS = (Date.now() - started) / 1000;
      const accepted = statuses.filter((s) => s === 200).length;
      expect(statuses.every((s) => s === 200 || s === 429), statuses.join(',')).toBe(true);
      expect(accepted).toBeGreaterThanOrEqual(BURST);
      expect(accepted).toBeLessThanOrEqual(BURST + RPS * elapsedS + 1);
      // The bucket is in Redis (not one per instance), and each instance had its connection.
      const tool = new Redis(redis.url);
      try {
        expect(await tool.exists('rl-test:ratelimit:key:client')).toBe(1);
      } finally {
        tool.disconnect();
      }
      for (const g of gateways) expect(g.output()).not.toMatch(/rate limit redis unavailable/);
    } finally {
      await Promise.all(pools.map((p) => p.close()));
      await Promise.all(gateways.map((g) => g.kill()));
    }
  });

  it('Redis unreachable: each instance limits on its own buckets, and no request fails for it', async () => {
    const down = await startRedis();
    await down.stop();
    const auth = `auth:\n  api_keys:\n    - { name: k, key_sha256: "${sha256('k')}", models: ["*"] }`;
    const gw = await startLiveGateway(
      liveText(triton, { auth, extra: `rate_limits:\n  redis: "${down.url}"\n  per_key:\n    k: { rps: 0.01, burst: 2 }` }),
      { env: {} },
    );
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) {
        statuses.push((await call(gw.pool, 'POST', '/v2/models/linear/infer', LINEAR_REQUEST, { authorization: 'Bearer k' })).status);
      }
      expect(statuses).toEqual([200, 200, 429, 429]);
    } finally {
      await gw.close();
    }
  });
});

describe('batch jobs and scopes', () => {
  it("submitting, viewing and cancelling a job need its model's scope; listing them all needs '*'", async () => {
    const inDir = join(dir, 'in');
    const outDir = join(dir, 'out');
    await mkdir(inDir, { recursive: true });
    await mkdir(outDir, { recursive: true });
    await writeFile(join(inDir, 'rows.jsonl'), '{"INPUT0":[1,2,3,4]}\n');
    const auth = `auth:
  api_keys:
    - { name: linear-only, key_sha256: "${sha256('linear-key')}", models: [linear] }
    - { name: simple-only, key_sha256: "${sha256('simple-key')}", models: [simple] }
    - { name: all, key_sha256: "${sha256('all-key')}", models: ["*"] }`;
    // workers: 0: jobs are queued here and never run.
    const jobs = `jobs: { redis: "${redis.url}", key_prefix: auth-jobs, workers: 0, input_dirs: ["${inDir}"], output_dirs: ["${outDir}"] }`;
    const gw = await startLiveGateway(liveText(triton, { auth, extra: jobs }), { env: {} });
    const as = (key: string) => ({ authorization: `Bearer ${key}`, 'content-type': 'application/json' });
    try {
      const body = (model: string) => JSON.stringify({ model, input: 'rows.jsonl', output: `${model}.jsonl` });
      const refused = await call(gw.pool, 'POST', '/v1/jobs', body('linear'), as('simple-key'));
      expect(refused.status, refused.text()).toBe(403);
      expect(refused.json<{ error: string }>().error).toBe("API key 'simple-only' has no access to model 'linear'");
      expect((await call(gw.pool, 'POST', '/v1/jobs', body('linear'))).status).toBe(401);

      const queued = await call(gw.pool, 'POST', '/v1/jobs', body('linear'), as('linear-key'));
      expect(queued.status, queued.text()).toBe(202);
      const id = queued.json<{ id: string }>().id;
      expect((await call(gw.pool, 'GET', `/v1/jobs/${id}`, undefined, as('linear-key'))).status).toBe(200);
      expect((await call(gw.pool, 'GET', `/v1/jobs/${id}`, undefined, as('simple-key'))).status).toBe(403);
      expect((await call(gw.pool, 'DELETE', `/v1/jobs/${id}`, undefined, as('simple-key'))).status).toBe(403);
      expect((await call(gw.pool, 'GET', '/v1/jobs', undefined, as('linear-key'))).status).toBe(403);
      expect((await call(gw.pool, 'GET', '/v1/jobs', undefined, as('all-key'))).status).toBe(200);
      const cancelled = await call(gw.pool, 'DELETE', `/v1/jobs/${id}`, undefined, as('linear-key'));
      expect(cancelled.status, cancelled.text()).toBe(200);
    } finally {
      await gw.close();
    }
  });
});
