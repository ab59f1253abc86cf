import { Hono } from 'hono';
import { invalidArgument, notFound, toGatewayError } from '../../core/errors.js';
import { histogramQuantile } from '../../experiments/results-histogram.js';
import { MAX_OUTCOME_NAMES, OUTCOME_NAME, type ArmTotals, type ExperimentResults, type OutcomeTotals } from '../../experiments/results.js';
import { meanAndVariance, meanInterval, twoProportionZTest, welchTTest, wilsonInterval, type Interval } from '../../experiments/stats.js';
import { armAt, bucketBounds, stickyBucket } from '../../experiments/sticky-hash.js';
import type { ExperimentSettings } from '../../experiments/types.js';
import type { Logger } from '../../observability/logger.js';
import { parseJsonObjectBody, readBody } from './body.js';
import type { HttpEnv } from './context.js';

/** What the results API needs to know about the running experiments. */
export interface ExperimentCatalog {
  /** The running config's experiment of this name. */
  get(name: string): ExperimentSettings | undefined;
  /** Why an arm is cut now (by the guard or an operator); undefined when it is not. */
  cutReason?(experiment: string, arm: string): string | undefined;
  /** The arm a sticky key is served by now; default: the sticky hash over the configured weights, cut arms and non-running experiments to the control. */
  armForKey?(experiment: string, key: string): string | undefined;
}

export interface ExperimentsApiOptions {
  readonly results: ExperimentResults;
  readonly catalog: ExperimentCatalog;
  readonly maxBodyBytes: number;
  readonly logger: Logger;
}

/** p < ALPHA is reported significant. */
export const ALPHA = 0.05;
/** Outcomes in one POST at most. */
export const MAX_BATCH = 1_000;
/** The comparison of error rates is listed under this outcome name (client outcome names cannot start with '_'). */
export const ERROR_RATE_OUTCOME = '_error_rate';

interface ParsedOutcome {
  readonly requestId?: string;
  readonly key?: string;
  readonly outcome: string;
  readonly value: number;
}

/**
 * The results API, mounted at /v1/experiments:
 * `GET /{name}`: per-arm counts, latency percentiles, outcomes with 95%
 * intervals and tests of each arm against the control;
 * `POST /{name}/outcomes`: client-reported outcomes by request id or sticky key.
 * Access: the REST listener's check (api/auth) asks for the experiment's model in the credential's scope.
 */
