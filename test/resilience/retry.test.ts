import { describe, expect, it } from 'vitest';
import { backoffMs, RetryBudget } from '../../src/resilience/retry.js';
import { DEFAULT_RETRY, type RetrySettings } from '../../src/resilience/settings.js';

function settings(overrides: Partial<RetrySettings> = {}): RetrySettings {
  return { ...DEFAULT_RETRY, budgetPercent: 20, budgetWindowMs: 10_000, minRetriesPerSecond: 0, ...overrides };
}

/** A clock the test moves by hand. */
function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

function takeAll(budget: RetryBudget): number {
  let granted = 0;
  while (budget.tryRetry()) granted++;
  return granted;
}

describe('backoffMs', () => {
  const s = settings({ backoffBaseMs: 10, backoffMaxMs: 200 });

  it('doubles the ceiling per retry and caps it at backoffMaxMs', () => {
    const ceiling = (retry: number) => backoffMs(retry, s, () => 1);
    expect([1, 2, 3, 4, 5, 6, 7].map(ceiling)).toEqual([10, 20, 40, 80, 160, 200, 200]);
    expect(ceiling(10_000)).toBe(200);
  });

  it('scales the ceiling by the random draw (full jitter)', () => {
    expect(backoffMs(3, s, () => 0)).toBe(0);
    expect(backoffMs(3, s, () => 0.5)).toBe(20);
  });

  it('stays within [0, cap) with the default random', () => {
    for (let retry = 1; retry <= 8; retry++) {
      const cap = Math.min(200, 10 * 2 ** (retry - 1));
      let low = Infinity;
      let high = -Infinity;
      for (let i = 0; i < 1_000; i++) {
        const ms = backoffMs(retry, s);
        low = Math.min(low, ms);
        high = Math.max(high, ms);
      }
      expect(low).toBeGreaterThanOrEqual(0);
      expect(high).toBeLessThan(cap);
    }
  });
});

describe('RetryBudget', () => {
  it('allows budgetPercent of the calls in the window, then denies', () => {
    const c = clock();
    const budget = new RetryBudget(settings({ minRetriesPerSecond: 1 }), c.now);
    for (let i = 0; i < 100; i++) budget.recordCall();
    expect(budget.snapshot().allowed).toBe(20);
    expect(takeAll(budget)).toBe(20);
    expect(budget.tryRetry()).toBe(false);
    expect(budget.snapshot()).toEqual({ calls: 100, retries: 20, denied: 2, allowed: 0, windowMs: 10_000 });
  });

  it('grants more as more calls come in', () => {
    const c = clock();
    const budget = new RetryBudget(settings(), c.now);
    for (let i = 0; i < 10; i++) budget.recordCall();
    expect(takeAll(budget)).toBe(2);
    for (let i = 0; i < 5; i++) budget.recordCall();
    expect(takeAll(budget)).toBe(1);
  });

  it('always allows minRetriesPerSecond * window seconds, even with few or no calls', () => {
    const c = clock();
    const budget = new RetryBudget(settings({ minRetriesPerSecond: 0.5 }), c.now); // 5 per 10 s window
    expect(budget.snapshot().allowed).toBe(5);
    budget.recordCall();
    budget.recordCall();
    expect(takeAll(budget)).toBe(5);
    expect(budget.snapshot()).toMatchObject({ calls: 2, retries: 5, denied: 1, allowed: 0 });
  });

  it('allows nothing with no calls and no minimum', () => {
    const budget = new RetryBudget(settings(), clock().now);
    expect(budget.tryRetry()).toBe(false);
  });

  it('forgets old buckets after the window, so the budget refills', () => {
    const c = clock();
    const budget = new RetryBudget(settings({ minRetriesPerSecond: 0.3 }), c.now); // minimum 3
    for (let i = 0; i < 100; i++) budget.recordCall();
    expect(takeAll(budget)).toBe(20);

    // Still inside the window: the spent retries still count.
    c.advance(5_000);
    expect(budget.tryRetry()).toBe(false);

    // A full window later every bucket has rotated out: only the minimum is left, unspent.
    c.advance(10_000);
    expect(budget.snapshot()).toEqual({ calls: 0, retries: 0, denied: 0, allowed: 3, windowMs: 10_000 });
    for (let i = 0; i < 50; i++) budget.recordCall();
    expect(takeAll(budget)).toBe(10);
  });

  it('slides one bucket at a time', () => {
    const c = clock(0);
    const budget = new RetryBudget(settings(), c.now); // 1 s buckets
    for (let i = 0; i < 50; i++) budget.recordCall(); // bucket 0
    c.advance(5_000);
    for (let i = 0; i < 50; i++) budget.recordCall(); // bucket 5
    expect(budget.snapshot().calls).toBe(100);
    expect(budget.tryRetry()).toBe(true); // counted in bucket 5

    c.advance(4_999); // t = 9999: bucket 0 still in the window
    expect(budget.snapshot().calls).toBe(100);
    c.advance(1); // t = 10000: bucket 0 has left
    expect(budget.snapshot()).toMatchObject({ calls: 50, retries: 1, allowed: 9 });
    c.advance(5_000); // bucket 5 has left too
    expect(budget.snapshot()).toMatchObject({ calls: 0, retries: 0, allowed: 0 });
  });

  it('survives a long idle gap and a clock stepping backwards', () => {
    const c = clock();
    const budget = new RetryBudget(settings(), c.now);
    for (let i = 0; i < 10; i++) budget.recordCall();
    c.advance(1e9);
    expect(budget.snapshot().calls).toBe(0);
    for (let i = 0; i < 10; i++) budget.recordCall();
    c.advance(-3_000);
    budget.recordCall();
    expect(budget.snapshot().calls).toBe(11);
  });
});
