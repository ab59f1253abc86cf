// The batch jobs API end to end, in process: a gateway with a `jobs` section over a real Redis and the reference
// Triton; jobs read and write real files in temporary directories.
import { mkdir, mkdtemp, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.js';
import { startGateway, type RunningGateway } from '../../src/gateway.js';
import { writeRecordsFile } from '../../src/jobs/formats/index.js';
import type { JobView } from '../../src/jobs/job-queue.js';
import { silentLogger } from '../../src/observability/logger.js';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';

let redis: RedisServer;
let triton: TritonReference;
let gateway: RunningGateway;
let base: string;
let root: string;
let inDir: string;
let outDir: string;
let outsideDir: string;

function gatewayConfig(jobs: Record<string, unknown> | undefined) {
  return validateConfig({
    auth: { enabled: false },
    server: { http: { host: '127.0.0.1', port: 0 }, grpc: { host: '127.0.0.1', port: 0 }, log_level: 'silent', request_timeout_ms: 10_000 },
    backends: { triton: { kind: 'triton', protocol: 'grpc', endpoints: [triton.grpcEndpoint] } },
    models: { linear: { backend: 'triton' } },
    ...(jobs !== undefined ? { jobs } : {}),
  });
}

beforeAll(async () => {
  root = await realpath(await mkdtemp(join(tmpdir(), 'infergate-jobs-api-')));
  inDir = join(root, 'in');
  outDir = join(root, 'out');
  outsideDir = join(root, 'outside');
  for (const d of [inDir, outDir, outsideDir]) await mkdir(d);
  redis = await startRedis();
  triton = await startTritonReference({ host: '127.0.0.1' });
  gateway = await startGateway(
    gatewayConfig({ redis: redis.url, workers: 1, input_dirs: [inDir], output_dirs: [outDir], max_batch_size: 100, max_concurrency: 8 }),
    silentLogger,
  );
  base = `http://127.0.0.1:${gateway.httpPort}`;
});

afterAll(async () => {
  await gateway?.close(1_000);
  await triton?.close();
  await redis?.stop();
  if (root !== undefined) await rm(root, { recursive: true, force: true });
});

interface Reply<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
}

async function call<T = JobView>(method: string, path: string, body?: unknown, at = base): Promise<Reply<T>> {
  const res = await fetch(`${at}${path}`, {
    method,
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: (text.length > 0 ? JSON.parse(text) : undefined) as T };
}

/** Polls GET /v1/jobs/{id} until `done` holds (bounded: fails with the last view). */
async function waitForJob(id: string, done: (v: JobView) => boolean, timeoutMs = 30_000): Promise<JobView> {
  const until = Date.now() + timeoutMs;
  let last: Reply | undefined;
  while (Date.now() < until) {
    last = await call('GET', `/v1/jobs/${id}`);
    expect(last.status).toBe(200);
    if (done(last.body as JobView)) return last.body as JobView;
    await sleep(100);
  }
  throw new Error(`job ${id} did not get there within ${timeoutMs} ms; last view: ${JSON.stringify(last?.body)}`);
}

const finished = (v: JobView): boolean => v.state === 'completed' || v.state === 'failed' || v.state === 'cancelled';

function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function linesIn(path: string): Promise<number> {
  try {
    return jsonLines(await readFile(path, 'utf8')).length;
  } catch {
    return 0;
  }
}

describe('the jobs config section', () => {
  const base = { backends: { t: { kind: 'triton', protocol: 'grpc', endpoints: ['127.0.0.1:1'] } }, models: { linear: { backend: 't' } } };
  const problems = (jobs: unknown): string[] => {
    try {
      validateConfig({ ...base, jobs });
      return [];
    } catch (err) {
      return [...(err as { problems: string[] }).problems];
    }
  };

  it('takes defaults for everything but Redis and the directories', () => {
    const config = validateConfig({ ...base, jobs: { redis: 'redis://127.0.0.1:6379', input_dirs: ['/in'], output_dirs: ['/out'] } });
    expect(config.jobs).toEqual({
      redis: 'redis://127.0.0.1:6379',
      queue: 'infergate-batch',
      key_prefix: 'infergate',
      workers: 1,
      input_dirs: ['/in'],
      output_dirs: ['/out'],
      batch_size: 32,
      concurrency: 4,
      max_batch_size: 1_024,
      max_concurrency: 64,
      lock_ms: 30_000,
      stalled_interval_ms: 30_000,
      max_stalled: 10,
      keep_completed: 1_000,
    });
    expect(validateConfig(base).jobs).toBeUndefined();
  });

  it('names each problem by its key', () => {
    expect(problems({ input_dirs: ['in'], output_dirs: [], workers: -1, lokc_ms: 5 })).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^jobs\.redis: /),
        'jobs.input_dirs.0: must be an absolute directory path',
        'jobs.output_dirs: needs at least one directory',
        expect.stringMatching(/^jobs\.workers: /),
        "jobs: unknown key 'lokc_ms'",
      ]),
    );
    expect(problems({ redis: 'http://x', input_dirs: ['/in'], output_dirs: ['/out'] })).toEqual(['jobs.redis: must be a redis:// or rediss:// URL']);
    expect(problems({ redis: 'redis://x', input_dirs: ['/in'], output_dirs: ['/out'], batch_size: 64, max_batch_size: 16 })).toEqual([
      'jobs.batch_size: must be at most max_batch_size',
    ]);
  });
});

