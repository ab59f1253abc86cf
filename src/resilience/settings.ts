import { circuitBreakerSchema, concurrencySchema, retrySchema, type BackendConfig } from '../config/schema.js';

/**
 * Resilience settings of one backend, validated from its config section
 * (config/schema.ts) into these typed values once per config load.
 */

/** A circuit breaker per endpoint (resilience/circuit-breaker.ts). */
export interface BreakerSettings {
  /** false: calls go straight through and the endpoint is never ejected by a breaker. */
  readonly enabled: boolean;
  /** The breaker opens when failures exceed this percentage of calls in the window (1-100). */
  readonly errorThresholdPercent: number;
  /** Length of the rolling window failures are counted over. */
  readonly windowMs: number;
  /** The window is kept as this many buckets (windowMs / windowBuckets each). */
  readonly windowBuckets: number;
  /** Calls in the window before the breaker may open at all. */
  readonly minimumRequests: number;
  /** How long an open breaker waits before letting probe calls through (half-open). */
  readonly resetTimeoutMs: number;
  /** Probe calls let through while half-open; all must succeed for the breaker to close. */
  readonly halfOpenProbes: number;
}

/** Retries of one backend's calls (resilience/retry.ts). */
export interface RetrySettings {
  /** Attempts per call, the first included (1 = no retries). */
  readonly maxAttempts: number;
  /** First backoff ceiling; doubles per retry up to backoffMaxMs (full jitter below it). */
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  /** Retries allowed as a percentage of calls over the budget window. */
  readonly budgetPercent: number;
  readonly budgetWindowMs: number;
  /** Retries always allowed per second of window, so a quiet backend can still retry. */
  readonly minRetriesPerSecond: number;
}

/** Load shedding of one backend (resilience/concurrency-limiter.ts). */
export interface ConcurrencySettings {
  /** Calls to the backend (all endpoints) at once. */
  readonly maxInFlight: number;
  /** Calls waiting for a slot; beyond this a call is shed at once. */
  readonly maxQueued: number;
  /** Longest a call waits for a slot (and never past its deadline) before it is shed. */
  readonly maxQueueWaitMs: number;
}

export interface ResilienceSettings {
  readonly breaker: BreakerSettings;
  readonly retry: RetrySettings;
  readonly concurrency: ConcurrencySettings;
}

/** A backend's validated config sections as settings. */
export function resilienceSettingsOf(config: Pick<BackendConfig, 'circuit_breaker' | 'retry' | 'concurrency'>): ResilienceSettings {
  const b = config.circuit_breaker;
  const r = config.retry;
  const c = config.concurrency;
  return {
    breaker: {
      enabled: b.enabled,
      errorThresholdPercent: b.error_threshold_percent,
      windowMs: b.window_ms,
      windowBuckets: b.window_buckets,
      minimumRequests: b.minimum_requests,
      resetTimeoutMs: b.reset_timeout_ms,
      halfOpenProbes: b.half_open_probes,
    },
    retry: {
      maxAttempts: r.max_attempts,
      backoffBaseMs: r.backoff_base_ms,
      backoffMaxMs: r.backoff_max_ms,
      budgetPercent: r.budget_percent,
      budgetWindowMs: r.budget_window_ms,
      minRetriesPerSecond: r.min_retries_per_second,
    },
    concurrency: { maxInFlight: c.max_in_flight, maxQueued: c.max_queued, maxQueueWaitMs: c.max_queue_wait_ms },
  };
}

/** The settings of a backend whose config leaves every section out: the schema's defaults, stated once there. */
export const DEFAULT_RESILIENCE: ResilienceSettings = resilienceSettingsOf({
  circuit_breaker: circuitBreakerSchema.parse({}),
  retry: retrySchema.parse({}),
  concurrency: concurrencySchema.parse({}),
});
export const DEFAULT_BREAKER: BreakerSettings = DEFAULT_RESILIENCE.breaker;
export const DEFAULT_RETRY: RetrySettings = DEFAULT_RESILIENCE.retry;
export const DEFAULT_CONCURRENCY: ConcurrencySettings = DEFAULT_RESILIENCE.concurrency;
