import type { ResilientBackend } from '../resilience/resilient-backend.js';
import type { ModelNodeConfig, RouteNodeConfig } from '../config/route-schema.js';
import type { DataType } from '../core/datatypes.js';
import { notFound, toGatewayError } from '../core/errors.js';
import type { InferRequest, InferResponse } from '../core/inference.js';
import type { Tensor } from '../core/tensor.js';
import { decodeElements } from '../core/tensor-values.js';
import type { Logger } from '../observability/logger.js';
import { childTraceparent, type TraceContext } from '../observability/trace-context.js';
import type { RequestContext } from '../routing/inference-service.js';
import { execute, type ExecContext, type RouteState } from '../routing/route-executor.js';
import { compileModels, type LeafNode, type RouteNode } from '../routing/route-tree.js';
import type { ShadowMirror } from '../routing/traffic-hooks.js';
import type { ShadowSettings } from './types.js';
import type { CancelSignal } from '../core/cancel.js';

/**
 * Shadow traffic: a sampled share of a model's requests is copied, after the
 * primary answered, to another routing node (run through the same executor,
 * so its load balancing and fallbacks apply), with its own deadline and no
 * client signal. Copies in flight are bounded per model; over the bound a
 * copy is dropped and counted (no queue). The shadow's answer is compared
 * with the primary's, and each copy's outcome is counted here and reported
 * to the results module when one is given. Nothing here can delay or fail the
 * client's request: mirror() starts the copy and returns, and every failure
 * of the copy is caught and counted.
 */

/** One model's shadow, compiled: the settings and the shadow's routing tree. */
export interface ShadowPlan extends ShadowSettings {
  readonly node: RouteNode;
  /** The copy's own deadline, from when it starts. */
  readonly timeoutMs: number;
}

/** One finished (or dropped) copy, as the results module takes it. */
export interface ShadowObservation {
  readonly agreed: boolean;
  /** The primary's latency of the mirrored request. */
  readonly primaryMs: number;
  /** The shadow's latency (0 when dropped). */
  readonly shadowMs: number;
  readonly dropped?: boolean;
  readonly failed?: boolean;
}

/** Where copies are reported (the results module's object fits). */
export interface ShadowReporter {
  recordShadow(model: string, observation: ShadowObservation): void;
}

/** Upper bounds (ms) of the latency histograms' buckets; one more bucket counts everything above the last. */
export const LATENCY_BUCKETS_MS: readonly number[] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000];

export interface LatencyHistogram {
  /** counts[i]: observations <= LATENCY_BUCKETS_MS[i] (and > the bound before); the last entry: above every bound. */
  readonly counts: readonly number[];
  readonly count: number;
  readonly sumMs: number;
  readonly maxMs: number;
}

export interface ShadowStats {
  readonly model: string;
  /** Requests sampled for a copy (sent + dropped). */
  readonly sampled: number;
  /** Copies started. */
  readonly sent: number;
  /** Sampled while max_concurrency copies were in flight: not sent. */
  readonly dropped: number;
  /** Copies whose shadow call failed (error or its own timeout). */
  readonly failed: number;
  readonly agreed: number;
  readonly disagreed: number;
  readonly inFlight: number;
  /** agreed / (agreed + disagreed); undefined before any comparison. */
  readonly agreementRate: number | undefined;
  /** The shadow's latency, of copies that answered or failed. */
  readonly shadowLatency: LatencyHistogram;
  /** The primary's latency of every sampled request. */
  readonly primaryLatency: LatencyHistogram;
}

class Histogram {
  private readonly counts = new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0);
  private count = 0;
  private sumMs = 0;
  private maxMs = 0;

  observe(ms: number): void {
    let i = 0;
    while (i < LATENCY_BUCKETS_MS.length && ms > LATENCY_BUCKETS_MS[i]!) i++;
    this.counts[i]!++;
    this.count++;
    this.sumMs += ms;
    if (ms > this.maxMs) this.maxMs = ms;
  }

  snapshot(): LatencyHistogram {
    return { counts: [...this.counts], count: this.count, sumMs: this.sumMs, maxMs: this.maxMs };
  }
}

class ModelCounters {
  sampled = 0;
  sent = 0;
  dropped = 0;
  failed = 0;
  agreed = 0;
  disagreed = 0;
  inFlight = 0;
  readonly shadowLatency = new Histogram();
  readonly primaryLatency = new Histogram();

  snapshot(model: string): ShadowStats {
    const compared = this.agreed + this.disagreed;
    return {
      model,
      sampled: this.sampled,
      sent: this.sent,
      dropped: this.dropped,
      failed: this.failed,
      agreed: this.agreed,
      disagreed: this.disagreed,
      inFlight: this.inFlight,
      agreementRate: compared > 0 ? this.agreed / compared : undefined,
      shadowLatency: this.shadowLatency.snapshot(),
      primaryLatency: this.primaryLatency.snapshot(),
    };
  }
}

