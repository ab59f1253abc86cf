import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { spawnGateway, spawnTritonReference, type ChildServer } from '../test/helpers/processes.js';
import { startRedis, type RedisServer } from '../test/helpers/redis.js';

/**
 * The speed features against their baselines, measured in one run on this
 * machine, everything on loopback in its own process (reference Triton,
 * gateway, Redis) and the load from this one:
 *
 * - cache: direct to the backend; through the gateway without a cache; a
 *   cache MISS (every request a new input); a cache HIT (one input again and
 *   again), with the in-memory store and with Redis.
 * - batching: a backend whose cost is per call (one call at a time, 5 ms each,
 *   as a GPU server), 64 clients with distinct inputs, batching off and on.
 *
 * The load generator is Node (undici), which tops out below the gateway on a
 * 2-core machine: read the ratios, not the absolute figures.
 */

const WARMUP_MS = 1_000;
const MEASURE_MS = 4_000;
const CONCURRENCY = 32;
const BATCH_CLIENTS = 64;

interface Row {
  readonly name: string;
  readonly requests: number;
  readonly errors: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** perSecond / the baseline of its group. */
  readonly ratio: number;
  readonly baseline: string;
}

export interface ServingResult {
  readonly machine: string;
  readonly concurrency: number;
  readonly rows: readonly Row[];
  readonly notes: readonly string[];
}

const body = (x: readonly number[]) => JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: x }] });

/** Runs `clients` request loops for MEASURE_MS (after a warm-up); `next(i)` is the body of request number i. */
async function drive(url: string, path: string, clients: number, next: (i: number) => string): Promise<Omit<Row, 'name' | 'ratio' | 'baseline'>> {
  const pool = new Pool(url, { connections: clients, pipelining: 1 });
  let counter = 0;
  const run = async (until: number, latencies: number[] | undefined, errors: { n: number }): Promise<void> => {
    while (Date.now() < until) {
      const started = performance.now();
      try {
        const res = await pool.request({ path, method: 'POST', headers: { 'content-type': 'application/json' }, body: next(counter++) });
        await res.body.dump();
        if (res.statusCode !== 200) errors.n++;
      } catch {
        errors.n++;
      }
      latencies?.push(performance.now() - started);
    }
  };
  try {
    await Promise.all(Array.from({ length: clients }, () => run(Date.now() + WARMUP_MS, undefined, { n: 0 })));
    const latencies: number[] = [];
    const errors = { n: 0 };
    const started = performance.now();
    await Promise.all(Array.from({ length: clients }, () => run(Date.now() + MEASURE_MS, latencies, errors)));
    const seconds = (performance.now() - started) / 1000;
    latencies.sort((a, b) => a - b);
    const q = (p: number) => Math.round((latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0) * 100) / 100;
    return { requests: latencies.length, errors: errors.n, perSecond: Math.round(latencies.length / seconds), p50Ms: q(0.5), p99Ms: q(0.99) };
  } finally {
    await pool.close();
  }
}

