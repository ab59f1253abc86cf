import type { ModelOptions } from '../backends/backend.js';
import type { ResilientBackend } from '../resilience/resilient-backend.js';
import type {
  FallbackOn,
  LeafConfig,
  MatchCondition,
  ModelNodeConfig,
  RouteNodeConfig,
  RouteSettings,
} from '../config/route-schema.js';
import type { ModelServingConfig } from '../config/serving-schema.js';
import { GatewayError } from '../core/errors.js';
import { DynamicBatcher, type BatchObserver } from '../batching/dynamic-batcher.js';
import type { CachePolicy } from '../cache/response-cache.js';
import { callLeaf } from './leaf-call.js';
import type { Parameters } from '../core/parameters.js';

/**
 * A public model's routing tree, compiled once per config from its
 * `models.<name>` entry: leaves hold their backend cluster and settings,
 * weighted nodes their cumulative weights, match nodes compiled tests
 * (regexes built here, once), fallback nodes a predicate over errors. A
 * request then walks its model's tree with no lookups, scans over routes or
 * string building (route-executor.ts runs the calls).
 */

/**
 * Where one public model is served at one leaf of its tree. The router's
 * ModelRoute of a model is its primary leaf (see primaryLeaf), so code that
 * knows one target per model (health checks, metadata, front doors) keeps
 * working.
 */
export interface ModelRoute {
  /** The public model name. */
  readonly name: string;
  readonly backend: ResilientBackend;
  readonly backendModel: string;
  /** Set when the config pins the backend version; clients may then ask only for this one. */
  readonly pinnedVersion?: string;
  /** Server-kind settings passed to the adapter with every call. */
  readonly options: ModelOptions;
  /** Stable name of this leaf in responses (x-infergate-target) and logs: its `id`, else its config path. */
  readonly id: string;
  /** Longest one call here may take: the inherited timeout_ms capped by the backend's timeout_ms. */
  readonly timeoutMs: number;
  /** The whole routing tree of the public model this leaf serves. */
  readonly tree: RouteNode;
  /** The model's cache, coalescing and batching at this leaf; absent when it uses none. */
  readonly serving?: LeafServing;
  /**
   * True when v2 REST bodies of this model are relayed as they are (InferenceService.relay): its config asks for it
   * (`relay: true`), every leaf of its tree is a server that speaks v2 REST itself, under the public model's own
   * name, and no match rule reads request parameters. The same for every leaf of one model.
   */
  readonly relayable: boolean;
}

/** A model's serving options compiled for one leaf. */
export interface LeafServing {
  /** Answers kept and served again; absent: not cached. */
  readonly cache?: CachePolicy;
  /** Identical concurrent requests share one backend call. */
  readonly coalesce: boolean;
  /** What the cache key starts with: this leaf's backend and backend model (the version is added per request). */
  readonly scope: string;
  /** Merges concurrent requests into one backend call (one batcher per leaf). */
  readonly batcher?: DynamicBatcher;
}

export interface LeafNode extends ModelRoute {
  readonly kind: 'leaf';
}

/** What hears the serving machinery compiled into leaves (the gateway's metrics). */
export interface ServingObservers {
  /** The observer of a public model's dynamic batchers (one batcher per leaf of a batched model). */
  readonly batches?: (model: string) => BatchObserver;
}

export interface WeightedNode {
  readonly kind: 'weighted';
  /** Children with a weight > 0 (zero-weight children get no traffic, so they are left out). */
  readonly children: readonly RouteNode[];
  /** cumulative[i] = sum of weights of children 0..i; a draw in [0, total) picks by binary search. */
  readonly cumulative: Float64Array;
  readonly total: number;
  readonly primary: LeafNode;
}

export interface FallbackNode {
  readonly kind: 'fallback';
  readonly children: readonly RouteNode[];
  /** Whether a child's failure moves on to the next child (client errors never do). */
  readonly movesOn: (error: GatewayError) => boolean;
  readonly primary: LeafNode;
}

export interface MatchRule {
  readonly test: (req: RouteInput, ctx: RouteContext) => boolean;
  readonly child: RouteNode;
}

