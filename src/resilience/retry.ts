/**
 * Retry pacing and the retry budget of one backend.
 *
 * Backoff uses full jitter so that many callers failing at once do not retry
 * in lockstep. The budget caps retries as a share of real calls: when a backend
 * is down, every call failing and retrying would otherwise multiply its load by
 * maxAttempts exactly when it can least take it.
 */
import type { RetrySettings } from './settings.js';

/** Full jitter backoff before retry number `retry` (1 = first retry): random() * min(backoffMaxMs, backoffBaseMs * 2^(retry-1)). */
export function backoffMs(retry: number, settings: RetrySettings, random: () => number = Math.random): number {
  // Math.min also absorbs 2^n overflowing to Infinity for absurd retry numbers.
  const exponent = Math.max(0, Math.floor(retry) - 1);
  const cap = Math.max(0, Math.min(settings.backoffMaxMs, settings.backoffBaseMs * 2 ** exponent));
  return random() * cap;
}

export interface RetryBudgetSnapshot {
  /** Calls recorded in the current window. */
  readonly calls: number;
  /** Retries granted in the current window. */
  readonly retries: number;
  /** Retries refused in the current window. */
  readonly denied: number;
  /** Retries still allowed right now. */
  readonly allowed: number;
  readonly windowMs: number;
}

const BUCKETS = 10;

/** Ring slot of an absolute bucket number; also right for clocks before the epoch (fake clocks in tests). */
function slotOf(bucket: number): number {
  return ((bucket % BUCKETS) + BUCKETS) % BUCKETS;
}

/**
 * Retries a backend may make over a sliding window: at most budgetPercent% of the calls in the window, and always at
 * least minRetriesPerSecond * windowSeconds, so retries cannot multiply an outage. Counted in a fixed ring of 10 buckets
 * rotated lazily from the clock (no timers), O(1) per call, constant memory.
 *
 * The window slides a bucket (windowMs / 10) at a time: a count leaves it between 0.9 and 1 windowMs after it was made.
 */
export class RetryBudget {
  private readonly settings: RetrySettings;
  private readonly now: () => number;
  private readonly bucketMs: number;
  private readonly minRetries: number;
  // Per-bucket counts plus running totals, so reading the window never sums the ring.
  private readonly calls = new Float64Array(BUCKETS);
  private readonly retries = new Float64Array(BUCKETS);
  private readonly denied = new Float64Array(BUCKETS);
  private totalCalls = 0;
  private totalRetries = 0;
  private totalDenied = 0;
  /** Absolute bucket number (clock / bucketMs) the ring's head slot holds. */
  private head: number;

  constructor(settings: RetrySettings, now: () => number = Date.now) {
    this.settings = settings;
    this.now = now;
    // A zero window would divide by zero; 1 ms buckets are the finest the clock can tell apart anyway.
    this.bucketMs = Math.max(1, settings.budgetWindowMs / BUCKETS);
    this.minRetries = Math.max(0, Math.floor((settings.minRetriesPerSecond * settings.budgetWindowMs) / 1000));
    this.head = Math.floor(now() / this.bucketMs);
  }

  /** One call made (its first attempt). */
  recordCall(): void {
    const slot = this.rotate();
    this.calls[slot]! += 1;
    this.totalCalls += 1;
  }

  /** Asks to retry once: true (and counted) when within budget; false (counted as denied) otherwise. */
  tryRetry(): boolean {
    const slot = this.rotate();
    if (this.allowedNow() > 0) {
      this.retries[slot]! += 1;
      this.totalRetries += 1;
      return true;
    }
    this.denied[slot]! += 1;
    this.totalDenied += 1;
    return false;
  }

  snapshot(): RetryBudgetSnapshot {
    this.rotate();
    return {
      calls: this.totalCalls,
      retries: this.totalRetries,
      denied: this.totalDenied,
      allowed: this.allowedNow(),
      windowMs: this.settings.budgetWindowMs,
    };
  }

  private allowedNow(): number {
    const byShare = Math.floor((this.totalCalls * this.settings.budgetPercent) / 100);
    return Math.max(0, Math.max(byShare, this.minRetries) - this.totalRetries);
  }

  /**
   * Clears the slots whose time has left the window and returns the current slot. At most BUCKETS slots are cleared
   * however long the budget sat idle, which keeps every call O(1).
   */
  private rotate(): number {
    const current = Math.floor(this.now() / this.bucketMs);
    // A clock stepping backwards keeps counting into the head rather than reviving expired slots.
    if (current > this.head) {
      const steps = Math.min(current - this.head, BUCKETS);
      for (let i = 1; i <= steps; i++) this.clear(slotOf(this.head + i));
      this.head = current;
    }
    return slotOf(this.head);
  }

  private clear(slot: number): void {
    this.totalCalls -= this.calls[slot]!;
    this.totalRetries -= this.retries[slot]!;
    this.totalDenied -= this.denied[slot]!;
    this.calls[slot] = 0;
    this.retries[slot] = 0;
    this.denied[slot] = 0;
  }
}