function hasRedis(): boolean {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function gatewayYaml(backend: string, serial: string, redisUrl?: string): string {
  return `server:
  http: { host: 127.0.0.1, port: 0 }
  grpc: { host: 127.0.0.1, port: 0 }
  log_level: info
auth: { enabled: false }
${redisUrl !== undefined ? `cache: { redis: "${redisUrl}", command_timeout_ms: 50 }\n` : ''}backends:
  t: { kind: triton, protocol: rest, endpoints: ["${backend}"], health_check: { interval_ms: 0 } }
  serial: { kind: triton, protocol: rest, endpoints: ["${serial}"], health_check: { interval_ms: 0 }, concurrency: { max_in_flight: 4096, max_queued: 4096 } }
models:
  plain: { backend: t, model: linear }
  cached: { backend: t, model: linear, cache: { ttl_ms: 600000 } }
  unbatched: { backend: serial, model: linear }
  batched: { backend: serial, model: linear, batching: { max_batch_size: 32, max_queue_delay_ms: 2 } }
`;
}

export async function run(): Promise<ServingResult> {
  const dir = await mkdtemp(join(tmpdir(), 'infergate-bench-'));
  const children: ChildServer[] = [];
  let redis: RedisServer | undefined;
  const notes: string[] = [];
  try {
    const backend = await spawnTritonReference();
    children.push(backend);
    const serial = await spawnTritonReference({ latencyMs: 5, extraArgs: ['--max-concurrency', '1'] });
    children.push(serial);
    await writeFile(join(dir, 'memory.yaml'), gatewayYaml(backend.http, serial.http));
    const memory = await spawnGateway(join(dir, 'memory.yaml'));
    children.push(memory);

    const rows: Row[] = [];
    const add = (name: string, baseline: string, r: Omit<Row, 'name' | 'ratio' | 'baseline'>) => {
      const base = rows.find((row) => row.name === baseline);
      rows.push({ name, ...r, baseline, ratio: base !== undefined ? Math.round((r.perSecond / base.perSecond) * 100) / 100 : 1 });
    };
    const same = () => body([1, 2, 3, 4]);
    const fresh = (i: number) => body([i, i % 7, 1, 2]);
    const direct = `http://${backend.http}`;
    add('direct to the backend', 'direct to the backend', await drive(direct, '/v2/models/linear/infer', CONCURRENCY, fresh));
    const viaMemory = `http://${memory.http}`;
    add('gateway, no cache', 'direct to the backend', await drive(viaMemory, '/v2/models/plain/infer', CONCURRENCY, fresh));
    add('gateway, memory cache MISS', 'direct to the backend', await drive(viaMemory, '/v2/models/cached/infer', CONCURRENCY, (i) => body([i, 1e6, 1, 2])));
    add('gateway, memory cache HIT', 'direct to the backend', await drive(viaMemory, '/v2/models/cached/infer', CONCURRENCY, same));

    if (hasRedis()) {
      redis = await startRedis();
      await writeFile(join(dir, 'redis.yaml'), gatewayYaml(backend.http, serial.http, redis.url));
      const shared = await spawnGateway(join(dir, 'redis.yaml'));
      children.push(shared);
      const viaRedis = `http://${shared.http}`;
      add('gateway, Redis cache MISS', 'direct to the backend', await drive(viaRedis, '/v2/models/cached/infer', CONCURRENCY, (i) => body([i, 2e6, 1, 2])));
      add('gateway, Redis cache HIT', 'direct to the backend', await drive(viaRedis, '/v2/models/cached/infer', CONCURRENCY, same));
    } else {
      notes.push('redis-server is not installed: the Redis rows were skipped (apt-get install -y redis-server)');
    }

    add('5 ms/call backend, batching off', '5 ms/call backend, batching off', await drive(viaMemory, '/v2/models/unbatched/infer', BATCH_CLIENTS, fresh));
    add('5 ms/call backend, batching on', '5 ms/call backend, batching off', await drive(viaMemory, '/v2/models/batched/infer', BATCH_CLIENTS, fresh));

    return { machine: `${process.platform} ${process.arch}, Node ${process.version}`, concurrency: CONCURRENCY, rows, notes };
  } finally {
    await Promise.allSettled(children.map((c) => c.kill('SIGTERM')));
    await redis?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

export function format(result: ServingResult): string {
  const lines = [
    `Serving speed (${result.machine}; ${result.concurrency} clients, ${BATCH_CLIENTS} for batching; ratio = req/s over its baseline)`,
    '| path | req/s | p50 ms | p99 ms | errors | ratio | baseline |',
    '|---|---|---|---|---|---|---|',
    ...result.rows.map((r) => `| ${r.name} | ${r.perSecond} | ${r.p50Ms} | ${r.p99Ms} | ${r.errors} | ${r.ratio}x | ${r.baseline} |`),
    ...result.notes.map((n) => `note: ${n}`),
  ];
  return lines.join('\n');
}
