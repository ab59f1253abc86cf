import type { Backend, BackendKind, BackendProtocol } from '../backends/backend.js';
import type { BackendCluster, EndpointFilter, EndpointLease, EndpointState, HealthCheckSettings, PickContext } from '../backends/cluster.js';
import { abortedError, GatewayError, toGatewayError } from '../core/errors.js';
import type { Logger } from '../observability/logger.js';
import { EndpointBreaker, type BreakerSnapshot } from './circuit-breaker.js';
import { ConcurrencyLimiter, type LimiterSnapshot, type Permit } from './concurrency-limiter.js';
import { countsAgainstEndpoint, isRetryable } from './failure-policy.js';
import { backoffMs, RetryBudget, type RetryBudgetSnapshot } from './retry.js';
import { DEFAULT_RESILIENCE, type ResilienceSettings } from './settings.js';
import type { CancelSignal } from '../core/cancel.js';

/** The ejection source circuit breakers use on a BackendCluster. */
export const BREAKER_EJECTION = 'breaker';

/** What a guarded call needs of its request (routing's RequestContext fits). */
export interface GuardContext extends PickContext {
  /** Absolute deadline of the whole request: retries and queueing never go past it. */
  readonly deadline: number;
  /**
   * The deadline the client itself asked for, if it did (grpc-timeout,
   * x-infergate-timeout-ms): a timeout of the client's own making says
   * nothing about the endpoint, so it does not count against its breaker.
   */
  readonly clientDeadline?: number;
  readonly signal?: CancelSignal;
}

export interface GuardOptions {
  /** false: one attempt only (shadow copies, which must never add load by retrying). */
  readonly retry?: boolean;
}

/** A call's result with its endpoint and load-shedding slot still held (for streams); release() frees both. */
export interface HeldCall<T> {
  readonly value: T;
  release(): void;
}

/** One endpoint in the admin and status views: balancing state, breaker and call counts. */
export interface EndpointStatus extends EndpointState {
  readonly breaker: BreakerSnapshot;
  /** Attempts sent to this endpoint since the backend was built. */
  readonly calls: number;
  /** Of those, the ones that counted against it. */
  readonly failures: number;
}

export interface BackendStatus {
  readonly name: string;
  readonly kind: BackendKind;
  readonly protocol: BackendProtocol;
  /** Endpoints in rotation (not ejected by a breaker, the health checks or an operator). */
  readonly available: number;
  readonly endpoints: readonly EndpointStatus[];
  readonly concurrency: LimiterSnapshot;
  readonly retries: RetryBudgetSnapshot;
}

/**
 * Hears every attempt of every call (the gateway's metrics): resilience keeps
 * no metrics library of its own. Asked once per endpoint, when the backend is
 * built, for that endpoint's recorder.
 */
export interface CallObserver {
  endpoint(backend: string, address: string): EndpointCallRecorder;
}

/** One endpoint's attempts: each one's duration and its error (undefined: it succeeded). */
export interface EndpointCallRecorder {
  record(seconds: number, error: unknown): void;
}

/** Retry-After when no endpoint is in rotation and no breaker is about to probe (ejected by health checks or an operator). */
const UNKNOWN_RETRY_AFTER_MS = 1_000;

/**
 * A backend as routing sees it: its cluster of endpoints behind the
 * resilience policies of its config. Every call
 *
 * 1. takes a slot of the backend's concurrency limit, waiting in its bounded
 *    queue or refused at once (load shedding);
 * 2. goes to an endpoint whose circuit breaker admits it (an open breaker
 *    keeps its endpoint ejected from load balancing, so picks skip it);
 * 3. is retried on another endpoint when it failed in a way that is safe to
 *    repeat, after a jittered backoff, within the retry budget and the
 *    request's deadline.
 *
 * Kept across config reloads with its cluster when the backend's config is
 * unchanged, so breaker state and budgets survive an unrelated edit.
 */
export class ResilientBackend {
  private readonly breakers: readonly EndpointBreaker[];
  private readonly limiter: ConcurrencyLimiter;
  private readonly budget: RetryBudget;
  private readonly maxAttempts: number;
  private readonly calls: Float64Array;
  private readonly failures: Float64Array;
  /** Per endpoint, when an observer was given. */
  private readonly recorders: readonly EndpointCallRecorder[] | undefined;

