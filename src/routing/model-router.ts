import type { ModelOptions } from '../backends/backend.js';
import type { BackendCluster } from '../backends/cluster.js';
import type { GatewayConfig } from '../config/schema.js';
import { GatewayError, invalidArgument, notFound } from '../core/errors.js';
import { isValidModelName, isValidVersion } from '../core/names.js';

/** Where one public model is served: a backend, the backend's model name and an optional pinned version. */
export interface ModelRoute {
  readonly name: string;
  readonly backend: BackendCluster;
  readonly backendModel: string;
  /** Set when the config pins the backend version; clients may then ask only for this one. */
  readonly pinnedVersion?: string;
  /** Server-kind settings passed to the adapter with every call. */
  readonly options: ModelOptions;
}

/** A resolved request target: the route and the version to ask the backend for ('' = its latest). */
export interface RouteTarget {
  readonly route: ModelRoute;
  readonly backendVersion: string;
}

/**
 * Public model name -> route, built once per config into a Map so a request
 * costs one lookup.
 */
export class ModelRouter {
  private readonly routes: ReadonlyMap<string, ModelRoute>;

  constructor(config: GatewayConfig, clusters: ReadonlyMap<string, BackendCluster>) {
    const routes = new Map<string, ModelRoute>();
    for (const [name, model] of Object.entries(config.models)) {
      const backend = clusters.get(model.backend);
      // The schema already rejects unknown backends; this guards programmatic configs.
      if (!backend) throw new GatewayError('FAILED_PRECONDITION', `models.${name}.backend: unknown backend '${model.backend}'`);
      routes.set(name, {
        name,
        backend,
        backendModel: model.model ?? name,
        ...(model.version !== undefined ? { pinnedVersion: model.version } : {}),
        options: {
          ...(model.tfserving !== undefined ? { tfserving: model.tfserving } : {}),
          ...(model.torchserve !== undefined ? { torchserve: model.torchserve } : {}),
        },
      });
    }
    this.routes = routes;
  }

  /** Resolves a client's model name and version (empty = unspecified). */
  resolve(model: string, version: string): RouteTarget {
    const route = this.routes.get(model);
    if (route === undefined) {
      if (!isValidModelName(model)) {
        throw invalidArgument(
          `invalid model name ${JSON.stringify(model)}: use letters, digits, '_', '.', '-' (no '/', '..' or control characters)`,
        );
      }
      throw notFound(`unknown model '${model}'`);
    }
    if (version === '') return { route, backendVersion: route.pinnedVersion ?? '' };
    if (!isValidVersion(version)) throw invalidArgument(`invalid model version ${JSON.stringify(version)}`);
    if (route.pinnedVersion !== undefined && version !== route.pinnedVersion) {
      throw notFound(`model '${model}' has no version '${version}' (served version: '${route.pinnedVersion}')`);
    }
    return { route, backendVersion: version };
  }

  list(): IterableIterator<ModelRoute> {
    return this.routes.values();
  }

  get size(): number {
    return this.routes.size;
  }
}
