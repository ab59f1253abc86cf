import type { CallOptions } from '../backends/backend.js';
import type { EndpointFilter } from '../backends/cluster.js';
import { GatewayError, notFound, toGatewayError, unavailable } from '../core/errors.js';
import type {
  InferRequest,
  InferResponse,
  ModelIndexEntry,
  ModelMetadata,
  ServerMetadata,
  V2RestBody,
} from '../core/inference.js';
import type { ModelHealthMonitor } from './model-health.js';
import type { ExperimentSplitter, ShadowMirror } from './traffic-hooks.js';
import type { ModelRoute, ModelRouter, RouteTarget } from './model-router.js';
import { execute, type LeafCall, type RouteState } from './route-executor.js';
import type { LeafNode, LeafServing, RouteInput } from './route-tree.js';
import { callLeaf, callOptions } from './leaf-call.js';
import { cacheKey } from '../cache/key.js';
import type { CacheMode, CacheOutcome, ResponseCache } from '../cache/response-cache.js';
import type { TraceContext } from '../observability/trace-context.js';
import type { CancelSignal } from '../core/cancel.js';

/** What the API layer passes with each call. */
export interface RequestContext {
  /** Absolute deadline for the whole request (ms since the epoch). */
  readonly deadline: number;
  /** The deadline the client asked for, when it did (before the server's cap); see GuardContext. */
  readonly clientDeadline?: number;
  readonly signal?: CancelSignal;
  readonly requestId?: string;
  /** The request's W3C trace (the client's traceparent, or a new one): every backend call is a span of it. */
  readonly trace?: TraceContext;
  /**
   * A request header (REST) or metadata value (gRPC) by lower-case name, for
   * routing rules; read on demand so nothing is copied for requests whose
   * routes never look.
   */
  readonly header?: (name: string) => string | undefined;
  /**
   * Told once per inference, when routing is done (served or failed): the id
   * of the leaf that served it (or failed last) and the backend calls made.
   * The API layer turns it into x-infergate-target / x-infergate-attempts.
   */
  readonly onServed?: (target: string, attempts: number) => void;
  /** Hears the public model an inference resolved to (see resolve(); the metrics label requests with it). */
  readonly onRoute?: (model: string) => void;
  /** Hears the experiment arm a request was assigned to (the API answers it as x-infergate-variant). */
  readonly onVariant?: (experiment: string, arm: string) => void;
  /** The client's cache directive (Cache-Control / gRPC metadata): 'no-cache' skips the lookup, 'no-store' also the store. */
  readonly cacheMode?: CacheMode;
  /** Hears whether a cached model's answer came from the cache (the API answers it as x-infergate-cache). */
  readonly onCache?: (outcome: CacheOutcome) => void;
}

/** One request's routing state, with the health checks of the runtime it started on and the response cache. */
interface Run extends RouteState {
  readonly health: ModelHealthMonitor | undefined;
  readonly cache: ResponseCache | undefined;
}

/** A backend stream opened on a leaf: its first part (already received; none when the stream was empty) and the rest. */
interface OpenedStream {
  readonly first: InferResponse | undefined;
  readonly rest: AsyncIterator<InferResponse> | undefined;
  readonly release: () => void;
}

/**
 * What one config builds and requests run on: the router and the health
 * checks of its models. Swapped whole on a config change; a request keeps the
 * runtime it started with.
 */
export interface Runtime {
  readonly router: ModelRouter;
  readonly health?: ModelHealthMonitor;
  /** Running A/B experiments of this config, if any. */
  readonly experiments?: ExperimentSplitter;
  /** Shadow traffic of this config, if any. */
  readonly shadows?: ShadowMirror;
}

export const SERVER_NAME = 'infergate';
export const SERVER_VERSION = '0.1.0';
const EXTENSIONS = ['binary_tensor_data', 'model_repository'] as const;

/** Model metadata is cached this long: the front doors that need input datatypes ask for it per request. */
const METADATA_TTL_MS = 30_000;
/** Cached metadata entries at most (public model x version); the oldest goes first. */
const METADATA_CACHE_MAX = 4_096;

/** Checks of many models at once (the model index) run at most this many backend calls together. */
const INDEX_CONCURRENCY = 16;
/** A model index must answer promptly even when a backend hangs. */
const INDEX_PROBE_TIMEOUT_MS = 2_000;

