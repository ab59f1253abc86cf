import { Redis } from 'ioredis';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { validateConfig } from '../../src/config/load.js';
import { startGateway, type RunningGateway } from '../../src/gateway.js';
import { silentLogger } from '../../src/observability/logger.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';

/** Stream processors inside the gateway (a `streams:` section): started with it, predicting through its service, shown at /admin/streams. */

let redis: RedisServer;
let triton: TritonReference;
let gateway: RunningGateway;
let client: Redis;
let pool: Pool;

beforeAll(async () => {
  redis = await startRedis();
  triton = await startTritonReference({ host: '127.0.0.1' });
  client = new Redis(redis.url);
  const config = validateConfig({
    auth: { enabled: false },
    server: { http: { host: '127.0.0.1', port: 0 }, grpc: { host: '127.0.0.1', port: 0 }, log_level: 'silent' },
    backends: { triton: { kind: 'triton', protocol: 'grpc', endpoints: [triton.grpcEndpoint] } },
    models: { linear: { backend: 'triton' } },
    streams: [{ name: 'scores', redis: redis.url, input: 'in', group: 'gw', output: 'out', model: 'linear', start_id: '0', block_ms: 100 }],
  });
  gateway = await startGateway(config, silentLogger, { env: { INFERGATE_ADMIN_KEY: 'streams-admin' } });
  pool = new Pool(`http://127.0.0.1:${gateway.httpPort}`, { connections: 2 });
});

afterAll(async () => {
  await pool?.close();
  await gateway?.close(1000);
  client?.disconnect();
  await triton?.close();
  await redis?.stop();
});

describe('stream processors in the gateway', () => {
  it('answers each event on the output stream, dead-letters a bad one, and counts them at /admin/streams', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push((await client.xadd('in', '*', 'data', JSON.stringify({ INPUT0: [i, 1, 2, 3] })))!);
    const bad = await client.xadd('in', '*', 'data', JSON.stringify({ INPUT0: 'not a tensor' }));
    await expect.poll(async () => client.xlen('out'), { timeout: 20_000, interval: 50 }).toBe(20);
    await expect.poll(async () => client.xlen('in:dead'), { timeout: 20_000, interval: 50 }).toBe(1);

    const out = await client.xrange('out', '-', '+');
    const fields = out.map(([, f]) => Object.fromEntries(Array.from({ length: f.length / 2 }, (_, k) => [f[2 * k]!, f[2 * k + 1]!])));
    expect(fields.map((f) => f.input_id).sort()).toEqual([...ids].sort());
    const first = fields.find((f) => f.input_id === ids[0])!;
    expect(first.model).toBe('linear');
    expect(Object.keys(JSON.parse(first.outputs!) as object).sort()).toEqual(['CLASS', 'SCORES']);
    const [[, dead]] = (await client.xrange('in:dead', '-', '+')) as [[string, string[]]];
    expect(dead).toContain(bad);
    expect(dead).toContain('INVALID_ARGUMENT');

    const res = await pool.request({ path: '/admin/streams', method: 'GET', headers: { authorization: 'Bearer streams-admin' } });
    const view = (await res.body.json()) as { streams: Record<string, { events_in: number; events_out: number; events_dead_lettered: number }> };
    expect(res.statusCode).toBe(200);
    expect(view.streams.scores).toMatchObject({ events_in: 21, events_out: 20, events_dead_lettered: 1 });
  });
});