export function createExperimentsApp(opts: ExperimentsApiOptions): Hono<HttpEnv> {
  const app = new Hono<HttpEnv>();
  const { results, catalog } = opts;

  const experiment = (name: string): ExperimentSettings => {
    const exp = catalog.get(name);
    if (exp === undefined) throw notFound(`unknown experiment '${name}'`);
    return exp;
  };
  const cutReason = (exp: ExperimentSettings, arm: string): string | undefined =>
    catalog.cutReason?.(exp.name, arm) ?? results.cutOf(exp.name, arm)?.reason;

  app.get('/:name', async (c) => {
    const exp = experiment(c.req.param('name'));
    const armNames = exp.arms.map((a) => a.name);
    const { source, arms } = await results.snapshot(exp.name, armNames);
    const effective = effectiveWeights(exp, (arm) => cutReason(exp, arm) !== undefined);
    const control = arms.get(exp.control);
    const shadow = await results.shadowSnapshot(exp.model);
    return c.json({
      name: exp.name,
      model: exp.model,
      state: exp.state,
      control: exp.control,
      counts: source,
      ...(exp.guard !== undefined
        ? {
            guard: {
              ...(exp.guard.maxErrorRate !== undefined ? { max_error_rate: exp.guard.maxErrorRate } : {}),
              ...(exp.guard.maxP99Ms !== undefined ? { max_p99_ms: exp.guard.maxP99Ms } : {}),
              min_requests: exp.guard.minRequests,
              window_ms: exp.guard.windowMs,
            },
          }
        : {}),
      arms: exp.arms.map((arm) => {
        const t = arms.get(arm.name)!;
        const reason = cutReason(exp, arm.name);
        return {
          name: arm.name,
          weight: arm.weight,
          effective_weight: effective.get(arm.name) ?? 0,
          ...(reason !== undefined ? { cut_reason: reason } : {}),
          requests: t.requests,
          errors: t.errors,
          error_rate: t.requests > 0 ? t.errors / t.requests : 0,
          error_rate_ci: wilsonInterval(t.errors, t.requests),
          latency_ms: {
            p50: nullable(histogramQuantile(t.latency, 0.5)),
            p90: nullable(histogramQuantile(t.latency, 0.9)),
            p99: nullable(histogramQuantile(t.latency, 0.99)),
          },
          cache_hits: t.cacheHits,
          outcomes: Object.fromEntries([...t.outcomes].map(([name, o]) => [name, describeOutcome(o)])),
        };
      }),
      comparisons: control === undefined ? [] : compare(exp, control, arms),
      ...(shadow !== undefined
        ? {
            shadow: {
              model: exp.model,
              compared: shadow.compared,
              agreed: shadow.agreed,
              agreement_rate: shadow.compared > 0 ? shadow.agreed / shadow.compared : null,
              agreement_ci: wilsonInterval(shadow.agreed, shadow.compared),
              dropped: shadow.dropped,
              failed: shadow.failed,
              primary_ms_mean: shadow.compared > 0 ? shadow.primaryMsSum / shadow.compared : null,
              shadow_ms_mean: shadow.compared > 0 ? shadow.shadowMsSum / shadow.compared : null,
            },
          }
        : {}),
    });
  });

  app.post('/:name/outcomes', async (c) => {
    const exp = experiment(c.req.param('name'));
    const body = await readBody(c.env.incoming, opts.maxBodyBytes);
    const items = parseOutcomes(body);
    const unknownIds: string[] = [];
    let accepted = 0;
    let rejected = 0;
    for (const item of items) {
      let arm: string | undefined;
      if (item.requestId !== undefined) {
        const found = results.lookupRequest(item.requestId);
        arm = found !== undefined && found.experiment === exp.name ? found.arm : undefined;
        if (arm === undefined) {
          unknownIds.push(item.requestId);
          continue;
        }
      } else {
        arm = catalog.armForKey?.(exp.name, item.key!) ?? armForKey(exp, item.key!, (a) => cutReason(exp, a) !== undefined);
      }
      if (results.recordOutcome(exp.name, arm, item.outcome, item.value)) accepted++;
      else rejected++;
    }
    return c.json(
      {
        accepted,
        unknown_ids: unknownIds,
        ...(rejected > 0 ? { rejected, rejected_reason: `an arm counts at most ${MAX_OUTCOME_NAMES} distinct outcome names` } : {}),
      },
      202,
    );
  });

  app.all('/:name', (c) => c.json({ error: `method ${c.req.method} is not allowed on /v1/experiments/{name}; use GET` }, 405, { allow: 'GET' }));
  app.all('/:name/outcomes', (c) =>
    c.json({ error: `method ${c.req.method} is not allowed on /v1/experiments/{name}/outcomes; use POST` }, 405, { allow: 'POST' }),
  );

  app.onError((err, c) => {
    const error = toGatewayError(err);
    if (error.httpStatus >= 500) opts.logger.error({ err: error.message, path: c.req.path }, 'experiments request failed');
    return c.json({ error: error.message }, error.httpStatus as 400);
  });
  return app;
}

function nullable(x: number | undefined): number | null {
  return x === undefined ? null : Math.round(x * 1_000) / 1_000;
}

/** Every value was 0 or 1 (sum of squares equals the sum only then, for integer sums within the count). */
function isBinary(o: OutcomeTotals): boolean {
  return o.count > 0 && Number.isInteger(o.sum) && o.sum >= 0 && o.sum <= o.count && Math.abs(o.sumSquares - o.sum) < 1e-9;
}

function describeOutcome(o: OutcomeTotals): { count: number; mean: number | null; ci: Interval | null; rate?: number } {
  if (isBinary(o)) {
    const rate = o.sum / o.count;
    return { count: o.count, mean: rate, ci: wilsonInterval(o.sum, o.count), rate };
  }
  const { mean } = meanAndVariance(o.count, o.sum, o.sumSquares);
  return { count: o.count, mean: Number.isFinite(mean) ? mean : null, ci: meanInterval(o.count, o.sum, o.sumSquares) ?? null };
}

interface Comparison {
  arm: string;
  vs: string;
  outcome: string;
  test: 'two-proportion z' | 'welch t';
  statistic: number;
  p_value: number;
  significant: boolean;
  df?: number;
  difference: number;
}

