import { z } from 'zod';
import { DATATYPES } from '../core/datatypes.js';
import { MODEL_NAME_PATTERN, VERSION_PATTERN } from '../core/names.js';
import { parseShadow, splitShadow } from '../experiments/shadow-config.js';
import { parseServing, splitServing, type ModelServingConfig } from './serving-schema.js';

/**
 * The routing part of the config: `models` (public name -> routing tree) and
 * `targets` (named trees that models and other targets reference).
 *
 * A node is exactly one of:
 *   { backend, model?, version?, tfserving?, torchserve?, id? }   a leaf
 *   { target: name }                                              a named target
 *   { weighted: [ { weight, ...node }, ... ] }                    split by integer weights
 *   { fallback: [ node, ... ], fallback_on?: [...] }              try children in order on failure
 *   { match: [ { when, ...node }, ... ], default: node }          first matching rule picks
 * and any node may carry settings (timeout_ms), inherited by the nodes below it.
 *
 * The parser is hand-written rather than a zod union: a union of recursive
 * shapes reports "invalid input" at the node instead of the key that is wrong.
 * zod still validates the flat leaf and setting objects, with its issue paths
 * prefixed by the node's path. Every problem is collected, each with its key
 * path, so one run reports them all.
 */

// ---------------------------------------------------------------------------
// Parsed types

const tfservingModelSchema = z
  .strictObject({
    signature_name: z.string().min(1).default('serving_default'),
    rest_format: z.enum(['columnar', 'row']).default('columnar'),
  })
  .transform((o) => ({ signatureName: o.signature_name, restFormat: o.rest_format }));

const tensorName = z.string().min(1).max(256);

const torchserveModelSchema = z
  .strictObject({
    request: z.enum(['json', 'raw']).default('json'),
    response: z.enum(['json', 'bytes']).default('json'),
    input_keys: z.record(tensorName, z.string().min(1)).default({}),
    output_name: tensorName.default('OUTPUT0'),
    output_types: z.record(tensorName, z.enum(DATATYPES)).default({}),
  })
  .transform((o) => ({
    request: o.request,
    response: o.response,
    inputKeys: o.input_keys,
    outputName: o.output_name,
    outputTypes: o.output_types,
  }));

/** Leaf ids travel in response headers: header-safe, and never shaped like a config path (those are the default ids). */
const LEAF_ID = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/, "must be 1-128 letters, digits, '_', '.', ':', '-'")
  .refine((id) => !/^(models|targets)\./.test(id), "must not start with 'models.' or 'targets.' (those are the default ids)");

/** Settings any node may carry; a node's own value wins over the one inherited from above. */
const SETTINGS_SHAPE = {
  /** Longest one backend call under this node may take (the backend's own timeout_ms and the client's deadline still cap it). */
  timeout_ms: z.number().int().positive().optional(),
};
const SETTING_KEYS: readonly string[] = Object.keys(SETTINGS_SHAPE);
const settingsSchema = z.object(SETTINGS_SHAPE);

const leafSchema = z.object({
  backend: z.string().min(1),
  /** The backend's own model name; defaults to the public name. */
  model: z.string().regex(MODEL_NAME_PATTERN, 'is not a valid model name').optional(),
  /** Pins a backend model version; unset lets the client's version (or the backend's latest) through. */
  version: z.string().regex(VERSION_PATTERN, 'is not a valid version').optional(),
  /** Settings for a model on a TF Serving backend. */
  tfserving: tfservingModelSchema.optional(),
  /** Settings for a model on a TorchServe backend. */
  torchserve: torchserveModelSchema.optional(),
  /** A stable name for this leaf in responses and logs (default: its config path). */
  id: LEAF_ID.optional(),
  ...SETTINGS_SHAPE,
});

export type RouteSettings = z.infer<typeof settingsSchema>;
export type LeafConfig = z.infer<typeof leafSchema>;

export interface TargetRefConfig extends RouteSettings {
  readonly target: string;
}

