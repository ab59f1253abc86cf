import { describe, expect, it } from 'vitest';
import { ExperimentGuard } from '../../src/experiments/guard.js';
import { ExperimentResults } from '../../src/experiments/results.js';
import type { ExperimentSettings, GuardSettings } from '../../src/experiments/types.js';

function clock(start = 5_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

function experiment(guard: GuardSettings, weights = { control: 50, b: 50 }): ExperimentSettings {
  return {
    name: 'exp',
    model: 'm',
    key: { header: 'x-user' },
    salt: 'exp',
    state: 'running',
    control: 'control',
    arms: Object.entries(weights).map(([name, weight]) => ({ name, weight })),
    guard,
  };
}

function setup(guard: GuardSettings) {
  const c = clock();
  const results = new ExperimentResults({ now: c.now });
  const cuts: [string, string, string][] = [];
  let settings = [experiment(guard)];
  const g = new ExperimentGuard({
    results,
    control: { cutArm: (e, a, reason) => cuts.push([e, a, reason]) },
    experiments: () => settings,
  });
  return { c, results, cuts, guard: g, setSettings: (s: ExperimentSettings[]) => (settings = s) };
}

describe('ExperimentGuard', () => {
  it('cuts an arm once its error rate passes the threshold after min requests, once; never the control', () => {
    const { results, cuts, guard } = setup({ maxErrorRate: 0.1, minRequests: 50, windowMs: 10_000 });
    guard.check();
    // Under min requests: all failing, not cut yet.
    for (let i = 0; i < 49; i++) results.recordRequest('exp', 'b', { ok: false, latencyMs: 5 });
    for (let i = 0; i < 100; i++) results.recordRequest('exp', 'control', { ok: false, latencyMs: 5 });
    expect(guard.check()).toEqual([]);
    results.recordRequest('exp', 'b', { ok: false, latencyMs: 5 });
    const made = guard.check();
    expect(made).toHaveLength(1);
    expect(made[0]).toMatchObject({ experiment: 'exp', arm: 'b' });
    expect(made[0]!.reason).toMatch(/error rate 100% > 10% over 50 requests/);
    expect(cuts).toEqual([['exp', 'b', made[0]!.reason]]);
    expect(results.cutOf('exp', 'b')?.reason).toBe(made[0]!.reason);
    // Still failing (requests in flight when cut): no second cut; the control arm is never cut.
    for (let i = 0; i < 100; i++) results.recordRequest('exp', 'b', { ok: false, latencyMs: 5 });
    expect(guard.check()).toEqual([]);
    expect(cuts).toHaveLength(1);
  });

  it('does not cut an arm under the threshold', () => {
    const { results, cuts, guard } = setup({ maxErrorRate: 0.1, minRequests: 50, windowMs: 10_000 });
    for (let i = 0; i < 200; i++) results.recordRequest('exp', 'b', { ok: i % 20 !== 0, latencyMs: 5 });
    guard.check();
    expect(cuts).toEqual([]);
  });

  it('cuts on p99 latency', () => {
    const { results, cuts, guard } = setup({ maxP99Ms: 200, minRequests: 100, windowMs: 10_000 });
    for (let i = 0; i < 100; i++) results.recordRequest('exp', 'b', { ok: true, latencyMs: i < 95 ? 20 : 1_000 });
    guard.check();
    expect(cuts).toHaveLength(1);
    expect(cuts[0]![2]).toMatch(/p99 latency ~\d+(\.\d)? ms > 200 ms/);
  });

  it('only counts the window: old errors age out', () => {
    const { c, results, cuts, guard } = setup({ maxErrorRate: 0.5, minRequests: 10, windowMs: 5_000 });
    guard.check();
    for (let i = 0; i < 10; i++) results.recordRequest('exp', 'b', { ok: false, latencyMs: 5 });
    c.advance(6_000);
    for (let i = 0; i < 10; i++) results.recordRequest('exp', 'b', { ok: true, latencyMs: 5 });
    guard.check();
    expect(cuts).toEqual([]);
  });

  it('a new configured weight re-enables guarding; paused experiments are not guarded', () => {
    const g = { maxErrorRate: 0.1, minRequests: 10, windowMs: 10_000 };
    const { results, cuts, guard, setSettings } = setup(g);
    for (let i = 0; i < 10; i++) results.recordRequest('exp', 'b', { ok: false, latencyMs: 5 });
    guard.check();
    expect(cuts).toHaveLength(1);
    setSettings([experiment(g, { control: 50, b: 20 })]);
    guard.check();
    expect(results.cutOf('exp', 'b')).toBeUndefined();
    for (let i = 0; i < 10; i++) results.recordRequest('exp', 'b', { ok: false, latencyMs: 5 });
    guard.check();
    expect(cuts).toHaveLength(2);
    setSettings([{ ...experiment(g, { control: 50, b: 30 }), state: 'paused' }]);
    for (let i = 0; i < 10; i++) results.recordRequest('exp', 'b', { ok: false, latencyMs: 5 });
    guard.check();
    expect(cuts).toHaveLength(2);
  });
});