/**
 * Per-model counters, kept apart from the mirror so they can outlive one
 * config's runtime (a reload builds a new mirror over the same store).
 */
export class ShadowStatsStore {
  private readonly models = new Map<string, ModelCounters>();

  /** @internal the mutable counters of a model (created on first use). */
  counters(model: string): ModelCounters {
    let c = this.models.get(model);
    if (c === undefined) this.models.set(model, (c = new ModelCounters()));
    return c;
  }

  stats(model: string): ShadowStats | undefined {
    return this.models.get(model)?.snapshot(model);
  }

  all(): ShadowStats[] {
    return [...this.models].map(([model, c]) => c.snapshot(model));
  }
}

export interface ShadowMirrorOptions {
  readonly reporter?: ShadowReporter;
  readonly logger?: Logger;
  /** [0, 1) draws for sampling; default Math.random (tests inject their own). */
  readonly random?: () => number;
  /** Counters shared across runtimes; default: a store of this mirror's own. */
  readonly store?: ShadowStatsStore;
}

/** The routing state of one copy (no health checks: shadow leaves are not watched). */
type ShadowRun = RouteState;

export class ShadowMirrorImpl implements ShadowMirror {
  private readonly plans: ReadonlyMap<string, ShadowPlan>;
  private readonly random: () => number;
  readonly store: ShadowStatsStore;

  constructor(
    plans: Iterable<ShadowPlan>,
    private readonly opts: ShadowMirrorOptions = {},
  ) {
    this.plans = new Map([...plans].map((p) => [p.model, p]));
    this.random = opts.random ?? Math.random;
    this.store = opts.store ?? new ShadowStatsStore();
  }

  /** The models this mirror copies. */
  get models(): readonly string[] {
    return [...this.plans.keys()];
  }

  stats(model: string): ShadowStats | undefined {
    return this.store.stats(model);
  }

  covers(model: string): boolean {
    return (this.plans.get(model)?.percent ?? 0) > 0;
  }

  mirror(model: string, req: InferRequest, primary: InferResponse, primaryLatencyMs: number, ctx: RequestContext): void {
    try {
      const plan = this.plans.get(model);
      if (plan === undefined || plan.percent <= 0) return;
      if (plan.percent < 100 && this.random() * 100 >= plan.percent) return;
      const c = this.store.counters(model);
      c.sampled++;
      c.primaryLatency.observe(primaryLatencyMs);
      if (c.inFlight >= plan.maxConcurrency) {
        c.dropped++;
        this.report(model, { agreed: false, primaryMs: primaryLatencyMs, shadowMs: 0, dropped: true });
        return;
      }
      c.inFlight++;
      c.sent++;
      void this.copy(plan, c, req, primary, primaryLatencyMs, ctx.requestId, ctx.trace);
    } catch (err) {
      // Never the client's problem.
      this.opts.logger?.debug({ model, err: String(err) }, 'shadow: mirror failed');
    }
  }

  private async copy(
    plan: ShadowPlan,
    c: ModelCounters,
    req: InferRequest,
    primary: InferResponse,
    primaryMs: number,
    requestId: string | undefined,
    trace: TraceContext | undefined,
  ): Promise<void> {
    const started = performance.now();
    let answer: InferResponse | undefined;
    try {
      // Its own deadline and signal: the client's (possibly already finished) request has no say.
      const ctx: ShadowContext = {
        deadline: Date.now() + plan.timeoutMs,
        signal: AbortSignal.timeout(plan.timeoutMs),
        ...(requestId !== undefined ? { requestId } : {}),
        ...(trace !== undefined ? { trace } : {}),
      };
      const run: ShadowRun = { leaf: undefined, attempts: 0 };
      answer = await execute(plan.node, req, ctx, shadowInferAt, run);
    } catch (err) {
      this.opts.logger?.debug({ model: plan.model, err: toGatewayError(err).message }, 'shadow: copy failed');
    }
    const shadowMs = performance.now() - started;
    try {
      c.inFlight--;
      c.shadowLatency.observe(shadowMs);
      if (answer === undefined) {
        c.failed++;
        this.report(plan.model, { agreed: false, primaryMs, shadowMs, failed: true });
        return;
      }
      const agreed = responsesAgree(primary, answer, plan.tolerance);
      if (agreed) c.agreed++;
      else c.disagreed++;
      this.report(plan.model, { agreed, primaryMs, shadowMs });
    } catch (err) {
      this.opts.logger?.debug({ model: plan.model, err: String(err) }, 'shadow: comparison failed');
    }
  }

  private report(model: string, observation: ShadowObservation): void {
    try {
      this.opts.reporter?.recordShadow(model, observation);
    } catch (err) {
      this.opts.logger?.debug({ model, err: String(err) }, 'shadow: reporter failed');
    }
  }
}

