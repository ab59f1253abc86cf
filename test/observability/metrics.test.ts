// GET /metrics end to end: a gateway in front of a reference Triton, with a cached model, a batched model, an A/B
// experiment, a backend with an endpoint that is down, a stream processor and a batch job over a real Redis. Traffic
// of every kind (OK and failing, REST and gRPC, front doors, ModelStreamInfer) is driven first, then one scrape is
// read as Prometheus would read it and checked family by family.
import { mkdir, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { validateConfig } from '../../src/config/load.js';
import { startGateway, type RunningGateway } from '../../src/gateway.js';
import { silentLogger } from '../../src/observability/logger.js';
import { grpc, grpcError, v2Client, type Message, type V2Client } from '../helpers/grpc-client.js';
import { call, type HttpReply } from '../helpers/http.js';
import { LINEAR_REQUEST } from '../helpers/live.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';

// ---------- the exposition format, read as a scraper would ----------

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

interface Scrape {
  readonly text: string;
  readonly samples: readonly Sample[];
  /** # TYPE of each family. */
  readonly types: ReadonlyMap<string, string>;
}

function parseExposition(text: string): Scrape {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type !== null) types.set(type[1]!, type[2]!);
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return { text, samples, types };
}

/** Samples of `name` whose labels include `match`. */
function series(scrape: Scrape, name: string, match: Record<string, string> = {}): Sample[] {
  return scrape.samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
}

/** The sum of the values of `name` whose labels include `match`. */
function total(scrape: Scrape, name: string, match: Record<string, string> = {}): number {
  return series(scrape, name, match).reduce((n, s) => n + s.value, 0);
}

/** The one value of `name` with exactly these labels among its own (undefined when absent). */
function value(scrape: Scrape, name: string, match: Record<string, string> = {}): number | undefined {
  const found = series(scrape, name, match);
  expect(found.length, `${name} ${JSON.stringify(match)}: ${found.length} series`).toBeLessThanOrEqual(1);
  return found[0]?.value;
}

/** Every histogram's buckets are cumulative, end at +Inf with its _count, and its _sum is finite. */
function expectHistogramsCoherent(scrape: Scrape, name: string): void {
  const buckets = series(scrape, `${name}_bucket`);
  const groups = new Map<string, Sample[]>();
  for (const b of buckets) {
    const { le: _le, ...rest } = b.labels;
    const key = JSON.stringify(rest);
    groups.set(key, [...(groups.get(key) ?? []), b]);
  }
  expect(groups.size, `${name}: no series`).toBeGreaterThan(0);
  for (const [key, group] of groups) {
    const labels = JSON.parse(key) as Record<string, string>;
    const ordered = [...group].sort((a, b) => Number(a.labels.le) - Number(b.labels.le));
    for (let i = 1; i < ordered.length; i++) expect(ordered[i]!.value).toBeGreaterThanOrEqual(ordered[i - 1]!.value);
    const inf = group.find((b) => b.labels.le === '+Inf');
    expect(inf, `${name} ${key}: no +Inf bucket`).toBeDefined();
    expect(value(scrape, `${name}_count`, labels)).toBe(inf!.value);
    expect(Number.isFinite(value(scrape, `${name}_sum`, labels))).toBe(true);
  }
}

// ---------- the stack ----------

let redis: RedisServer;
let triton: TritonReference;
let gateway: RunningGateway;
let pool: Pool;
let client: V2Client;
let events: Redis;
let root: string;
let inDir: string;
let outDir: string;

const LINEAR_BODY = JSON.parse(LINEAR_REQUEST) as unknown;
const REST_ENDPOINT_DOWN = '127.0.0.1:1';

