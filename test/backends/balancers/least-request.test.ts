import { describe, expect, it } from 'vitest';
import { LeastRequestBalancer } from '../../../src/backends/balancers/least-request.js';
import { all, seeded, tally } from './random.js';

describe('least_request (power of two choices)', () => {
  it('with two endpoints, always the one with fewer outstanding requests', () => {
    const outstanding = Int32Array.from([4, 1]);
    const lb = new LeastRequestBalancer(outstanding, seeded(1));
    expect(tally(2, 1000, () => lb.pick(undefined, all))).toEqual([0, 1000]);
    outstanding[1] = 7;
    expect(tally(2, 1000, () => lb.pick(undefined, all))).toEqual([1000, 0]);
  });

  it('the least loaded wins every draw it is in; the most loaded never wins', () => {
    // Endpoint 1 is in 3 of the 6 possible pairs, so it takes half the picks; endpoint 3 loses every pair.
    const lb = new LeastRequestBalancer(Int32Array.from([2, 0, 2, 9]), seeded(2));
    const counts = tally(4, 10_000, () => lb.pick(undefined, all));
    expect(counts[3]).toBe(0);
    expect(counts[1]! / 10_000).toBeGreaterThan(0.47);
    expect(counts[1]! / 10_000).toBeLessThan(0.53);
    // Ties between 0 and 2 are broken at random: they share the rest evenly.
    expect(Math.abs(counts[0]! - counts[2]!)).toBeLessThan(300);
  });

  it('spreads evenly when outstanding counts are equal (10,000 picks within 5% of even)', () => {
    const lb = new LeastRequestBalancer(new Int32Array(4), seeded(3));
    for (const c of tally(4, 10_000, () => lb.pick(undefined, all))) {
      expect(c).toBeGreaterThan(2500 * 0.95);
      expect(c).toBeLessThan(2500 * 1.05);
    }
  });

  it('also with Math.random (the production source)', () => {
    const lb = new LeastRequestBalancer(new Int32Array(3));
    for (const c of tally(3, 10_000, () => lb.pick(undefined, all))) {
      expect(Math.abs(c - 10_000 / 3)).toBeLessThan(10_000 * 0.05);
    }
  });

  it('skips ineligible endpoints, staying even over the eligible ones', () => {
    const lb = new LeastRequestBalancer(new Int32Array(5), seeded(4));
    const eligible = (i: number) => i !== 1 && i !== 3;
    const counts = tally(5, 9_000, () => lb.pick(undefined, eligible));
    expect(counts[1]).toBe(0);
    expect(counts[3]).toBe(0);
    for (const i of [0, 2, 4]) expect(Math.abs(counts[i]! - 3000)).toBeLessThan(150);
  });

  it('among eligible endpoints still prefers fewer outstanding', () => {
    // 0 is least loaded but ineligible; of the eligible, 2 has the fewest.
    const lb = new LeastRequestBalancer(Int32Array.from([0, 5, 1, 5]), seeded(5));
    const counts = tally(4, 3_000, () => lb.pick(undefined, (i) => i !== 0));
    expect(counts[0]).toBe(0);
    expect(counts[2]! / 3_000).toBeGreaterThan(0.6); // in 2 of 3 pairs
  });

  it('one eligible endpoint gets every pick; none gives undefined', () => {
    const lb = new LeastRequestBalancer(Int32Array.from([9, 0, 0]), seeded(6));
    expect(tally(3, 100, () => lb.pick(undefined, (i) => i === 0))).toEqual([100, 0, 0]);
    expect(lb.pick(undefined, () => false)).toBeUndefined();
    const single = new LeastRequestBalancer(new Int32Array(1));
    expect(single.pick(undefined, all)).toBe(0);
    expect(single.pick(undefined, () => false)).toBeUndefined();
    expect(new LeastRequestBalancer(new Int32Array(0)).pick(undefined, all)).toBeUndefined();
  });
});