export interface MatchNode {
  readonly kind: 'match';
  readonly rules: readonly MatchRule[];
  /** The config's `default`: for requests no rule matches. */
  readonly otherwise: RouteNode;
  readonly primary: LeafNode;
}

export type RouteNode = LeafNode | WeightedNode | FallbackNode | MatchNode;

/** What match rules read from a request (InferRequest fits). */
export interface RouteInput {
  /** The version the client asked for ('' = none). */
  readonly version: string;
  readonly parameters?: Parameters;
}

/** What match rules read from the request's context (RequestContext fits). */
export interface RouteContext {
  readonly header?: (name: string) => string | undefined;
}

/** A compiled model: its tree, its primary leaf, every leaf, and the versions it can serve. */
export interface CompiledModel {
  readonly name: string;
  readonly tree: RouteNode;
  readonly primary: LeafNode;
  readonly leaves: readonly LeafNode[];
  /** When every leaf pins a version: those versions (a client asking another is NOT_FOUND); else undefined. */
  readonly versions: ReadonlySet<string> | undefined;
  /** Why the model's `relay: true` cannot apply (its requests are decoded instead); undefined when it does or was not asked. */
  readonly relayRefused?: string;
}

/** The leaf that speaks for a node where one target must: metadata, readiness, the model index. */
export function primaryLeaf(node: RouteNode): LeafNode {
  return node.kind === 'leaf' ? node : node.primary;
}

// ---------------------------------------------------------------------------
// Compiling

interface CompileScope {
  readonly modelName: string;
  /** The model's serving options, applied at each of its leaves. */
  readonly serving?: ModelServingConfig;
  readonly targets: Readonly<Record<string, RouteNodeConfig>>;
  readonly clusters: ReadonlyMap<string, ResilientBackend>;
  readonly regexes: Map<string, RegExp>;
  readonly leaves: LeafNode[];
  readonly observers?: ServingObservers;
  /** Set when a match rule of the tree reads request parameters (a relayed body is never decoded). */
  readsParameters: boolean;
}

/**
 * Compiles every model of a validated config. Regexes are shared across
 * models (one RegExp per distinct pattern); a model referencing a named
 * target gets its own copy of that target's nodes, so each leaf belongs to
 * one public model (its name in answers, its health).
 */
export function compileModels(
  config: { readonly models: Readonly<Record<string, ModelNodeConfig>>; readonly targets?: Readonly<Record<string, RouteNodeConfig>> },
  clusters: ReadonlyMap<string, ResilientBackend>,
  observers?: ServingObservers,
): Map<string, CompiledModel> {
  const regexes = new Map<string, RegExp>();
  const out = new Map<string, CompiledModel>();
  for (const [name, node] of Object.entries(config.models)) {
    const scope: CompileScope = {
      modelName: name,
      targets: config.targets ?? {},
      clusters,
      regexes,
      leaves: [],
      readsParameters: false,
      ...(node.serving !== undefined ? { serving: node.serving } : {}),
      ...(observers !== undefined ? { observers } : {}),
    };
    const tree = compileNode(node, `models.${name}`, {}, scope, []);
    const relayRefused = node.serving?.relay === true ? relayBlocker(scope) : undefined;
    const relayable = node.serving?.relay === true && relayRefused === undefined;
    // Each leaf is a ModelRoute of this model: it names the tree it belongs to.
    for (const leaf of scope.leaves) Object.assign(leaf as { tree: RouteNode; relayable: boolean }, { tree, relayable });
    out.set(name, {
      name,
      tree,
      primary: primaryLeaf(tree),
      leaves: scope.leaves,
      versions: pinnedVersions(scope.leaves),
      ...(relayRefused !== undefined ? { relayRefused } : {}),
    });
  }
  return out;
}

/**
 * Compiles one more tree for public model `modelName` outside `models` (an
 * experiment arm): its default leaf ids are `path` (a config path) and below.
 * Its leaves name this tree as theirs.
 */