describe('POST /v1/jobs and GET /v1/jobs/{id}', () => {
  it('runs a JSONL job to completion with one output row per input row, the values the real-time API gives', async () => {
    const rows = 200;
    await writeRecordsFile(join(inDir, 'small.jsonl'), 'jsonl', Array.from({ length: rows }, (_, i) => ({ id: i, INPUT0: [i % 5, 1, 2, 3] })));
    const submitted = await call('POST', '/v1/jobs', { model: 'linear', input: 'small.jsonl', output: 'small-out.jsonl', batch_size: 16 });
    expect(submitted.status).toBe(202);
    const job = submitted.body;
    expect(submitted.headers.get('location')).toBe(`/v1/jobs/${job.id}`);
    expect(job).toMatchObject({
      state: 'queued',
      model: 'linear',
      input: join(inDir, 'small.jsonl'),
      output: join(outDir, 'small-out.jsonl'),
      errors: join(outDir, 'small-out.jsonl.errors.jsonl'),
      batch_size: 16,
      concurrency: 4,
      attempts: 0,
    });
    expect(job.id).toMatch(/^[0-9a-f-]{36}$/);

    const done = await waitForJob(job.id, finished);
    expect(done.state, JSON.stringify(done)).toBe('completed');
    expect(done.progress).toMatchObject({ total: rows, done: rows, succeeded: rows, failed: 0, resumed: 0 });
    expect(done.attempts).toBe(1);
    expect(done.worker).toBe(gateway.instanceId);
    expect(done.started_at).toBeDefined();
    expect(done.finished_at).toBeDefined();

    const out = jsonLines(await readFile(done.output, 'utf8'));
    expect(out).toHaveLength(rows);
    expect(new Set(out.map((r) => r.row)).size).toBe(rows);
    // The oracle: the same model through the real-time v2 API.
    const expected = new Map<number, { SCORES: number[]; CLASS: number }>();
    for (let k = 0; k < 5; k++) {
      const res = await call<{ outputs: { name: string; data: number[] }[] }>('POST', '/v2/models/linear/infer', {
        inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [k, 1, 2, 3] }],
      });
      expect(res.status).toBe(200);
      const byName = new Map(res.body.outputs.map((o) => [o.name, o.data]));
      expected.set(k, { SCORES: byName.get('SCORES')!, CLASS: byName.get('CLASS')![0]! });
    }
    for (const r of out) {
      expect(r.id).toBe(r.row);
      expect({ SCORES: r.SCORES, CLASS: r.CLASS }).toEqual(expected.get((r.row as number) % 5));
    }
    expect(await linesIn(done.errors)).toBe(0);

    // Listed among the completed jobs, with the queue's counts.
    const listed = await call<{ jobs: JobView[]; counts: { queued: number; running: number } }>('GET', '/v1/jobs?state=completed&limit=50');
    expect(listed.status).toBe(200);
    expect(listed.body.jobs.map((j) => j.id)).toContain(job.id);
    expect(listed.body.jobs.every((j) => j.state === 'completed')).toBe(true);
    expect(listed.body.counts).toMatchObject({ queued: expect.any(Number), running: expect.any(Number) });
    const all = await call<{ jobs: JobView[] }>('GET', '/v1/jobs');
    expect(all.body.jobs.map((j) => j.id)).toContain(job.id);

    // A finished job cannot be cancelled.
    const cancel = await call('DELETE', `/v1/jobs/${job.id}`);
    expect(cancel.status).toBe(409);
    expect((cancel.body as unknown as { error: string }).error).toContain('already finished (completed)');
  });

  it('fails a job whose run throws, with the reason in the view', async () => {
    await writeFile(join(inDir, 'broken.parquet'), 'this is not a parquet file');
    const submitted = await call('POST', '/v1/jobs', { model: 'linear', input: 'broken.parquet', output: 'broken-out.jsonl' });
    expect(submitted.status).toBe(202);
    const done = await waitForJob(submitted.body.id, finished);
    expect(done.state).toBe("failed");
    expect(done.error?.code).toMatch(/^[A-Z_]+$/);
    expect(done.error?.message.length).toBeGreaterThan(0);
    const failedList = await call<{ jobs: JobView[] }>('GET', '/v1/jobs?state=failed');
    expect(failedList.body.jobs.map((j) => j.id)).toContain(done.id);
  });
});