beforeAll(async () => {
  root = await realpath(await mkdtemp(join(tmpdir(), 'infergate-metrics-')));
  inDir = join(root, 'in');
  outDir = join(root, 'out');
  await mkdir(inDir);
  await mkdir(outDir);
  redis = await startRedis();
  triton = await startTritonReference({ host: '127.0.0.1' });
  events = new Redis(redis.url);
  const off = { interval_ms: 0 };
  const config = validateConfig({
    auth: { enabled: false },
    server: { http: { host: '127.0.0.1', port: 0 }, grpc: { host: '127.0.0.1', port: 0 }, log_level: 'silent', request_timeout_ms: 5_000 },
    backends: {
      t: { kind: 'triton', protocol: 'grpc', endpoints: [triton.grpcEndpoint], health_check: off },
      tr: { kind: 'triton', protocol: 'rest', endpoints: [triton.httpEndpoint], health_check: off },
      // One good endpoint and one where nothing listens: calls there fail, are retried on the good one, and its
      // breaker opens after two failures.
      flaky: {
        kind: 'triton',
        protocol: 'rest',
        endpoints: [triton.httpEndpoint, REST_ENDPOINT_DOWN],
        health_check: off,
        load_balancing: { policy: 'round_robin' },
        circuit_breaker: { minimum_requests: 2, error_threshold_percent: 10, reset_timeout_ms: 600_000 },
      },
      down: { kind: 'triton', protocol: 'grpc', endpoints: ['127.0.0.1:1'], health_check: off, retry: { max_attempts: 1 } },
    },
    models: {
      linear: { backend: 't' },
      cached: { backend: 't', model: 'linear', cache: { ttl_ms: 60_000 } },
      batched: { backend: 't', model: 'linear', batching: { max_batch_size: 8, max_queue_delay_ms: 50 } },
      ranker: { backend: 't', model: 'linear' },
      flaky: { backend: 'flaky', model: 'linear' },
      down: { backend: 'down', model: 'linear' },
    },
    experiments: {
      'ranker-ab': {
        model: 'ranker',
        key: { header: 'x-user-id' },
        control: 'a',
        arms: { a: { weight: 50, backend: 't', model: 'linear', id: 'arm-a' }, b: { weight: 50, backend: 'tr', model: 'linear', id: 'arm-b' } },
      },
    },
    streams: [{ name: 'scores', redis: redis.url, input: 'in', group: 'gw', output: 'out', model: 'linear', start_id: '0', block_ms: 100, claim_interval_ms: 100 }],
    jobs: { redis: redis.url, workers: 1, input_dirs: [inDir], output_dirs: [outDir] },
  });
  gateway = await startGateway(config, silentLogger);
  pool = new Pool(`http://127.0.0.1:${gateway.httpPort}`, { connections: 8 });
  client = v2Client(`127.0.0.1:${gateway.grpcPort}`);
});

afterAll(async () => {
  client?.close();
  await pool?.close();
  await gateway?.close(1_000);
  events?.disconnect();
  await triton?.close();
  await redis?.stop();
  if (root !== undefined) await rm(root, { recursive: true, force: true });
});

function infer(model: string, body: string = LINEAR_REQUEST, headers: Record<string, string> = {}): Promise<HttpReply> {
  return call(pool, 'POST', `/v2/models/${model}/infer`, body, { 'content-type': 'application/json', ...headers });
}

const GRPC_LINEAR: Message = {
  model_name: 'linear',
  inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }],
};

/** ModelStreamInfer: writes the requests, half-closes, and collects the replies. */
async function streamInfer(requests: readonly Message[]): Promise<{ error_message: string }[]> {
  const open = client.raw.ModelStreamInfer as (metadata: grpc.Metadata, options: grpc.CallOptions) => grpc.ClientDuplexStream<Message, { error_message: string }>;
  const stream = open.call(client.raw, new grpc.Metadata(), { deadline: Date.now() + 10_000 });
  const replies: { error_message: string }[] = [];
  const done = new Promise<void>((resolve, reject) => {
    stream.on('data', (m: { error_message: string }) => replies.push(m));
    stream.on('end', resolve);
    stream.on('error', reject);
  });
  for (const r of requests) stream.write(r);
  stream.end();
  await done;
  return replies;
}

