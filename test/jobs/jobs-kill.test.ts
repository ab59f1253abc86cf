// The acceptance test for the jobs API: a 10,000-row job submitted to two gateway processes sharing one
// Redis; the process running it is SIGKILLed in the middle, the other takes it over (BullMQ stalled-job
// detection) and resumes from the files, and the output ends with every input row exactly once.
import { mkdir, mkdtemp, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeRecordsFile } from '../../src/jobs/formats/index.js';
import type { JobView } from '../../src/jobs/job-queue.js';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { spawnGateway, type ChildServer } from '../helpers/processes.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';

const ROWS = 10_000;

let redis: RedisServer;
let triton: TritonReference;
let root: string;
const gateways: ChildServer[] = [];

beforeAll(async () => {
  root = await realpath(await mkdtemp(join(tmpdir(), 'infergate-jobs-kill-')));
  await mkdir(join(root, 'in'));
  await mkdir(join(root, 'out'));
  redis = await startRedis();
  // Latency per call, one call in flight: the job takes long enough (~10 s) to be killed in the middle.
  triton = await startTritonReference({ host: '127.0.0.1', latencyMs: 20 });
});

afterAll(async () => {
  await Promise.all(gateways.map((g) => g.kill('SIGTERM')));
  await triton?.close();
  await redis?.stop();
  if (root !== undefined) await rm(root, { recursive: true, force: true });
});

async function getJob(gateway: ChildServer, id: string): Promise<JobView> {
  const res = await fetch(`http://${gateway.http}/v1/jobs/${id}`);
  const body = (await res.json()) as JobView;
  expect(res.status, JSON.stringify(body)).toBe(200);
  return body;
}

/** The pid in an instance id (host-pid-random). */
function pidOf(instanceId: string | undefined): number | undefined {
  const m = /-(\d+)-[0-9a-f]{6}$/.exec(instanceId ?? '');
  return m === null ? undefined : Number(m[1]);
}

describe('a batch job whose gateway process is SIGKILLed', () => {
  it('is finished by the other instance with every row exactly once', async () => {
    await writeRecordsFile(join(root, 'in', 'rows.jsonl'), 'jsonl', Array.from({ length: ROWS }, (_, i) => ({ id: i, INPUT0: [i % 13, 1, 2, 3] })));
    const config = join(root, 'gateway.yaml');
    await writeFile(
      config,
      [
        'server: { http: { host: 127.0.0.1, port: 0 }, grpc: { host: 127.0.0.1, port: 0 }, log_level: info, request_timeout_ms: 10000 }',
        'auth: { enabled: false }',
        'backends:',
        `  triton: { kind: triton, protocol: grpc, endpoints: ["${triton.grpcEndpoint}"] }`,
        'models:',
        '  linear: { backend: triton }',
        'jobs:',
        `  redis: ${redis.url}`,
        '  workers: 1',
        `  input_dirs: ["${join(root, 'in')}"]`,
        `  output_dirs: ["${join(root, 'out')}"]`,
        '  lock_ms: 2000',
        '  stalled_interval_ms: 1000',
        '',
      ].join('\n'),
    );
    gateways.push(...(await Promise.all([spawnGateway(config), spawnGateway(config)])));
    const [a, b] = gateways as [ChildServer, ChildServer];

    const res = await fetch(`http://${a.http}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'linear', input: 'rows.jsonl', output: 'rows-out.jsonl', batch_size: 20, concurrency: 1 }),
    });
    const submitted = (await res.json()) as JobView;
    expect(res.status, JSON.stringify(submitted)).toBe(202);
    const id = submitted.id;

    // Find the process running it, and kill it once the job is well under way.
    let view: JobView;
    let victim: ChildServer | undefined;
    const killBy = Date.now() + 60_000;
    for (;;) {
      view = await getJob(a, id);
      const pid = pidOf(view.worker);
      if (view.state === 'running' && pid !== undefined && view.progress.done >= ROWS * 0.2) {
        victim = gateways.find((g) => g.pid === pid);
        expect(victim, `worker ${view.worker} is neither gateway (pids ${a.pid}, ${b.pid})`).toBeDefined();
        expect(view.progress.done).toBeLessThan(ROWS * 0.8);
        break;
      }
      expect(view.state, JSON.stringify(view)).not.toMatch(/completed|failed|cancelled/);
      if (Date.now() > killBy) throw new Error(`the job never got under way: ${JSON.stringify(view)}`);
      await sleep(50);
    }
    const doneAtKill = view.progress.done;
    const exit = await victim!.kill('SIGKILL');
    expect(exit.signal).toBe('SIGKILL');
    const survivor = victim === a ? b : a;

    // The survivor's stalled-job check takes it over (after about lock_ms + stalled_interval_ms) and resumes it.
    const finishBy = Date.now() + 90_000;
    for (;;) {
      view = await getJob(survivor, id);
      if (view.state === 'completed' || view.state === 'failed' || view.state === 'cancelled') break;
      if (Date.now() > finishBy) throw new Error(`the job was not finished by the survivor: ${JSON.stringify(view)}\n${survivor.output()}`);
      await sleep(200);
    }
    expect(view.state, JSON.stringify(view)).toBe('completed');
    expect(pidOf(view.worker)).toBe(survivor.pid);
    expect(view.attempts).toBeGreaterThanOrEqual(2);
    expect(view.progress.resumed).toBeGreaterThan(0);
    expect(view.progress.resumed).toBeGreaterThanOrEqual(doneAtKill);
    expect(view.progress).toMatchObject({ total: ROWS, done: ROWS, succeeded: ROWS, failed: 0 });

    const lines = (await readFile(view.output, 'utf8')).split('\n');
    expect(lines.pop()).toBe('');
    const rows = lines.map((l) => JSON.parse(l) as { row: number; id: number; SCORES: number[]; CLASS: number });
    expect(rows).toHaveLength(ROWS);
    const seen = new Set(rows.map((r) => r.row));
    expect(seen.size).toBe(ROWS);
    for (let i = 0; i < ROWS; i++) expect(seen.has(i)).toBe(true);
    for (const r of rows) {
      expect(r.id).toBe(r.row);
      expect(r.SCORES).toHaveLength(3);
    }
    const errors = await readFile(view.errors, 'utf8').catch(() => '');
    expect(errors).toBe('');
  }, 180_000);
});
