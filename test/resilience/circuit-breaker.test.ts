import { afterEach, describe, expect, it, vi } from 'vitest';

import { GatewayError } from '../../src/core/errors.js';
import {
  EndpointBreaker,
  type BreakerChange,
  type BreakerHooks,
} from '../../src/resilience/circuit-breaker.js';
import type { BreakerSettings } from '../../src/resilience/settings.js';

const BASE: BreakerSettings = {
  enabled: true,
  errorThresholdPercent: 50,
  windowMs: 10_000,
  windowBuckets: 10,
  minimumRequests: 4,
  resetTimeoutMs: 60,
  halfOpenProbes: 1,
};

const always = (): boolean => true;
const never = (): boolean => false;

const breakers: EndpointBreaker[] = [];

afterEach(() => {
  for (const b of breakers.splice(0)) b.shutdown();
  vi.restoreAllMocks();
});

interface Recorder extends BreakerHooks {
  readonly changes: BreakerChange[];
  readonly admitting: [boolean, string][];
}

function recorder(): Recorder {
  const changes: BreakerChange[] = [];
  const admitting: [boolean, string][] = [];
  return {
    changes,
    admitting,
    onChange: (c) => changes.push(c),
    onAdmitting: (a, reason) => admitting.push([a, reason]),
  };
}

function make(overrides: Partial<BreakerSettings> = {}, hooks?: BreakerHooks): EndpointBreaker {
  const b = new EndpointBreaker('triton-0', { ...BASE, ...overrides }, hooks);
  breakers.push(b);
  return b;
}

const ok = <T>(value: T) => () => Promise.resolve(value);
const fail = (message = 'boom') => () => Promise.reject(new Error(message));

async function settle(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    (v) => v,
    (e: unknown) => e,
  );
}

async function failTimes(b: EndpointBreaker, n: number, isFailure = always): Promise<void> {
  for (let i = 0; i < n; i++) await settle(b.run(fail(), isFailure));
}

