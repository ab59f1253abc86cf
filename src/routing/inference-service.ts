import type { CallOptions } from '../backends/backend.js';
import type { BackendCluster } from '../backends/cluster.js';
import { toGatewayError } from '../core/errors.js';
import type {
  InferRequest,
  InferResponse,
  ModelIndexEntry,
  ModelMetadata,
  ServerMetadata,
} from '../core/inference.js';
import type { ModelRouter, RouteTarget } from './model-router.js';

/** What the API layer passes with each call. */
export interface RequestContext {
  /** Absolute deadline for the whole request (ms since the epoch). */
  readonly deadline: number;
  readonly signal?: AbortSignal;
  readonly requestId?: string;
}

export const SERVER_NAME = 'infergate';
export const SERVER_VERSION = '0.1.0';
const EXTENSIONS = ['binary_tensor_data', 'model_repository'] as const;

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

  constructor(private readonly router: ModelRouter) {}

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
    const resp = await route.backend
      .pick()
      .infer({ ...req, model: route.backendModel, version: target.backendVersion }, callOptions(route.backend, ctx));
    return { ...resp, model: route.name, ...(req.id !== undefined && resp.id === undefined ? { id: req.id } : {}) };
  }

  async modelMetadata(model: string, version: string, ctx: RequestContext): Promise<ModelMetadata> {
    const target = this.router.resolve(model, version);
    const meta = await target.route.backend
      .pick()
      .modelMetadata(target.route.backendModel, target.backendVersion, callOptions(target.route.backend, ctx));
    const pinned = target.route.pinnedVersion;
    return { ...meta, name: target.route.name, versions: pinned !== undefined ? [pinned] : meta.versions };
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
    return route.backend.pick().modelReady(route.backendModel, target.backendVersion, callOptions(route.backend, ctx));
  }
}

/** The backend call's deadline: the client's, capped by the backend's own timeout. */
function callOptions(backend: BackendCluster, ctx: RequestContext): CallOptions {
  return {
    deadline: Math.min(ctx.deadline, Date.now() + backend.timeoutMs),
    ...(ctx.signal ? { signal: ctx.signal } : {}),
    ...(ctx.requestId !== undefined ? { requestId: ctx.requestId } : {}),
  };
}