/**
 * The one entry point of the API layer: every transport's request, once
 * decoded, comes here. Resolves the public model to a backend target, calls it
 * within the deadline, and answers in public names.
 */
export class InferenceService {
  private draining = false;
  private readonly metadataCache = new Map<string, { readonly at: number; readonly value: Promise<ModelMetadata> }>();

  private runtime: Runtime;

  /**
   * `health`, when given, holds background readiness checks: unready models fail fast and the index answers from
   * it. `cache` serves the models whose config has `cache:` or `coalesce:` (it outlives config swaps).
   */
  constructor(
    router: ModelRouter,
    health?: ModelHealthMonitor,
    private readonly cache?: ResponseCache,
  ) {
    this.runtime = health !== undefined ? { router, health } : { router };
  }

  /**
   * Puts a new runtime in place for requests that start from now on and
   * returns the old one (its owner closes what the new one does not reuse).
   * Cached metadata belongs to the old routes, so it goes too.
   */
  swapRuntime(next: Runtime): Runtime {
    const previous = this.runtime;
    this.runtime = next;
    this.metadataCache.clear();
    return previous;
  }

  get currentRuntime(): Runtime {
    return this.runtime;
  }

  private get router(): ModelRouter {
    return this.runtime.router;
  }

  private get health(): ModelHealthMonitor | undefined {
    return this.runtime.health;
  }

  /**
   * The target of a public model and version. The API resolves it before
   * decoding a body, so an unknown model is reported as such (404) whatever
   * the body holds, and passes it to infer() so it is resolved once.
   * `listener` (the request's context, or its metrics timer) hears the model
   * once it resolved.
   */
  resolve(model: string, version: string, listener?: { readonly onRoute?: (model: string) => void }): RouteTarget {
    const target = this.router.resolve(model, version);
    listener?.onRoute?.(target.route.name);
    return target;
  }

  /**
   * Runs the request through its model's routing tree (route-executor.ts):
   * the leaf it lands on is called, a fallback moves on as its node says, and
   * ctx.onServed hears which leaf answered after how many backend calls.
   */
  async infer(req: InferRequest, ctx: RequestContext, target = this.router.resolve(req.model, req.version)): Promise<InferResponse> {
    const { route } = target;
    const runtime = this.runtime;
    const started = performance.now();
    const resp = await this.routed(runtime, route, req, ctx, inferAt, started);
    const answer = { ...resp, model: route.name, ...(req.id !== undefined && resp.id === undefined ? { id: req.id } : {}) };
    runtime.shadows?.mirror(route.name, req, answer, performance.now() - started, ctx);
    return answer;
  }

  /**
   * A v2 REST inference relayed as bytes: the client's body goes to the
   * backend as it is and the backend's answer comes back as it is, through the
   * same routing tree, breakers, retries and deadline as infer(), with no
   * decoding or re-encoding of tensors. Only for models whose every leaf can
   * take it (ModelRoute.relayable) and that no experiment or shadow of the
   * current config covers (those need the decoded request); otherwise
   * undefined, and the caller decodes the body and calls infer(). The backend
   * checks the body, and its refusal is answered as infer() would (its
   * message, the status its code maps to).
   */
  relay(req: V2RestRelay, ctx: RequestContext, target: RouteTarget): Promise<V2RestBody> | undefined {
    const { route } = target;
    const runtime = this.runtime;
    if (!route.relayable || runtime.experiments?.covers(route.name) === true || runtime.shadows?.covers(route.name) === true) return undefined;
    return this.routed(runtime, route, req, ctx, relayAt, performance.now());
  }