interface ShadowContext extends ExecContext {
  readonly deadline: number;
  readonly signal: CancelSignal;
  readonly requestId?: string;
  /** The client's trace: the copy's calls are spans of it too. */
  readonly trace?: TraceContext;
}

/**
 * One copy on one leaf: as the service's own leaf call, except that a
 * pinned shadow leaf is asked for its pinned version whatever the client
 * asked (comparing version 1 with the client's version 2 is the point).
 */
const shadowInferAt = (leaf: LeafNode, req: InferRequest, ctx: ShadowContext, run: ShadowRun): Promise<InferResponse> => {
  const backendReq: InferRequest = { ...req, model: leaf.backendModel, version: leaf.pinnedVersion ?? req.version };
  return leaf.backend.call((endpoint) => {
    run.attempts++;
    return endpoint.infer(backendReq, {
      deadline: Math.min(ctx.deadline, Date.now() + leaf.timeoutMs),
      model: leaf.options,
      signal: ctx.signal,
      ...(ctx.requestId !== undefined ? { requestId: ctx.requestId } : {}),
      ...(ctx.trace !== undefined ? { traceparent: childTraceparent(ctx.trace) } : {}),
    });
    // A copy is never retried: shadow traffic must not add load to a struggling backend.
  }, ctx, undefined, { retry: false });
};

// ---------------------------------------------------------------------------
// Comparing answers

const FLOATS: ReadonlySet<DataType> = new Set<DataType>(['FP16', 'BF16', 'FP32', 'FP64']);

/**
 * Whether two answers agree: the same set of outputs by name, each with the
 * same datatype and shape; BYTES, BOOL and integers bit-exact; floats within
 * `tolerance` (absolute; 0 = bit-exact; NaN agrees with NaN).
 */
export function responsesAgree(primary: InferResponse, shadow: InferResponse, tolerance: number): boolean {
  if (primary.outputs.length !== shadow.outputs.length) return false;
  const byName = new Map<string, Tensor>(shadow.outputs.map((t) => [t.name, t]));
  if (byName.size !== shadow.outputs.length) return false;
  for (const a of primary.outputs) {
    const b = byName.get(a.name);
    if (b === undefined || !tensorsAgree(a, b, tolerance)) return false;
  }
  return true;
}

export function tensorsAgree(a: Tensor, b: Tensor, tolerance: number): boolean {
  if (a.datatype !== b.datatype || a.shape.length !== b.shape.length) return false;
  for (let i = 0; i < a.shape.length; i++) if (a.shape[i] !== b.shape[i]) return false;
  if (a.data.equals(b.data)) return true;
  if (tolerance <= 0 || !FLOATS.has(a.datatype) || a.data.length !== b.data.length) return false;
  const x = decodeElements(a.datatype, a.data) as number[];
  const y = decodeElements(b.datatype, b.data) as number[];
  for (let i = 0; i < x.length; i++) {
    const p = x[i]!;
    const q = y[i]!;
    if (p === q || (Number.isNaN(p) && Number.isNaN(q))) continue;
    if (!(Math.abs(p - q) <= tolerance)) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// Building from config

/** The plans of every model of a validated config with a `shadow:`, compiled over the runtime's clusters. */
export function compileShadowPlans(
  config: { readonly models: Readonly<Record<string, ModelNodeConfig>>; readonly targets?: Readonly<Record<string, RouteNodeConfig>> },
  clusters: ReadonlyMap<string, ResilientBackend>,
): ShadowPlan[] {
  const plans: ShadowPlan[] = [];
  for (const [model, node] of Object.entries(config.models)) {
    const shadow = node.shadow;
    if (shadow === undefined) continue;
    // Compiled as a model of the same public name, so its leaves default to that backend model name.
    const compiled = compileModels({ models: { [model]: shadow.node }, targets: config.targets ?? {} }, clusters).get(model);
    if (compiled === undefined) throw notFound(`models.${model}.shadow: did not compile`);
    plans.push({
      model,
      percent: shadow.percent,
      maxConcurrency: shadow.max_concurrency,
      tolerance: shadow.tolerance,
      timeoutMs: shadow.timeout_ms,
      node: compiled.tree,
    });
  }
  return plans;
}

/** The mirror of a config, or undefined when no model has a shadow (the request path then skips it). */
export function buildShadowMirror(
  config: { readonly models: Readonly<Record<string, ModelNodeConfig>>; readonly targets?: Readonly<Record<string, RouteNodeConfig>> },
  clusters: ReadonlyMap<string, ResilientBackend>,
  opts: ShadowMirrorOptions = {},
): ShadowMirrorImpl | undefined {
  const plans = compileShadowPlans(config, clusters);
  return plans.length > 0 ? new ShadowMirrorImpl(plans, opts) : undefined;
}
