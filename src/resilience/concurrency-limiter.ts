/**
 * Load shedding for one backend. A backend past its capacity answers slower for
 * everyone; refusing the excess at once (429 with Retry-After) keeps latency
 * for admitted calls bounded and lets clients back off or go elsewhere.
 */
import { abortedError, GatewayError } from '../core/errors.js';
import type { ConcurrencySettings } from './settings.js';
import type { CancelSignal } from '../core/cancel.js';

/** One slot of the backend's concurrency. release() is idempotent, so finally-blocks and error paths may both call it. */
export interface Permit {
  release(): void;
}

export interface LimiterSnapshot {
  readonly inFlight: number;
  readonly queued: number;
  readonly maxInFlight: number;
  readonly maxQueued: number;
  /** Calls refused at once because the queue was full. */
  readonly shed: number;
  /** Queued calls that left without a slot because they waited maxQueueWaitMs or reached their deadline. */
  readonly timedOut: number;
}

/** Clients told to come back after this long when shed; short enough to retry soon, long enough to let a burst pass. */
const RETRY_AFTER_MS = 1_000;

/** setTimeout fires at once for longer delays (they overflow a signed 32-bit int), so longer waits are capped here. */
const MAX_TIMER_MS = 2 ** 31 - 1;

class LimiterPermit implements Permit {
  private released = false;

  constructor(private readonly releaseSlot: () => void) {}

  release(): void {
    if (this.released) return;
    this.released = true;
    this.releaseSlot();
  }
}

/** A queued caller: a node of the doubly linked wait queue, so leaving from the middle is O(1). */
interface Waiter {
  prev: Waiter | undefined;
  next: Waiter | undefined;
  /** false once it has left the queue (slot, timeout, abort, shutdown): guards against settling twice. */
  queued: boolean;
  readonly resolve: (permit: Permit) => void;
  readonly reject: (err: Error) => void;
  timer: NodeJS.Timeout | undefined;
  readonly signal: CancelSignal | undefined;
  onAbort: (() => void) | undefined;
}

/**
 * Load shedding for one backend: at most maxInFlight permits out; up to maxQueued callers wait in FIFO order;
 * anything beyond is refused at once. Memory is bounded by maxQueued whatever the load.
 *
 * acquire() returns either a Permit or a Promise of one. Tell them apart with `instanceof Promise`: the promises are
 * always native ones made here, and a Permit is never thenable. `await limiter.acquire(...)` also works for callers
 * that do not mind the microtask.
 */
export class ConcurrencyLimiter {
  private readonly name: string;
  private readonly settings: ConcurrencySettings;
  private active = 0;
  private head: Waiter | undefined;
  private tail: Waiter | undefined;
  private waiting = 0;
  private shedCount = 0;
  private timedOutCount = 0;

  constructor(name: string, settings: ConcurrencySettings) {
    this.name = name;
    this.settings = settings;
  }

