import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import { Hono } from 'hono';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { armForKey, createExperimentsApp, effectiveWeights } from '../../src/api/http/experiments.js';
import type { HttpEnv } from '../../src/api/http/context.js';
import { ExperimentResults } from '../../src/experiments/results.js';
import type { ExperimentSettings } from '../../src/experiments/types.js';
import { silentLogger } from '../../src/observability/logger.js';
import { call, postJson } from '../helpers/http.js';

/** mulberry32: a seeded PRNG, so the simulated experiments are the same on every run. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const settings = (name: string, extra: Partial<ExperimentSettings> = {}): ExperimentSettings => ({
  name,
  model: `model-${name}`,
  key: { header: 'x-user' },
  salt: name,
  state: 'running',
  control: 'a',
  arms: [
    { name: 'a', weight: 50 },
    { name: 'b', weight: 50 },
  ],
  ...extra,
});

const experiments = new Map<string, ExperimentSettings>(
  [
    settings('real'),
    settings('none'),
    settings('means'),
    settings('keys', { arms: [{ name: 'a', weight: 30 }, { name: 'b', weight: 70 }] }),
    settings('guarded', { guard: { maxErrorRate: 0.1, minRequests: 10, windowMs: 5_000 } }),
  ].map((e) => [e.name, e]),
);
const results = new ExperimentResults({ requestIdCapacity: 20_000 });
let server: HttpServer;
let pool: Pool;

beforeAll(async () => {
  const root = new Hono<HttpEnv>();
  root.route('/v1/experiments', createExperimentsApp({ results, catalog: { get: (n) => experiments.get(n) }, maxBodyBytes: 1 << 20, logger: silentLogger }));
  server = createAdaptorServer({ fetch: root.fetch }) as HttpServer;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  pool = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, { connections: 4 });
});

afterAll(async () => {
  await pool.close();
  await new Promise((resolve) => server.close(resolve));
  await results.close();
});

interface Reply {
  arms: { name: string; requests: number; errors: number; effective_weight: number; cut_reason?: string; outcomes: Record<string, { count: number; mean: number; rate?: number; ci: [number, number] }>; latency_ms: { p50: number | null; p99: number | null }; error_rate_ci: [number, number] }[];
  comparisons: { arm: string; vs: string; outcome: string; test: string; statistic: number; p_value: number; significant: boolean }[];
  shadow?: Record<string, unknown>;
  counts: string;
}

async function get(name: string): Promise<Reply> {
  const res = await call(pool, 'GET', `/v1/experiments/${name}`);
  expect(res.status, res.body.toString()).toBe(200);
  return JSON.parse(res.body.toString()) as Reply;
}

/** Simulates n requests per arm answered by the gateway, then posts each one's outcome by request id in batches. */
async function simulate(name: string, perArm: number, value: Record<string, () => number>): Promise<void> {
  for (const arm of ['a', 'b']) {
    const batch: unknown[] = [];
    for (let i = 0; i < perArm; i++) {
      const id = `${name}-${arm}-${i}`;
      results.recordRequest(name, arm, { ok: true, latencyMs: 10, requestId: id });
      batch.push({ request_id: id, outcome: 'click', value: value[arm]!() });
      if (batch.length === 1_000) {
        const res = await postJson(pool, `/v1/experiments/${name}/outcomes`, { outcomes: batch.splice(0) });
        expect(res.status).toBe(202);
        expect(JSON.parse(res.body.toString())).toEqual({ accepted: 1_000, unknown_ids: [] });
      }
    }
  }
}