async function waitFor(cond: () => boolean, ms = 3_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

function deferred<T>(): {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
} {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

async function tripOpen(b: EndpointBreaker): Promise<void> {
  await failTimes(b, BASE.minimumRequests);
  expect(b.state).toBe('open');
}

describe('EndpointBreaker closed', () => {
  it('passes values and errors through untouched', async () => {
    const b = make();
    await expect(b.run(ok(42), always)).resolves.toBe(42);
    const err = new Error('backend said no');
    await expect(b.run(() => Promise.reject(err), always)).rejects.toBe(err);
    const thrown = new Error('sync');
    await expect(
      b.run(() => {
        throw thrown;
      }, always),
    ).rejects.toBe(thrown);
  });

  it('does not trip before minimumRequests calls, however many fail', async () => {
    const rec = recorder();
    const b = make({ minimumRequests: 4 }, rec);
    await failTimes(b, 3);
    expect(b.state).toBe('closed');
    expect(b.snapshot()).toMatchObject({ calls: 3, failures: 3, errorPercent: 100 });
    await failTimes(b, 1);
    expect(b.state).toBe('open');
    expect(rec.changes).toEqual([
      { state: 'open', previous: 'closed', reason: '100% of 4 calls failed in 10000 ms' },
    ]);
    expect(rec.admitting).toEqual([[false, '100% of 4 calls failed in 10000 ms']]);
  });

  it('trips only when failures exceed the threshold', async () => {
    const rec = recorder();
    const b = make({ minimumRequests: 4 }, rec);
    for (let i = 0; i < 5; i++) await b.run(ok(i), always);
    await failTimes(b, 5);
    // 5 of 10 is 50%: at the threshold, not above it.
    expect(b.state).toBe('closed');
    await failTimes(b, 1);
    expect(b.state).toBe('open');
    expect(rec.changes[0]?.reason).toBe('55% of 11 calls failed in 10000 ms');
    expect(b.snapshot()).toMatchObject({ state: 'open', calls: 11, failures: 6 });
  });

  it('never trips on errors isFailure does not count', async () => {
    const rec = recorder();
    const b = make({ minimumRequests: 2 }, rec);
    const err = new GatewayError('INVALID_ARGUMENT', 'bad tensor');
    for (let i = 0; i < 30; i++) {
      await expect(b.run(() => Promise.reject(err), never)).rejects.toBe(err);
    }
    expect(b.state).toBe('closed');
    expect(b.snapshot()).toMatchObject({ calls: 30, failures: 0, errorPercent: 0 });
    expect(rec.changes).toEqual([]);
    expect(rec.admitting).toEqual([]);
  });

  it('hands isFailure the error of the call it belongs to', async () => {
    const b = make({ minimumRequests: 2 });
    const counted = (e: unknown) => e instanceof Error && e.message === 'counted';
    for (let i = 0; i < 10; i++) await settle(b.run(fail('client'), counted));
    expect(b.state).toBe('closed');
    await settle(b.run(fail('counted'), counted));
    expect(b.snapshot()).toMatchObject({ calls: 11, failures: 1 });
  });
});

describe('EndpointBreaker open', () => {
  it('rejects at once without calling fn and says when to retry', async () => {
    const b = make({ resetTimeoutMs: 5_000 });
    await tripOpen(b);
    const fn = vi.fn(ok(1));
    const err = await settle(b.run(fn, always));
    expect(fn).not.toHaveBeenCalled();
    expect(err).toBeInstanceOf(GatewayError);
    const g = err as GatewayError;
    expect(g.code).toBe('UNAVAILABLE');
    expect(g.message).toContain('triton-0');
    expect(g.message).toMatch(/next probe in \d+ ms/);
    expect(g.retryAfterMs).toBeGreaterThanOrEqual(1);
    expect(g.retryAfterMs).toBeLessThanOrEqual(5_000);
    expect(b.admitting).toBe(false);
    expect(b.retryInMs()).toBeGreaterThanOrEqual(1);
    const snap = b.snapshot();
    expect(snap.openedAt).toBeTypeOf('number');
    expect(snap.nextProbeAt).toBe((snap.openedAt ?? 0) + 5_000);
    expect(snap.probesInFlight).toBe(0);
  });

  it('reports 0 ms to retry when not open', () => {
    const b = make();
    expect(b.retryInMs()).toBe(0);
    expect(b.snapshot().openedAt).toBeUndefined();
    expect(b.snapshot().nextProbeAt).toBeUndefined();
  });
});

describe('EndpointBreaker half-open', () => {
  it('goes half-open after resetTimeoutMs and closes on a successful probe', async () => {
    const rec = recorder();
    const b = make({}, rec);
    await tripOpen(b);
    await waitFor(() => b.state === 'half_open');
    expect(b.admitting).toBe(true);
    expect(b.retryInMs()).toBe(0);
    await expect(b.run(ok('probe'), always)).resolves.toBe('probe');
    expect(b.state).toBe('closed');
    expect(rec.changes.map((c) => [c.previous, c.state, c.reason])).toEqual([
      ['closed', 'open', '100% of 4 calls failed in 10000 ms'],
      ['open', 'half_open', 'reset timeout elapsed'],
      ['half_open', 'closed', 'probe succeeded'],
    ]);
    expect(rec.admitting.map(([a]) => a)).toEqual([false, true, false, true]);
  });

  it('admits exactly halfOpenProbes probes at once and closes when all succeed', async () => {
    const rec = recorder();
    const b = make({ halfOpenProbes: 2 }, rec);
    await tripOpen(b);
    await waitFor(() => b.state === 'half_open');

    const p1 = deferred<string>();
    const p2 = deferred<string>();
    const r1 = b.run(() => p1.promise, always);
    expect(b.admitting).toBe(true);
    const r2 = b.run(() => p2.promise, always);
    expect(b.admitting).toBe(false);
    expect(b.snapshot().probesInFlight).toBe(2);
    expect(rec.admitting.at(-1)).toEqual([false, 'all 2 probe slots taken']);

    const third = vi.fn(ok('x'));
    const err = await settle(b.run(third, always));
    expect(third).not.toHaveBeenCalled();
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe('UNAVAILABLE');
    expect((err as GatewayError).retryAfterMs).toBeGreaterThanOrEqual(1);

    p1.resolve('a');
    await expect(r1).resolves.toBe('a');
    // One success is not enough, and a succeeded probe keeps its slot.
    expect(b.state).toBe('half_open');
    expect(b.admitting).toBe(false);
    p2.resolve('b');
    await expect(r2).resolves.toBe('b');
    expect(b.state).toBe('closed');
    expect(rec.changes.at(-1)).toEqual({
      state: 'closed',
      previous: 'half_open',
      reason: '2 probes succeeded',
    });
    expect(rec.admitting.at(-1)?.[0]).toBe(true);
  });

  it('closes with a fresh window: one new failure does not re-open it', async () => {
    const b = make({ minimumRequests: 3 });
    await failTimes(b, 3);
    expect(b.state).toBe('open');
    await waitFor(() => b.state === 'half_open');
    await b.run(ok(1), always);
    expect(b.state).toBe('closed');
    expect(b.snapshot()).toMatchObject({ calls: 0, failures: 0, errorPercent: 0 });
    await failTimes(b, 1);
    expect(b.state).toBe('closed');
    expect(b.snapshot()).toMatchObject({ calls: 1, failures: 1 });
    // The new window still trips on its own evidence.
    await failTimes(b, 2);
    expect(b.state).toBe('open');
  });

  it('re-opens on a failed probe and probes again after resetTimeoutMs', async () => {
    const rec = recorder();
    const b = make({}, rec);
    await tripOpen(b);
    await waitFor(() => b.state === 'half_open');
    const probeErr = new Error('still down');
    await expect(b.run(() => Promise.reject(probeErr), always)).rejects.toBe(probeErr);
    expect(b.state).toBe('open');
    expect(rec.changes.at(-1)).toEqual({
      state: 'open',
      previous: 'half_open',
      reason: 'probe failed: still down',
    });
    const fn = vi.fn(ok(1));
    await settle(b.run(fn, always));
    expect(fn).not.toHaveBeenCalled();
    expect(b.retryInMs()).toBeGreaterThanOrEqual(1);

    await waitFor(() => b.state === 'half_open');
    await b.run(ok(2), always);
    expect(b.state).toBe('closed');
    expect(rec.changes.map((c) => c.state)).toEqual([
      'open',
      'half_open',
      'open',
      'half_open',
      'closed',
    ]);
  });

  it('frees the slot of a probe that fails with a non-counted error', async () => {
    const rec = recorder();
    const b = make({}, rec);
    await tripOpen(b);
    await waitFor(() => b.state === 'half_open');
    const p = deferred<number>();
    const probe = b.run(() => p.promise, never);
    expect(b.admitting).toBe(false);
    const clientErr = new Error('bad input');
    p.reject(clientErr);
    await expect(probe).rejects.toBe(clientErr);
    expect(b.state).toBe('half_open');
    expect(b.admitting).toBe(true);
    expect(rec.admitting.at(-1)).toEqual([true, 'probe slot freed']);
    await b.run(ok(1), always);
    expect(b.state).toBe('closed');
  });

  it('ignores late results of calls that were in flight when it opened', async () => {
    const rec = recorder();
    const b = make({ halfOpenProbes: 2 }, rec);
    const slowOk = deferred<string>();
    const slowFail = deferred<string>();
    const lateOk = b.run(() => slowOk.promise, always);
    const lateFail = b.run(() => slowFail.promise, always);
    await failTimes(b, 4);
    expect(b.state).toBe('open');
    await waitFor(() => b.state === 'half_open');

    // opossum would close on any success while half-open; this one predates the probes.
    slowOk.resolve('late');
    await expect(lateOk).resolves.toBe('late');
    expect(b.state).toBe('half_open');

    // Nor does a stale failure re-open it.
    const err = new Error('late failure');
    slowFail.reject(err);
    await expect(lateFail).rejects.toBe(err);
    expect(b.state).toBe('half_open');
    expect(b.admitting).toBe(true);

    await b.run(ok(1), always);
    expect(b.state).toBe('half_open');
    await b.run(ok(2), always);
    expect(b.state).toBe('closed');
    expect(rec.changes.map((c) => c.state)).toEqual(['open', 'half_open', 'closed']);
  });

  it('ignores a probe that settles after its half-open period ended', async () => {
    const c = make({ halfOpenProbes: 2 });
    await tripOpen(c);
    await waitFor(() => c.state === 'half_open');
    const slow = deferred<number>();
    const slowProbe = c.run(() => slow.promise, always);
    await settle(c.run(fail('down'), always));
    expect(c.state).toBe('open');
    slow.resolve(7);
    await expect(slowProbe).resolves.toBe(7);
    expect(c.state).toBe('open');
    expect(c.snapshot().probesInFlight).toBe(0);
  });
});

describe('EndpointBreaker disabled', () => {
  it('calls fn directly and never changes state', async () => {
    const rec = recorder();
    const b = make({ enabled: false, minimumRequests: 1 }, rec);
    const fn = vi.fn(fail());
    for (let i = 0; i < 20; i++) await settle(b.run(fn, always));
    expect(fn).toHaveBeenCalledTimes(20);
    expect(b.state).toBe('closed');
    expect(b.admitting).toBe(true);
    expect(b.retryInMs()).toBe(0);
    expect(b.snapshot()).toEqual({
      state: 'closed',
      calls: 0,
      failures: 0,
      errorPercent: 0,
      probesInFlight: 0,
    });
    await expect(b.run(ok('v'), always)).resolves.toBe('v');
    expect(rec.changes).toEqual([]);
    expect(rec.admitting).toEqual([]);
  });
});

describe('EndpointBreaker shutdown', () => {
  it('rejects later calls without calling fn', async () => {
    for (const enabled of [true, false]) {
      const b = make({ enabled });
      b.shutdown();
      const fn = vi.fn(ok(1));
      const err = await settle(b.run(fn, always));
      expect(fn).not.toHaveBeenCalled();
      expect(err).toBeInstanceOf(GatewayError);
      expect((err as GatewayError).code).toBe('UNAVAILABLE');
      expect((err as GatewayError).message).toContain('breaker closed down');
      expect(b.admitting).toBe(false);
    }
  });

  it('stops the reset timer', async () => {
    const rec = recorder();
    const b = make({}, rec);
    await tripOpen(b);
    b.shutdown();
    await new Promise((r) => setTimeout(r, BASE.resetTimeoutMs * 3));
    expect(b.state).toBe('open');
    expect(rec.changes.map((c) => c.state)).toEqual(['open']);
  });

  it('lets calls in flight at shutdown settle with their own result', async () => {
    const b = make();
    const d = deferred<string>();
    const inFlight = b.run(() => d.promise, always);
    b.shutdown();
    d.resolve('done');
    await expect(inFlight).resolves.toBe('done');
  });
});

describe('EndpointBreaker hooks', () => {
  it('a throwing hook does not strand the call that tripped the breaker', async () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const b = make(
      {},
      {
        onChange: () => {
          throw new Error('hook bug');
        },
      },
    );
    await failTimes(b, 3);
    const err = new Error('fourth');
    await expect(b.run(() => Promise.reject(err), always)).rejects.toBe(err);
    expect(b.state).toBe('open');
    expect(warn).toHaveBeenCalled();
  });
});