export function compileTree(
  node: RouteNodeConfig,
  path: string,
  modelName: string,
  targets: Readonly<Record<string, RouteNodeConfig>>,
  clusters: ReadonlyMap<string, ResilientBackend>,
  serving?: ModelServingConfig,
  observers?: ServingObservers,
): { readonly tree: RouteNode; readonly leaves: readonly LeafNode[] } {
  const scope: CompileScope = {
    modelName,
    targets,
    clusters,
    regexes: new Map(),
    leaves: [],
    readsParameters: false,
    ...(serving !== undefined ? { serving } : {}),
    ...(observers !== undefined ? { observers } : {}),
  };
  const tree = compileNode(node, path, {}, scope, []);
  for (const leaf of scope.leaves) (leaf as { tree: RouteNode }).tree = tree;
  return { tree, leaves: scope.leaves };
}

function compileNode(config: RouteNodeConfig, path: string, inherited: RouteSettings, scope: CompileScope, via: readonly string[]): RouteNode {
  // A node's own settings win over those inherited from above.
  const settings: RouteSettings = config.timeout_ms !== undefined ? { ...inherited, timeout_ms: config.timeout_ms } : inherited;
  if ('backend' in config) return compileLeaf(config, path, settings, scope);
  if ('target' in config) {
    const target = scope.targets[config.target];
    // The schema rejects both; this guards configs built in code.
    if (target === undefined) throw configError(`${path}.target: unknown target '${config.target}'`);
    if (via.includes(config.target)) throw configError(`${path}.target: cycle ${[...via, config.target].join(' -> ')}`);
    return compileNode(target, `targets.${config.target}`, settings, scope, [...via, config.target]);
  }
  if ('weighted' in config) {
    const kept = config.weighted
      .map((c, i) => ({ weight: c.weight, node: c, path: `${path}.weighted.${i}` }))
      .filter((c) => c.weight > 0);
    if (kept.length === 0) throw configError(`${path}.weighted: needs at least one weight > 0`);
    const children = kept.map((c) => compileNode(c.node, c.path, settings, scope, via));
    const cumulative = new Float64Array(kept.length);
    let total = 0;
    let heaviest = 0;
    kept.forEach((c, i) => {
      total += c.weight;
      cumulative[i] = total;
      if (c.weight > kept[heaviest]!.weight) heaviest = i;
    });
    return { kind: 'weighted', children, cumulative, total, primary: primaryLeaf(children[heaviest]!) };
  }
  if ('fallback' in config) {
    const children = config.fallback.map((c, i) => compileNode(c, `${path}.fallback.${i}`, settings, scope, via));
    return { kind: 'fallback', children, movesOn: fallbackPredicate(config.fallback_on), primary: primaryLeaf(children[0]!) };
  }
  if (config.match.some((rule) => rule.when.some((c) => c.on === 'parameter'))) scope.readsParameters = true;
  const rules = config.match.map((rule, i) => ({
    test: compileConditions(rule.when, scope.regexes),
    child: compileNode(rule, `${path}.match.${i}`, settings, scope, via),
  }));
  const otherwise = compileNode(config.default, `${path}.default`, settings, scope, via);
  return { kind: 'match', rules, otherwise, primary: primaryLeaf(otherwise) };
}

function compileLeaf(config: LeafConfig, path: string, settings: RouteSettings, scope: CompileScope): LeafNode {
  const backend = scope.clusters.get(config.backend);
  // The schema already rejects unknown backends; this guards programmatic configs.
  if (backend === undefined) throw configError(`${path}.backend: unknown backend '${config.backend}'`);
  const leaf: LeafNode = {
    kind: 'leaf',
    name: scope.modelName,
    id: config.id ?? path,
    backend,
    backendModel: config.model ?? scope.modelName,
    ...(config.version !== undefined ? { pinnedVersion: config.version } : {}),
    options: {
      ...(config.tfserving !== undefined ? { tfserving: config.tfserving } : {}),
      ...(config.torchserve !== undefined ? { torchserve: config.torchserve } : {}),
    },
    timeoutMs: Math.min(settings.timeout_ms ?? Infinity, backend.timeoutMs),
    // Set to the model's root once the whole tree is built (compileModels).
    tree: undefined as unknown as RouteNode,
    // Decided for the whole model once its tree is built (compileModels); never for an experiment arm's tree.
    relayable: false,
  };
  if (scope.serving !== undefined) (leaf as { serving?: LeafServing }).serving = compileServing(leaf, scope.serving, scope.observers);
  scope.leaves.push(leaf);
  return leaf;
}

