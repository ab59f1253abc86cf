/**
 * A circuit breaker per endpoint. opossum keeps the rolling window, decides
 * when to trip and runs the reset timer; this class adds what opossum lacks:
 * N probe calls in half-open (opossum lets one through and closes on its
 * first success) and a window that starts empty after the breaker closes.
 *
 * One opossum instance serves one trip cycle. When it trips, it is retired
 * (shut down) and a new instance, never fired through, takes over: it runs the
 * reset timer while open, probes run beside it while half-open, and it becomes
 * the live instance (with an empty window) once the probes succeed. Calls still
 * in flight when the breaker opened settle on the retired instance, whose
 * listeners are gone, so a late success cannot close the breaker behind the
 * probe count and a late failure cannot re-open it.
 */
import CircuitBreaker from 'opossum';

import { GatewayError } from '../core/errors.js';
import type { BreakerSettings } from './settings.js';

export type BreakerState = 'closed' | 'open' | 'half_open';

export interface BreakerChange {
  readonly state: BreakerState;
  readonly previous: BreakerState;
  readonly reason: string;
}

export interface BreakerSnapshot {
  readonly state: BreakerState;
  /** Calls counted in the rolling window (while open/half-open: the window that tripped it). */
  readonly calls: number;
  /** Failures counted in the rolling window (same window as `calls`). */
  readonly failures: number;
  /** 0 when no calls. */
  readonly errorPercent: number;
  /** Date.now() when it last opened (while open/half_open). */
  readonly openedAt?: number;
  /** When an open breaker goes half-open. */
  readonly nextProbeAt?: number;
  readonly probesInFlight: number;
}

export interface BreakerHooks {
  /** Every state change, for logs/metrics/admin. Called synchronously. */
  onChange?(change: BreakerChange): void;
  /**
   * Whether the endpoint should receive calls now; called synchronously whenever that flips.
   * false when open, or half-open with every probe slot taken; true when closed, or half-open with a free probe slot.
   * The owner ejects/restores the endpoint from load balancing with it.
   */
  onAdmitting?(admitting: boolean, reason: string): void;
}

type IsFailure = (err: unknown) => boolean;
type Action = () => Promise<unknown>;
type Opossum = CircuitBreaker<[Action, IsFailure], unknown>;

export class EndpointBreaker {
  readonly #name: string;
  readonly #settings: BreakerSettings;
  readonly #hooks: BreakerHooks;

  #state: BreakerState = 'closed';
  #shutDown = false;
  /** The live opossum instance; undefined when disabled or shut down. */
  #cb: Opossum | undefined;
  /** The instance whose window snapshot() reports: the live one while closed, the tripped one otherwise. */
  #statsFrom: Opossum | undefined;
  #openedAt: number | undefined;
  #nextProbeAt: number | undefined;
  /**
   * Bumped on every transition out of half-open (and on shutdown), so a probe
   * that settles after its half-open period ended changes nothing.
   */
  #probePeriod = 0;
  #probesInFlight = 0;
  #probeSuccesses = 0;
  #lastAdmitting = true;

  constructor(name: string, settings: BreakerSettings, hooks: BreakerHooks = {}) {
    this.#name = name;
    this.#settings = settings;
    this.#hooks = hooks;
    if (settings.enabled) {
      this.#cb = this.#newInstance();
      this.#statsFrom = this.#cb;
    }
  }

