import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { validateConfig } from '../../src/config/load.js';
import { silentLogger } from '../../src/observability/logger.js';
import { startGateway, type RunningGateway } from '../../src/gateway.js';
import { grpc, v2Client } from '../helpers/grpc-client.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';

/**
 * The cache, coalescing and dynamic batching through the gateway, against a
 * reference Triton over real sockets (and a real Redis for the shared cache):
 * what the client sees (answers, x-infergate-cache) and how many calls reach
 * the backend.
 */

const LINEAR = (x: readonly number[]) => ({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: x }] });
/** x·W + b of the reference's linear model, version 2 (b = [1, 0, -1]), for x = [1, 2, 3, 4]. */
const SCORES_1234 = [7, 5, 2.75];

interface Reply {
  readonly status: number;
  readonly cache: string | undefined;
  readonly attempts: string | undefined;
  readonly body: { outputs?: { name: string; data: number[] }[]; id?: string; error?: string };
}

async function post(pool: Pool, model: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const res = await pool.request({
    path: `/v2/models/${model}/infer`,
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const text = await res.body.text();
  const header = (name: string) => {
    const v = res.headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
  return { status: res.statusCode, cache: header('x-infergate-cache'), attempts: header('x-infergate-attempts'), body: JSON.parse(text) };
}

/** The same linear request in the binary tensor extension: a JSON header, then the FP32 bytes. */
async function postBinary(pool: Pool, model: string, x: readonly number[]): Promise<{ status: number; cache: string | undefined }> {
  const header = Buffer.from(
    JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], parameters: { binary_data_size: 16 } }] }),
  );
  const data = Buffer.alloc(16);
  x.forEach((v, i) => data.writeFloatLE(v, i * 4));
  const res = await pool.request({
    path: `/v2/models/${model}/infer`,
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) },
    body: Buffer.concat([header, data]),
  });
  await res.body.dump();
  const v = res.headers['x-infergate-cache'];
  return { status: res.statusCode, cache: Array.isArray(v) ? v[0] : v };
}

let triton: TritonReference;
let serial: TritonReference;
let slow: TritonReference;
let gateway: RunningGateway;
let pool: Pool;

function config(extra: { cache?: Record<string, unknown> } = {}) {
  return validateConfig(rawConfig(extra));
}

function rawConfig(extra: { cache?: Record<string, unknown> } = {}): { models: Record<string, unknown> } & Record<string, unknown> {
  return {
    auth: { enabled: false },
    server: { http: { host: '127.0.0.1', port: 0 }, grpc: { host: '127.0.0.1', port: 0 }, log_level: 'silent' },
    ...(extra.cache !== undefined ? { cache: extra.cache } : {}),
    backends: {
      t: { kind: 'triton', protocol: 'grpc', endpoints: [triton.grpcEndpoint], health_check: { interval_ms: 0 } },
      slow: { kind: 'triton', protocol: 'grpc', endpoints: [slow.grpcEndpoint], health_check: { interval_ms: 0 } },
      serial: {
        kind: 'triton',
        protocol: 'rest',
        endpoints: [serial.httpEndpoint],
        health_check: { interval_ms: 0 },
        concurrency: { max_in_flight: 4096, max_queued: 4096 },
      },
    },
    models: {
      cached: { backend: 't', model: 'linear', cache: { ttl_ms: 60_000 } },
      coalesced: { backend: 'slow', model: 'linear', coalesce: true },
      plain: { backend: 't', model: 'linear' },
      'cached-v1': { backend: 't', model: 'linear', version: '1', cache: { ttl_ms: 60_000 } },
      batched: { backend: 'serial', model: 'linear', batching: { max_batch_size: 32, max_queue_delay_ms: 5 } },
    },
  };
}

beforeAll(async () => {
  triton = await startTritonReference({ host: '127.0.0.1' });
  // A backend whose cost is per call: one call at a time, 5 ms each.
  serial = await startTritonReference({ host: '127.0.0.1', latencyMs: 5, maxConcurrency: 1 });
  // Slow enough that all 1,000 requests arrive while the first call is still running.
  slow = await startTritonReference({ host: '127.0.0.1', latencyMs: 2_000 });
  gateway = await startGateway(config(), silentLogger);
  pool = new Pool(`http://127.0.0.1:${gateway.httpPort}`, { connections: 64 });
});