  constructor(
    readonly cluster: BackendCluster,
    private readonly settings: ResilienceSettings,
    log: Logger,
    observer?: CallObserver,
  ) {
    const n = cluster.endpoints.length;
    this.calls = new Float64Array(n);
    this.failures = new Float64Array(n);
    this.recorders = observer !== undefined ? cluster.endpoints.map((e) => observer.endpoint(cluster.name, e.endpoint)) : undefined;
    this.limiter = new ConcurrencyLimiter(cluster.name, settings.concurrency);
    this.budget = new RetryBudget(settings.retry);
    this.maxAttempts = settings.retry.maxAttempts;
    this.breakers = cluster.endpoints.map((endpoint, i) => {
      const where = { backend: cluster.name, endpoint: endpoint.endpoint };
      return new EndpointBreaker(`${cluster.name}/${endpoint.endpoint}`, settings.breaker, {
        onChange: ({ state, previous, reason }) => {
          const fields = { ...where, state, previous, reason };
          if (state === 'open') log.warn(fields, 'circuit breaker opened: endpoint taken out of load balancing');
          else if (state === 'closed') log.info(fields, 'circuit breaker closed: endpoint back in load balancing');
          else log.info(fields, 'circuit breaker half-open: probing the endpoint');
        },
        onAdmitting: (admitting, reason) => {
          if (admitting) cluster.restore(i, BREAKER_EJECTION);
          else cluster.eject(i, reason, BREAKER_EJECTION);
        },
      });
    });
  }

  get name(): string {
    return this.cluster.name;
  }

  get kind(): BackendKind {
    return this.cluster.kind;
  }

  get protocol(): BackendProtocol {
    return this.cluster.protocol;
  }

  /** The backend's timeout_ms: the longest one attempt may take. */
  get timeoutMs(): number {
    return this.cluster.timeoutMs;
  }

  get healthCheck(): HealthCheckSettings {
    return this.cluster.healthCheck;
  }

  /**
   * Runs `fn` on an endpoint under the backend's policies (see the class
   * comment). `fn` is called once per attempt, each time with the endpoint
   * of that attempt; `skip` lists endpoints to avoid if any other is
   * eligible (those where the model is known unready).
   */
  async call<T>(fn: (endpoint: Backend) => Promise<T>, ctx: GuardContext, skip?: EndpointFilter, opts?: GuardOptions): Promise<T> {
    const held = await this.hold(fn, ctx, skip, opts);
    held.release();
    return held.value;
  }

  /**
   * Like call(), but the endpoint stays counted in flight and the
   * concurrency slot stays taken until release(): for a stream whose first
   * part `fn` waited for (its breaker hears the outcome of that part).
   */
  async hold<T>(fn: (endpoint: Backend) => Promise<T>, ctx: GuardContext, skip?: EndpointFilter, opts?: GuardOptions): Promise<HeldCall<T>> {
    const slot = this.limiter.acquire(ctx.deadline, ctx.signal);
    const permit = slot instanceof Promise ? await slot : slot;
    try {
      this.budget.recordCall();
      return await this.attempts(fn, ctx, skip, opts?.retry === false ? 1 : this.maxAttempts, permit);
    } catch (err) {
      permit.release();
      throw err;
    }
  }

  status(): BackendStatus {
    const states = this.cluster.endpointStates();
    return {
      name: this.name,
      kind: this.kind,
      protocol: this.protocol,
      available: states.filter((e) => !e.ejected).length,
      endpoints: states.map((e) => ({
        ...e,
        breaker: this.breakers[e.index]!.snapshot(),
        calls: this.calls[e.index]!,
        failures: this.failures[e.index]!,
      })),
      concurrency: this.limiter.snapshot(),
      retries: this.budget.snapshot(),
    };
  }

  /** True while some call runs or waits here (retiring backends close after their last one). */
  get busy(): boolean {
    return this.limiter.inFlight > 0 || this.limiter.queued > 0;
  }

  /** Refuses queued calls, stops the breakers' timers and closes the endpoints' pools. */
  async close(): Promise<void> {
    this.limiter.rejectWaiting(new GatewayError('UNAVAILABLE', `backend '${this.name}' is shut down`));
    for (const b of this.breakers) b.shutdown();
    await this.cluster.close();
  }