describe('GET /v1/experiments/{name}', () => {
  it('a seeded 10% vs 13% click rate over 5,000 requests each is reported significant', async () => {
    const ra = mulberry32(11);
    const rb = mulberry32(12);
    await simulate('real', 5_000, { a: () => (ra() < 0.1 ? 1 : 0), b: () => (rb() < 0.13 ? 1 : 0) });
    const reply = await get('real');
    expect(reply.counts).toBe('local');
    const [a, b] = reply.arms;
    expect(a!.requests).toBe(5_000);
    expect(a!.outcomes.click!.count).toBe(5_000);
    expect(a!.outcomes.click!.rate).toBeCloseTo(0.1, 1);
    expect(b!.outcomes.click!.rate).toBeCloseTo(0.13, 1);
    expect(b!.outcomes.click!.ci[0]).toBeLessThan(b!.outcomes.click!.rate!);
    const click = reply.comparisons.find((c) => c.outcome === 'click')!;
    expect(click).toMatchObject({ arm: 'b', vs: 'a', test: 'two-proportion z', significant: true });
    expect(click.p_value).toBeLessThan(0.05);
    expect(click.statistic).toBeGreaterThan(0);
    const errors = reply.comparisons.find((c) => c.outcome === '_error_rate')!;
    expect(errors.significant).toBe(false);
  });

  it('a seeded 10% vs 10% is not', async () => {
    const ra = mulberry32(21);
    const rb = mulberry32(22);
    await simulate('none', 5_000, { a: () => (ra() < 0.1 ? 1 : 0), b: () => (rb() < 0.1 ? 1 : 0) });
    const click = (await get('none')).comparisons.find((c) => c.outcome === 'click')!;
    expect(click.significant).toBe(false);
    expect(click.p_value).toBeGreaterThan(0.05);
  });

  it("continuous outcomes get Welch's t-test", async () => {
    const ra = mulberry32(31);
    const rb = mulberry32(32);
    // Exponential-ish spend: mean 10 vs 11.
    await simulate('means', 3_000, { a: () => -10 * Math.log(1 - ra()), b: () => -11 * Math.log(1 - rb()) });
    const reply = await get('means');
    expect(reply.arms[0]!.outcomes.click!.rate).toBeUndefined();
    expect(reply.arms[0]!.outcomes.click!.mean).toBeCloseTo(10, 0);
    const c = reply.comparisons.find((x) => x.outcome === 'click')!;
    expect(c.test).toBe('welch t');
    expect(c.significant).toBe(true);
  });

  it('shows latency, error interval, effective weights, cuts and shadow stats', async () => {
    for (let i = 0; i < 20; i++) results.recordRequest('guarded', 'b', { ok: i < 10, latencyMs: 100 });
    results.noteCut('guarded', 'b', 'error rate 50% > 10%');
    results.recordShadow('model-guarded', { agreed: true, primaryMs: 10, shadowMs: 30 });
    const reply = await get('guarded');
    const b = reply.arms[1]!;
    expect(b).toMatchObject({ name: 'b', requests: 20, errors: 10, effective_weight: 0, cut_reason: 'error rate 50% > 10%' });
    expect(reply.arms[0]!.effective_weight).toBe(100);
    expect(b.error_rate_ci[0]).toBeLessThan(0.5);
    expect(b.error_rate_ci[1]).toBeGreaterThan(0.5);
    expect(Math.abs(b.latency_ms.p99! - 100)).toBeLessThan(5);
    expect(reply.arms[0]!.latency_ms.p50).toBeNull();
    expect(reply.shadow).toMatchObject({ compared: 1, agreed: 1, agreement_rate: 1, primary_ms_mean: 10, shadow_ms_mean: 30 });
  });

  it('404 for an unknown experiment', async () => {
    const res = await call(pool, 'GET', '/v1/experiments/nope');
    expect(res.status).toBe(404);
    expect(JSON.parse(res.body.toString()).error).toMatch(/unknown experiment 'nope'/);
    expect((await postJson(pool, '/v1/experiments/nope/outcomes', { key: 'k', outcome: 'x' })).status).toBe(404);
  });
});

describe('POST /v1/experiments/{name}/outcomes', () => {
  it('by key: the arm is the sticky hash of the key; booleans count as 0/1; unknown ids are listed', async () => {
    const exp = experiments.get('keys')!;
    const keys = Array.from({ length: 200 }, (_, i) => `user-${i}`);
    const res = await postJson(pool, '/v1/experiments/keys/outcomes', {
      outcomes: [...keys.map((key) => ({ key, outcome: 'converted', value: true })), { request_id: 'never-seen', outcome: 'converted' }],
    });
    expect(res.status).toBe(202);
    expect(JSON.parse(res.body.toString())).toEqual({ accepted: 200, unknown_ids: ['never-seen'] });
    const expectedB = keys.filter((k) => armForKey(exp, k, () => false) === 'b').length;
    expect(expectedB).toBeGreaterThan(100);
    const reply = await get('keys');
    expect(reply.arms[1]!.outcomes.converted).toMatchObject({ count: expectedB, rate: 1 });
    expect(reply.arms[0]!.outcomes.converted!.count).toBe(200 - expectedB);
    // A single outcome (no batch), value defaulting to 1.
    expect((await postJson(pool, '/v1/experiments/keys/outcomes', { key: 'user-0', outcome: 'other' })).status).toBe(202);
  });

  it('400 with a clear message for a bad body', async () => {
    const bad: [unknown, RegExp][] = [
      [{ outcome: 'x' }, /exactly one of 'request_id' and 'key'/],
      [{ key: 'k', request_id: 'r', outcome: 'x' }, /exactly one of/],
      [{ key: 'k', outcome: 'bad name!' }, /'outcome' must be a name/],
      [{ key: 'k', outcome: 'x', value: 'high' }, /'value' must be a finite number or a boolean/],
      [{ outcomes: {} }, /'outcomes' must be an array/],
      [{ outcomes: [{ key: 'k', outcome: 'x' }, 5] }, /outcomes\[1\] must be an object/],
      [[1, 2], /must be a JSON object/],
    ];
    for (const [body, message] of bad) {
      const res = await postJson(pool, '/v1/experiments/keys/outcomes', body);
      expect(res.status).toBe(400);
      expect(JSON.parse(res.body.toString()).error).toMatch(message);
    }
    const res = await call(pool, 'POST', '/v1/experiments/keys/outcomes', '{"key":', { 'content-type': 'application/json' });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body.toString()).error).toMatch(/malformed JSON/);
    expect((await call(pool, 'DELETE', '/v1/experiments/keys')).status).toBe(405);
  });
});

describe('helpers', () => {
  it('effective weights give cut arms and non-running experiments to the control', () => {
    const e = settings('w', { arms: [{ name: 'a', weight: 50 }, { name: 'b', weight: 30 }, { name: 'c', weight: 20 }] });
    expect([...effectiveWeights(e, (arm) => arm === 'c')]).toEqual([['a', 70], ['b', 30], ['c', 0]]);
    expect([...effectiveWeights({ ...e, state: 'paused' }, () => false)]).toEqual([['a', 100], ['b', 0], ['c', 0]]);
    expect(armForKey({ ...e, state: 'ended' }, 'k', () => false)).toBe('a');
  });
});