  /**
   * Runs a leaf call through the model's routing tree, or through its
   * experiment's arm when one is running (the arm's tree of its own), and
   * records the arm's outcome; ctx.onServed hears the leaf that answered.
   */
  private async routed<T, R extends RouteInput>(
    runtime: Runtime,
    route: ModelRoute,
    req: R,
    ctx: RequestContext,
    call: LeafCall<T, R, RequestContext, Run>,
    started: number,
  ): Promise<T> {
    const run: Run = { leaf: undefined, attempts: 0, health: runtime.health, cache: this.cache };
    const assignment = runtime.experiments?.assign(route.name, ctx);
    if (assignment !== undefined) ctx.onVariant?.(assignment.experiment, assignment.arm);
    let ok = false;
    try {
      const value = await execute(assignment?.node ?? route.tree, req, ctx, call, run);
      ok = true;
      return value;
    } finally {
      if (run.leaf !== undefined) ctx.onServed?.(run.leaf.id, run.attempts);
      if (assignment !== undefined) {
        runtime.experiments!.record(assignment, {
          ok,
          latencyMs: performance.now() - started,
          ...(ctx.requestId !== undefined ? { requestId: ctx.requestId } : {}),
        });
      }
    }
  }

  async modelMetadata(model: string, version: string, ctx: RequestContext): Promise<ModelMetadata> {
    return this.fetchMetadata(this.router.resolve(model, version), ctx);
  }

  /**
   * Metadata of a resolved target, cached for METADATA_TTL_MS: for the codecs
   * that must know a model's input datatypes to read a request (TF Serving's
   * JSON carries none). Concurrent misses share one backend call; failures are
   * not cached.
   */
  cachedModelMetadata(target: RouteTarget, ctx: RequestContext): Promise<ModelMetadata> {
    const key = `${target.route.name}\u0000${target.backendVersion}`;
    const now = Date.now();
    const hit = this.metadataCache.get(key);
    if (hit !== undefined && now - hit.at < METADATA_TTL_MS) return hit.value;
    const value = this.fetchMetadata(target, ctx);
    this.metadataCache.delete(key);
    if (this.metadataCache.size >= METADATA_CACHE_MAX) {
      const oldest = this.metadataCache.keys().next().value;
      if (oldest !== undefined) this.metadataCache.delete(oldest);
    }
    this.metadataCache.set(key, { at: now, value });
    value.catch(() => {
      if (this.metadataCache.get(key)?.value === value) this.metadataCache.delete(key);
    });
    return value;
  }

  private async fetchMetadata(target: RouteTarget, ctx: RequestContext): Promise<ModelMetadata> {
    const { route } = target;
    const meta = await route.backend.call((e) => e.modelMetadata(route.backendModel, target.backendVersion, callOptions(route, ctx)), ctx);
    const pinned = route.pinnedVersion;
    return { ...meta, name: route.name, versions: pinned !== undefined ? [pinned] : meta.versions };
  }

  /**
   * An answer in parts, for front doors that stream (v2 ModelStreamInfer,
   * TorchServe's): the backend's own stream where its adapter has one, else
   * the one answer of a backend call as a single part (as also for leaves
   * with a cache or a batcher). Routing and experiments work as for infer() up
   * to the first part: a fallback may move on until then, not after (parts
   * have been sent). Shadow traffic does not mirror streams.
   */
  async *inferStream(req: InferRequest, ctx: RequestContext, target = this.router.resolve(req.model, req.version)): AsyncIterable<InferResponse> {
    const { route } = target;
    // An arm is judged by the first part: the time to it and whether it came.
    const opened = await this.routed(this.runtime, route, req, ctx, openStreamAt, performance.now());
    try {
      const first = opened.first;
      if (first === undefined) return;
      yield { ...first, model: route.name, ...(req.id !== undefined && first.id === undefined ? { id: req.id } : {}) };
      const rest = opened.rest;
      if (rest === undefined) return;
      for (let part = await rest.next(); part.done !== true; part = await rest.next()) yield { ...part.value, model: route.name };
    } finally {
      await opened.rest?.return?.();
      opened.release();
    }
  }

  async modelReady(model: string, version: string, ctx: RequestContext): Promise<boolean> {
    return this.readyOf(this.router.resolve(model, version), ctx);
  }

  serverMetadata(): ServerMetadata {
    return { name: SERVER_NAME, version: SERVER_VERSION, extensions: EXTENSIONS };
  }

  serverLive(): boolean {
    return true;
  }

  serverReady(): boolean {
    return !this.draining;
  }

  /** Readiness turns false first on shutdown, so load balancers stop sending before the listeners close. */
  startDraining(): void {
    this.draining = true;
  }