afterAll(async () => {
  await pool?.close();
  await gateway?.close(1000);
  await triton?.close();
  await serial?.close();
  await slow?.close();
});

describe('response cache (in memory)', () => {
  it('1,000 concurrent identical requests make exactly 1 backend call; every client gets the answer, one MISS leader', async () => {
    const before = triton.stats.inferCalls;
    const replies = await Promise.all(Array.from({ length: 1_000 }, () => post(pool, 'cached', LINEAR([9, 8, 7, 6]))));
    expect(triton.stats.inferCalls - before).toBe(1);
    expect(replies.every((r) => r.status === 200)).toBe(true);
    expect(new Set(replies.map((r) => JSON.stringify(r.body.outputs)))).toHaveProperty('size', 1);
    expect(replies.every((r) => r.cache === 'HIT' || r.cache === 'MISS')).toBe(true);
    // Later requests are HITs with no backend call at all.
    const again = await post(pool, 'cached', LINEAR([9, 8, 7, 6]));
    expect(again.cache).toBe('HIT');
    expect(again.attempts).toBe('0');
    expect(triton.stats.inferCalls - before).toBe(1);
  });

  it('GET /admin/cache shows the counters (admin key); the same as cacheStats()', async () => {
    const admin = await startGateway(config(), silentLogger, { env: { INFERGATE_ADMIN_KEY: 'cache-admin' } });
    const adminPool = new Pool(`http://127.0.0.1:${admin.httpPort}`, { connections: 2 });
    try {
      await post(adminPool, 'cached', LINEAR([0, 1, 0, 1]));
      await post(adminPool, 'cached', LINEAR([0, 1, 0, 1]));
      const res = await adminPool.request({ path: '/admin/cache', method: 'GET', headers: { authorization: 'Bearer cache-admin' } });
      const view = (await res.body.json()) as { cache: { hits: number; misses: number; store: { kind: string; available: boolean } } };
      expect(res.statusCode).toBe(200);
      expect(view.cache).toMatchObject({ hits: 1, misses: 1, store: { kind: 'memory', available: true } });
      expect(admin.cacheStats()).toMatchObject({ hits: 1, misses: 1 });
      const denied = await adminPool.request({ path: '/admin/cache', method: 'GET' });
      await denied.body.dump();
      expect(denied.statusCode).toBe(401);
    } finally {
      await adminPool.close();
      await admin.close(1000);
    }
  });

  it('coalescing alone: 1,000 identical requests arriving during one call share it, and nothing is kept afterwards', async () => {
    const before = slow.stats.inferCalls;
    // One connection per request, so all 1,000 are in flight at once.
    const wide = new Pool(`http://127.0.0.1:${gateway.httpPort}`, { connections: 1_000 });
    try {
      const replies = await Promise.all(Array.from({ length: 1_000 }, () => post(wide, 'coalesced', LINEAR([5, 5, 5, 5]))));
      expect(replies.every((r) => r.status === 200 && r.cache === undefined)).toBe(true);
      expect(slow.stats.inferCalls - before).toBe(1);
    } finally {
      await wide.close();
    }
    await post(pool, 'coalesced', LINEAR([5, 5, 5, 5]));
    expect(slow.stats.inferCalls - before).toBe(2);
  }, 30_000);

  it('the same tensors as REST JSON, REST binary and gRPC hit the same entry', async () => {
    const x = [1, 2, 3, 4];
    const before = triton.stats.inferCalls;
    const first = await post(pool, 'cached', LINEAR(x));
    expect(first).toMatchObject({ status: 200, cache: 'MISS' });
    expect(first.body.outputs?.find((o) => o.name === 'SCORES')?.data).toEqual(SCORES_1234);
    expect(await postBinary(pool, 'cached', x)).toEqual({ status: 200, cache: 'HIT' });

    const client = v2Client(`127.0.0.1:${gateway.grpcPort}`);
    try {
      const raw = Buffer.alloc(16);
      x.forEach((v, i) => raw.writeFloatLE(v, i * 4));
      const request = { model_name: 'cached', inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4] }], raw_input_contents: [raw] };
      const trailersOf = (metadata: grpc.Metadata) =>
        new Promise<grpc.Metadata>((resolve, reject) => {
          const call = client.raw.ModelInfer!(request, metadata, (err: grpc.ServiceError | null) => {
            if (err) reject(err);
          }) as grpc.ClientUnaryCall;
          call.on('status', (status: grpc.StatusObject) => resolve(status.metadata));
        });
      expect((await trailersOf(new grpc.Metadata())).get('x-infergate-cache')).toEqual(['HIT']);
      // gRPC clients bypass the cache with the same directive, as metadata: a fresh backend call.
      const bypass = new grpc.Metadata();
      bypass.set('cache-control', 'no-cache');
      expect((await trailersOf(bypass)).get('x-infergate-cache')).toEqual(['MISS']);
      expect(triton.stats.inferCalls - before).toBe(2);
    } finally {
      client.close();
    }
  });

  it('ModelStreamInfer answers a cached model from the cache too', async () => {
    const x = [11, 13, 17, 19];
    expect(await post(pool, 'cached', LINEAR(x))).toMatchObject({ status: 200, cache: 'MISS' });
    const before = triton.stats.inferCalls;
    const client = v2Client(`127.0.0.1:${gateway.grpcPort}`);
    try {
      const raw = Buffer.alloc(16);
      x.forEach((v, i) => raw.writeFloatLE(v, i * 4));
      const request = { model_name: 'cached', inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4] }], raw_input_contents: [raw] };
      const replies = await new Promise<{ error_message?: string; infer_response?: { raw_output_contents?: Buffer[] } }[]>((resolve, reject) => {
        const call = client.raw.ModelStreamInfer!() as grpc.ClientDuplexStream<unknown, { error_message?: string }>;
        const got: { error_message?: string }[] = [];
        call.on('data', (m: { error_message?: string }) => got.push(m));
        call.on('end', () => resolve(got));
        call.on('error', reject);
        call.write(request);
        call.write(request);
        call.end();
      });
      expect(replies.map((r) => r.error_message ?? '')).toEqual(['', '']);
      expect(replies[0]!.infer_response!.raw_output_contents!.length).toBeGreaterThan(0);
      // Both stream messages were answered from the entry the REST call stored.
      expect(triton.stats.inferCalls - before).toBe(0);
    } finally {
      client.close();
    }
  });

  it('a different input, the request id and the client’s Cache-Control', async () => {
    const before = triton.stats.inferCalls;
    await post(pool, 'cached', LINEAR([4, 3, 2, 1]));
    // Another input is another entry.
    expect((await post(pool, 'cached', LINEAR([4, 3, 2, 0]))).cache).toBe('MISS');
    // A HIT answers with the caller's own id.
    const withId = await post(pool, 'cached', { id: 'mine', ...LINEAR([4, 3, 2, 1]) });
    expect(withId).toMatchObject({ cache: 'HIT', body: { id: 'mine' } });
    // no-cache: skips the lookup (a backend call), stores the fresh answer.
    expect((await post(pool, 'cached', LINEAR([4, 3, 2, 1]), { 'cache-control': 'no-cache' })).cache).toBe('MISS');
    // no-store: neither reads nor writes.
    expect((await post(pool, 'cached', LINEAR([6, 6, 6, 6]), { 'cache-control': 'no-store' })).cache).toBe('MISS');
    expect((await post(pool, 'cached', LINEAR([6, 6, 6, 6]))).cache).toBe('MISS');
    expect(triton.stats.inferCalls - before).toBe(5);
  });

  it('only successes are stored; a model without a cache says nothing about it', async () => {
    const bad = { inputs: [{ name: 'WRONG', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] };
    const before = triton.stats.inferCalls;
    expect((await post(pool, 'cached', bad)).status).toBe(400);
    expect((await post(pool, 'cached', bad)).status).toBe(400);
    expect(triton.stats.inferCalls - before).toBe(2);
    const plain = await post(pool, 'plain', LINEAR([1, 2, 3, 4]));
    expect(plain).toMatchObject({ status: 200, cache: undefined });
  });

  it('a pinned version is part of the key: version 1 never answers from version 2’s entries', async () => {
    const v2 = await post(pool, 'cached', LINEAR([1, 2, 3, 4]));
    const v1 = await post(pool, 'cached-v1', LINEAR([1, 2, 3, 4]));
    expect(v1.cache).toBe('MISS');
    expect(v1.body.outputs?.find((o) => o.name === 'SCORES')?.data).not.toEqual(v2.body.outputs?.find((o) => o.name === 'SCORES')?.data);
  });

  it('changing the model’s target in config stops old entries from being served', async () => {
    await post(pool, 'cached', LINEAR([2, 2, 2, 2]));
    expect((await post(pool, 'cached', LINEAR([2, 2, 2, 2]))).cache).toBe('HIT');
    const next = rawConfig();
    next.models['cached'] = { backend: 't', model: 'linear', version: '1', cache: { ttl_ms: 60_000 } };
    const applied = await gateway.live.propose(JSON.stringify(next), 'admin');
    expect(applied.accepted, JSON.stringify(applied)).toBe(true);
    const after = await post(pool, 'cached', LINEAR([2, 2, 2, 2]));
    expect(after.cache).toBe('MISS');
  });
});