  private async attempts<T>(
    fn: (endpoint: Backend) => Promise<T>,
    ctx: GuardContext,
    skip: EndpointFilter | undefined,
    maxAttempts: number,
    permit: Permit,
  ): Promise<HeldCall<T>> {
    let tried: TriedEndpoints | undefined;
    let lease = this.lease(ctx, skip);
    for (let attempt = 1; ; attempt++) {
      const i = lease.index;
      const breaker = this.breakers[i]!;
      const recorder = this.recorders?.[i];
      const endpoint = lease.endpoint;
      this.calls[i]!++;
      try {
        const value = await breaker.run(recorder === undefined ? () => fn(endpoint) : () => recorded(fn, endpoint, recorder), (err) => {
          const counts = countsAgainstEndpoint(err, ctx.clientDeadline, ctx.signal);
          if (counts) this.failures[i]!++;
          return counts;
        });
        return { value, release: () => (lease.release(), permit.release()) };
      } catch (err) {
        lease.release();
        if (attempt >= maxAttempts || !isRetryable(err) || ctx.signal?.aborted === true) throw err;
        tried ??= new TriedEndpoints(skip);
        tried.add(i);
        // A retry goes to another endpoint or not at all: the same one again would likely fail the same way,
        // and a fallback (or the client) is better placed to decide.
        let next = this.cluster.acquireOther(ctx, tried);
        if (next === undefined) throw err;
        const wait = backoffMs(attempt, this.settings.retry);
        if (Date.now() + wait >= ctx.deadline || !this.budget.tryRetry()) {
          next.release();
          throw err;
        }
        if (wait > 0) {
          try {
            await backoff(wait, ctx.signal);
          } catch (cancelled) {
            next.release();
            throw cancelled;
          }
          // Its breaker may have opened during the wait: pick again rather than send it a call it would refuse.
          if (this.cluster.isEjected(next.index)) {
            next.release();
            const other = this.cluster.acquireOther(ctx, tried);
            if (other === undefined) throw err;
            next = other;
          }
        }
        lease = next;
      }
    }
  }

  /**
   * An endpoint for the first attempt. With none in rotation: a fast
   * UNAVAILABLE saying when a breaker probes next, marked as a connection
   * failure (the backend was not reached), so a fallback moves on.
   */
  private lease(ctx: GuardContext, skip: EndpointFilter | undefined): EndpointLease {
    try {
      return this.cluster.acquire(ctx, skip);
    } catch (err) {
      const error = toGatewayError(err);
      if (error.code !== 'UNAVAILABLE') throw error;
      throw new GatewayError('UNAVAILABLE', error.message, { cause: error.cause, transport: 'connect', retryAfterMs: this.nextProbeInMs() });
    }
  }

  private nextProbeInMs(): number {
    let soonest = Infinity;
    for (const b of this.breakers) {
      const ms = b.retryInMs();
      if (ms > 0 && ms < soonest) soonest = ms;
    }
    return Number.isFinite(soonest) ? soonest : UNKNOWN_RETRY_AFTER_MS;
  }
}

/** The caller's skip list plus the endpoints a call already failed on, so a retry goes elsewhere when it can. */
class TriedEndpoints implements EndpointFilter {
  private readonly tried = new Set<number>();

  constructor(private readonly skip: EndpointFilter | undefined) {}

  add(i: number): void {
    this.tried.add(i);
  }

  has(i: number): boolean {
    return this.tried.has(i) || this.skip?.has(i) === true;
  }
}

/** One attempt, timed for its endpoint's recorder (only attempts the breaker let through reach the backend). */
async function recorded<T>(fn: (endpoint: Backend) => Promise<T>, endpoint: Backend, recorder: EndpointCallRecorder): Promise<T> {
  const started = performance.now();
  try {
    const value = await fn(endpoint);
    recorder.record((performance.now() - started) / 1000, undefined);
    return value;
  } catch (err) {
    recorder.record((performance.now() - started) / 1000, err);
    throw err;
  }
}

/** Waits before a retry; a client that goes away (or a shutdown) ends the wait with its reason. */
function backoff(ms: number, signal: CancelSignal | undefined): Promise<void> {
  if (signal?.aborted === true) return Promise.reject(abortedError(signal, 'the request was cancelled'));
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortedError(signal, 'the request was cancelled'));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Clusters under the default policies (tools and tests that build routes without a config). */
export function withDefaultResilience(clusters: ReadonlyMap<string, BackendCluster>, log: Logger): Map<string, ResilientBackend> {
  return new Map([...clusters].map(([name, cluster]) => [name, new ResilientBackend(cluster, DEFAULT_RESILIENCE, log)]));
}