/** A model's serving options at one leaf; undefined when none applies there. */
function compileServing(leaf: LeafNode, serving: ModelServingConfig, observers: ServingObservers | undefined): LeafServing | undefined {
  const { cache, coalesce, batching } = serving;
  if (cache === undefined && !coalesce && batching === undefined) return undefined;
  const batcher =
    batching !== undefined
      ? new DynamicBatcher(
          leaf.id,
          { maxBatchSize: batching.max_batch_size, maxQueueDelayMs: batching.max_queue_delay_ms, maxQueueSize: batching.max_queue_size },
          // A merged call serves many requests: it carries their earliest deadline and no one client's signal.
          (merged, ctx) => callLeaf(leaf, merged, ctx),
          observers?.batches?.(leaf.name),
        )
      : undefined;
  return {
    ...(cache !== undefined ? { cache: { ttlMs: cache.ttl_ms, maxEntryBytes: cache.max_entry_bytes } } : {}),
    coalesce,
    // NUL cannot occur in names, so the parts cannot run into each other. The model's server-kind settings
    // (a TF Serving signature, a TorchServe mapping) change answers too.
    scope: `${leaf.backend.name}\u0000${leaf.backendModel}\u0000${JSON.stringify(leaf.options)}`,
    ...(batcher !== undefined ? { batcher } : {}),
  };
}

/** Why a model's tree cannot take v2 REST bodies as bytes, or undefined when it can (its serving options were checked with the config). */
function relayBlocker(scope: CompileScope): string | undefined {
  if (scope.readsParameters) return 'a match rule reads request parameters, which needs the request decoded';
  for (const leaf of scope.leaves) {
    const { cluster } = leaf.backend;
    if (!cluster.endpoints.every((e) => e.relayV2Rest !== undefined)) {
      return `leaf '${leaf.id}' is on backend '${cluster.name}' (${cluster.kind} over ${cluster.protocol}); only Triton over REST takes v2 REST bodies as they are`;
    }
    if (leaf.backendModel !== leaf.name) {
      return `leaf '${leaf.id}' calls model '${leaf.backendModel}' on its backend, and a relayed answer would carry that name`;
    }
  }
  return undefined;
}

function pinnedVersions(leaves: readonly LeafNode[]): ReadonlySet<string> | undefined {
  const versions = new Set<string>();
  for (const leaf of leaves) {
    if (leaf.pinnedVersion === undefined) return undefined;
    versions.add(leaf.pinnedVersion);
  }
  return versions;
}

function configError(message: string): GatewayError {
  return new GatewayError('FAILED_PRECONDITION', message);
}

/**
 * The fallback predicate of a node's `fallback_on`, as flags checked in a
 * fixed order. A client error (4xx other than 429, and CANCELLED) never
 * moves on, whatever the list says: another target would refuse it too.
 */
export function fallbackPredicate(on: readonly FallbackOn[]): (error: GatewayError) => boolean {
  const connect = on.includes('connect_failure');
  const unavailable = on.includes('unavailable');
  const timeout = on.includes('timeout');
  const serverError = on.includes('5xx');
  const exhausted = on.includes('resource_exhausted');
  const statuses = new Set(on.filter((o): o is number => typeof o === 'number'));
  return (error) => {
    const status = error.httpStatus;
    if (status >= 400 && status < 500 && status !== 429) return false;
    return (
      (connect && error.transport === 'connect') ||
      (unavailable && error.code === 'UNAVAILABLE') ||
      (timeout && error.code === 'DEADLINE_EXCEEDED') ||
      (serverError && status >= 500) ||
      (exhausted && error.code === 'RESOURCE_EXHAUSTED') ||
      statuses.has(status)
    );
  };
}