describe('DELETE /v1/jobs/{id}', () => {
  it('cancels a queued job at once and a running one within about a second, leaving fewer rows than the input', async () => {
    const rows = 5_000;
    await writeRecordsFile(join(inDir, 'big.jsonl'), 'jsonl', Array.from({ length: rows }, (_, i) => ({ id: i, INPUT0: [i % 7, 1, 2, 3] })));
    await writeRecordsFile(join(inDir, 'next.jsonl'), 'jsonl', [{ id: 0, INPUT0: [1, 2, 3, 4] }]);
    // Slow calls, one row each, one at a time: the job runs long enough to be cancelled in the middle.
    triton.setFault({ kind: 'latency', ms: 10 });
    try {
      const running = (await call('POST', '/v1/jobs', { model: 'linear', input: 'big.jsonl', output: 'big-out.jsonl', batch_size: 1, concurrency: 1 })).body;
      const started = await waitForJob(running.id, (v) => v.state === 'running' && v.progress.done > 0);
      expect(started.worker).toBe(gateway.instanceId);

      // The one worker is busy: the next job waits in the queue.
      const queued = await call('POST', '/v1/jobs', { model: 'linear', input: 'next.jsonl', output: 'next-out.jsonl' });
      expect(queued.status).toBe(202);
      // Its output is taken while it is live.
      const clash = await call('POST', '/v1/jobs', { model: 'linear', input: 'next.jsonl', output: 'next-out.jsonl', errors: 'other-errors.jsonl' });
      expect(clash.status).toBe(409);
      expect((clash.body as unknown as { error: string }).error).toContain(queued.body.id);

      const listedQueued = await call<{ jobs: JobView[]; counts: { queued: number; running: number } }>('GET', '/v1/jobs?state=queued');
      expect(listedQueued.body.jobs.map((j) => j.id)).toContain(queued.body.id);
      expect(listedQueued.body.counts.queued).toBeGreaterThanOrEqual(1);
      expect(listedQueued.body.counts.running).toBe(1);

      const cancelQueued = await call('DELETE', `/v1/jobs/${queued.body.id}`);
      expect(cancelQueued.status).toBe(200);
      expect(cancelQueued.body.state).toBe('cancelled');
      expect((await call('GET', `/v1/jobs/${queued.body.id}`)).body.state).toBe('cancelled');
      const listedCancelled = await call<{ jobs: JobView[] }>('GET', '/v1/jobs?state=cancelled');
      expect(listedCancelled.body.jobs.map((j) => j.id)).toContain(queued.body.id);
      // Its output is free again.
      const reuse = await call('POST', '/v1/jobs', { model: 'linear', input: 'next.jsonl', output: 'next-out.jsonl' });
      expect(reuse.status).toBe(202);

      const cancelRunning = await call('DELETE', `/v1/jobs/${running.id}`);
      expect(cancelRunning.status).toBe(202);
      expect(cancelRunning.body).toMatchObject({ state: 'running', cancel_requested: true });
      const cancelled = await waitForJob(running.id, finished);
      expect(cancelled.state, JSON.stringify(cancelled)).toBe('cancelled');
      const written = (await linesIn(cancelled.output)) + (await linesIn(cancelled.errors));
      expect(written).toBeGreaterThan(0);
      expect(written).toBeLessThan(rows);
      expect(cancelled.progress.done).toBe(written);
      // Cancelling again says what it is; a job that is not there is 404.
      expect((await call('DELETE', `/v1/jobs/${running.id}`)).status).toBe(200);
      expect((await call('DELETE', '/v1/jobs/00000000-0000-4000-8000-000000000000')).status).toBe(404);

      const next = await waitForJob(reuse.body.id, finished);
      expect(next.state).toBe('completed');
    } finally {
      triton.setFault(undefined);
    }
  });
});

