import { unavailable, type GatewayError } from '../core/errors.js';
import type { Backend, BackendKind, BackendProtocol } from './backend.js';
import { createBalancer, type Balancer, type BalancerPolicy, type RandomSource } from './balancers/index.js';

/** Background readiness checks of a backend's models (see routing/model-health.ts). */
export interface HealthCheckSettings {
  /** 0 turns background checks off for this backend. */
  readonly intervalMs: number;
  readonly timeoutMs: number;
  /**
   * Consecutive failed checks before a ready model is marked unready, and
   * before an unreachable endpoint is ejected (one success undoes either).
   */
  readonly unhealthyAfter: number;
}

/** How a cluster spreads calls over its endpoints (from the backend's `load_balancing` and endpoint weights). */
export interface LoadBalancingSettings {
  readonly policy: BalancerPolicy;
  /** Weight per endpoint, in endpoint order (default 1 each). */
  readonly weights?: readonly number[];
  /** consistent_hash: the lower-case request header (gRPC metadata key) whose value is the key. */
  readonly hashHeader?: string;
  /** Tests only: a deterministic random source for least_request. */
  readonly random?: RandomSource;
}

/** What pick() reads from a request: its headers (structurally, routing's RequestContext). */
export interface PickContext {
  readonly header?: (name: string) => string | undefined;
}

/** Endpoint indexes to avoid for one call (e.g. those where the model is not ready); a ReadonlySet<number> fits. */
export interface EndpointFilter {
  has(index: number): boolean;
}

/** A chosen endpoint with one outstanding call counted against it until release(). */
export interface EndpointLease {
  readonly endpoint: Backend;
  readonly index: number;
  /** Ends the call's accounting; later calls do nothing, so it is safe in every `finally`. */
  release(): void;
}

/** One endpoint as the admin and status views see it. */
export interface EndpointState {
  readonly index: number;
  readonly address: string;
  readonly weight: number;
  readonly ejected: boolean;
  /** Why it is ejected, one "source: reason" per ejecting source ('' when not ejected). */
  readonly reason: string;
  /** Calls in flight through acquire()/call(). */
  readonly outstanding: number;
}

const DEFAULT_HEALTH: HealthCheckSettings = { intervalMs: 0, timeoutMs: 1_000, unhealthyAfter: 1 };
const DEFAULT_BALANCING: LoadBalancingSettings = { policy: 'least_request' };

/**
 * A named backend from the config: one adapter per endpoint, all of one server
 * kind and protocol, with the backend's load-balancing policy over them.
 *
 * Endpoints can be ejected (by the health checks, by circuit breakers, by an
 * operator); picks skip ejected endpoints, and with none left fail with
 * UNAVAILABLE. Each ejecting source holds its own ejection, so the health
 * checks restoring an endpoint do not undo a circuit breaker's.
 *
 * Calls made through acquire()/call() are counted per endpoint while in flight;
 * least_request balances on those counts.
 */
export class BackendCluster {
  private closed = false;
  private readonly balancer: Balancer;
  private readonly weights: readonly number[];
  private readonly hashHeader: string | undefined;
  /** In-flight calls per endpoint; read by least_request. */
  private readonly outstanding: Int32Array;
  /** 1 where an endpoint is ejected by any source: the hot path reads only this. */
  private readonly ejected: Uint8Array;
  /** Per endpoint: ejecting source -> reason. */
  private readonly ejections: (Map<string, string> | undefined)[];
  private ejectedCount = 0;
  /** The per-call filter while a pick runs (picks are synchronous), so `eligible` needs no per-call closure. */
  private skip: EndpointFilter | undefined;
  private readonly eligible = (i: number): boolean => this.ejected[i] === 0 && this.skip?.has(i) !== true;

  constructor(
    readonly name: string,
    readonly kind: BackendKind,
    readonly protocol: BackendProtocol,
    readonly timeoutMs: number,
    readonly endpoints: readonly Backend[],
    readonly healthCheck: HealthCheckSettings = DEFAULT_HEALTH,
    balancing: LoadBalancingSettings = DEFAULT_BALANCING,
  ) {
    const n = endpoints.length;
    this.weights = endpoints.map((_, i) => balancing.weights?.[i] ?? 1);
    this.hashHeader = balancing.policy === 'consistent_hash' ? balancing.hashHeader?.toLowerCase() : undefined;
    this.outstanding = new Int32Array(n);
    this.ejected = new Uint8Array(n);
    this.ejections = new Array<Map<string, string> | undefined>(n).fill(undefined);
    this.balancer = createBalancer({
      policy: balancing.policy,
      addresses: endpoints.map((e, i) => e.endpoint ?? `#${i}`),
      weights: this.weights,
      outstanding: this.outstanding,
      ...(balancing.random !== undefined ? { random: balancing.random } : {}),
    });
  }

  /**
   * An eligible endpoint for one call, chosen by the backend's policy, with no
   * accounting: prefer acquire() or call() for requests, so least_request sees
   * them. `ctx` supplies the consistent-hash key; `skip` lists endpoints to
   * avoid for this call if any other is eligible (see choose()).
   * Throws UNAVAILABLE when every endpoint is ejected.
   */
  pick(ctx?: PickContext, skip?: EndpointFilter): Backend {
    return this.endpoints[this.choose(ctx, skip)]!;
  }

  /** Picks like pick() and counts a call in flight on the endpoint until the lease is released. */
  acquire(ctx?: PickContext, skip?: EndpointFilter): EndpointLease {
    const index = this.choose(ctx, skip);
    this.outstanding[index]!++;
    return new Lease(this.endpoints[index]!, index, this.outstanding);
  }

