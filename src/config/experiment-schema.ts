import { z } from 'zod';
import type { ExperimentSettings, GuardSettings } from '../experiments/types.js';
import { parseRouteConfig, zodIssueMessage, type RouteNodeConfig, type RouteProblem } from './route-schema.js';

/**
 * The `experiments:` section: A/B experiments on public models.
 *
 *   experiments:
 *     ranker-ab:
 *       model: ranker                  # a public model in `models`
 *       key: { header: x-user-id }     # the sticky key: a header (REST) or metadata key (gRPC)
 *       salt: ranker-2026-11           # default: the experiment name
 *       state: running                 # running | paused | ended
 *       control: a
 *       arms:                          # in this order; each a routing node plus its weight
 *         a: { weight: 50, backend: triton-a }
 *         b: { weight: 50, target: triton-pool }
 *       override_header: x-infergate-variant-override   # false disables overrides
 *       guard: { max_error_rate: 0.05, max_p99_ms: 500, min_requests: 200, window_s: 60 }
 *
 * Arm nodes are checked by the route parser (route-schema.ts), so their
 * problems name the exact key, as for models. The parsed section keeps the
 * file's shape (arms by name, in order), so config diffs read
 * `~ experiments.ranker-ab.arms.b.weight: 50 -> 60`.
 */

export const EXPERIMENT_STATES = ['running', 'paused', 'ended'] as const;
export const DEFAULT_OVERRIDE_HEADER = 'x-infergate-variant-override';
const MAX_WEIGHT = 1_000_000;
const HEADER_NAME = /^[A-Za-z0-9-]+$/;
const EXPERIMENT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
/** Arm names travel in headers; they start with a letter, which also keeps their config order (no integer-like keys). */
const ARM_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;

export type ArmConfig = RouteNodeConfig & { readonly weight: number };

export interface GuardConfig {
  readonly max_error_rate?: number;
  readonly max_p99_ms?: number;
  readonly min_requests: number;
  readonly window_s: number;
}

export interface ExperimentConfig {
  readonly model: string;
  readonly key: { readonly header: string };
  readonly salt: string;
  readonly state: (typeof EXPERIMENT_STATES)[number];
  readonly control: string;
  /** Arm name -> its node and weight, in config order. */
  readonly arms: Readonly<Record<string, ArmConfig>>;
  /** The override header (lower-case), or false when overrides are disabled. */
  readonly override_header: string | false;
  readonly guard?: GuardConfig;
}

export interface ExperimentsParse {
  readonly experiments: Record<string, ExperimentConfig>;
  readonly problems: readonly RouteProblem[];
}

const headerName = z
  .string()
  .regex(HEADER_NAME, 'must be a header name')
  .transform((h) => h.toLowerCase());

const guardSchema = z
  .strictObject({
    max_error_rate: z.number().min(0).max(1).optional(),
    max_p99_ms: z.number().positive().optional(),
    min_requests: z.number().int().min(1).default(100),
    window_s: z.number().positive().max(86_400).default(60),
  })
  .refine((g) => g.max_error_rate !== undefined || g.max_p99_ms !== undefined, {
    message: 'a guard needs max_error_rate or max_p99_ms (or both)',
  });

/** Everything but the arms, which the route parser checks. */
const experimentSchema = z.strictObject({
  model: z.string().min(1),
  key: z.strictObject({ header: headerName }),
  salt: z.string().min(1).optional(),
  state: z.enum(EXPERIMENT_STATES).default('running'),
  control: z.string().min(1),
  arms: z.unknown(),
  override_header: z.union([headerName, z.literal(false)]).default(DEFAULT_OVERRIDE_HEADER),
  guard: guardSchema.optional(),
});

type Path = readonly (string | number)[];

/**
 * Parses and checks `experiments` of a raw config value: shapes, the model
 * (declared in `models`, one experiment per model), arm names, weights and
 * nodes, the control arm. Never throws: problems come back with key paths.
 */
export function parseExperiments(raw: unknown): ExperimentsParse {
  const problems: RouteProblem[] = [];
  const experiments: Record<string, ExperimentConfig> = {};
  const section = isRecord(raw) ? raw.experiments : undefined;
  if (section === undefined || section === null) return { experiments, problems };
  if (!isRecord(section)) return { experiments, problems: [{ path: ['experiments'], message: 'must be a map of experiment name -> experiment' }] };
  const models = isRecord(raw) && isRecord(raw.models) ? raw.models : {};
  const byModel = new Map<string, string>();
  for (const [name, value] of Object.entries(section)) {
    const path = ['experiments', name];
    const before = problems.length;
    if (!EXPERIMENT_NAME.test(name)) problems.push({ path, message: 'experiment names use letters, digits, _ . -' });
    const parsed = experimentSchema.safeParse(value);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) problems.push({ path: [...path, ...issue.path.map(pathKey)], message: zodIssueMessage(issue) });
    }
    const model = isRecord(value) ? value.model : undefined;
    if (typeof model === 'string' && model !== '') {
      if (!Object.hasOwn(models, model)) {
        problems.push({ path: [...path, 'model'], message: `unknown model '${model}' (an experiment splits a public model of 'models')` });
      } else {
        const other = byModel.get(model);
        if (other !== undefined) problems.push({ path: [...path, 'model'], message: `model '${model}' already has experiment '${other}' (one per model)` });
        else byModel.set(model, name);
      }
    }
    const arms = parseArms(raw, isRecord(value) ? value.arms : undefined, [...path, 'arms'], problems);
    const control = isRecord(value) ? value.control : undefined;
    const armNames = isRecord(value) && isRecord(value.arms) ? Object.keys(value.arms) : [];
    if (armNames.length > 0 && typeof control === 'string' && control !== '' && !armNames.includes(control)) {
      problems.push({ path: [...path, 'control'], message: `unknown arm '${control}' (arms: ${armNames.join(', ')})` });
    }
    if (problems.length > before || !parsed.success || arms === undefined) continue;
    const e = parsed.data;
    experiments[name] = {
      model: e.model,
      key: e.key,
      salt: e.salt ?? name,
      state: e.state,
      control: e.control,
      arms,
      override_header: e.override_header,
      ...(e.guard !== undefined ? { guard: e.guard } : {}),
    };
  }
  return { experiments, problems };
}