/** A child of a weighted node: a node with its weight, as written in the file. */
export type WeightedChildConfig = RouteNodeConfig & { readonly weight: number };

export interface WeightedConfig extends RouteSettings {
  readonly weighted: readonly WeightedChildConfig[];
}

/** What moves a fallback on to its next child: a named class of failure, or an HTTP status (429, 5xx). */
export type FallbackOn = (typeof FALLBACK_ON_NAMES)[number] | number;
export const FALLBACK_ON_NAMES = ['connect_failure', 'unavailable', 'timeout', '5xx', 'resource_exhausted'] as const;
export const DEFAULT_FALLBACK_ON: readonly FallbackOn[] = ['connect_failure', 'unavailable', 'timeout'];

export interface FallbackConfig extends RouteSettings {
  readonly fallback: readonly RouteNodeConfig[];
  readonly fallback_on: readonly FallbackOn[];
}

export const MATCH_OPS = ['equals', 'in', 'prefix', 'regex'] as const;
export type MatchOp = (typeof MATCH_OPS)[number];

/** One test of a match rule, on a header (or gRPC metadata), a request parameter, or the requested version. */
export type ConditionConfig = { readonly on: 'header' | 'parameter'; readonly name: string } | { readonly on: 'version' };
export type ConditionTest =
  | { readonly op: 'equals' | 'prefix' | 'regex'; readonly value: string }
  | { readonly op: 'in'; readonly value: readonly string[] };
export type MatchCondition = ConditionConfig & ConditionTest;

/** A rule of a match node: a node with its conditions (every one must hold; a lone condition becomes a list of one). */
export type MatchRuleConfig = RouteNodeConfig & { readonly when: readonly MatchCondition[] };

export interface MatchConfig extends RouteSettings {
  readonly match: readonly MatchRuleConfig[];
  readonly default: RouteNodeConfig;
}

export type RouteNodeConfig = LeafConfig | TargetRefConfig | WeightedConfig | FallbackConfig | MatchConfig;

export interface RouteProblem {
  readonly path: readonly (string | number)[];
  readonly message: string;
}

/** A model's `shadow:` (see src/experiments/shadow-config.ts): where and how much of its traffic is mirrored. */
export interface ShadowConfig {
  readonly percent: number;
  readonly max_concurrency: number;
  readonly tolerance: number;
  /** The shadow call's own deadline (also the node's timeout_ms setting when it sets none). */
  readonly timeout_ms: number;
  /** The shadow target: any routing node (a leaf, a target, weighted, ...). */
  readonly node: RouteNodeConfig;
}

/** A model's routing tree, with its optional shadow target and serving options (cache, coalescing, batching). */
export type ModelNodeConfig = RouteNodeConfig & { readonly shadow?: ShadowConfig; readonly serving?: ModelServingConfig };

export interface RouteConfig {
  readonly targets: Record<string, RouteNodeConfig>;
  readonly models: Record<string, ModelNodeConfig>;
  readonly problems: readonly RouteProblem[];
}

// ---------------------------------------------------------------------------
// The parser

const NODE_KINDS = ['backend', 'target', 'weighted', 'fallback', 'match'] as const;
type NodeKind = (typeof NODE_KINDS)[number];

/** Keys each kind of node takes besides settings (its kind key first). */
const KEYS_OF: Readonly<Record<NodeKind, readonly string[]>> = {
  backend: ['backend', 'model', 'version', 'tfserving', 'torchserve', 'id'],
  target: ['target'],
  weighted: ['weighted'],
  fallback: ['fallback', 'fallback_on'],
  match: ['match', 'default'],
};
/** Where a key that is out of place belongs, for a message that says so. */
const BELONGS: Readonly<Record<string, string>> = {
  model: 'a leaf (a node with backend)',
  version: 'a leaf (a node with backend)',
  tfserving: 'a leaf (a node with backend)',
  torchserve: 'a leaf (a node with backend)',
  id: 'a leaf (a node with backend)',
  fallback_on: 'a fallback node',
  default: 'a match node',
  weight: 'the children of a weighted node',
  when: 'the rules of a match node',
};

