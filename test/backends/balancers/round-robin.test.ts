import { describe, expect, it } from 'vitest';
import { RoundRobinBalancer } from '../../../src/backends/balancers/round-robin.js';
import { all, tally } from './random.js';

describe('round_robin (smooth weighted)', () => {
  it('weights 3:1 give exactly 3:1 in every 4 picks, interleaved', () => {
    const lb = new RoundRobinBalancer([3, 1]);
    const picks = Array.from({ length: 400 }, () => lb.pick(undefined, all));
    expect(picks.slice(0, 4)).toEqual([0, 0, 1, 0]); // smooth: not 0 0 0 1
    for (let start = 0; start < picks.length; start += 4) {
      const window = picks.slice(start, start + 4);
      expect(window.filter((p) => p === 0)).toHaveLength(3);
      expect(window.filter((p) => p === 1)).toHaveLength(1);
    }
  });

  it('equal weights are plain round robin', () => {
    const lb = new RoundRobinBalancer([1, 1, 1]);
    expect(Array.from({ length: 6 }, () => lb.pick(undefined, all))).toEqual([0, 1, 2, 0, 1, 2]);
  });

  it('skips ineligible endpoints and keeps the proportions of the eligible ones', () => {
    const lb = new RoundRobinBalancer([3, 1, 2]);
    const eligible = (i: number) => i !== 1;
    for (let cycle = 0; cycle < 50; cycle++) {
      // Eligible weights sum to 5: each 5 picks hold exactly 3 of endpoint 0 and 2 of endpoint 2.
      expect(tally(3, 5, () => lb.pick(undefined, eligible))).toEqual([3, 0, 2]);
    }
  });

  it('an endpoint that comes back rejoins at its weight', () => {
    const lb = new RoundRobinBalancer([3, 1, 2]);
    tally(3, 7, () => lb.pick(undefined, (i) => i !== 1));
    const counts = tally(3, 600, () => lb.pick(undefined, all));
    counts.forEach((c, i) => expect(Math.abs(c - [300, 100, 200][i]!)).toBeLessThanOrEqual(2));
  });

  it('none eligible gives undefined', () => {
    expect(new RoundRobinBalancer([1, 2]).pick(undefined, () => false)).toBeUndefined();
  });
});