/** Each non-control arm against the control: error rates, then every outcome either reports. */
function compare(exp: ExperimentSettings, control: ArmTotals, arms: ReadonlyMap<string, ArmTotals>): Comparison[] {
  const out: Comparison[] = [];
  for (const arm of exp.arms) {
    if (arm.name === exp.control) continue;
    const t = arms.get(arm.name);
    if (t === undefined) continue;
    const base = { arm: arm.name, vs: exp.control };
    if (control.requests > 0 && t.requests > 0) {
      const r = twoProportionZTest(control.errors, control.requests, t.errors, t.requests);
      out.push({
        ...base,
        outcome: ERROR_RATE_OUTCOME,
        test: 'two-proportion z',
        statistic: r.statistic,
        p_value: r.pValue,
        significant: r.pValue < ALPHA,
        difference: t.errors / t.requests - control.errors / control.requests,
      });
    }
    const names = new Set([...control.outcomes.keys(), ...t.outcomes.keys()]);
    for (const name of names) {
      const a = control.outcomes.get(name);
      const b = t.outcomes.get(name);
      if (a === undefined || b === undefined || a.count === 0 || b.count === 0) continue;
      if (isBinary(a) && isBinary(b)) {
        const r = twoProportionZTest(a.sum, a.count, b.sum, b.count);
        out.push({
          ...base,
          outcome: name,
          test: 'two-proportion z',
          statistic: r.statistic,
          p_value: r.pValue,
          significant: r.pValue < ALPHA,
          difference: b.sum / b.count - a.sum / a.count,
        });
      } else {
        const r = welchTTest({ n: a.count, ...meanAndVariance(a.count, a.sum, a.sumSquares) }, { n: b.count, ...meanAndVariance(b.count, b.sum, b.sumSquares) });
        if (r === undefined || Number.isNaN(r.pValue)) continue;
        out.push({
          ...base,
          outcome: name,
          test: 'welch t',
          statistic: r.statistic,
          p_value: r.pValue,
          significant: r.pValue < ALPHA,
          ...(r.df !== undefined ? { df: r.df } : {}),
          difference: b.sum / b.count - a.sum / a.count,
        });
      }
    }
  }
  return out;
}

/** The weights requests see: cut arms and every arm of a paused or ended experiment give their share to the control. */
export function effectiveWeights(exp: ExperimentSettings, isCut: (arm: string) => boolean): Map<string, number> {
  const out = new Map<string, number>();
  let toControl = 0;
  for (const arm of exp.arms) {
    if (arm.name !== exp.control && (exp.state !== 'running' || isCut(arm.name))) {
      out.set(arm.name, 0);
      toControl += arm.weight;
    } else out.set(arm.name, arm.weight);
  }
  out.set(exp.control, (out.get(exp.control) ?? 0) + toControl);
  return out;
}

/** The arm a sticky key is served by (the assignment's hash over the configured weights; cut arms -> control). */
export function armForKey(exp: ExperimentSettings, key: string, isCut: (arm: string) => boolean): string {
  if (exp.state !== 'running') return exp.control;
  const bounds = bucketBounds(exp.arms.map((a) => a.weight));
  const arm = exp.arms[armAt(bounds, stickyBucket(exp.salt, key))]?.name ?? exp.control;
  return isCut(arm) ? exp.control : arm;
}

function parseOutcomes(body: Buffer): ParsedOutcome[] {
  const obj = parseJsonObjectBody(body, 'the body must be a JSON object: {"request_id"|"key": ..., "outcome": ..., "value": ...} or {"outcomes": [...]}');
  if (!('outcomes' in obj)) return [parseOne(obj, 'the body')];
  const list = obj.outcomes;
  if (!Array.isArray(list)) throw invalidArgument("'outcomes' must be an array");
  if (list.length > MAX_BATCH) throw invalidArgument(`at most ${MAX_BATCH} outcomes per request (got ${list.length})`);
  return list.map((item, i) => {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) throw invalidArgument(`outcomes[${i}] must be an object`);
    return parseOne(item as Record<string, unknown>, `outcomes[${i}]`);
  });
}

function parseOne(item: Record<string, unknown>, where: string): ParsedOutcome {
  const { request_id: requestId, key, outcome } = item;
  let value = item.value ?? 1;
  if ((requestId === undefined) === (key === undefined)) throw invalidArgument(`${where}: give exactly one of 'request_id' and 'key'`);
  if (requestId !== undefined && (typeof requestId !== 'string' || requestId.length === 0)) {
    throw invalidArgument(`${where}: 'request_id' must be a non-empty string`);
  }
  if (key !== undefined && (typeof key !== 'string' || key.length === 0)) throw invalidArgument(`${where}: 'key' must be a non-empty string`);
  if (typeof outcome !== 'string' || !OUTCOME_NAME.test(outcome)) {
    throw invalidArgument(`${where}: 'outcome' must be a name of 1-64 letters, digits, '_', '.' or '-' (starting with a letter or digit)`);
  }
  if (typeof value === 'boolean') value = value ? 1 : 0;
  if (typeof value !== 'number' || !Number.isFinite(value)) throw invalidArgument(`${where}: 'value' must be a finite number or a boolean`);
  return { ...(requestId !== undefined ? { requestId: requestId as string } : { key: key as string }), outcome, value };
}