/** What a match condition reads: exactly one per condition. */
const SUBJECTS = ['header', 'parameter', 'version'] as const;
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;
const MAX_WEIGHT = 1_000_000;
const KINDS_TEXT = NODE_KINDS.join(', ');
const OPS_TEXT = MATCH_OPS.join(', ');

type Path = readonly (string | number)[];

/**
 * Parses and checks `targets` and `models` of a config value (raw, or with
 * its other sections already parsed): node shapes, references to backends and
 * targets, cycles between targets, ids, weights, match rules (regexes compiled
 * here to prove they compile). Never throws: problems come back with paths.
 */
export function parseRouteConfig(raw: unknown): RouteConfig {
  const parser = new RouteParser(raw);
  return parser.run();
}

class RouteParser {
  private readonly problems: RouteProblem[] = [];
  private readonly backends: Record<string, unknown>;
  private readonly targetsRaw: Record<string, unknown>;
  /** target name -> references it makes (to another target), with their paths: the graph cycles are found in. */
  private readonly edges = new Map<string, { to: string; path: Path }[]>();
  /** Explicit leaf id -> where it was first given. */
  private readonly ids = new Map<string, Path>();
  /** The target whose tree is being parsed (undefined inside models). */
  private currentTarget: string | undefined;

  constructor(private readonly raw: unknown) {
    this.backends = isRecord(raw) && isRecord(raw.backends) ? raw.backends : {};
    this.targetsRaw = isRecord(raw) && isRecord(raw.targets) ? raw.targets : {};
  }

  run(): RouteConfig {
    const targets: Record<string, RouteNodeConfig> = {};
    const models: Record<string, ModelNodeConfig> = {};
    for (const [name, value] of Object.entries(this.targetsRaw)) {
      this.currentTarget = name;
      this.edges.set(name, []);
      const node = this.node(value, ['targets', name]);
      if (node !== undefined) targets[name] = node;
    }
    this.currentTarget = undefined;
    this.findCycles();
    const rawModels = isRecord(this.raw) && isRecord(this.raw.models) ? this.raw.models : {};
    for (const [name, value] of Object.entries(rawModels)) {
      // `shadow:`, `cache:`, `coalesce:` and `batching:` are model-level keys: parsed apart (shadow-config.ts,
      // serving-schema.ts), never part of the routing tree.
      const { node: withServing, shadow: rawShadow } = splitShadow(value);
      const { node: raw, serving: rawServing } = splitServing(withServing);
      const node = this.node(raw, ['models', name]);
      const shadow = rawShadow === undefined ? undefined : parseShadow(rawShadow, ['models', name, 'shadow'], this.problems, (v, p, extra) => this.node(v, p, extra));
      const before = this.problems.length;
      const serving = parseServing(rawServing, ['models', name], this.problems);
      if (node !== undefined && (rawShadow === undefined || shadow !== undefined) && this.problems.length === before) {
        models[name] = { ...node, ...(shadow !== undefined ? { shadow } : {}), ...(serving !== undefined ? { serving } : {}) };
      }
    }
    return { targets, models, problems: this.problems };
  }

  private problem(path: Path, message: string): undefined {
    this.problems.push({ path, message });
    return undefined;
  }

  /** One node; `extra` are keys its parent reads from the same map (weight, when). */
  private node(value: unknown, path: Path, extra: readonly string[] = []): RouteNodeConfig | undefined {
    if (!isRecord(value)) return this.problem(path, `must be a map with one of ${KINDS_TEXT}`);
    const kinds = NODE_KINDS.filter((k) => Object.hasOwn(value, k));
    if (kinds.length !== 1) {
      const found = kinds.length > 1 ? ` (found ${kinds.join(', ')})` : '';
      return this.problem(path, `a node needs exactly one of ${KINDS_TEXT}${found}`);
    }
    const kind = kinds[0]!;
    const keysOk = this.checkKeys(value, path, kind, extra);
    const node = this.nodeOfKind(kind, value, path);
    return keysOk ? node : undefined;
  }

