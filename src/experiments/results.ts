import { Redis } from 'ioredis';
import type { Logger } from '../observability/logger.js';
import { histogramQuantile, latencyBucket, LATENCY_BUCKETS } from './results-histogram.js';
import type { ArmObservation, ExperimentRecorder } from './types.js';

/**
 * Results per experiment arm: requests, errors, cache hits, a latency
 * histogram and client-reported outcomes (count, sum, sum of squares per
 * outcome name), plus a per-second sliding window for the guard, and shadow
 * agreement per model. One long-lived object for the whole process (it
 * survives config swaps). With Redis, each instance adds its local deltas to
 * shared hashes `<prefix>:exp:<experiment>:<arm>` (and `<prefix>:shadow:<model>`)
 * about once a second, never on the request path, and reads merge the shared
 * totals; with Redis down, counting goes on locally and the deltas are sent
 * when it is back.
 */

/** What a client reports for one request. */
export interface OutcomeTotals {
  count: number;
  sum: number;
  sumSquares: number;
}

/** One arm's totals (cumulative). */
export interface ArmTotals {
  requests: number;
  errors: number;
  cacheHits: number;
  /** Counts per latency bucket (results-histogram.ts). */
  readonly latency: Float64Array;
  readonly outcomes: Map<string, OutcomeTotals>;
}

/** One shadowed model's comparison totals. */
export interface ShadowTotals {
  /** Copies whose answer was compared with the primary's. */
  compared: number;
  agreed: number;
  /** Copies not sent (over the concurrency limit). */
  dropped: number;
  /** Copies that failed (no answer to compare). */
  failed: number;
  primaryMsSum: number;
  shadowMsSum: number;
}

export interface ShadowOutcome {
  readonly agreed: boolean;
  readonly primaryMs: number;
  readonly shadowMs: number;
  readonly dropped?: boolean;
  readonly failed?: boolean;
}

/** An arm over the guard's window. */
export interface WindowStats {
  readonly requests: number;
  readonly errors: number;
  readonly errorRate: number;
  /** undefined with no request in the window. */
  readonly p99Ms: number | undefined;
}

export interface ResultsRedisOptions {
  readonly url: string;
  readonly keyPrefix: string;
  readonly commandTimeoutMs: number;
}

export interface ExperimentResultsOptions {
  readonly logger?: Logger;
  /** Share counts through this Redis; without it the counts are this instance's. */
  readonly redis?: ResultsRedisOptions;
  /** How often local deltas go to Redis (default 1000 ms). */
  readonly flushMs?: number;
  /** Request ids remembered for outcomes (default 100,000; the oldest goes first). */
  readonly requestIdCapacity?: number;
  /** Clock (tests). */
  readonly now?: () => number;
}

/** Outcome names: letters, digits, `_ . -` (no ':', which the Redis field names use). */
export const OUTCOME_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** Distinct outcome names per arm at most (a client cannot grow memory without bound). */
export const MAX_OUTCOME_NAMES = 64;
/** The longest window the guard can look at. */
const MAX_WINDOW_S = 3_600;
const DEFAULT_WINDOW_S = 60;

function emptyTotals(): ArmTotals {
  return { requests: 0, errors: 0, cacheHits: 0, latency: new Float64Array(LATENCY_BUCKETS), outcomes: new Map() };
}

function emptyShadow(): ShadowTotals {
  return { compared: 0, agreed: 0, dropped: 0, failed: 0, primaryMsSum: 0, shadowMsSum: 0 };
}

function isEmpty(t: ArmTotals): boolean {
  return t.requests === 0 && t.errors === 0 && t.cacheHits === 0 && t.outcomes.size === 0;
}

function addTotals(into: ArmTotals, from: ArmTotals): void {
  into.requests += from.requests;
  into.errors += from.errors;
  into.cacheHits += from.cacheHits;
  for (let i = 0; i < LATENCY_BUCKETS; i++) into.latency[i]! += from.latency[i]!;
  for (const [name, o] of from.outcomes) {
    const to = into.outcomes.get(name);
    if (to === undefined) into.outcomes.set(name, { ...o });
    else {
      to.count += o.count;
      to.sum += o.sum;
      to.sumSquares += o.sumSquares;
    }
  }
}

function addShadow(into: ShadowTotals, from: ShadowTotals): void {
  into.compared += from.compared;
  into.agreed += from.agreed;
  into.dropped += from.dropped;
  into.failed += from.failed;
  into.primaryMsSum += from.primaryMsSum;
  into.shadowMsSum += from.shadowMsSum;
}