describe('dynamic batching', () => {
  it('64 concurrent requests with distinct inputs: each caller gets exactly its own outputs, in far fewer backend calls', async () => {
    const inputs = Array.from({ length: 64 }, (_, i) => [i, i / 2, -i, 1]);
    const expected = await Promise.all(inputs.map((x) => post(pool, 'plain', LINEAR(x))));
    const before = serial.stats.inferCalls;
    const replies = await Promise.all(inputs.map((x) => post(pool, 'batched', LINEAR(x))));
    const calls = serial.stats.inferCalls - before;
    expect(replies.every((r) => r.status === 200)).toBe(true);
    replies.forEach((r, i) => expect(r.body.outputs, `request ${i}`).toEqual(expected[i]!.body.outputs));
    expect(calls).toBeLessThanOrEqual(8);
  });

  it('one bad request in a batch fails alone; the others get their answers', async () => {
    const good = Array.from({ length: 10 }, (_, i) => post(pool, 'batched', LINEAR([i, 1, 1, 1])));
    const bad = post(pool, 'batched', { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }] });
    const [badReply, ...goodReplies] = await Promise.all([bad, ...good]);
    expect(badReply!.status).toBe(400);
    expect(goodReplies.every((r) => r.status === 200)).toBe(true);
  });
});