describe('graceful shutdown', () => {
  it('hands a running job back to the queue, not failed; another instance resumes it from the files', async () => {
    const rows = 1_500;
    await writeRecordsFile(join(inDir, 'handoff.jsonl'), 'jsonl', Array.from({ length: rows }, (_, i) => ({ id: i, INPUT0: [i % 3, 1, 2, 3] })));
    // Their own queue on the shared Redis, so the main gateway's worker stays out of it.
    const jobs = { redis: redis.url, queue: 'handoff', workers: 1, input_dirs: [inDir], output_dirs: [outDir] };
    const first = await startGateway(gatewayConfig(jobs), silentLogger);
    let second: RunningGateway | undefined;
    triton.setFault({ kind: 'latency', ms: 5 });
    try {
      const at1 = `http://127.0.0.1:${first.httpPort}`;
      const submitted = await call('POST', '/v1/jobs', { model: 'linear', input: 'handoff.jsonl', output: 'handoff-out.jsonl', batch_size: 1, concurrency: 1 }, at1);
      expect(submitted.status).toBe(202);
      const id = submitted.body.id;
      const until = Date.now() + 30_000;
      for (;;) {
        const v = (await call('GET', `/v1/jobs/${id}`, undefined, at1)).body;
        if (v.state === 'running' && v.progress.done > 0) break;
        if (Date.now() > until) throw new Error(`never ran: ${JSON.stringify(v)}`);
        await sleep(50);
      }
      second = await startGateway(gatewayConfig(jobs), silentLogger);
      const at2 = `http://127.0.0.1:${second.httpPort}`;
      await first.close(1_000);
      triton.setFault(undefined);

      const views: JobView[] = [];
      const deadline = Date.now() + 60_000;
      for (;;) {
        const v = (await call('GET', `/v1/jobs/${id}`, undefined, at2)).body;
        views.push(v);
        if (finished(v)) break;
        if (Date.now() > deadline) throw new Error(`not finished: ${JSON.stringify(v)}`);
        await sleep(100);
      }
      const done = views.at(-1)!;
      expect(views.map((v) => v.state)).not.toContain('failed');
      expect(done.state, JSON.stringify(done)).toBe('completed');
      expect(done.worker).toBe(second.instanceId);
      expect(done.attempts).toBe(2);
      expect(done.progress.resumed).toBeGreaterThan(0);
      expect(done.progress).toMatchObject({ total: rows, done: rows, succeeded: rows, failed: 0 });
      const out = jsonLines(await readFile(done.output, 'utf8'));
      expect(out).toHaveLength(rows);
      expect(new Set(out.map((r) => r.row)).size).toBe(rows);
    } finally {
      triton.setFault(undefined);
      await first.close(1_000);
      await second?.close(1_000);
    }
  });

  it('ends even when Redis is away', async () => {
    const own = await startRedis();
    await writeRecordsFile(join(inDir, 'away.jsonl'), 'jsonl', Array.from({ length: 2_000 }, (_, i) => ({ id: i, INPUT0: [1, 2, 3, 4] })));
    const gw = await startGateway(gatewayConfig({ redis: own.url, workers: 1, input_dirs: [inDir], output_dirs: [outDir] }), silentLogger);
    triton.setFault({ kind: 'latency', ms: 5 });
    try {
      const at = `http://127.0.0.1:${gw.httpPort}`;
      const submitted = await waitForStatus(() => call('POST', '/v1/jobs', { model: 'linear', input: 'away.jsonl', output: 'away-out.jsonl', batch_size: 1, concurrency: 1 }, at), 202);
      const until = Date.now() + 30_000;
      while ((await call('GET', `/v1/jobs/${submitted.body.id}`, undefined, at)).body.state !== 'running') {
        if (Date.now() > until) throw new Error('never ran');
        await sleep(50);
      }
      await own.kill();
      // Once the gateway has noticed (its API answers 503), close resolves: the worker's last Redis calls are given
      // up (the job is taken over as stalled by another instance), and the job's files stay resumable.
      await waitForStatus(() => call('GET', `/v1/jobs/${submitted.body.id}`, undefined, at), 503);
      await gw.close(1_000);
      expect(await linesIn(join(outDir, 'away-out.jsonl'))).toBeLessThan(2_000);
    } finally {
      triton.setFault(undefined);
      await gw.close(1_000);
      await own.stop();
    }
  });
});

