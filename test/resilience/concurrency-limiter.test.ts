import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { GatewayError } from '../../src/core/errors.js';
import { ConcurrencyLimiter, type Permit } from '../../src/resilience/concurrency-limiter.js';
import type { ConcurrencySettings } from '../../src/resilience/settings.js';

const NO_DEADLINE = Infinity;

function limiter(overrides: Partial<ConcurrencySettings> = {}): ConcurrencyLimiter {
  return new ConcurrencyLimiter('triton-a', { maxInFlight: 2, maxQueued: 2, maxQueueWaitMs: 1_000, ...overrides });
}

/** The permit of an acquire that must not have queued. */
function syncPermit(result: Permit | Promise<Permit>): Permit {
  if (result instanceof Promise) throw new Error('expected a synchronous permit');
  return result;
}

function queuedPromise(result: Permit | Promise<Permit>): Promise<Permit> {
  if (!(result instanceof Promise)) throw new Error('expected to queue');
  return result;
}

/** Settled state of a promise, observable without awaiting it forever. */
function track<T>(p: Promise<T>): { state: 'pending' | 'resolved' | 'rejected'; value?: T; error?: unknown } {
  const t: { state: 'pending' | 'resolved' | 'rejected'; value?: T; error?: unknown } = { state: 'pending' };
  p.then(
    (value) => Object.assign(t, { state: 'resolved', value }),
    (error: unknown) => Object.assign(t, { state: 'rejected', error }),
  );
  return t;
}

async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