describe('response cache on Redis', () => {
  let redis: RedisServer;
  let shared: RunningGateway;
  let sharedPool: Pool;

  beforeAll(async () => {
    redis = await startRedis();
    shared = await startGateway(config({ cache: { redis: redis.url, command_timeout_ms: 50 } }), silentLogger);
    sharedPool = new Pool(`http://127.0.0.1:${shared.httpPort}`, { connections: 16 });
  });
  afterAll(async () => {
    await sharedPool?.close();
    await shared?.close(1000);
    await redis?.stop();
  });

  it('stores in Redis: a second gateway instance on the same Redis answers from it', async () => {
    expect((await post(sharedPool, 'cached', LINEAR([3, 1, 4, 1]))).cache).toBe('MISS');
    const other = await startGateway(config({ cache: { redis: redis.url } }), silentLogger);
    const otherPool = new Pool(`http://127.0.0.1:${other.httpPort}`, { connections: 2 });
    try {
      await expect.poll(async () => (await post(otherPool, 'cached', LINEAR([3, 1, 4, 1]))).cache, { timeout: 5_000 }).toBe('HIT');
    } finally {
      await otherPool.close();
      await other.close(1000);
    }
  });

  it('Redis killed under load: 0 client errors; restarted: hits come back by themselves', async () => {
    const x = [2, 7, 1, 8];
    await post(sharedPool, 'cached', LINEAR(x));
    expect((await post(sharedPool, 'cached', LINEAR(x))).cache).toBe('HIT');

    let stop = false;
    const statuses: number[] = [];
    const load = (async () => {
      for (let i = 0; !stop && i < 5_000; i++) {
        const batch = await Promise.all(Array.from({ length: 8 }, (_, j) => post(sharedPool, 'cached', LINEAR([i % 5, j, 1, 2]))));
        for (const r of batch) statuses.push(r.status);
      }
    })();
    await new Promise((r) => setTimeout(r, 200));
    await redis.kill();
    await new Promise((r) => setTimeout(r, 500));
    stop = true;
    await load;
    expect(statuses.length).toBeGreaterThan(0);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(shared.cacheStats().store.available).toBe(false);

    await redis.restart();
    await expect
      .poll(
        async () => {
          await post(sharedPool, 'cached', LINEAR(x));
          return (await post(sharedPool, 'cached', LINEAR(x))).cache;
        },
        { timeout: 15_000, interval: 200 },
      )
      .toBe('HIT');
  }, 40_000);
});