describe('requests the API refuses', () => {
  it('names each problem', async () => {
    await writeRecordsFile(join(inDir, 'one.jsonl'), 'jsonl', [{ id: 0, INPUT0: [1, 2, 3, 4] }]);
    await writeFile(join(outsideDir, 'secret.jsonl'), '{"INPUT0":[1,2,3,4]}\n');
    await writeFile(join(inDir, 'rows.txt'), 'x');
    const err = async (body: unknown): Promise<[number, string]> => {
      const r = await call<{ error: string }>('POST', '/v1/jobs', body);
      return [r.status, r.body.error];
    };

    const [s1, m1] = await err({ model: 'nope', input: 'one.jsonl', output: 'x.jsonl' });
    expect(s1).toBe(404);
    expect(m1).toContain('nope');

    const [s2, m2] = await err({ model: 'linear', input: join(outsideDir, 'secret.jsonl'), output: 'x.jsonl' });
    expect(s2).toBe(403);
    expect(m2).toContain(join(outsideDir, 'secret.jsonl'));
    expect(m2).toContain(inDir);
    const [s2b] = await err({ model: 'linear', input: '../outside/secret.jsonl', output: 'x.jsonl' });
    expect(s2b).toBe(403);
    const [s2c] = await err({ model: 'linear', input: 'one.jsonl', output: join(outsideDir, 'x.jsonl') });
    expect(s2c).toBe(403);

    const [s3, m3] = await err({ model: 'linear', input: 'rows.txt', output: 'x.jsonl' });
    expect(s3).toBe(400);
    expect(m3).toContain('rows.txt');
    const [s3b] = await err({ model: 'linear', input: 'one.jsonl', output: 'x.xlsx' });
    expect(s3b).toBe(400);

    const [s4, m4] = await err({ version: '1', batch_size: 'big' });
    expect(s4).toBe(400);
    expect(m4).toContain('model: is required');
    expect(m4).toContain('input: is required');
    expect(m4).toContain('output: is required');
    expect(m4).toContain('batch_size: must be a number');

    const [s5, m5] = await err({ model: 'linear', input: 'one.jsonl', output: 'x.jsonl', batch_size: 101 });
    expect(s5).toBe(400);
    expect(m5).toContain('max_batch_size');
    const [s6, m6] = await err({ model: 'linear', input: 'one.jsonl', output: 'x.jsonl', colour: 'red' });
    expect(s6).toBe(400);
    expect(m6).toContain("unknown key 'colour'");
    const [s7] = await err({ model: 'linear', input: 'missing.jsonl', output: 'x.jsonl' });
    expect(s7).toBe(404);
    const [s8] = await err('{not json');
    expect(s8).toBe(400);
    // Outputs go to output directories only: writing over the input is refused.
    const [s9] = await err({ model: 'linear', input: 'one.jsonl', output: join(inDir, 'one.jsonl') });
    expect(s9).toBe(403);

    expect((await call('GET', '/v1/jobs/not-a-job')).status).toBe(404);
    expect((await call('GET', '/v1/jobs?state=sleeping')).status).toBe(400);
    expect((await call('GET', '/v1/jobs?limit=0')).status).toBe(400);
    const wrongMethod = await call('PUT', '/v1/jobs/x');
    expect(wrongMethod.status).toBe(405);
    // TF Serving's REST API still answers under /v1/models.
    expect((await call('GET', '/v1/models/linear')).status).toBe(200);
  });

  it('answers 501 when the gateway has no jobs section', async () => {
    const plain = await startGateway(gatewayConfig(undefined), silentLogger);
    try {
      const at = `http://127.0.0.1:${plain.httpPort}`;
      const post = await call<{ error: string }>('POST', '/v1/jobs', { model: 'linear', input: 'a.jsonl', output: 'b.jsonl' }, at);
      expect(post.status).toBe(501);
      expect(post.body.error).toContain('`jobs:` section');
      expect((await call('GET', '/v1/jobs/abc', undefined, at)).status).toBe(501);
      expect((await call('GET', '/v1/jobs', undefined, at)).status).toBe(501);
    } finally {
      await plain.close(1_000);
    }
  });

  it('answers 503 with Retry-After when Redis is unreachable at submit', async () => {
    const own = await startRedis();
    // workers: 0: this instance only accepts jobs.
    const accepting = await startGateway(
      gatewayConfig({ redis: own.url, workers: 0, input_dirs: [inDir], output_dirs: [outDir] }),
      silentLogger,
    );
    try {
      const at = `http://127.0.0.1:${accepting.httpPort}`;
      const body = { model: 'linear', input: 'one.jsonl', output: 'own-out.jsonl' };
      // Connected: the job is queued (no worker here runs it).
      const first = await waitForStatus(() => call('POST', '/v1/jobs', body, at), 202);
      expect((await call('GET', `/v1/jobs/${first.body.id}`, undefined, at)).body.state).toBe('queued');
      await own.stop();
      const refused = await waitForStatus(() => call<{ error: string }>('POST', '/v1/jobs', { ...body, output: 'own-2.jsonl' }, at), 503);
      expect(refused.headers.get('retry-after')).toMatch(/^[1-9][0-9]*$/);
      expect(refused.body.error).toContain('unavailable');
    } finally {
      await accepting.close(1_000);
      await own.stop();
    }
  });
});

/** Repeats `request` until it answers `status` (bounded): Redis connects, or its loss is noticed, a moment later. */
async function waitForStatus<T>(request: () => Promise<Reply<T>>, status: number, timeoutMs = 10_000): Promise<Reply<T>> {
  const until = Date.now() + timeoutMs;
  let last: Reply<T>;
  do {
    last = await request();
    if (last.status === status) return last;
    await sleep(100);
  } while (Date.now() < until);
  throw new Error(`expected ${status}, last answer ${last.status}: ${JSON.stringify(last.body)}`);
}