  private checkKeys(value: Record<string, unknown>, path: Path, kind: NodeKind, extra: readonly string[]): boolean {
    const allowed = KEYS_OF[kind];
    const unknown: string[] = [];
    let ok = true;
    for (const key of Object.keys(value)) {
      if (allowed.includes(key) || SETTING_KEYS.includes(key) || extra.includes(key)) continue;
      const home = BELONGS[key];
      if (home !== undefined) {
        ok = false;
        this.problem(path, `'${key}' applies only to ${home}`);
      } else unknown.push(key);
    }
    if (unknown.length > 0) {
      this.problem(path, `unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `'${k}'`).join(', ')}`);
      return false;
    }
    return ok;
  }

  private nodeOfKind(kind: NodeKind, value: Record<string, unknown>, path: Path): RouteNodeConfig | undefined {
    switch (kind) {
      case 'backend':
        return this.leaf(value, path);
      case 'target':
        return this.targetRef(value, path);
      case 'weighted':
        return this.weighted(value, path);
      case 'fallback':
        return this.fallback(value, path);
      case 'match':
        return this.match(value, path);
    }
  }

  /** The node's own settings (validated by zod), or undefined after reporting a problem. */
  private settings(value: Record<string, unknown>, path: Path): RouteSettings | undefined {
    const picked = Object.fromEntries(SETTING_KEYS.filter((k) => Object.hasOwn(value, k)).map((k) => [k, value[k]]));
    return this.zod(settingsSchema, picked, path);
  }

  private zod<T>(schema: z.ZodType<T>, value: unknown, path: Path): T | undefined {
    const result = schema.safeParse(value);
    if (result.success) return result.data;
    for (const issue of result.error.issues) {
      this.problems.push({ path: [...path, ...issue.path.map(pathKey)], message: zodIssueMessage(issue) });
    }
    return undefined;
  }

  private leaf(value: Record<string, unknown>, path: Path): LeafConfig | undefined {
    const known = Object.fromEntries(Object.entries(value).filter(([k]) => KEYS_OF.backend.includes(k) || SETTING_KEYS.includes(k)));
    const leaf = this.zod(leafSchema, known, path);
    // References are checked on the value as written, so a leaf with another problem still has them reported.
    const refsOk = this.leafReferences(value, path);
    return leaf !== undefined && refsOk ? leaf : undefined;
  }

  /** The leaf's backend is declared, its server-kind settings match that backend's kind, and its id is unique. */
  private leafReferences(value: Record<string, unknown>, path: Path): boolean {
    let ok = true;
    const name = value.backend;
    const backend = typeof name === 'string' ? this.backends[name] : undefined;
    if (typeof name === 'string' && name !== '' && (!Object.hasOwn(this.backends, name) || !isRecord(backend))) {
      const declared = Object.keys(this.backends).join(', ') || 'none';
      this.problem([...path, 'backend'], `unknown backend '${name}' (declared: ${declared})`);
      ok = false;
    } else if (isRecord(backend)) {
      // A server kind's settings on a model of another kind would be silently ignored.
      for (const kind of ['tfserving', 'torchserve'] as const) {
        if (value[kind] !== undefined && backend.kind !== kind) {
          ok = false;
          this.problem([...path, kind], `applies only to models on a ${kind} backend ('${String(name)}' is ${String(backend.kind)})`);
        }
      }
    }
    const id = value.id;
    if (typeof id === 'string') {
      const first = this.ids.get(id);
      if (first !== undefined) {
        ok = false;
        this.problem([...path, 'id'], `duplicate id '${id}' (also at ${first.join('.')})`);
      } else this.ids.set(id, path);
    }
    return ok;
  }