  /**
   * A permit. Synchronous (returns the Permit itself, no promise) when a slot is free AND nobody is queued — the hot
   * path must not allocate a promise. Otherwise queues: resolves when a released slot is handed to it (FIFO).
   * Rejects with GatewayError:
   *  - RESOURCE_EXHAUSTED, retryAfterMs: 1000, message naming the backend and its limits, when the queue is full (at once);
   *  - RESOURCE_EXHAUSTED, retryAfterMs: 1000, when it waited maxQueueWaitMs without a slot;
   *  - DEADLINE_EXCEEDED when `deadline` (absolute ms, Date.now() clock) passes while queued (or has already passed);
   *  - signal.reason if it is a GatewayError, else GatewayError('CANCELLED'), when `signal` aborts while queued.
   * A call whose deadline has passed or whose signal has aborted is refused even when a slot is free: the backend
   * would only spend the slot on an answer nobody will read. `deadline` may be Infinity for none.
   */
  acquire(deadline: number, signal?: CancelSignal): Permit | Promise<Permit> {
    if (signal?.aborted === true) return Promise.reject(this.abortError(signal));
    const now = Date.now();
    if (deadline <= now) return Promise.reject(this.deadlineError());

    // Nobody queued is part of the condition so that a newcomer cannot overtake callers already waiting.
    if (this.active < this.settings.maxInFlight && this.waiting === 0) {
      this.active++;
      return new LimiterPermit(this.handOff);
    }

    if (this.waiting >= this.settings.maxQueued) {
      this.shedCount++;
      return Promise.reject(
        new GatewayError(
          'RESOURCE_EXHAUSTED',
          `backend '${this.name}' is overloaded: all ${this.settings.maxInFlight} slots (max_in_flight) are in use ` +
            `and its queue of ${this.settings.maxQueued} (max_queued) is full`,
          { retryAfterMs: RETRY_AFTER_MS },
        ),
      );
    }

    return new Promise<Permit>((resolve, reject) => {
      const waiter: Waiter = {
        prev: undefined,
        next: undefined,
        queued: true,
        resolve,
        reject,
        timer: undefined,
        signal,
        onAbort: undefined,
      };
      this.enqueue(waiter);

      // One timer for whichever limit comes first keeps timers per waiter at one.
      const queueWaitMs = Math.min(MAX_TIMER_MS, Math.max(0, this.settings.maxQueueWaitMs));
      const untilDeadline = deadline - now;
      if (untilDeadline < queueWaitMs) {
        waiter.timer = setTimeout(() => this.giveUp(waiter, this.deadlineError(), true), untilDeadline);
      } else {
        waiter.timer = setTimeout(
          () =>
            this.giveUp(
              waiter,
              new GatewayError(
                'RESOURCE_EXHAUSTED',
                `backend '${this.name}' is overloaded: no slot of ${this.settings.maxInFlight} came free within ` +
                  `${this.settings.maxQueueWaitMs} ms`,
                { retryAfterMs: RETRY_AFTER_MS },
              ),
              true,
            ),
          queueWaitMs,
        );
      }

      if (signal !== undefined) {
        waiter.onAbort = () => this.giveUp(waiter, this.abortError(signal), false);
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
    });
  }

  get inFlight(): number {
    return this.active;
  }

  get queued(): number {
    return this.waiting;
  }

  snapshot(): LimiterSnapshot {
    return {
      inFlight: this.active,
      queued: this.waiting,
      maxInFlight: this.settings.maxInFlight,
      maxQueued: this.settings.maxQueued,
      shed: this.shedCount,
      timedOut: this.timedOutCount,
    };
  }

  /** Rejects every waiter with the given error (shutdown); later acquires still work. */
  rejectWaiting(error: Error): void {
    // Emptied in one step rather than unlinked one by one; each waiter is disarmed so no timer or abort fires for it later.
    let waiter = this.head;
    this.head = undefined;
    this.tail = undefined;
    this.waiting = 0;
    while (waiter !== undefined) {
      const next = waiter.next;
      waiter.prev = undefined;
      waiter.next = undefined;
      waiter.queued = false;
      this.disarm(waiter);
      waiter.reject(error);
      waiter = next;
    }
  }

  /**
   * A permit was released: its slot goes straight to the oldest waiter, so inFlight does not dip and let a newcomer
   * take the slot first. An arrow property, made once per limiter, so permits share it without a public method that
   * could free a slot nobody held.
   */
  private readonly handOff = (): void => {
    const waiter = this.head;
    if (waiter === undefined) {
      this.active--;
      return;
    }
    this.unlink(waiter);
    this.disarm(waiter);
    waiter.resolve(new LimiterPermit(this.handOff));
  };

  private giveUp(waiter: Waiter, error: GatewayError, timedOut: boolean): void {
    // A timer or abort event may still fire in the same turn the waiter was handed a slot or rejected.
    if (!waiter.queued) return;
    this.unlink(waiter);
    this.disarm(waiter);
    if (timedOut) this.timedOutCount++;
    waiter.reject(error);
  }

  private enqueue(waiter: Waiter): void {
    waiter.prev = this.tail;
    if (this.tail === undefined) this.head = waiter;
    else this.tail.next = waiter;
    this.tail = waiter;
    this.waiting++;
  }

  private unlink(waiter: Waiter): void {
    if (waiter.prev === undefined) this.head = waiter.next;
    else waiter.prev.next = waiter.next;
    if (waiter.next === undefined) this.tail = waiter.prev;
    else waiter.next.prev = waiter.prev;
    waiter.prev = undefined;
    waiter.next = undefined;
    waiter.queued = false;
    this.waiting--;
  }

  /** Drops the waiter's timer and abort listener so neither keeps it (or the process) alive after it left. */
  private disarm(waiter: Waiter): void {
    if (waiter.timer !== undefined) {
      clearTimeout(waiter.timer);
      waiter.timer = undefined;
    }
    if (waiter.signal !== undefined && waiter.onAbort !== undefined) {
      waiter.signal.removeEventListener('abort', waiter.onAbort);
      waiter.onAbort = undefined;
    }
  }

  private deadlineError(): GatewayError {
    return new GatewayError('DEADLINE_EXCEEDED', `deadline passed while waiting for a slot of backend '${this.name}'`);
  }

  private abortError(signal: CancelSignal): GatewayError {
    return abortedError(signal, `cancelled while waiting for a slot of backend '${this.name}'`);
  }
}