async function rejection(p: Permit | Promise<Permit>): Promise<GatewayError> {
  const err: unknown = await queuedPromise(p).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GatewayError);
  return err as GatewayError;
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe('ConcurrencyLimiter', () => {
  it('hands out permits synchronously while slots are free', () => {
    const l = limiter();
    const a = syncPermit(l.acquire(NO_DEADLINE));
    const b = syncPermit(l.acquire(NO_DEADLINE));
    expect('then' in a).toBe(false);
    expect(l.inFlight).toBe(2);
    a.release();
    b.release();
    expect(l.snapshot()).toEqual({ inFlight: 0, queued: 0, maxInFlight: 2, maxQueued: 2, shed: 0, timedOut: 0 });
  });

  it('queues when full and hands released slots over in FIFO order', async () => {
    const l = limiter();
    const a = syncPermit(l.acquire(NO_DEADLINE));
    const b = syncPermit(l.acquire(NO_DEADLINE));
    const first = track(queuedPromise(l.acquire(NO_DEADLINE)));
    const second = track(queuedPromise(l.acquire(NO_DEADLINE)));
    expect(l.queued).toBe(2);

    a.release();
    await flush();
    expect(first.state).toBe('resolved');
    expect(second.state).toBe('pending');
    // The slot moved to the waiter without ever being free.
    expect(l.snapshot()).toMatchObject({ inFlight: 2, queued: 1 });

    b.release();
    await flush();
    expect(second.state).toBe('resolved');
    expect(l.snapshot()).toMatchObject({ inFlight: 2, queued: 0 });

    first.value!.release();
    second.value!.release();
    expect(l.inFlight).toBe(0);
    // With nobody queued the fast path is back.
    syncPermit(l.acquire(NO_DEADLINE)).release();
  });

  it('does not let a newcomer overtake the queue even when a slot is free', async () => {
    const l = limiter({ maxInFlight: 1 });
    const a = syncPermit(l.acquire(NO_DEADLINE));
    const waiter = track(queuedPromise(l.acquire(NO_DEADLINE)));
    a.release(); // slot handed to the waiter, not freed
    const late = l.acquire(NO_DEADLINE);
    expect(late).toBeInstanceOf(Promise);
    await flush();
    expect(waiter.state).toBe('resolved');
    waiter.value!.release();
    await expect(late).resolves.toBeDefined();
  });

  it('refuses at once with RESOURCE_EXHAUSTED and retryAfterMs when the queue is full', async () => {
    const l = limiter();
    syncPermit(l.acquire(NO_DEADLINE));
    syncPermit(l.acquire(NO_DEADLINE));
    void l.acquire(NO_DEADLINE);
    void l.acquire(NO_DEADLINE);
    const err = await rejection(l.acquire(NO_DEADLINE));
    expect(err.code).toBe('RESOURCE_EXHAUSTED');
    expect(err.retryAfterMs).toBe(1_000);
    expect(err.message).toContain('triton-a');
    expect(err.message).toMatch(/\b2\b.*\b2\b/);
    expect(l.snapshot()).toMatchObject({ inFlight: 2, queued: 2, shed: 1, timedOut: 0 });
  });

  it('sheds a waiter that waited maxQueueWaitMs, and never gives it a slot', async () => {
    const l = limiter({ maxInFlight: 1, maxQueueWaitMs: 500 });
    const a = syncPermit(l.acquire(NO_DEADLINE));
    const waiting = track(queuedPromise(l.acquire(NO_DEADLINE)));
    vi.advanceTimersByTime(499);
    await flush();
    expect(waiting.state).toBe('pending');
    vi.advanceTimersByTime(1);
    await flush();
    expect(waiting.state).toBe('rejected');
    const err = waiting.error as GatewayError;
    expect(err.code).toBe('RESOURCE_EXHAUSTED');
    expect(err.retryAfterMs).toBe(1_000);
    expect(l.snapshot()).toMatchObject({ inFlight: 1, queued: 0, timedOut: 1, shed: 0 });
    a.release();
    expect(l.inFlight).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('rejects with DEADLINE_EXCEEDED when the deadline comes before the queue wait', async () => {
    const l = limiter({ maxInFlight: 1, maxQueueWaitMs: 1_000 });
    syncPermit(l.acquire(NO_DEADLINE));
    const waiting = track(queuedPromise(l.acquire(Date.now() + 200)));
    expect(vi.getTimerCount()).toBe(1); // one timer for both limits
    vi.advanceTimersByTime(200);
    await flush();
    expect(waiting.state).toBe('rejected');
    expect((waiting.error as GatewayError).code).toBe('DEADLINE_EXCEEDED');
    expect(l.snapshot()).toMatchObject({ queued: 0, timedOut: 1 });
  });

  it('rejects with DEADLINE_EXCEEDED at once when the deadline has already passed', async () => {
    const l = limiter();
    const err = await rejection(l.acquire(Date.now() - 1));
    expect(err.code).toBe('DEADLINE_EXCEEDED');
    expect(l.inFlight).toBe(0);
  });

  it('removes an aborted waiter; the next release goes to the next waiter and counts stay right', async () => {
    const l = limiter({ maxInFlight: 1, maxQueued: 3 });
    const a = syncPermit(l.acquire(NO_DEADLINE));
    const controller = new AbortController();
    const first = track(queuedPromise(l.acquire(NO_DEADLINE)));
    const aborted = track(queuedPromise(l.acquire(NO_DEADLINE, controller.signal)));
    const third = track(queuedPromise(l.acquire(NO_DEADLINE)));
    expect(l.queued).toBe(3);
    expect(vi.getTimerCount()).toBe(3);

    controller.abort();
    await flush();
    expect(aborted.state).toBe('rejected');
    expect((aborted.error as GatewayError).code).toBe('CANCELLED');
    expect(l.snapshot()).toMatchObject({ inFlight: 1, queued: 2, timedOut: 0 });
    expect(vi.getTimerCount()).toBe(2);

    a.release();
    await flush();
    expect(first.state).toBe('resolved');
    first.value!.release();
    await flush();
    expect(third.state).toBe('resolved');
    third.value!.release();
    expect(l.snapshot()).toMatchObject({ inFlight: 0, queued: 0 });
    expect(vi.getTimerCount()).toBe(0);
  });

  it('rejects with the abort reason when it is a GatewayError, also when aborted before acquiring', async () => {
    const l = limiter({ maxInFlight: 1 });
    syncPermit(l.acquire(NO_DEADLINE));
    const controller = new AbortController();
    const p = queuedPromise(l.acquire(NO_DEADLINE, controller.signal));
    const reason = new GatewayError('UNAVAILABLE', 'shutting down');
    controller.abort(reason);
    await expect(p).rejects.toBe(reason);

    const err = await rejection(l.acquire(NO_DEADLINE, AbortSignal.abort()));
    expect(err.code).toBe('CANCELLED');
    expect(l.queued).toBe(0);
  });

  it('removes the abort listener once a waiter leaves the queue', async () => {
    const l = limiter({ maxInFlight: 1 });
    const a = syncPermit(l.acquire(NO_DEADLINE));
    const controller = new AbortController();
    const remove = vi.spyOn(controller.signal, 'removeEventListener');
    const p = queuedPromise(l.acquire(NO_DEADLINE, controller.signal));
    a.release();
    const permit = await p;
    expect(remove).toHaveBeenCalledWith('abort', expect.any(Function));
    controller.abort(); // too late: it holds a slot and must keep it
    expect(l.inFlight).toBe(1);
    permit.release();
    expect(l.inFlight).toBe(0);
  });

  it('ignores a second release', async () => {
    const l = limiter({ maxInFlight: 1 });
    const a = syncPermit(l.acquire(NO_DEADLINE));
    const waiting = track(queuedPromise(l.acquire(NO_DEADLINE)));
    const other = track(queuedPromise(l.acquire(NO_DEADLINE)));
    a.release();
    a.release(); // must not hand a second slot to `other`
    await flush();
    expect(waiting.state).toBe('resolved');
    expect(other.state).toBe('pending');
    expect(l.snapshot()).toMatchObject({ inFlight: 1, queued: 1 });
    waiting.value!.release();
    await flush();
    other.value!.release();
    other.value!.release();
    expect(l.inFlight).toBe(0);
  });

  it('keeps at most maxQueued waiting under 10,000 acquires and sheds the rest', async () => {
    const l = new ConcurrencyLimiter('flood', { maxInFlight: 4, maxQueued: 8, maxQueueWaitMs: 60_000 });
    const permits: Permit[] = [];
    const waiters: Promise<Permit>[] = [];
    let shed = 0;
    let mostQueued = 0;
    for (let i = 0; i < 10_000; i++) {
      const r = l.acquire(NO_DEADLINE);
      if (!(r instanceof Promise)) permits.push(r);
      else if (l.queued > waiters.length) waiters.push(r);
      else {
        shed++;
        r.catch(() => undefined);
      }
      mostQueued = Math.max(mostQueued, l.queued);
    }
    expect(mostQueued).toBe(8);
    expect(permits).toHaveLength(4);
    expect(waiters).toHaveLength(8);
    expect(shed).toBe(10_000 - 12);
    expect(l.snapshot()).toEqual({ inFlight: 4, queued: 8, maxInFlight: 4, maxQueued: 8, shed: 9_988, timedOut: 0 });
    expect(vi.getTimerCount()).toBe(8);

    for (const p of permits) p.release();
    for (let i = 0; i < 4; i++) (await waiters[i]!).release();
    for (let i = 4; i < 8; i++) (await waiters[i]!).release();
    expect(l.snapshot()).toMatchObject({ inFlight: 0, queued: 0 });
    expect(vi.getTimerCount()).toBe(0);
  });

  it('rejectWaiting rejects every waiter, clears their timers, and the limiter keeps working', async () => {
    const l = limiter({ maxInFlight: 1, maxQueued: 3 });
    const a = syncPermit(l.acquire(NO_DEADLINE));
    const controller = new AbortController();
    const waiting = [
      queuedPromise(l.acquire(NO_DEADLINE)),
      queuedPromise(l.acquire(NO_DEADLINE, controller.signal)),
      queuedPromise(l.acquire(Date.now() + 300)),
    ];
    const error = new GatewayError('UNAVAILABLE', "backend 'triton-a' is shut down");
    l.rejectWaiting(error);
    for (const p of waiting) await expect(p).rejects.toBe(error);
    expect(l.snapshot()).toMatchObject({ inFlight: 1, queued: 0, timedOut: 0, shed: 0 });
    expect(vi.getTimerCount()).toBe(0);
    controller.abort(); // its listener is gone: nothing to settle twice

    a.release();
    expect(l.inFlight).toBe(0);
    const b = syncPermit(l.acquire(NO_DEADLINE));
    const next = track(queuedPromise(l.acquire(NO_DEADLINE)));
    b.release();
    await flush();
    expect(next.state).toBe('resolved');
    next.value!.release();
    expect(l.inFlight).toBe(0);
  });

  it('sheds at once when maxQueued is 0', async () => {
    const l = limiter({ maxInFlight: 1, maxQueued: 0 });
    syncPermit(l.acquire(NO_DEADLINE));
    const err = await rejection(l.acquire(NO_DEADLINE));
    expect(err.code).toBe('RESOURCE_EXHAUSTED');
    expect(l.snapshot()).toMatchObject({ queued: 0, shed: 1 });
  });
});