  private targetRef(value: Record<string, unknown>, path: Path): TargetRefConfig | undefined {
    const settings = this.settings(value, path);
    const name = value.target;
    if (typeof name !== 'string' || name === '') return this.problem([...path, 'target'], 'must be the name of a target');
    if (!Object.hasOwn(this.targetsRaw, name)) {
      const declared = Object.keys(this.targetsRaw).join(', ') || 'none';
      return this.problem([...path, 'target'], `unknown target '${name}' (declared: ${declared})`);
    }
    if (this.currentTarget !== undefined) this.edges.get(this.currentTarget)?.push({ to: name, path: [...path, 'target'] });
    return settings === undefined ? undefined : { target: name, ...settings };
  }

  /** A non-empty list under `key`, or undefined after reporting a problem. */
  private list(value: Record<string, unknown>, key: string, path: Path, what: string): unknown[] | undefined {
    const list = value[key];
    if (!Array.isArray(list) || list.length === 0) return this.problem([...path, key], `must be a list of at least one ${what}`);
    return list;
  }

  private weighted(value: Record<string, unknown>, path: Path): WeightedConfig | undefined {
    const settings = this.settings(value, path);
    const list = this.list(value, 'weighted', path, 'node, each with a weight');
    if (list === undefined) return undefined;
    const children: WeightedChildConfig[] = [];
    let nodesOk = true;
    let weightsOk = true;
    let total = 0;
    list.forEach((child, i) => {
      const at = [...path, 'weighted', i];
      const weight = this.weight(child, [...at, 'weight']);
      if (weight === undefined) weightsOk = false;
      else total += weight;
      const node = this.node(child, at, ['weight']);
      if (node === undefined) nodesOk = false;
      else if (weight !== undefined) children.push({ ...node, weight });
    });
    // A split with nothing to split would fail every request; said even when a child has other problems.
    if (weightsOk && total === 0) return this.problem([...path, 'weighted'], 'needs at least one weight > 0');
    return settings !== undefined && nodesOk && weightsOk ? { ...settings, weighted: children } : undefined;
  }

