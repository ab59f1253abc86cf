// The reference Triton's serial mode (maxConcurrency): inference calls take turns, so the cost is per call.
import { request } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { spawnTritonReference, type ChildServer } from '../helpers/processes.js';

async function infer(endpoint: string, rows: number): Promise<{ status: number; shape: number[] }> {
  const data = Array.from({ length: rows * 4 }, (_, i) => i);
  const res = await request(`http://${endpoint}/v2/models/linear/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [rows, 4], data }] }),
  });
  const body = (await res.body.json()) as { outputs?: { name: string; shape: number[] }[] };
  return { status: res.statusCode, shape: body.outputs?.find((o) => o.name === 'SCORES')?.shape ?? [] };
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

const concurrent = (endpoint: string, n: number, rows = 1) => () => Promise.all(Array.from({ length: n }, () => infer(endpoint, rows)));

describe('reference Triton maxConcurrency', () => {
  const servers: TritonReference[] = [];
  const children: ChildServer[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()));
    await Promise.all(children.map((c) => c.kill()));
  });
  const start = async (latencyMs: number, maxConcurrency?: number): Promise<TritonReference> => {
    const s = await startTritonReference({ latencyMs, ...(maxConcurrency !== undefined ? { maxConcurrency } : {}) });
    servers.push(s);
    await infer(s.httpEndpoint, 1); // warm up the connection pool and the JIT
    return s;
  };

  it('maxConcurrency 1 runs 20 concurrent calls one after another', async () => {
    const s = await start(20, 1);
    const before = s.stats.inferCalls;
    const ms = await timed(concurrent(s.httpEndpoint, 20));
    expect(ms).toBeGreaterThanOrEqual(390);
    expect(s.stats.inferCalls - before).toBe(20);
  });

  it('a batch of 32 rows in one call is one slot', async () => {
    const s = await start(20, 1);
    const before = s.stats.inferCalls;
    let result: { status: number; shape: number[] } | undefined;
    const ms = await timed(async () => {
      result = await infer(s.httpEndpoint, 32);
    });
    expect(result).toEqual({ status: 200, shape: [32, 3] });
    expect(ms).toBeGreaterThanOrEqual(19);
    expect(s.stats.inferCalls - before).toBe(1);
  });

  it('maxConcurrency 2 runs two at a time: 20 calls of 20 ms take at least 10 slots of time', async () => {
    // Only lower bounds: they follow from the slots; how much faster an idle machine is belongs in a benchmark.
    const two = await start(20, 2);
    const twoMs = await timed(concurrent(two.httpEndpoint, 20));
    expect(twoMs).toBeGreaterThanOrEqual(190);
  });

  it('a failing call frees its slot', async () => {
    const s = await start(5, 1);
    s.setFault({ kind: 'error', status: 'UNAVAILABLE' });
    const statuses = (await concurrent(s.httpEndpoint, 3)()).map((r) => r.status);
    expect(statuses).toEqual([503, 503, 503]);
    s.setFault(undefined);
    expect((await infer(s.httpEndpoint, 2)).status).toBe(200);
  });

  it('rejects a maxConcurrency below 1', async () => {
    await expect(startTritonReference({ maxConcurrency: 0 })).rejects.toThrow(RangeError);
  });

  it('the CLI takes --max-concurrency', async () => {
    const child = await spawnTritonReference({ latencyMs: 20, extraArgs: ['--max-concurrency', '1'] });
    children.push(child);
    await infer(child.http, 1);
    expect(await timed(concurrent(child.http, 10))).toBeGreaterThanOrEqual(190);
  });
});
