import type { ResilientBackend } from '../resilience/resilient-backend.js';
import type { RouteNodeConfig } from '../config/route-schema.js';
import { invalidArgument, notFound } from '../core/errors.js';
import { isValidModelName, isValidVersion } from '../core/names.js';
import { compileModels, type CompiledModel, type LeafNode, type ModelRoute, type ServingObservers } from './route-tree.js';

export type { LeafNode, ModelRoute, RouteNode } from './route-tree.js';

/**
 * A resolved request target: the model's route (its primary leaf, whose
 * `tree` the request walks) and the version to ask the primary leaf's backend
 * for ('' = its latest), for the calls that go to the primary alone
 * (metadata, readiness).
 */
export interface RouteTarget {
  readonly route: ModelRoute;
  readonly backendVersion: string;
}

/** What the router needs of a config: validated models and named targets (GatewayConfig fits). */
export interface RoutingConfig {
  readonly models: Readonly<Record<string, RouteNodeConfig>>;
  readonly targets?: Readonly<Record<string, RouteNodeConfig>>;
}

/**
 * Public model name -> compiled routing tree, built once per config into a
 * Map, so a request costs one lookup and then a walk of its own tree.
 */
export class ModelRouter {
  private readonly models: ReadonlyMap<string, CompiledModel>;

  constructor(config: RoutingConfig, clusters: ReadonlyMap<string, ResilientBackend>, observers?: ServingObservers) {
    this.models = compileModels(config, clusters, observers);
  }

  /** Resolves a client's model name and version (empty = unspecified). */
  resolve(model: string, version: string): RouteTarget {
    const compiled = this.models.get(model);
    if (compiled === undefined) {
      if (!isValidModelName(model)) {
        throw invalidArgument(
          `invalid model name ${JSON.stringify(model)}: use letters, digits, '_', '.', '-' (no '/', '..' or control characters)`,
        );
      }
      throw notFound(`unknown model '${model}'`);
    }
    const route = compiled.primary;
    if (version === '') return { route, backendVersion: route.pinnedVersion ?? '' };
    if (!isValidVersion(version)) throw invalidArgument(`invalid model version ${JSON.stringify(version)}`);
    // When every leaf pins a version, a client asking for another would be refused wherever it went.
    const served = compiled.versions;
    if (served !== undefined && !served.has(version)) {
      const list = [...served].map((v) => `'${v}'`).join(', ');
      throw notFound(`model '${model}' has no version '${version}' (served version${served.size > 1 ? 's' : ''}: ${list})`);
    }
    return { route, backendVersion: route.pinnedVersion ?? version };
  }

  /** One route per public model: its primary leaf (the model index, and per-model views). */
  *list(): IterableIterator<ModelRoute> {
    for (const model of this.models.values()) yield model.primary;
  }

  /**
   * Every leaf of every model, each a ModelRoute of its model: what the
   * background health checks should watch, so a fallback can skip a leaf
   * known to be unready.
   */
  *leaves(): IterableIterator<LeafNode> {
    for (const model of this.models.values()) yield* model.leaves;
  }

  /** Each model whose `relay: true` cannot apply, with the reason (logged at config load). */
  *relayRefusals(): IterableIterator<{ readonly model: string; readonly reason: string }> {
    for (const model of this.models.values()) if (model.relayRefused !== undefined) yield { model: model.name, reason: model.relayRefused };
  }

  /** A model's compiled tree and leaves, or undefined. */
  model(name: string): CompiledModel | undefined {
    return this.models.get(name);
  }

  get size(): number {
    return this.models.size;
  }
}