  /** At least one, so a misconfigured breaker cannot stay half-open for ever. */
  get #probes(): number {
    return Math.max(1, Math.floor(this.#settings.halfOpenProbes));
  }

  get state(): BreakerState {
    return this.#state;
  }

  get admitting(): boolean {
    if (this.#shutDown) return false;
    switch (this.#state) {
      case 'closed':
        return true;
      case 'open':
        return false;
      case 'half_open':
        return this.#probesInFlight + this.#probeSuccesses < this.#probes;
    }
  }

  run<T>(fn: () => Promise<T>, isFailure: (err: unknown) => boolean): Promise<T> {
    if (this.#shutDown) {
      return Promise.reject(
        new GatewayError('UNAVAILABLE', `circuit breaker ${this.#name}: breaker closed down`),
      );
    }
    const cb = this.#cb;
    if (cb === undefined) return invoke(fn);

    if (this.#state === 'closed') {
      return (cb.fire(fn, isFailure) as Promise<T>).catch((err: unknown) => {
        throw this.#ownError(err);
      });
    }
    if (this.#state === 'half_open' && this.admitting) return this.#probe(fn, isFailure);
    return Promise.reject(this.#rejection());
  }

  retryInMs(): number {
    if (this.#state !== 'open' || this.#nextProbeAt === undefined) return 0;
    // Still open past the deadline means the reset timer is only late: soon, not now.
    return Math.max(1, this.#nextProbeAt - Date.now());
  }

  snapshot(): BreakerSnapshot {
    const stats = this.#statsFrom?.stats;
    const calls = stats?.fires ?? 0;
    const failures = stats?.failures ?? 0;
    const notClosed = this.#state !== 'closed';
    return {
      state: this.#state,
      calls,
      failures,
      errorPercent: calls === 0 ? 0 : (failures / calls) * 100,
      ...(notClosed && this.#openedAt !== undefined ? { openedAt: this.#openedAt } : {}),
      ...(this.#state === 'open' && this.#nextProbeAt !== undefined
        ? { nextProbeAt: this.#nextProbeAt }
        : {}),
      probesInFlight: this.#probesInFlight,
    };
  }

  shutdown(): void {
    if (this.#shutDown) return;
    this.#shutDown = true;
    this.#probePeriod++;
    this.#probesInFlight = 0;
    // A tripped instance was shut down when it tripped; only the live one has timers.
    this.#cb?.shutdown();
    this.#cb = undefined;
  }

  #newInstance(): Opossum {
    const s = this.#settings;
    const cb: Opossum = new CircuitBreaker<[Action, IsFailure], unknown>((fn) => fn(), {
      name: this.#name,
      errorThresholdPercentage: s.errorThresholdPercent,
      rollingCountTimeout: s.windowMs,
      rollingCountBuckets: s.windowBuckets,
      volumeThreshold: s.minimumRequests,
      resetTimeout: s.resetTimeoutMs,
      // The caller enforces deadlines; opossum's timeout would only add a timer per call.
      timeout: false,
      // opossum passes fire()'s arguments after the error: (err, fn, isFailure).
      errorFilter: (err: unknown, ...args: unknown[]) => {
        return !safeIsFailure(args[1] as IsFailure, err);
      },
      // Otherwise opossum sorts every latency in the window on each failure, and
      // runs a second interval per instance for snapshots nobody listens to.
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
    });
    cb.on('open', () => {
      // Only a trip of the live instance while closed is opossum's decision;
      // every other open() is ours, already accounted for.
      if (cb === this.#cb && this.#state === 'closed') this.#trip(cb);
    });
    cb.on('halfOpen', () => {
      if (cb === this.#cb && this.#state === 'open') this.#toHalfOpen();
    });
    return cb;
  }

  #trip(tripped: Opossum): void {
    const stats = tripped.stats;
    const percent = stats.fires === 0 ? 0 : Math.round((stats.failures / stats.fires) * 100);
    const reason = `${percent}% of ${stats.fires} calls failed in ${this.#settings.windowMs} ms`;
    // Calls still in flight settle on the tripped instance; without listeners
    // and timers their late results reach nothing.
    tripped.shutdown();
    const next = this.#newInstance();
    this.#cb = next;
    this.#statsFrom = tripped;
    this.#toOpen('closed', reason);
  }

  /** Opens (from closed or half-open) and starts the reset timer of the live instance. */
  #toOpen(previous: BreakerState, reason: string): void {
    this.#state = 'open';
    this.#probePeriod++;
    this.#probesInFlight = 0;
    this.#probeSuccesses = 0;
    this.#openedAt = Date.now();
    this.#nextProbeAt = this.#openedAt + this.#settings.resetTimeoutMs;
    // open() acts from closed and half-open alike (never from open), and each
    // 'open' it emits starts opossum's (unref'd) reset timer.
    this.#cb?.open();
    this.#changed(previous, reason);
  }

  #toHalfOpen(): void {
    this.#state = 'half_open';
    this.#probePeriod++;
    this.#probesInFlight = 0;
    this.#probeSuccesses = 0;
    this.#nextProbeAt = undefined;
    this.#changed('open', 'reset timeout elapsed');
  }

  #toClosed(reason: string): void {
    this.#state = 'closed';
    this.#probePeriod++;
    this.#probesInFlight = 0;
    this.#probeSuccesses = 0;
    this.#openedAt = undefined;
    this.#nextProbeAt = undefined;
    // The live instance was never fired through (probes bypass it), so its
    // window is empty: the failures that tripped the breaker stay behind with
    // the retired instance.
    this.#statsFrom = this.#cb;
    this.#cb?.close();
    this.#changed('half_open', reason);
  }

  #probe<T>(fn: () => Promise<T>, isFailure: IsFailure): Promise<T> {
    const period = this.#probePeriod;
    this.#probesInFlight++;
    this.#admittingMaybeFlipped(`all ${this.#probes} probe slots taken`);
    return invoke(fn).then(
      (value) => {
        if (period === this.#probePeriod) {
          this.#probesInFlight--;
          this.#probeSuccesses++;
          if (this.#probeSuccesses >= this.#probes) {
            this.#toClosed(
              this.#probes === 1
                ? 'probe succeeded'
                : `${this.#probes} probes succeeded`,
            );
          }
        }
        return value;
      },
      (err: unknown) => {
        if (period === this.#probePeriod) {
          this.#probesInFlight--;
          if (safeIsFailure(isFailure, err)) {
            this.#toOpen('half_open', `probe failed: ${messageOf(err)}`);
          } else {
            this.#admittingMaybeFlipped('probe slot freed');
          }
        }
        throw err;
      },
    );
  }

  #changed(previous: BreakerState, reason: string): void {
    const change: BreakerChange = { state: this.#state, previous, reason };
    callHook(() => this.#hooks.onChange?.(change));
    this.#admittingMaybeFlipped(reason);
  }

  #admittingMaybeFlipped(reason: string): void {
    const admitting = this.admitting;
    if (admitting === this.#lastAdmitting) return;
    this.#lastAdmitting = admitting;
    callHook(() => this.#hooks.onAdmitting?.(admitting, reason));
  }

  #rejection(): GatewayError {
    if (this.#state === 'open') {
      const ms = this.retryInMs();
      return new GatewayError(
        'UNAVAILABLE',
        `circuit breaker ${this.#name} is open; next probe in ${ms} ms`,
        { retryAfterMs: ms },
      );
    }
    // Half-open with every slot taken: the next chance comes when a probe
    // settles, which we cannot predict; a reset timeout is what a failed probe costs.
    return new GatewayError(
      'UNAVAILABLE',
      `circuit breaker ${this.#name} is half-open with all ${this.#probes} probe slots taken; next probe when one settles`,
      { retryAfterMs: Math.max(1, this.#settings.resetTimeoutMs) },
    );
  }

  /** opossum's own rejections (open, shut down) become ours; fn's errors pass untouched. */
  #ownError(err: unknown): unknown {
    if (err instanceof Error && CircuitBreaker.isOurError(err)) {
      return this.#shutDown
        ? new GatewayError('UNAVAILABLE', `circuit breaker ${this.#name}: breaker closed down`)
        : this.#rejection();
    }
    return err;
  }
}

/** fn's synchronous throw becomes a rejection, as it does inside opossum's fire(). */
function invoke<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return fn();
  } catch (err) {
    return Promise.reject(err);
  }
}

function safeIsFailure(isFailure: IsFailure, err: unknown): boolean {
  try {
    return isFailure(err);
  } catch {
    return true;
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Hooks run inside opossum's promise callbacks; a throw there would leave the
 * caller's promise pending forever, so it is reported as a process warning instead.
 */
function callHook(call: () => void): void {
  try {
    call();
  } catch (err) {
    process.emitWarning(err instanceof Error ? err : new Error(String(err)), 'BreakerHookWarning');
  }
}