  /**
   * For a retry: an endpoint outside `exclude` (those already tried, and any
   * the caller avoids), or undefined when none is left. Unlike acquire()'s
   * skip, the exclusion is strict: a retry goes to a different endpoint or
   * not at all.
   */
  acquireOther(ctx: PickContext | undefined, exclude: EndpointFilter): EndpointLease | undefined {
    if (this.closed || this.ejectedCount >= this.endpoints.length) return undefined;
    const index = this.pickAvoiding(this.keyOf(ctx), exclude);
    if (index === undefined) return undefined;
    this.outstanding[index]!++;
    return new Lease(this.endpoints[index]!, index, this.outstanding);
  }

  /** Runs one call on a picked endpoint, counted in flight until it settles (either way). */
  async call<T>(fn: (endpoint: Backend) => Promise<T>, ctx?: PickContext, skip?: EndpointFilter): Promise<T> {
    const lease = this.acquire(ctx, skip);
    try {
      return await fn(lease.endpoint);
    } finally {
      lease.release();
    }
  }

  /** True when some endpoint is not ejected (a caller may fail over without catching pick()'s error). */
  get available(): boolean {
    return !this.closed && this.ejectedCount < this.endpoints.length;
  }

  /**
   * Takes an endpoint out of rotation on behalf of `source` ('health',
   * 'breaker', 'admin', ...), with a reason for the status views. Returns
   * true when the endpoint was in rotation before.
   */
  eject(endpoint: number | Backend, reason: string, source = 'admin'): boolean {
    const i = this.indexOf(endpoint);
    const by = (this.ejections[i] ??= new Map());
    by.set(source, reason);
    if (this.ejected[i] === 1) return false;
    this.ejected[i] = 1;
    this.ejectedCount++;
    return true;
  }

  /** Lifts `source`'s ejection; the endpoint is back in rotation once no source holds one. Returns true when it is. */
  restore(endpoint: number | Backend, source = 'admin'): boolean {
    const i = this.indexOf(endpoint);
    const by = this.ejections[i];
    if (by === undefined || !by.delete(source) || by.size > 0) return false;
    this.ejections[i] = undefined;
    this.ejected[i] = 0;
    this.ejectedCount--;
    return true;
  }

  isEjected(endpoint: number | Backend, source?: string): boolean {
    const i = this.indexOf(endpoint);
    return source === undefined ? this.ejected[i] === 1 : this.ejections[i]?.has(source) === true;
  }

  endpointStates(): EndpointState[] {
    return this.endpoints.map((e, i) => ({
      index: i,
      address: e.endpoint,
      weight: this.weights[i]!,
      ejected: this.ejected[i] === 1,
      reason: ejectionReason(this.ejections[i]),
      outstanding: this.outstanding[i]!,
    }));
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled(this.endpoints.map((e) => e.close()));
  }

  /**
   * The balancer's choice among endpoints not ejected. `skip` is advisory: if
   * it would leave no endpoint, the choice is made without it, so the call
   * still reaches a live endpoint and the backend answers for itself (a model
   * that is unready everywhere is the route-level checks' business).
   */
  private choose(ctx: PickContext | undefined, skip: EndpointFilter | undefined): number {
    if (this.closed) throw unavailable(`backend '${this.name}' is shut down`);
    let index: number | undefined;
    if (this.ejectedCount < this.endpoints.length) {
      const key = this.keyOf(ctx);
      if (skip !== undefined) index = this.pickAvoiding(key, skip);
      index ??= this.balancer.pick(key, this.eligible);
    }
    if (index === undefined) throw this.noEndpoint();
    return index;
  }

  /** The consistent-hash key of a request (undefined for the other policies). */
  private keyOf(ctx: PickContext | undefined): string | undefined {
    return this.hashHeader !== undefined ? ctx?.header?.(this.hashHeader) : undefined;
  }

  /** The balancer's choice among endpoints neither ejected nor in `avoid`, if any. */
  private pickAvoiding(key: string | undefined, avoid: EndpointFilter): number | undefined {
    this.skip = avoid;
    try {
      return this.balancer.pick(key, this.eligible);
    } finally {
      this.skip = undefined;
    }
  }

  private noEndpoint(): GatewayError {
    if (this.endpoints.length === 0) return unavailable(`backend '${this.name}' has no endpoints`);
    const ejected = this.endpoints
      .map((e, i) => (this.ejected[i] === 1 ? `${e.endpoint} (${ejectionReason(this.ejections[i])})` : undefined))
      .filter((s) => s !== undefined);
    return unavailable(`backend '${this.name}': no endpoint available (${ejected.length} ejected: ${ejected.join('; ')})`);
  }

  private indexOf(endpoint: number | Backend): number {
    const i = typeof endpoint === 'number' ? endpoint : this.endpoints.indexOf(endpoint);
    if (!Number.isInteger(i) || i < 0 || i >= this.endpoints.length) {
      throw new RangeError(`backend '${this.name}' has no endpoint ${typeof endpoint === 'number' ? endpoint : endpoint.endpoint}`);
    }
    return i;
  }
}

class Lease implements EndpointLease {
  private released = false;

  constructor(
    readonly endpoint: Backend,
    readonly index: number,
    private readonly counts: Int32Array,
  ) {}

  release(): void {
    if (this.released) return;
    this.released = true;
    this.counts[this.index]!--;
  }
}

function ejectionReason(by: ReadonlyMap<string, string> | undefined): string {
  return by === undefined ? '' : [...by].map(([source, reason]) => `${source}: ${reason}`).join('; ');
}
