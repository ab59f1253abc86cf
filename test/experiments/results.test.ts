import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExperimentResults } from '../../src/experiments/results.js';
import { bucketBounds, histogramQuantile, latencyBucket, LATENCY_BUCKETS } from '../../src/experiments/results-histogram.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('latency histogram', () => {
  it('buckets are contiguous, log-spaced and ~9% wide', () => {
    for (let i = 1; i < LATENCY_BUCKETS - 1; i++) {
      const [lo, hi] = bucketBounds(i);
      expect(hi / lo).toBeCloseTo(2 ** (1 / 8), 9);
      expect(bucketBounds(i + 1)[0]).toBeCloseTo(hi, 9);
      expect(latencyBucket(Math.sqrt(lo * hi))).toBe(i);
    }
    expect(latencyBucket(0)).toBe(0);
    expect(latencyBucket(-5)).toBe(0);
    expect(latencyBucket(1e9)).toBe(LATENCY_BUCKETS - 1);
  });

  it('percentiles land within the bucket precision', () => {
    const counts = new Float64Array(LATENCY_BUCKETS);
    // 1..1000 ms, one each: p50 = 500, p90 = 900, p99 = 990.
    for (let ms = 1; ms <= 1_000; ms++) counts[latencyBucket(ms)]! += 1;
    for (const [q, truth] of [
      [0.5, 500],
      [0.9, 900],
      [0.99, 990],
    ] as const) {
      const est = histogramQuantile(counts, q)!;
      expect(Math.abs(est - truth) / truth).toBeLessThan(0.05);
    }
    expect(histogramQuantile(new Float64Array(LATENCY_BUCKETS), 0.5)).toBeUndefined();
  });
});

describe('ExperimentResults (local)', () => {
  it('counts requests, errors, cache hits, latency and outcomes per arm', async () => {
    const r = new ExperimentResults();
    for (let i = 0; i < 100; i++) r.recordRequest('exp', 'a', { ok: i % 10 !== 0, latencyMs: 10 + i, cacheHit: i % 4 === 0 });
    r.recordRequest('exp', 'b', { ok: true, latencyMs: 5 });
    r.recordOutcome('exp', 'a', 'click', 1);
    r.recordOutcome('exp', 'a', 'click', 0);
    r.recordOutcome('exp', 'a', 'revenue', 2.5);
    const { source, arms } = await r.snapshot('exp', ['a', 'b', 'c']);
    expect(source).toBe('local');
    const a = arms.get('a')!;
    expect([a.requests, a.errors, a.cacheHits]).toEqual([100, 10, 25]);
    expect(a.outcomes.get('click')).toEqual({ count: 2, sum: 1, sumSquares: 1 });
    expect(a.outcomes.get('revenue')).toEqual({ count: 1, sum: 2.5, sumSquares: 6.25 });
    const p50 = histogramQuantile(a.latency, 0.5)!;
    expect(Math.abs(p50 - 59.5) / 59.5).toBeLessThan(0.05);
    expect(arms.get('b')!.requests).toBe(1);
    expect(arms.get('c')!.requests).toBe(0);
  });

  it('the guard window slides by the second', () => {
    const c = clock();
    const r = new ExperimentResults({ now: c.now });
    r.setWindow('exp', 10_000);
    for (let i = 0; i < 50; i++) r.recordRequest('exp', 'a', { ok: false, latencyMs: 100 });
    c.advance(5_000);
    for (let i = 0; i < 50; i++) r.recordRequest('exp', 'a', { ok: true, latencyMs: 10 });
    let w = r.windowStats('exp', 'a');
    expect([w.requests, w.errors, w.errorRate]).toEqual([100, 50, 0.5]);
    expect(Math.abs(w.p99Ms! - 100) / 100).toBeLessThan(0.05);
    // The failing second leaves the 10 s window; the good one stays.
    c.advance(5_500);
    w = r.windowStats('exp', 'a');
    expect([w.requests, w.errors]).toEqual([50, 0]);
    expect(r.windowStats('exp', 'a', 1_000).requests).toBe(0);
    c.advance(10_000);
    expect(r.windowStats('exp', 'a').requests).toBe(0);
    expect(r.windowStats('exp', 'nope').p99Ms).toBeUndefined();
    // Slots are reused after a full turn of the ring.
    r.recordRequest('exp', 'a', { ok: false, latencyMs: 1 });
    expect(r.windowStats('exp', 'a')).toMatchObject({ requests: 1, errors: 1 });
    r.resetWindow('exp', 'a');
    expect(r.windowStats('exp', 'a').requests).toBe(0);
  });

  it('remembers at most `requestIdCapacity` request ids, the oldest evicted', () => {
    const r = new ExperimentResults({ requestIdCapacity: 1_000 });
    for (let i = 0; i < 5_000; i++) r.recordRequest('exp', i % 2 === 0 ? 'a' : 'b', { ok: true, latencyMs: 1, requestId: `req-${i}` });
    expect(r.rememberedRequests).toBe(1_000);
    expect(r.lookupRequest('req-0')).toBeUndefined();
    expect(r.lookupRequest('req-3999')).toBeUndefined();
    expect(r.lookupRequest('req-4000')).toEqual({ experiment: 'exp', arm: 'a' });
    expect(r.lookupRequest('req-4999')).toEqual({ experiment: 'exp', arm: 'b' });
  });

  it('caps distinct outcome names per arm', () => {
    const r = new ExperimentResults();
    for (let i = 0; i < 64; i++) expect(r.recordOutcome('exp', 'a', `o${i}`, 1)).toBe(true);
    expect(r.recordOutcome('exp', 'a', 'one-more', 1)).toBe(false);
    expect(r.recordOutcome('exp', 'a', 'o1', 1)).toBe(true);
  });

  it('counts shadow comparisons per model', async () => {
    const r = new ExperimentResults();
    r.recordShadow('m', { agreed: true, primaryMs: 10, shadowMs: 20 });
    r.recordShadow('m', { agreed: false, primaryMs: 10, shadowMs: 40 });
    r.recordShadow('m', { agreed: false, primaryMs: 10, shadowMs: 0, dropped: true });
    r.recordShadow('m', { agreed: false, primaryMs: 10, shadowMs: 5, failed: true });
    expect(await r.shadowSnapshot('m')).toEqual({ compared: 2, agreed: 1, dropped: 1, failed: 1, primaryMsSum: 20, shadowMsSum: 60 });
    expect(await r.shadowSnapshot('other')).toBeUndefined();
  });
});