// ---------------------------------------------------------------------------
// Match rules

type Test = (req: RouteInput, ctx: RouteContext) => boolean;
type Read = (req: RouteInput, ctx: RouteContext) => string | undefined;

/** All of a rule's conditions, as one test (a lone condition is its own test: no loop). */
function compileConditions(conditions: readonly MatchCondition[], regexes: Map<string, RegExp>): Test {
  const tests = conditions.map((c) => compileCondition(c, regexes));
  if (tests.length === 1) return tests[0]!;
  return (req, ctx) => {
    for (const test of tests) if (!test(req, ctx)) return false;
    return true;
  };
}

/** One condition. A value that is absent (no such header, parameter, or no version asked) matches nothing. */
function compileCondition(c: MatchCondition, regexes: Map<string, RegExp>): Test {
  const read = reader(c);
  switch (c.op) {
    case 'equals': {
      const want = c.value;
      return (req, ctx) => read(req, ctx) === want;
    }
    case 'in': {
      const set = new Set(c.value);
      return (req, ctx) => {
        const v = read(req, ctx);
        return v !== undefined && set.has(v);
      };
    }
    case 'prefix': {
      const prefix = c.value;
      return (req, ctx) => read(req, ctx)?.startsWith(prefix) === true;
    }
    case 'regex': {
      let re = regexes.get(c.value);
      if (re === undefined) {
        // No flags: a non-global RegExp keeps no state between test() calls, so one instance serves every request.
        re = new RegExp(c.value);
        regexes.set(c.value, re);
      }
      const compiled = re;
      return (req, ctx) => {
        const v = read(req, ctx);
        return v !== undefined && compiled.test(v);
      };
    }
  }
}

function reader(c: MatchCondition): Read {
  switch (c.on) {
    case 'header': {
      const name = c.name;
      return (_req, ctx) => ctx.header?.(name);
    }
    case 'version':
      return (req) => (req.version === '' ? undefined : req.version);
    case 'parameter': {
      const name = c.name;
      return (req) => parameterText(req.parameters?.[name]);
    }
  }
}

/** A request parameter as text: rules compare strings (`equals: 3` matches the number 3 and the string "3"). */
function parameterText(v: Parameters[string] | undefined): string | undefined {
  if (v === undefined) return undefined;
  return typeof v === 'string' ? v : String(v);
}

// ---------------------------------------------------------------------------
// Walking

/** Math.random by default; tests may pass their own source of [0, 1) draws. */
export type Random = () => number;

/**
 * Descends through weighted and match nodes to the node a request acts on: a
 * leaf to call, or a fallback whose children the executor tries in order.
 */
export function select(node: RouteNode, req: RouteInput, ctx: RouteContext, random: Random = Math.random): LeafNode | FallbackNode {
  let at = node;
  for (;;) {
    switch (at.kind) {
      case 'leaf':
      case 'fallback':
        return at;
      case 'weighted':
        at = pickWeighted(at, random());
        break;
      case 'match':
        at = pickMatch(at, req, ctx);
        break;
    }
  }
}

/** The leaf a request's first attempt goes to (for benchmarks and tests; requests use the executor). */
export function firstLeaf(node: RouteNode, req: RouteInput, ctx: RouteContext, random: Random = Math.random): LeafNode {
  let at = select(node, req, ctx, random);
  while (at.kind === 'fallback') at = select(at.children[0]!, req, ctx, random);
  return at;
}

/** The child whose cumulative weight first exceeds the draw scaled to [0, total): O(log n). */
export function pickWeighted(node: WeightedNode, draw: number): RouteNode {
  const r = draw * node.total;
  const cumulative = node.cumulative;
  let lo = 0;
  let hi = cumulative.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cumulative[mid]! > r) hi = mid;
    else lo = mid + 1;
  }
  return node.children[lo]!;
}

function pickMatch(node: MatchNode, req: RouteInput, ctx: RouteContext): RouteNode {
  for (const rule of node.rules) if (rule.test(req, ctx)) return rule.child;
  return node.otherwise;
}