  /** A weighted child's weight (a child that is not a map is reported by node()). */
  private weight(child: unknown, path: Path): number | undefined {
    if (!isRecord(child)) return undefined;
    const weight = child.weight;
    if (weight === undefined) return this.problem(path, 'missing: every child of weighted needs a weight (an integer >= 0)');
    if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 0) return this.problem(path, 'must be an integer >= 0');
    if (weight > MAX_WEIGHT) return this.problem(path, `must be at most ${MAX_WEIGHT}`);
    return weight;
  }

  private fallback(value: Record<string, unknown>, path: Path): FallbackConfig | undefined {
    const settings = this.settings(value, path);
    const list = this.list(value, 'fallback', path, 'node');
    const on = this.fallbackOn(value.fallback_on, [...path, 'fallback_on']);
    if (list === undefined) return undefined;
    const children = list.map((child, i) => this.node(child, [...path, 'fallback', i]));
    if (settings === undefined || on === undefined || children.some((c) => c === undefined)) return undefined;
    return { ...settings, fallback: children as RouteNodeConfig[], fallback_on: on };
  }

  private fallbackOn(value: unknown, path: Path): FallbackOn[] | undefined {
    if (value === undefined) return [...DEFAULT_FALLBACK_ON];
    if (!Array.isArray(value) || value.length === 0) {
      return this.problem(path, `must be a list of at least one of ${FALLBACK_ON_NAMES.join(', ')} or an HTTP status (429, 500-599)`);
    }
    const out: FallbackOn[] = [];
    let ok = true;
    value.forEach((entry, i) => {
      const parsed = this.fallbackCondition(entry, [...path, i]);
      if (parsed === undefined) ok = false;
      else out.push(parsed);
    });
    return ok ? out : undefined;
  }

  private fallbackCondition(entry: unknown, path: Path): FallbackOn | undefined {
    const status = typeof entry === 'number' ? entry : typeof entry === 'string' && /^\d+$/.test(entry) ? Number(entry) : undefined;
    if (status !== undefined) {
      if (Number.isInteger(status) && status >= 400 && status < 500 && status !== 429) {
        return this.problem(path, `${status} is a client error: client errors never fall back (429 is the only 4xx allowed)`);
      }
      if (status === 429 || (Number.isInteger(status) && status >= 500 && status <= 599)) return status;
      return this.problem(path, `${status} is not a status to fall back on: use 429 or 500-599`);
    }
    if (entry === '4xx') return this.problem(path, '4xx are client errors: client errors never fall back');
    if (typeof entry === 'string' && (FALLBACK_ON_NAMES as readonly string[]).includes(entry)) return entry as FallbackOn;
    return this.problem(path, `must be one of ${FALLBACK_ON_NAMES.join(', ')} or an HTTP status (429, 500-599)`);
  }

  private match(value: Record<string, unknown>, path: Path): MatchConfig | undefined {
    const settings = this.settings(value, path);
    const list = this.list(value, 'match', path, 'rule ({ when, ...node })');
    let otherwise: RouteNodeConfig | undefined;
    if (!Object.hasOwn(value, 'default')) this.problem(path, "needs 'default' with 'match' (the node for requests no rule matches)");
    else otherwise = this.node(value.default, [...path, 'default']);
    if (list === undefined) return undefined;
    const rules: (MatchRuleConfig | undefined)[] = list.map((rule, i) => {
      const at = [...path, 'match', i];
      const when = isRecord(rule) ? this.when(rule.when, [...at, 'when']) : undefined;
      const node = this.node(rule, at, ['when']);
      return when !== undefined && node !== undefined ? { ...node, when } : undefined;
    });
    if (settings === undefined || otherwise === undefined || rules.some((r) => r === undefined)) return undefined;
    return { ...settings, match: rules as MatchRuleConfig[], default: otherwise };
  }

  /** A condition, or a non-empty list of them (all must hold). */
  private when(value: unknown, path: Path): MatchCondition[] | undefined {
    if (value === undefined) return this.problem(path, 'missing: every rule of match needs a when (a condition or a list of them)');
    if (Array.isArray(value)) {
      if (value.length === 0) return this.problem(path, 'must list at least one condition');
      const conditions = value.map((c, i) => this.condition(c, [...path, i]));
      return conditions.every((c) => c !== undefined) ? (conditions as MatchCondition[]) : undefined;
    }
    const one = this.condition(value, path);
    return one === undefined ? undefined : [one];
  }

  private condition(value: unknown, path: Path): MatchCondition | undefined {
    if (!isRecord(value)) return this.problem(path, `must be a condition: { header | parameter: name, ${MATCH_OPS.join(' | ')}: value } or { version: { op: value } }`);
    const subjects = SUBJECTS.filter((s) => Object.hasOwn(value, s));
    if (subjects.length !== 1) {
      const found = subjects.length > 1 ? ` (found ${subjects.join(', ')})` : '';
      return this.problem(path, `a condition needs exactly one of ${SUBJECTS.join(', ')}${found}`);
    }
    const subject = subjects[0]!;
    if (subject === 'version') {
      const extra = Object.keys(value).filter((k) => k !== 'version');
      if (extra.length > 0) return this.problem(path, `unknown key${extra.length > 1 ? 's' : ''} ${extra.map((k) => `'${k}'`).join(', ')} (a version condition is { version: { op: value } })`);
      const ops = value.version;
      if (!isRecord(ops)) return this.problem([...path, 'version'], `must be a map with one of ${OPS_TEXT}, e.g. { in: ["2", "3"] }`);
      const test = this.test(ops, [...path, 'version'], []);
      return test === undefined ? undefined : { on: 'version', ...test };
    }
    const name = value[subject];
    let nameOk = true;
    if (typeof name !== 'string' || name === '') {
      nameOk = false;
      this.problem([...path, subject], `must be the ${subject}'s name`);
    } else if (subject === 'header' && !HEADER_NAME.test(name)) {
      nameOk = false;
      this.problem([...path, subject], 'must be a header (metadata) name');
    } else if (subject === 'header' && name.toLowerCase().endsWith('-bin')) {
      nameOk = false;
      this.problem([...path, subject], 'binary (-bin) gRPC metadata cannot be matched');
    }
    const test = this.test(value, path, [subject]);
    if (test === undefined || !nameOk) return undefined;
    // Headers and gRPC metadata keys are case-insensitive; the request side reads them lower-cased.
    return { on: subject, name: subject === 'header' ? (name as string).toLowerCase() : (name as string), ...test };
  }

  /** The one operator of a condition and its value; `subjectKeys` are the condition's other keys. */
  private test(value: Record<string, unknown>, path: Path, subjectKeys: readonly string[]): ConditionTest | undefined {
    const unknown = Object.keys(value).filter((k) => !subjectKeys.includes(k) && !(MATCH_OPS as readonly string[]).includes(k));
    if (unknown.length > 0) {
      return this.problem(path, `unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `'${k}'`).join(', ')} (operators: ${OPS_TEXT})`);
    }
    const ops = MATCH_OPS.filter((op) => Object.hasOwn(value, op));
    if (ops.length !== 1) {
      const found = ops.length > 1 ? ` (found ${ops.join(', ')})` : '';
      return this.problem(path, `needs exactly one of ${OPS_TEXT}${found}`);
    }
    const op = ops[0]!;
    const at = [...path, op];
    const operand = value[op];
    switch (op) {
      case 'in': {
        if (!Array.isArray(operand) || operand.length === 0) return this.problem(at, 'must be a list of at least one value');
        const values = operand.map((v) => scalarText(v));
        if (values.some((v) => v === undefined)) return this.problem(at, 'must list strings or numbers');
        return { op, value: values as string[] };
      }
      case 'regex': {
        if (typeof operand !== 'string') return this.problem(at, 'must be a regular expression (a string)');
        try {
          new RegExp(operand);
        } catch (err) {
          return this.problem(at, `invalid regular expression: ${(err as Error).message.replace(/^Invalid regular expression: /, '')}`);
        }
        return { op, value: operand };
      }
      default: {
        const text = scalarText(operand);
        if (text === undefined) return this.problem(at, 'must be a string or a number');
        return { op, value: text };
      }
    }
  }

  /** Reports each cycle among targets once, at the reference that leaves its first target. */
  private findCycles(): void {
    const DONE = 2;
    const ON_STACK = 1;
    const state = new Map<string, number>();
    const stack: { name: string; via?: Path }[] = [];
    const visit = (name: string): void => {
      state.set(name, ON_STACK);
      stack.push({ name });
      for (const edge of this.edges.get(name) ?? []) {
        stack[stack.length - 1]!.via = edge.path;
        const seen = state.get(edge.to);
        if (seen === ON_STACK) {
          const start = stack.findIndex((s) => s.name === edge.to);
          const cycle = [...stack.slice(start).map((s) => s.name), edge.to];
          this.problem(stack[start]!.via!, `cycle ${cycle.join(' -> ')}`);
        } else if (seen === undefined) visit(edge.to);
      }
      stack.pop();
      state.set(name, DONE);
    };
    for (const name of this.edges.keys()) if (!state.has(name)) visit(name);
  }
}

/** A YAML scalar as the text a header, parameter or version is compared with. */
function scalarText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return undefined;
}

function pathKey(key: PropertyKey): string | number {
  return typeof key === 'number' ? key : String(key);
}

/** A zod issue's message as the config errors phrase it (unknown keys named). */
export function zodIssueMessage(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') {
    return `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')}`;
  }
  if (issue.code === 'invalid_key') return issue.issues[0]?.message ?? issue.message;
  return issue.message;
}

/** "models.fraud.fallback.1.backend: unknown backend ..." */
export function formatRouteProblem(problem: RouteProblem): string {
  return `${problem.path.length > 0 ? problem.path.join('.') : '(root)'}: ${problem.message}`;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