describe('ExperimentResults shared through Redis', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  }, 20_000);
  afterAll(async () => {
    await redis.stop();
  });

  it('two instances see merged counts; a killed Redis leaves local counting working, and deltas catch up', async () => {
    const opts = { redis: { url: redis.url, keyPrefix: 'test1', commandTimeoutMs: 300 }, flushMs: 100 };
    const one = new ExperimentResults(opts);
    const two = new ExperimentResults(opts);
    one.start();
    two.start();
    try {
      await until(() => one.shared && two.shared);
      for (let i = 0; i < 30; i++) one.recordRequest('exp', 'a', { ok: i % 3 !== 0, latencyMs: 20, cacheHit: true });
      for (let i = 0; i < 20; i++) two.recordRequest('exp', 'a', { ok: true, latencyMs: 20 });
      two.recordRequest('exp', 'b', { ok: false, latencyMs: 500 });
      one.recordOutcome('exp', 'a', 'click', 1);
      two.recordOutcome('exp', 'a', 'click', 0);
      two.recordOutcome('exp', 'a', 'spend', 1.25);
      one.recordShadow('m', { agreed: true, primaryMs: 3, shadowMs: 4 });
      two.recordShadow('m', { agreed: false, primaryMs: 5, shadowMs: 6 });

      // Each flushes its own deltas before reading; the other's arrive within its flush period.
      expect(await one.flush()).toBe(true);
      expect(await two.flush()).toBe(true);
      for (const r of [one, two]) {
        const { source, arms } = await r.snapshot('exp', ['a', 'b']);
        expect(source).toBe('shared');
        const a = arms.get('a')!;
        expect([a.requests, a.errors, a.cacheHits]).toEqual([50, 10, 30]);
        expect(a.latency[latencyBucket(20)]).toBe(50);
        expect(a.outcomes.get('click')).toEqual({ count: 2, sum: 1, sumSquares: 1 });
        expect(a.outcomes.get('spend')).toEqual({ count: 1, sum: 1.25, sumSquares: 1.5625 });
        expect(arms.get('b')).toMatchObject({ requests: 1, errors: 1 });
        expect(await r.shadowSnapshot('m')).toEqual({ compared: 2, agreed: 1, dropped: 0, failed: 0, primaryMsSum: 8, shadowMsSum: 10 });
      }

      await redis.kill();
      await until(() => !one.shared && !two.shared);
      for (let i = 0; i < 5; i++) one.recordRequest('exp', 'a', { ok: false, latencyMs: 1 });
      // Down: each answers with its own counts, still counting.
      const local = await one.snapshot('exp', ['a']);
      expect(local.source).toBe('local');
      expect(local.arms.get('a')).toMatchObject({ requests: 35, errors: 15 });
      expect(one.windowStats('exp', 'a').requests).toBe(35);

      // Back (empty: no persistence): the deltas held during the outage are sent.
      await redis.restart();
      await until(() => one.shared);
      await until(async () => (await two.snapshot('exp', ['a'])).arms.get('a')!.requests === 5);
      expect((await one.snapshot('exp', ['a'])).arms.get('a')).toMatchObject({ requests: 5, errors: 5 });
    } finally {
      await one.close();
      await two.close();
    }
  }, 30_000);
});