  /** Every public model with its readiness, probed in parallel with a bounded fan-out and a short deadline. */
  async modelIndex(readyOnly: boolean, ctx: RequestContext): Promise<ModelIndexEntry[]> {
    const routes = [...this.router.list()];
    const probeCtx: RequestContext = { ...ctx, deadline: Math.min(ctx.deadline, Date.now() + INDEX_PROBE_TIMEOUT_MS) };
    const entries: ModelIndexEntry[] = new Array(routes.length);
    let nextIndex = 0;
    const worker = async (): Promise<void> => {
      for (let i = nextIndex++; i < routes.length; i = nextIndex++) {
        const route = routes[i]!;
        const version = route.pinnedVersion ?? '';
        const known = this.health?.get(route);
        if (known !== undefined) {
          entries[i] = { name: route.name, version, state: known.ready ? 'READY' : 'UNAVAILABLE', reason: known.reason };
          continue;
        }
        try {
          const ready = await this.readyOf({ route, backendVersion: version }, probeCtx);
          entries[i] = { name: route.name, version, state: ready ? 'READY' : 'UNAVAILABLE', reason: ready ? '' : 'model not ready on its backend' };
        } catch (err) {
          entries[i] = { name: route.name, version, state: 'UNAVAILABLE', reason: toGatewayError(err).message };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(INDEX_CONCURRENCY, routes.length) }, worker));
    return readyOnly ? entries.filter((e) => e.state === 'READY') : entries;
  }

  private readyOf(target: RouteTarget, ctx: RequestContext): Promise<boolean> {
    const { route } = target;
    return route.backend.call((e) => e.modelReady(route.backendModel, target.backendVersion, callOptions(route, ctx)), ctx);
  }
}

/**
 * Background checks found the leaf's model unready: fail now rather than
 * after a backend round trip (a fallback skips to its next child, as for any
 * UNAVAILABLE). Else the endpoints where it is known unready, for the pick to
 * avoid.
 */
function knownHealth(leaf: LeafNode, health: ModelHealthMonitor | undefined): EndpointFilter | undefined {
  const known = health?.get(leaf);
  if (known === undefined) return undefined;
  if (!known.ready) {
    const age = Date.now() - known.checkedAt;
    throw unavailable(`model '${leaf.name}' is not ready on backend '${leaf.backend.name}' (checked ${age} ms ago): ${known.reason}`);
  }
  return known.unreadyEndpoints.size > 0 ? known.unreadyEndpoints : undefined;
}

/** A v2 REST inference to relay: the public model, the version the client asked for ('' = none), and its body. */
export interface V2RestRelay {
  readonly model: string;
  readonly version: string;
  readonly body: V2RestBody;
}

/** One relayed inference on one leaf (the executor's LeafCall for relay()); its model is relayable, so every leaf is. */
const relayAt = (leaf: LeafNode, req: V2RestRelay, ctx: RequestContext, run: Run): Promise<V2RestBody> => {
  const skip = knownHealth(leaf, run.health);
  const version = versionAt(leaf, req.version);
  return leaf.backend.call((endpoint) => {
    run.attempts++;
    if (endpoint.relayV2Rest === undefined) throw new GatewayError('INTERNAL', `backend '${leaf.backend.name}' cannot relay v2 REST bodies`);
    return endpoint.relayV2Rest(leaf.backendModel, version, req.body, callOptions(leaf, ctx));
  }, ctx, skip);
};

/** The version to ask a leaf's backend for: the pinned one, or the client's (a pinned leaf refuses another). */
function versionAt(leaf: LeafNode, requested: string): string {
  const pinned = leaf.pinnedVersion;
  if (pinned === undefined) return requested;
  if (requested !== '' && requested !== pinned) {
    throw notFound(`model '${leaf.name}' has no version '${requested}' at target '${leaf.id}' (served version: '${pinned}')`);
  }
  return pinned;
}

/**
 * One inference on one leaf (the executor's LeafCall): a backend call, each
 * attempt counted once it has an endpoint; through the model's cache,
 * coalescing and batcher when its config has them.
 */
const inferAt = (leaf: LeafNode, req: InferRequest, ctx: RequestContext, run: Run): Promise<InferResponse> => {
  const skip = knownHealth(leaf, run.health);
  const backendReq: InferRequest = { ...req, model: leaf.backendModel, version: versionAt(leaf, req.version) };
  const serving = leaf.serving;
  if (serving === undefined) return callLeaf(leaf, backendReq, ctx, skip, run);
  return serveAt(leaf, serving, backendReq, ctx, run, skip);
};