async function scrape(): Promise<Scrape> {
  const res = await call(pool, 'GET', '/metrics');
  expect(res.status).toBe(200);
  expect(res.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
  return parseExposition(res.text());
}

async function waitForJob(id: string): Promise<Record<string, unknown>> {
  let view: Record<string, unknown> = {};
  await expect
    .poll(
      async () => {
        view = (await call(pool, 'GET', `/v1/jobs/${id}`)).json<Record<string, unknown>>();
        return view.state;
      },
      { timeout: 20_000, interval: 100 },
    )
    .toBe('completed');
  return view;
}

// ---------- the traffic, then one scrape ----------

/** Requests sent per (model, target, arm, code), as the gateway should count them. */
const sent = { linearOk: 0, linearFailed: 0, unknown: 0, cached: 0, batched: 0, armA: 0, armB: 0, flaky: 0, down: 0 };
let result: Scrape;

describe('GET /metrics', () => {
  it('serves every family after real traffic, with counts that match it', async () => {
    // v2 REST and gRPC, the TF Serving front door, and ModelStreamInfer messages: all on `linear`.
    for (let i = 0; i < 3; i++) expect((await infer('linear')).status).toBe(200);
    for (let i = 0; i < 2; i++) await client.unary('ModelInfer', GRPC_LINEAR);
    expect((await call(pool, 'POST', '/v1/models/linear:predict', '{"instances":[[1,2,3,4]]}')).status).toBe(200);
    const replies = await streamInfer([GRPC_LINEAR, GRPC_LINEAR, { ...GRPC_LINEAR, model_name: 'no-such-model' }]);
    expect(replies.map((r) => r.error_message === '')).toEqual([true, true, false]);
    sent.linearOk += 3 + 2 + 1 + 2;
    sent.unknown += 1;
    // Failures on a known model: malformed JSON (v2), a body the model cannot take (TorchServe's front door).
    expect((await infer('linear', '{"inputs": [')).status).toBe(400);
    expect((await call(pool, 'POST', '/predictions/linear', 'hello', { 'content-type': 'text/plain' })).status).toBeGreaterThanOrEqual(400);
    sent.linearFailed += 2;
    // Unknown models, REST and gRPC: counted as model="unknown", never under the client's string.
    for (const name of ['nope', 'also-nope']) expect((await infer(name)).status).toBe(404);
    expect((await grpcError(client.unary('ModelInfer', { ...GRPC_LINEAR, model_name: 'grpc-nope' }))).code).toBe(grpc.status.NOT_FOUND);
    sent.unknown += 3;

    // The cache: one miss, then hits.
    for (let i = 0; i < 3; i++) expect((await infer('cached')).headers['x-infergate-cache']).toBe(i === 0 ? 'MISS' : 'HIT');
    sent.cached += 3;
    // The batcher: concurrent one-row requests merged.
    const batch = await Promise.all(Array.from({ length: 6 }, () => infer('batched')));
    expect(batch.map((r) => r.status)).toEqual(Array(6).fill(200));
    sent.batched += 6;
    // The experiment: both arms, forced by the override header.
    for (const arm of ['a', 'a', 'b', 'a', 'b']) {
      const res = await infer('ranker', LINEAR_REQUEST, { 'x-infergate-variant-override': arm });
      expect(res.headers['x-infergate-variant']).toBe(arm);
      if (arm === 'a') sent.armA++;
      else sent.armB++;
    }
    // A backend with a dead endpoint: every request succeeds (retried on the good one) until its breaker opens.
    for (let i = 0; i < 8; i++) expect((await infer('flaky')).status).toBe(200);
    sent.flaky += 8;
    // A backend with no live endpoint.
    for (let i = 0; i < 2; i++) expect((await infer('down')).status).toBe(503);
    sent.down += 2;

    // A stream processor: five events answered, one dead-lettered.
    for (let i = 0; i < 5; i++) await events.xadd('in', '*', 'data', JSON.stringify({ INPUT0: [i, 1, 2, 3] }));
    await events.xadd('in', '*', 'data', JSON.stringify({ INPUT0: 'not a tensor' }));
    await expect.poll(() => events.xlen('out'), { timeout: 20_000, interval: 50 }).toBe(5);
    await expect.poll(() => events.xlen('in:dead'), { timeout: 20_000, interval: 50 }).toBe(1);

    // A batch job: three rows predicted, one failed.
    const rows = [[1, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 6]].map((x, id) => JSON.stringify({ id, INPUT0: x }));
    await writeFile(join(inDir, 'rows.jsonl'), `${rows.join('\n')}\n{"id": 3, "INPUT0": "bad"}\n`);
    const submitted = await call(pool, 'POST', '/v1/jobs', JSON.stringify({ model: 'linear', input: 'rows.jsonl', output: 'out.jsonl' }), {
      'content-type': 'application/json',
    });
    expect(submitted.status).toBe(202);
    const job = await waitForJob(submitted.json<{ id: string }>().id);
    expect(job.progress).toMatchObject({ succeeded: 3, failed: 1 });

    // The stream's lag is read on the processor's claim tick: wait for it, then take the scrape.
    await expect.poll(async () => value(await scrape(), 'infergate_stream_lag', { stream: 'scores' }), { timeout: 10_000, interval: 100 }).toBe(0);
    result = await scrape();
    expect(result.samples.length).toBeGreaterThan(0);
  });

  it('counts every inference request by model, target, arm and code', () => {
    const r = result;
    expect(r.types.get('infergate_requests_total')).toBe('counter');
    expect(value(r, 'infergate_requests_total', { model: 'linear', target: 'models.linear', arm: '', code: 'OK' })).toBe(sent.linearOk);
    const linearFailures = series(r, 'infergate_requests_total', { model: 'linear' }).filter((s) => s.labels.code !== 'OK');
    expect(linearFailures.reduce((n, s) => n + s.value, 0)).toBe(sent.linearFailed);
    expect(value(r, 'infergate_requests_total', { model: 'linear', target: '', arm: '', code: 'INVALID_ARGUMENT' })).toBe(1);
    // Unknown models: one series, whatever names the clients sent.
    expect(value(r, 'infergate_requests_total', { model: 'unknown', target: '', arm: '', code: 'NOT_FOUND' })).toBe(sent.unknown);
    for (const name of ['nope', 'also-nope', 'grpc-nope', 'no-such-model']) expect(r.text).not.toContain(name);
    expect(value(r, 'infergate_requests_total', { model: 'cached', target: 'models.cached', code: 'OK' })).toBe(sent.cached);
    expect(value(r, 'infergate_requests_total', { model: 'batched', target: 'models.batched', code: 'OK' })).toBe(sent.batched);
    expect(value(r, 'infergate_requests_total', { model: 'ranker', target: 'arm-a', arm: 'a', code: 'OK' })).toBe(sent.armA);
    expect(value(r, 'infergate_requests_total', { model: 'ranker', target: 'arm-b', arm: 'b', code: 'OK' })).toBe(sent.armB);
    expect(value(r, 'infergate_requests_total', { model: 'flaky', target: 'models.flaky', code: 'OK' })).toBe(sent.flaky);
    expect(value(r, 'infergate_requests_total', { model: 'down', target: 'models.down', code: 'UNAVAILABLE' })).toBe(sent.down);
    // Nothing else: stream events and job rows go to the pipeline, not through the API.
    expect(total(r, 'infergate_requests_total')).toBe(Object.values(sent).reduce((a, b) => a + b, 0));
  });

  it('times every inference request by model and arm', () => {
    const r = result;
    expect(r.types.get('infergate_request_duration_seconds')).toBe('histogram');
    expectHistogramsCoherent(r, 'infergate_request_duration_seconds');
    expect(value(r, 'infergate_request_duration_seconds_count', { model: 'ranker', arm: 'a' })).toBe(sent.armA);
    expect(value(r, 'infergate_request_duration_seconds_count', { model: 'ranker', arm: 'b' })).toBe(sent.armB);
    expect(value(r, 'infergate_request_duration_seconds_count', { model: 'unknown', arm: '' })).toBe(sent.unknown);
    const les = series(r, 'infergate_request_duration_seconds_bucket', { model: 'linear', arm: '' }).map((s) => s.labels.le);
    expect(les).toEqual(['0.001', '0.0025', '0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '+Inf']);
  });

  it('counts and times backend call attempts per endpoint; the dead endpoint shows its failures and open breaker', () => {
    const r = result;
    expectHistogramsCoherent(r, 'infergate_backend_request_duration_seconds');
    const dead = { backend: 'flaky', endpoint: REST_ENDPOINT_DOWN };
    expect(value(r, 'infergate_backend_requests_total', { ...dead, code: 'UNAVAILABLE' })).toBeGreaterThanOrEqual(2);
    // Every flaky request was answered by the good endpoint, once.
    expect(value(r, 'infergate_backend_requests_total', { backend: 'flaky', endpoint: triton.httpEndpoint, code: 'OK' })).toBe(sent.flaky);
    expect(value(r, 'infergate_backend_requests_total', { backend: 'down', endpoint: '127.0.0.1:1', code: 'UNAVAILABLE' })).toBe(sent.down);
    // A cache hit makes no backend call; the batcher's merged calls count once each.
    expect(total(r, 'infergate_backend_requests_total', { backend: 'tr' })).toBe(sent.armB);
    expect(r.types.get('infergate_breaker_state')).toBe('gauge');
    expect(value(r, 'infergate_breaker_state', dead)).toBe(2);
    expect(value(r, 'infergate_endpoint_ejected', dead)).toBe(1);
    expect(value(r, 'infergate_breaker_state', { backend: 'flaky', endpoint: triton.httpEndpoint })).toBe(0);
    expect(value(r, 'infergate_endpoint_ejected', { backend: 't', endpoint: triton.grpcEndpoint })).toBe(0);
    // The down backend's breaker needs 20 calls (the default) to open.
    expect(value(r, 'infergate_breaker_state', { backend: 'down', endpoint: '127.0.0.1:1' })).toBe(0);
  });

  it('reads load shedding, admission, the cache and the batcher', () => {
    const r = result;
    for (const b of ['t', 'tr', 'flaky', 'down']) {
      expect(value(r, 'infergate_backend_in_flight_requests', { backend: b })).toBe(0);
      expect(value(r, 'infergate_backend_queued_requests', { backend: b })).toBe(0);
      expect(value(r, 'infergate_shed_requests_total', { backend: b })).toBe(0);
    }
    // /metrics itself is not admitted, so nothing is in flight while it is scraped.
    expect(value(r, 'infergate_in_flight_requests')).toBe(0);
    expect(value(r, 'infergate_admission_rejected_total')).toBe(0);
    expect(r.types.get('infergate_cache_requests_total')).toBe('counter');
    expect(value(r, 'infergate_cache_requests_total', { result: 'hit' })).toBe(2);
    expect(value(r, 'infergate_cache_requests_total', { result: 'miss' })).toBe(1);
    expect(value(r, 'infergate_cache_requests_total', { result: 'coalesced' })).toBe(0);
    expect(value(r, 'infergate_cache_store_available', { store: 'memory' })).toBe(1);
    expect(r.types.get('infergate_batch_size')).toBe('histogram');
    expectHistogramsCoherent(r, 'infergate_batch_size');
    // Six one-row requests, in as many batches as the timing made: every row in one of them.
    expect(value(r, 'infergate_batch_size_sum', { model: 'batched' })).toBe(sent.batched);
    expect(value(r, 'infergate_batch_size_count', { model: 'batched' })).toBeGreaterThanOrEqual(1);
    expect(value(r, 'infergate_batch_size_count', { model: 'batched' })).toBeLessThanOrEqual(sent.batched);
  });

  it('reads the stream processors and the batch jobs', () => {
    const r = result;
    const events = (outcome: string) => value(r, 'infergate_stream_events_total', { stream: 'scores', outcome });
    expect(events('in')).toBe(6);
    expect(events('out')).toBe(5);
    expect(events('dead_lettered')).toBe(1);
    expect(events('failed')).toBe(0);
    expect(events('claimed')).toBe(0);
    expect(value(r, 'infergate_stream_in_flight', { stream: 'scores' })).toBe(0);
    expect(value(r, 'infergate_stream_lag', { stream: 'scores' })).toBe(0);
    expect(r.types.get('infergate_stream_processing_seconds')).toBe('summary');
    expect(value(r, 'infergate_stream_processing_seconds_count', { stream: 'scores' })).toBe(5);
    expect(value(r, 'infergate_stream_processing_seconds_sum', { stream: 'scores' })).toBeGreaterThan(0);
    const p50 = value(r, 'infergate_stream_processing_seconds', { stream: 'scores', quantile: '0.5' })!;
    const p99 = value(r, 'infergate_stream_processing_seconds', { stream: 'scores', quantile: '0.99' })!;
    expect(p50).toBeGreaterThan(0);
    expect(p99).toBeGreaterThanOrEqual(p50);

    expect(value(r, 'infergate_job_rows_total', { outcome: 'succeeded' })).toBe(3);
    expect(value(r, 'infergate_job_rows_total', { outcome: 'failed' })).toBe(1);
    expect(value(r, 'infergate_jobs', { state: 'completed' })).toBe(1);
    expect(value(r, 'infergate_jobs', { state: 'queued' })).toBe(0);
    expect(value(r, 'infergate_jobs', { state: 'running' })).toBe(0);
  });

  it('says which config and build run, with the process metrics', () => {
    const r = result;
    expect(value(r, 'infergate_config_version')).toBe(1);
    expect(value(r, 'infergate_build_info', { version: '0.1.0' })).toBe(1);
    expect(value(r, 'infergate_process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(value(r, 'infergate_process_resident_memory_bytes') ?? value(r, 'infergate_nodejs_heap_size_total_bytes')).toBeGreaterThan(0);
    expect(series(r, 'infergate_nodejs_eventloop_lag_seconds')).toHaveLength(1);
    // Every family of this gateway carries the prefix.
    for (const name of r.types.keys()) expect(name.startsWith('infergate_')).toBe(true);
  });
});

describe('GET /metrics under overload', () => {
  it('is answered while the in-flight limit refuses inference, and counts both', async () => {
    const slow = await startTritonReference({ host: '127.0.0.1' });
    const gw = await startGateway(
      validateConfig({
        auth: { enabled: false },
        server: { http: { host: '127.0.0.1', port: 0 }, grpc: { host: '127.0.0.1', port: 0 }, log_level: 'silent', max_in_flight_requests: 1 },
        backends: { t: { kind: 'triton', protocol: 'grpc', endpoints: [slow.grpcEndpoint], health_check: { interval_ms: 0 } } },
        models: { linear: { backend: 't' } },
      }),
      silentLogger,
    );
    const p = new Pool(`http://127.0.0.1:${gw.httpPort}`, { connections: 4 });
    try {
      slow.setFault({ kind: 'hang' });
      // Held at the backend until its own deadline: the one request the limit allows.
      const held = call(p, 'POST', '/v2/models/linear/infer', LINEAR_REQUEST, { 'content-type': 'application/json', 'x-infergate-timeout-ms': '2000' });
      await expect.poll(() => slow.stats.inferCalls, { timeout: 5_000, interval: 20 }).toBe(1);
      const refused = await call(p, 'POST', '/v2/models/linear/infer', LINEAR_REQUEST, { 'content-type': 'application/json' });
      expect(refused.status).toBe(503);
      const res = await call(p, 'GET', '/metrics');
      expect(res.status).toBe(200);
      const r = parseExposition(res.text());
      expect(value(r, 'infergate_in_flight_requests')).toBe(1);
      expect(value(r, 'infergate_admission_rejected_total')).toBe(1);
      expect(value(r, 'infergate_backend_in_flight_requests', { backend: 't' })).toBe(1);
      expect((await held).status).toBe(504);
      const after = parseExposition((await call(p, 'GET', '/metrics')).text());
      expect(value(after, 'infergate_requests_total', { model: 'linear', target: 'models.linear', arm: '', code: 'DEADLINE_EXCEEDED' })).toBe(1);
      // Refused before any handler: counted by admission only.
      expect(total(after, 'infergate_requests_total')).toBe(1);
    } finally {
      await p.close();
      await gw.close(1_000);
      await slow.close();
    }
  });
});