function parseArms(raw: unknown, value: unknown, path: Path, problems: RouteProblem[]): Record<string, ArmConfig> | undefined {
  if (!isRecord(value) || Object.keys(value).length === 0) {
    problems.push({ path, message: 'must be a map of at least one arm: name -> { weight, ...node }' });
    return undefined;
  }
  const out: Record<string, ArmConfig> = {};
  let ok = true;
  let total = 0;
  let weightsOk = true;
  for (const [arm, spec] of Object.entries(value)) {
    const at = [...path, arm];
    if (!ARM_NAME.test(arm)) {
      ok = false;
      problems.push({ path: at, message: "arm names start with a letter, then letters, digits, '_', '.', '-' (at most 64)" });
    }
    if (!isRecord(spec)) {
      ok = false;
      problems.push({ path: at, message: 'must be a map: { weight, ...node }' });
      continue;
    }
    const { weight, ...node } = spec;
    if (weight === undefined) {
      weightsOk = false;
      problems.push({ path: [...at, 'weight'], message: 'missing: every arm needs a weight (an integer >= 0)' });
    } else if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 0) {
      weightsOk = false;
      problems.push({ path: [...at, 'weight'], message: 'must be an integer >= 0' });
    } else if (weight > MAX_WEIGHT) {
      weightsOk = false;
      problems.push({ path: [...at, 'weight'], message: `must be at most ${MAX_WEIGHT}` });
    } else total += weight;
    const parsed = parseArmNode(raw, node, at, problems);
    if (parsed === undefined || typeof weight !== 'number') ok = false;
    else out[arm] = { ...parsed, weight };
  }
  if (weightsOk && total === 0) {
    problems.push({ path, message: 'needs at least one arm with weight > 0' });
    return undefined;
  }
  return ok && weightsOk ? out : undefined;
}

const ARM_SLOT = '\u0000arm';

/** An arm's node, checked by the route parser as if it were a model (its problems' paths moved under the arm). */
function parseArmNode(raw: unknown, node: Record<string, unknown>, path: Path, problems: RouteProblem[]): RouteNodeConfig | undefined {
  const backends = isRecord(raw) ? raw.backends : undefined;
  const targets = isRecord(raw) ? raw.targets : undefined;
  const parsed = parseRouteConfig({ backends, targets, models: { [ARM_SLOT]: node } });
  let found = false;
  for (const p of parsed.problems) {
    // Problems of `targets` are the config's own, reported once by the main route parse.
    if (p.path[0] !== 'models') continue;
    found = true;
    problems.push({ path: [...path, ...p.path.slice(2)], message: p.message });
  }
  return found ? undefined : parsed.models[ARM_SLOT];
}

/** The settings the request path runs on, from an experiment's parsed config. */
export function experimentSettings(name: string, config: ExperimentConfig): ExperimentSettings {
  return {
    name,
    model: config.model,
    key: config.key,
    salt: config.salt,
    state: config.state,
    control: config.control,
    arms: Object.entries(config.arms).map(([arm, c]) => ({ name: arm, weight: c.weight })),
    ...(config.override_header !== false ? { overrideHeader: config.override_header } : {}),
    ...(config.guard !== undefined ? { guard: guardSettings(config.guard) } : {}),
  };
}

function guardSettings(g: GuardConfig): GuardSettings {
  return {
    ...(g.max_error_rate !== undefined ? { maxErrorRate: g.max_error_rate } : {}),
    ...(g.max_p99_ms !== undefined ? { maxP99Ms: g.max_p99_ms } : {}),
    minRequests: g.min_requests,
    windowMs: Math.round(g.window_s * 1000),
  };
}

/** An arm's node without its weight (what compiles into its routing tree). */
export function armNode(arm: ArmConfig): RouteNodeConfig {
  const { weight: _weight, ...node } = arm;
  return node as RouteNodeConfig;
}

function pathKey(key: PropertyKey): string | number {
  return typeof key === 'number' ? key : String(key);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