async function serveAt(
  leaf: LeafNode,
  serving: LeafServing,
  req: InferRequest,
  ctx: RequestContext,
  run: Run,
  skip: EndpointFilter | undefined,
): Promise<InferResponse> {
  const cache = run.cache;
  if (cache === undefined || (serving.cache === undefined && !serving.coalesce) || isStateful(req)) {
    return callOnce(leaf, serving, req, ctx, run, skip);
  }
  const key = cacheKey(`${serving.scope}\u0000${req.version}`, req);
  const { response, outcome } = await cache.getOrFetch(key, serving.cache, ctx.cacheMode ?? 'use', ctx, () =>
    callOnce(leaf, serving, req, sharedContext(ctx), run, skip),
  );
  if (serving.cache !== undefined) ctx.onCache?.(outcome);
  // A shared or cached answer may carry another request's id.
  if (response.id === req.id) return response;
  const { id: _other, ...rest } = response;
  return req.id !== undefined ? { ...rest, id: req.id } : rest;
}

/**
 * The context of a call shared by every caller waiting on it: the leader's
 * deadline but not its client's signal, so one client going away does not
 * fail the others (each stops waiting at its own deadline or signal).
 */
function sharedContext(ctx: RequestContext): RequestContext {
  return {
    deadline: ctx.deadline,
    ...(ctx.clientDeadline !== undefined ? { clientDeadline: ctx.clientDeadline } : {}),
    ...(ctx.requestId !== undefined ? { requestId: ctx.requestId } : {}),
    ...(ctx.trace !== undefined ? { trace: ctx.trace } : {}),
    ...(ctx.header !== undefined ? { header: ctx.header } : {}),
  };
}

/**
 * A request whose answer depends on more than its tensors: a sequence
 * (stateful models) or inputs in shared memory. Never cached or coalesced.
 */
function isStateful(req: InferRequest): boolean {
  const params = req.parameters;
  if (params === undefined) return false;
  for (const name in params) if (name.startsWith('sequence_') || name.startsWith('shared_memory_')) return true;
  for (const input of req.inputs) {
    const p = input.parameters;
    if (p !== undefined) for (const name in p) if (name.startsWith('shared_memory_')) return true;
  }
  return false;
}

/** The backend call itself: through the leaf's batcher (one merged call, counted once) or on its own. */
async function callOnce(
  leaf: LeafNode,
  serving: LeafServing,
  req: InferRequest,
  ctx: RequestContext,
  run: Run,
  skip: EndpointFilter | undefined,
): Promise<InferResponse> {
  if (serving.batcher === undefined) return callLeaf(leaf, req, ctx, skip, run);
  const answer = await serving.batcher.submit(req, ctx);
  run.attempts++;
  return answer;
}

/**
 * Opens a stream on one leaf and waits for its first part, so a failure
 * before any answer can still fall back (or be retried on another endpoint).
 * The endpoint and its concurrency slot stay held until the caller releases
 * them.
 */
const openStreamAt = async (leaf: LeafNode, req: InferRequest, ctx: RequestContext, run: Run): Promise<OpenedStream> => {
  // A leaf with a cache or a batcher answers once, through them, as for infer().
  if (leaf.serving !== undefined) return { first: await inferAt(leaf, req, ctx, run), rest: undefined, release: () => {} };
  const skip = knownHealth(leaf, run.health);
  const backendReq: InferRequest = { ...req, model: leaf.backendModel, version: versionAt(leaf, req.version) };
  const held = await leaf.backend.hold(async (endpoint) => {
    run.attempts++;
    const opts = callOptions(leaf, ctx);
    if (endpoint.inferStream === undefined) return { first: await endpoint.infer(backendReq, opts), rest: undefined };
    const parts = endpoint.inferStream(backendReq, opts)[Symbol.asyncIterator]();
    const head = await parts.next();
    return head.done === true ? { first: undefined, rest: undefined } : { first: head.value, rest: parts };
  }, ctx, skip);
  const { first, rest } = held.value;
  if (rest === undefined) {
    held.release();
    return { first, rest, release: () => {} };
  }
  return { first, rest, release: () => held.release() };
};
