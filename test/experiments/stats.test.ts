import { describe, expect, it } from 'vitest';
import {
  meanAndVariance,
  meanInterval,
  normalCdf,
  regularizedIncompleteBeta,
  studentTCritical,
  studentTTwoSided,
  twoProportionZTest,
  welchTTest,
  wilsonInterval,
} from '../../src/experiments/stats.js';

/** A small seeded PRNG (mulberry32): the simulations below are the same on every run. */
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

/** Box–Muller normal from a uniform source. */
function gaussian(random: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
}

function moments(values: number[]) {
  const sum = values.reduce((s, v) => s + v, 0);
  const sumSq = values.reduce((s, v) => s + v * v, 0);
  return { n: values.length, ...meanAndVariance(values.length, sum, sumSq), sum, sumSq };
}

// Reference values from SciPy 1.17 (scipy.stats / scipy.special).
describe('distributions', () => {
  it('normal CDF', () => {
    expect(normalCdf(1.959963984540054)).toBeCloseTo(0.975, 6);
    expect(normalCdf(0)).toBeCloseTo(0.5, 7);
    expect(normalCdf(-1)).toBeCloseTo(0.158655254, 6);
  });

  it('regularized incomplete beta', () => {
    expect(regularizedIncompleteBeta(0.3, 2.5, 0.5)).toBeCloseTo(0.018927124071945658, 10);
    expect(regularizedIncompleteBeta(0.4, 10, 20)).toBeCloseTo(0.7853183897628262, 10);
    expect(regularizedIncompleteBeta(0, 2, 3)).toBe(0);
    expect(regularizedIncompleteBeta(1, 2, 3)).toBe(1);
  });

  it('Student t two-sided p and critical values, fractional df included', () => {
    expect(studentTTwoSided(2.228138852, 10)).toBeCloseTo(0.05, 8);
    expect(studentTTwoSided(1.5, 3.7)).toBeCloseTo(0.2135981692020135, 9);
    expect(studentTTwoSided(0.3, 250.5)).toBeCloseTo(0.7644259516929994, 9);
    expect(studentTTwoSided(-1.5, 3.7)).toBeCloseTo(0.2135981692020135, 9);
    expect(studentTCritical(9)).toBeCloseTo(2.262157162798205, 8);
    expect(studentTCritical(2.5)).toBeCloseTo(3.5746548420036817, 8);
  });
});

describe('intervals', () => {
  it('Wilson interval', () => {
    const [lo, hi] = wilsonInterval(81, 263);
    expect(lo).toBeCloseTo(0.2552885198782742, 9);
    expect(hi).toBeCloseTo(0.36620957698280004, 9);
    // 0 of 10: the upper bound is z²/(n+z²).
    expect(wilsonInterval(0, 10)[0]).toBe(0);
    expect(wilsonInterval(0, 10)[1]).toBeCloseTo(3.841458820694124 / 13.841458820694124, 9);
    expect(wilsonInterval(0, 0)).toEqual([0, 1]);
  });

  it('mean interval (t, n - 1 df)', () => {
    const a = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4];
    const m = moments(a);
    const ci = meanInterval(m.n, m.sum, m.sumSq)!;
    expect(ci[0]).toBeCloseTo(19.26670165245124, 8);
    expect(ci[1]).toBeCloseTo(22.373298347548754, 8);
    expect(meanInterval(1, 5, 25)).toBeUndefined();
  });
});

describe('tests', () => {
  it('two-proportion z-test (pooled)', () => {
    const r = twoProportionZTest(45, 100, 56, 100);
    expect(r.statistic).toBeCloseTo(1.555712706190452, 9);
    expect(r.pValue).toBeCloseTo(0.11977642377972297, 6);
    expect(twoProportionZTest(0, 10, 0, 10)).toEqual({ statistic: 0, pValue: 1 });
    expect(twoProportionZTest(0, 0, 1, 10).pValue).toBe(1);
  });

  it("Welch's t-test (Wikipedia's first example)", () => {
    const a = moments([27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]);
    const b = moments([27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]);
    const r = welchTTest(a, b)!;
    expect(r.statistic).toBeCloseTo(2.455356398286006, 9);
    expect(r.df).toBeCloseTo(24.988529290231416, 8);
    expect(r.pValue).toBeCloseTo(0.021378001462866992, 9);
    expect(welchTTest({ n: 1, mean: 1, variance: 0 }, b)).toBeUndefined();
    expect(welchTTest({ n: 5, mean: 1, variance: 0 }, { n: 5, mean: 1, variance: 0 })!.pValue).toBe(1);
  });
});

describe('seeded simulations', () => {
  const simulateRate = (seed: number, rate: number, n: number): number => {
    const random = mulberry32(seed);
    let hits = 0;
    for (let i = 0; i < n; i++) if (random() < rate) hits++;
    return hits;
  };

  it('10% vs 13% over 5,000 each is significant', () => {
    const a = simulateRate(1, 0.1, 5_000);
    const b = simulateRate(2, 0.13, 5_000);
    const r = twoProportionZTest(a, 5_000, b, 5_000);
    expect(r.statistic).toBeGreaterThan(0);
    expect(r.pValue).toBeLessThan(0.05);
  });

  it('10% vs 10% over 5,000 each is not', () => {
    const a = simulateRate(3, 0.1, 5_000);
    const b = simulateRate(4, 0.1, 5_000);
    expect(twoProportionZTest(a, 5_000, b, 5_000).pValue).toBeGreaterThan(0.05);
  });

  it('false positives stay near 5% over many seeded null experiments', () => {
    let significant = 0;
    for (let s = 0; s < 400; s++) {
      const a = simulateRate(1_000 + 2 * s, 0.1, 2_000);
      const b = simulateRate(1_001 + 2 * s, 0.1, 2_000);
      if (twoProportionZTest(a, 2_000, b, 2_000).pValue < 0.05) significant++;
    }
    expect(significant / 400).toBeGreaterThan(0.01);
    expect(significant / 400).toBeLessThan(0.1);
  });

  const simulateMeans = (seed: number, mean: number, sd: number, n: number) => {
    const normal = gaussian(mulberry32(seed));
    return moments(Array.from({ length: n }, () => mean + sd * normal()));
  };

  it('Welch: means 100 vs 103 (sd 30 vs 40, 2,000 each) is significant; 100 vs 100 is not', () => {
    const real = welchTTest(simulateMeans(5, 100, 30, 2_000), simulateMeans(6, 103, 40, 2_000))!;
    expect(real.pValue).toBeLessThan(0.05);
    const none = welchTTest(simulateMeans(7, 100, 30, 2_000), simulateMeans(8, 100, 40, 2_000))!;
    expect(none.pValue).toBeGreaterThan(0.05);
  });
});
