import type { CallOptions } from '../backends/backend.js';
import { toGatewayError, unavailable } from '../core/errors.js';
import type {
  InferRequest,
  InferResponse,
  ModelIndexEntry,
  ModelMetadata,
  ServerMetadata,
} from '../core/inference.js';
import type { ModelHealthMonitor } from './model-health.js';
import type { ModelRoute, ModelRouter, RouteTarget } from './model-router.js';

/** What the API layer passes with each call. */
export interface RequestContext {
  /** Absolute deadline for the whole request (ms since the epoch). */
  readonly deadline: number;
  readonly signal?: AbortSignal;
  readonly requestId?: string;
  /**
   * A request header (REST) or metadata value (gRPC) by lower-case name, for
   * routing rules; read on demand so nothing is copied for requests whose
   * routes never look.
   */
  readonly header?: (name: string) => string | undefined;
}

/**
 * What one config builds and requests run on: the router and the health
 * checks of its models. Swapped whole on a config change; a request keeps the
 * runtime it started with.
 */
export interface Runtime {
  readonly router: ModelRouter;
  readonly health?: ModelHealthMonitor;
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

  /** `health`, when given, holds background readiness checks: unready models fail fast and the index answers from it. */
  constructor(router: ModelRouter, health?: ModelHealthMonitor) {
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
   */
  resolve(model: string, version: string): RouteTarget {
    return this.router.resolve(model, version);
  }

  async infer(req: InferRequest, ctx: RequestContext, target = this.router.resolve(req.model, req.version)): Promise<InferResponse> {
    const { route } = target;
    this.failIfKnownUnready(route);
    const resp = await route.backend
      .pick()
      .infer({ ...req, model: route.backendModel, version: target.backendVersion }, callOptions(route, ctx));
    return { ...resp, model: route.name, ...(req.id !== undefined && resp.id === undefined ? { id: req.id } : {}) };
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
    const meta = await route.backend.pick().modelMetadata(route.backendModel, target.backendVersion, callOptions(route, ctx));
    const pinned = route.pinnedVersion;
    return { ...meta, name: route.name, versions: pinned !== undefined ? [pinned] : meta.versions };
  }

  /**
   * An answer in parts, for front doors that stream (TorchServe's): the
   * backend's own stream where its adapter has one, else the one answer of
   * infer() as a single part.
   */
  async *inferStream(req: InferRequest, ctx: RequestContext, target = this.router.resolve(req.model, req.version)): AsyncIterable<InferResponse> {
    const { route } = target;
    const endpoint = route.backend.pick();
    if (endpoint.inferStream === undefined) {
      yield await this.infer(req, ctx, target);
      return;
    }
    this.failIfKnownUnready(route);
    const backendReq = { ...req, model: route.backendModel, version: target.backendVersion };
    for await (const part of endpoint.inferStream(backendReq, callOptions(route, ctx))) {
      yield { ...part, model: route.name };
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

  /** Background checks found the model unready: fail now rather than after a backend round trip. */
  private failIfKnownUnready(route: ModelRoute): void {
    const health = this.health?.get(route);
    if (health !== undefined && !health.ready) {
      const age = Date.now() - health.checkedAt;
      throw unavailable(`model '${route.name}' is not ready on backend '${route.backend.name}' (checked ${age} ms ago): ${health.reason}`);
    }
  }

  private readyOf(target: RouteTarget, ctx: RequestContext): Promise<boolean> {
    const { route } = target;
    return route.backend.pick().modelReady(route.backendModel, target.backendVersion, callOptions(route, ctx));
  }
}

/** The backend call's options: the client's deadline capped by the backend's own timeout, and the model's settings. */
function callOptions(route: ModelRoute, ctx: RequestContext): CallOptions {
  return {
    deadline: Math.min(ctx.deadline, Date.now() + route.backend.timeoutMs),
    model: route.options,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
    ...(ctx.requestId !== undefined ? { requestId: ctx.requestId } : {}),
  };
}