const SHADOW_FIELDS: readonly [keyof ShadowTotals, string][] = [
  ['compared', 'compared'],
  ['agreed', 'agreed'],
  ['dropped', 'dropped'],
  ['failed', 'failed'],
  ['primaryMsSum', 'primary_ms_sum'],
  ['shadowMsSum', 'shadow_ms_sum'],
];

/** A hash read back from Redis into totals. */
function parseArmHash(hash: Record<string, string>): ArmTotals {
  const t = emptyTotals();
  for (const [field, raw] of Object.entries(hash)) {
    const v = Number(raw);
    if (!Number.isFinite(v)) continue;
    if (field === 'requests') t.requests = v;
    else if (field === 'errors') t.errors = v;
    else if (field === 'cache_hits') t.cacheHits = v;
    else if (field.startsWith('l:')) {
      const i = Number(field.slice(2));
      if (Number.isInteger(i) && i >= 0 && i < LATENCY_BUCKETS) t.latency[i] = v;
    } else if (field.startsWith('o:')) {
      const cut = field.lastIndexOf(':');
      const name = field.slice(2, cut);
      const kind = field.slice(cut + 1);
      let o = t.outcomes.get(name);
      if (o === undefined) t.outcomes.set(name, (o = { count: 0, sum: 0, sumSquares: 0 }));
      if (kind === 'n') o.count = v;
      else if (kind === 's') o.sum = v;
      else if (kind === 'q') o.sumSquares = v;
    }
  }
  return t;
}

/** Per-second slots over the guard's window: requests, errors and a latency histogram each. */
class WindowRing {
  private readonly seconds: Float64Array;
  private readonly requests: Float64Array;
  private readonly errors: Float64Array;
  private readonly latency: Uint32Array;

  constructor(readonly slots: number) {
    this.seconds = new Float64Array(slots).fill(-1);
    this.requests = new Float64Array(slots);
    this.errors = new Float64Array(slots);
    this.latency = new Uint32Array(slots * LATENCY_BUCKETS);
  }

  record(second: number, ok: boolean, bucket: number): void {
    const slot = second % this.slots;
    if (this.seconds[slot] !== second) {
      this.seconds[slot] = second;
      this.requests[slot] = 0;
      this.errors[slot] = 0;
      this.latency.fill(0, slot * LATENCY_BUCKETS, (slot + 1) * LATENCY_BUCKETS);
    }
    this.requests[slot]! += 1;
    if (!ok) this.errors[slot]! += 1;
    this.latency[slot * LATENCY_BUCKETS + bucket]! += 1;
  }

  /** The last `windowS` seconds up to `second` (inclusive). */
  stats(second: number, windowS: number): WindowStats {
    const span = Math.min(windowS, this.slots);
    let requests = 0;
    let errors = 0;
    const hist = new Float64Array(LATENCY_BUCKETS);
    for (let slot = 0; slot < this.slots; slot++) {
      const s = this.seconds[slot]!;
      if (s < 0 || s > second || s <= second - span) continue;
      requests += this.requests[slot]!;
      errors += this.errors[slot]!;
      const base = slot * LATENCY_BUCKETS;
      for (let i = 0; i < LATENCY_BUCKETS; i++) hist[i]! += this.latency[base + i]!;
    }
    return { requests, errors, errorRate: requests > 0 ? errors / requests : 0, p99Ms: histogramQuantile(hist, 0.99) };
  }

  reset(): void {
    this.seconds.fill(-1);
  }

  /** A ring of another size holding the same recent seconds (as many as fit). */
  resized(slots: number): WindowRing {
    const next = new WindowRing(slots);
    for (let slot = 0; slot < this.slots; slot++) {
      const s = this.seconds[slot]!;
      if (s < 0) continue;
      const to = s % slots;
      if (next.seconds[to]! >= s) continue;
      next.seconds[to] = s;
      next.requests[to] = this.requests[slot]!;
      next.errors[to] = this.errors[slot]!;
      next.latency.set(this.latency.subarray(slot * LATENCY_BUCKETS, (slot + 1) * LATENCY_BUCKETS), to * LATENCY_BUCKETS);
    }
    return next;
  }
}

class ArmState {
  /** This instance's totals since start. */
  readonly local = emptyTotals();
  /** Not yet added to Redis. */
  pending = emptyTotals();
  window: WindowRing;
  constructor(windowS: number) {
    this.window = new WindowRing(windowS);
  }
}

class ShadowState {
  readonly local = emptyShadow();
  pending = emptyShadow();
  dirty = false;
}

export class ExperimentResults implements ExperimentRecorder {
  private readonly experiments = new Map<string, Map<string, ArmState>>();
  private readonly windowSeconds = new Map<string, number>();
  private readonly shadows = new Map<string, ShadowState>();
  private readonly cuts = new Map<string, { readonly reason: string; readonly at: string }>();
  /** Request id -> `experiment \0 arm`, in answer order (the oldest is evicted first). */
  private readonly requestIds = new Map<string, string>();
  private readonly capacity: number;
  private readonly now: () => number;
  private readonly logger: Logger | undefined;
  private readonly redis: Redis | undefined;
  private readonly prefix: string;
  private readonly flushMs: number;
  private timer: NodeJS.Timeout | undefined;
  private flushChain: Promise<boolean> = Promise.resolve(true);
  private redisUp = false;
  private downLogged = false;
  private closed = false;

  constructor(opts: ExperimentResultsOptions = {}) {
    this.capacity = Math.max(1, opts.requestIdCapacity ?? 100_000);
    this.now = opts.now ?? Date.now;
    this.logger = opts.logger;
    this.flushMs = opts.flushMs ?? 1_000;
    this.prefix = opts.redis?.keyPrefix ?? 'infergate';
    if (opts.redis !== undefined) {
      const r = opts.redis;
      this.redis = new Redis(r.url, {
        lazyConnect: true,
        maxRetriesPerRequest: 1,
        // Commands fail at once while disconnected: the deltas wait for the next flush.
        enableOfflineQueue: false,
        commandTimeout: r.commandTimeoutMs,
        connectTimeout: Math.max(1_000, r.commandTimeoutMs * 4),
        retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times - 1, 5), 2_000),
        connectionName: 'infergate:results',
      });
      this.redis.on('ready', () => {
        if (this.downLogged) this.logger?.info('experiment results: redis is back; sharing counts again');
        this.redisUp = true;
        this.downLogged = false;
      });
      const down = (): void => {
        this.redisUp = false;
        if (!this.downLogged && !this.closed) {
          this.downLogged = true;
          this.logger?.warn('experiment results: redis unavailable; counting locally until it is back');
        }
      };
      this.redis.on('close', down);
      this.redis.on('error', (err: Error) => {
        this.logger?.debug({ err: err.message }, 'experiment results: redis error');
        down();
      });
    }
  }

  /** Connects to Redis (when configured) and starts the periodic flush. */
  start(): void {
    if (this.redis === undefined || this.timer !== undefined || this.closed) return;
    this.redis.connect().catch(() => undefined);
    this.timer = setInterval(() => void this.flush(), this.flushMs);
    this.timer.unref();
  }

  /** Whether counts are currently shared (always false without Redis). */
  get shared(): boolean {
    return this.redisUp;
  }

  get sharing(): boolean {
    return this.redis !== undefined;
  }

  // ---- recording (the request path: memory only) ----

  /** ExperimentRecorder: one finished request of an arm. */
  recordRequest(experiment: string, arm: string, observation: ArmObservation): void {
    const state = this.arm(experiment, arm);
    const bucket = latencyBucket(observation.latencyMs);
    for (const t of [state.local, state.pending]) {
      t.requests += 1;
      if (!observation.ok) t.errors += 1;
      if (observation.cacheHit === true) t.cacheHits += 1;
      t.latency[bucket]! += 1;
    }
    state.window.record(Math.floor(this.now() / 1_000), observation.ok, bucket);
    if (observation.requestId !== undefined) this.rememberRequest(observation.requestId, experiment, arm);
  }

  /** Remembers which arm answered a request, so a later outcome can name the request id. */
  rememberRequest(requestId: string, experiment: string, arm: string): void {
    this.requestIds.delete(requestId);
    this.requestIds.set(requestId, `${experiment}\u0000${arm}`);
    if (this.requestIds.size > this.capacity) {
      const oldest = this.requestIds.keys().next();
      if (oldest.done !== true) this.requestIds.delete(oldest.value);
    }
  }

  /** The experiment and arm that answered a remembered request. */
  lookupRequest(requestId: string): { experiment: string; arm: string } | undefined {
    const v = this.requestIds.get(requestId);
    if (v === undefined) return undefined;
    const cut = v.indexOf('\u0000');
    return { experiment: v.slice(0, cut), arm: v.slice(cut + 1) };
  }

  get rememberedRequests(): number {
    return this.requestIds.size;
  }

  /**
   * A client-reported outcome of one request of `arm`. Returns false (nothing
   * counted) when the arm already has MAX_OUTCOME_NAMES other names.
   */
  recordOutcome(experiment: string, arm: string, name: string, value: number): boolean {
    const state = this.arm(experiment, arm);
    if (!state.local.outcomes.has(name) && state.local.outcomes.size >= MAX_OUTCOME_NAMES) return false;
    for (const t of [state.local, state.pending]) {
      let o = t.outcomes.get(name);
      if (o === undefined) t.outcomes.set(name, (o = { count: 0, sum: 0, sumSquares: 0 }));
      o.count += 1;
      o.sum += value;
      o.sumSquares += value * value;
    }
    return true;
  }

  /** Shadow traffic's comparison of one copy, reported beside the arms of the model's experiment. */
  recordShadow(model: string, observation: ShadowOutcome): void {
    let s = this.shadows.get(model);
    if (s === undefined) this.shadows.set(model, (s = new ShadowState()));
    for (const t of [s.local, s.pending]) {
      if (observation.dropped === true) t.dropped += 1;
      else if (observation.failed === true) t.failed += 1;
      else {
        t.compared += 1;
        if (observation.agreed) t.agreed += 1;
        t.primaryMsSum += observation.primaryMs;
        t.shadowMsSum += observation.shadowMs;
      }
    }
    s.dirty = true;
  }

  // ---- the guard's window ----

  /** The window the guard reads for this experiment (whole seconds, 1..3600); resizing keeps the recent seconds that fit. */
  setWindow(experiment: string, windowMs: number): void {
    const seconds = Math.min(MAX_WINDOW_S, Math.max(1, Math.ceil(windowMs / 1_000)));
    if (this.windowSeconds.get(experiment) === seconds) return;
    this.windowSeconds.set(experiment, seconds);
    for (const state of this.experiments.get(experiment)?.values() ?? []) state.window = state.window.resized(seconds);
  }

  /** The arm's requests, errors and p99 over the last `windowMs` (at most the experiment's window), this instance only. */
  windowStats(experiment: string, arm: string, windowMs?: number): WindowStats {
    const state = this.experiments.get(experiment)?.get(arm);
    if (state === undefined) return { requests: 0, errors: 0, errorRate: 0, p99Ms: undefined };
    const seconds = windowMs !== undefined ? Math.max(1, Math.ceil(windowMs / 1_000)) : state.window.slots;
    return state.window.stats(Math.floor(this.now() / 1_000), seconds);
  }

  /** Forgets an arm's window (after a cut, so a re-enabled arm starts clean). */
  resetWindow(experiment: string, arm: string): void {
    this.experiments.get(experiment)?.get(arm)?.window.reset();
  }

  /** Notes a cut (the guard's), shown by GET /v1/experiments/{name}. */
  noteCut(experiment: string, arm: string, reason: string): void {
    this.cuts.set(`${experiment}\u0000${arm}`, { reason, at: new Date(this.now()).toISOString() });
  }

  clearCut(experiment: string, arm: string): void {
    this.cuts.delete(`${experiment}\u0000${arm}`);
  }

  cutOf(experiment: string, arm: string): { readonly reason: string; readonly at: string } | undefined {
    return this.cuts.get(`${experiment}\u0000${arm}`);
  }

  // ---- reading ----

  /**
   * Totals per arm: the shared ones (every instance, this one's deltas
   * flushed first) when Redis is up, else this instance's.
   */
  async snapshot(experiment: string, arms: readonly string[]): Promise<{ source: 'shared' | 'local'; arms: Map<string, ArmTotals> }> {
    if (this.redis !== undefined && (await this.flush())) {
      try {
        const pipeline = this.redis.pipeline();
        for (const arm of arms) pipeline.hgetall(this.armKey(experiment, arm));
        const replies = (await pipeline.exec()) ?? [];
        const out = new Map<string, ArmTotals>();
        arms.forEach((arm, i) => {
          const [err, hash] = replies[i] ?? [new Error('no reply'), undefined];
          if (err !== null) throw err;
          out.set(arm, parseArmHash(hash as Record<string, string>));
        });
        return { source: 'shared', arms: out };
      } catch (err) {
        this.logger?.debug({ err: (err as Error).message }, 'experiment results: shared read failed; answering with local counts');
      }
    }
    const out = new Map<string, ArmTotals>();
    for (const arm of arms) {
      const t = emptyTotals();
      const state = this.experiments.get(experiment)?.get(arm);
      if (state !== undefined) addTotals(t, state.local);
      out.set(arm, t);
    }
    return { source: 'local', arms: out };
  }

  /** The shadow totals of a model (shared when Redis is up); undefined when nothing was ever recorded. */
  async shadowSnapshot(model: string): Promise<ShadowTotals | undefined> {
    if (this.redis !== undefined && (await this.flush())) {
      try {
        const hash = await this.redis.hgetall(this.shadowKey(model));
        if (Object.keys(hash).length === 0) return this.shadows.has(model) ? emptyShadow() : undefined;
        const t = emptyShadow();
        for (const [key, field] of SHADOW_FIELDS) {
          const v = Number(hash[field] ?? 0);
          if (Number.isFinite(v)) t[key] = v;
        }
        return t;
      } catch {
        // Local below.
      }
    }
    const s = this.shadows.get(model);
    return s === undefined ? undefined : { ...s.local };
  }

  // ---- Redis ----

  /**
   * Sends the local deltas to Redis in one MULTI. True when Redis holds
   * everything recorded before the call; false without Redis or when it is
   * down (the deltas stay for the next try).
   */
  flush(): Promise<boolean> {
    this.flushChain = this.flushChain.then(
      () => this.flushOnce(),
      () => this.flushOnce(),
    );
    return this.flushChain;
  }

  private async flushOnce(): Promise<boolean> {
    const redis = this.redis;
    if (redis === undefined || redis.status !== 'ready') return false;
    const sent: [ArmState, ArmTotals][] = [];
    const sentShadows: [ShadowState, ShadowTotals][] = [];
    const multi = redis.multi();
    for (const [experiment, arms] of this.experiments) {
      for (const [arm, state] of arms) {
        const delta = state.pending;
        if (isEmpty(delta)) continue;
        state.pending = emptyTotals();
        sent.push([state, delta]);
        const key = this.armKey(experiment, arm);
        if (delta.requests > 0) multi.hincrby(key, 'requests', delta.requests);
        if (delta.errors > 0) multi.hincrby(key, 'errors', delta.errors);
        if (delta.cacheHits > 0) multi.hincrby(key, 'cache_hits', delta.cacheHits);
        delta.latency.forEach((n, i) => {
          if (n > 0) multi.hincrby(key, `l:${i}`, n);
        });
        for (const [name, o] of delta.outcomes) {
          multi.hincrby(key, `o:${name}:n`, o.count);
          multi.hincrbyfloat(key, `o:${name}:s`, o.sum);
          multi.hincrbyfloat(key, `o:${name}:q`, o.sumSquares);
        }
      }
    }
    for (const [model, s] of this.shadows) {
      if (!s.dirty) continue;
      const delta = s.pending;
      s.pending = emptyShadow();
      s.dirty = false;
      sentShadows.push([s, delta]);
      const key = this.shadowKey(model);
      for (const [k, field] of SHADOW_FIELDS) {
        if (delta[k] === 0) continue;
        if (k === 'primaryMsSum' || k === 'shadowMsSum') multi.hincrbyfloat(key, field, delta[k]);
        else multi.hincrby(key, field, delta[k]);
      }
    }
    if (sent.length === 0 && sentShadows.length === 0) {
      multi.discard();
      return true;
    }
    try {
      const replies = await multi.exec();
      if (replies === null || replies.some(([err]) => err !== null)) throw new Error('MULTI was not applied');
      return true;
    } catch (err) {
      // Not applied (MULTI is all or nothing): the deltas go back for the next flush.
      for (const [state, delta] of sent) addTotals(state.pending, delta);
      for (const [s, delta] of sentShadows) {
        addShadow(s.pending, delta);
        s.dirty = true;
      }
      this.logger?.debug({ err: (err as Error).message }, 'experiment results: flush to redis failed; will retry');
      return false;
    }
  }

  /** Stops the flush; a last flush sends what is left when Redis is up. */
  async close(): Promise<void> {
    if (this.closed) return;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.flush().catch(() => false);
    this.closed = true;
    if (this.redis !== undefined) {
      this.redis.disconnect();
    }
  }

  private arm(experiment: string, arm: string): ArmState {
    let arms = this.experiments.get(experiment);
    if (arms === undefined) this.experiments.set(experiment, (arms = new Map()));
    let state = arms.get(arm);
    if (state === undefined) arms.set(arm, (state = new ArmState(this.windowSeconds.get(experiment) ?? DEFAULT_WINDOW_S)));
    return state;
  }

  private armKey(experiment: string, arm: string): string {
    return `${this.prefix}:exp:${experiment}:${arm}`;
  }

  private shadowKey(model: string): string {
    return `${this.prefix}:shadow:${model}`;
  }
}
