// The one module of config/ that builds routing and backends: it turns an accepted
// config into a Runtime. It sits here, beside LiveConfig, rather than in routing/,
// because it owns the lifecycle of what configs create (clusters, monitors).
import type { BackendCluster } from '../backends/cluster.js';
import { createBackendCluster } from '../backends/registry.js';
import { ResilientBackend, type CallObserver } from '../resilience/resilient-backend.js';
import { resilienceSettingsOf } from '../resilience/settings.js';
import type { Logger } from '../observability/logger.js';
import { InferenceService } from '../routing/inference-service.js';
import { ModelHealthMonitor } from '../routing/model-health.js';
import { ModelRouter } from '../routing/model-router.js';
import type { ServingObservers } from '../routing/route-tree.js';
import { buildShadowMirror, ShadowStatsStore, type ShadowMirrorImpl, type ShadowReporter } from '../experiments/shadow.js';
import { buildSplitter, type StickySplitter } from '../experiments/assignment.js';
import { NO_RECORDER } from '../experiments/assignment.js';
import type { ArmControl, ExperimentRecorder } from '../experiments/types.js';
import { deepEqual } from './live-diff.js';
import type { PreparedSwap, RuntimeApplier } from './live-config.js';
import type { BackendConfig, GatewayConfig } from './schema.js';
import type { ResponseCache } from '../cache/response-cache.js';

export interface RuntimeSwitcherOptions {
  /** server.max_body_bytes: fixed for the process (it needs a restart), and every adapter is built with it. */
  readonly maxBodyBytes: number;
  readonly logger: Logger;
  /**
   * How long a backend left out of a new config stays open for requests that
   * resolved their route before the swap (they may still be reading their
   * body). Default: server.request_timeout_ms of the startup config.
   */
  readonly retireAfterMs?: number;
  /** Hears every request of an experiment arm (the results); setExperimentRecorder() may plug one in later. */
  readonly experimentRecorder?: ExperimentRecorder;
  /** Hears every shadow copy (the experiment results); counters are kept in `shadowStats` either way. */
  readonly shadowReporter?: ShadowReporter;
  /** The response cache of models with `cache:` / `coalesce:`; it outlives config swaps. */
  readonly cache?: ResponseCache;
  /** Hears every backend call attempt (the metrics); given to each backend built. */
  readonly callObserver?: CallObserver;
  /** Hear the batchers of every config's routes (the metrics). */
  readonly servingObservers?: ServingObservers;
}

interface HeldCluster {
  readonly config: BackendConfig;
  readonly backend: ResilientBackend;
}

interface Retirement {
  readonly clusters: readonly ResilientBackend[];
  readonly since: number;
  /** Closed at this age even with calls counted in flight (they have passed every deadline by then). */
  readonly hardLimitMs: number;
}

/** Retired clusters are looked at this often. */
const RETIRE_CHECK_MS = 100;

/**
 * Builds the runtime of each accepted config and swaps it into the one
 * InferenceService. A backend whose validated config is unchanged keeps its
 * ResilientBackend object (its pools, channels, balancer, ejections,
 * breakers and budgets);
 * new and changed backends get new clusters. Clusters no longer used close
 * once no call runs on them, and not before `retireAfterMs`.
 */
export class RuntimeSwitcher implements RuntimeApplier {
  readonly service: InferenceService;
  private clusters: ReadonlyMap<string, HeldCluster>;
  private health: ModelHealthMonitor;
  private readonly retiring = new Set<Retirement>();
  private retireTimer: NodeJS.Timeout | undefined;
  private readonly retireAfterMs: number;
  private started = false;
  private closed = false;
  /** The running config's experiments, if any. */
  private splitter: StickySplitter | undefined;
  private experimentRecorder: ExperimentRecorder;
  /** Every splitter reports through this, so a recorder plugged in later hears them all. */
  private readonly recorderRelay: ExperimentRecorder = { recordRequest: (e, a, o) => this.experimentRecorder.recordRequest(e, a, o) };
  /** The guard's handle on arms: always the running config's experiments. */
  readonly armControl: ArmControl = { cutArm: (e, a, reason) => this.splitter?.cutArm(e, a, reason) };
  /** Shadow traffic counters, kept across config swaps (each runtime builds its own mirror over them). */
  readonly shadowStats = new ShadowStatsStore();

  constructor(
    config: GatewayConfig,
    private readonly opts: RuntimeSwitcherOptions,
  ) {
    this.retireAfterMs = opts.retireAfterMs ?? config.server.request_timeout_ms;
    this.experimentRecorder = opts.experimentRecorder ?? NO_RECORDER;
    const built = this.build(config, new Map());
    this.clusters = built.clusters;
    this.health = built.health;
    this.service = new InferenceService(built.router, built.health, opts.cache);
    this.splitter = built.experiments;
    if (built.shadows !== undefined) this.service.swapRuntime({ router: built.router, health: built.health, shadows: built.shadows });
    if (built.experiments !== undefined) this.service.swapRuntime({ ...this.service.currentRuntime, experiments: built.experiments });
  }

  /** The running config's experiments (status for the admin API), or undefined without any. */
  get experiments(): StickySplitter | undefined {
    return this.splitter;
  }

  setExperimentRecorder(recorder: ExperimentRecorder): void {
    this.experimentRecorder = recorder;
  }

  /** The clusters of the running config, by backend name. */
  get backends(): ReadonlyMap<string, BackendCluster> {
    return new Map([...this.clusters].map(([name, held]) => [name, held.backend.cluster]));
  }

  /** The running config's backends with their resilience state (the admin view). */
  get resilientBackends(): ReadonlyMap<string, ResilientBackend> {
    return new Map([...this.clusters].map(([name, held]) => [name, held.backend]));
  }

  /** Starts the health checks of the running config. */
  start(): void {
    this.started = true;
    this.health.start();
  }

  prepare(next: GatewayConfig): PreparedSwap {
    if (this.closed) throw new Error('the gateway is shutting down');
    const built = this.build(next, this.clusters);
    return {
      commit: () => this.commit(built.clusters, built.router, built.health, built.shadows, built.experiments),
      discard: () => void closeAll(built.created),
    };
  }

  /** Shutdown begins: no more swaps, no more checks; the clusters stay open for the requests draining. */
  freeze(): void {
    this.closed = true;
    this.health.stop();
  }

  /** Closes every cluster, current and retiring (after the listeners have drained). */
  async close(): Promise<void> {
    this.freeze();
    clearInterval(this.retireTimer);
    this.retireTimer = undefined;
    const all = [...[...this.clusters.values()].map((h) => h.backend), ...[...this.retiring].flatMap((r) => r.clusters)];
    this.retiring.clear();
    await closeAll(all);
  }

  private build(
    config: GatewayConfig,
    previous: ReadonlyMap<string, HeldCluster>,
  ): { clusters: Map<string, HeldCluster>; created: ResilientBackend[]; router: ModelRouter; health: ModelHealthMonitor; shadows: ShadowMirrorImpl | undefined; experiments: StickySplitter | undefined } {
    const clusters = new Map<string, HeldCluster>();
    const created: ResilientBackend[] = [];
    try {
      for (const [name, backendConfig] of Object.entries(config.backends)) {
        const held = previous.get(name);
        if (held !== undefined && deepEqual(held.config, backendConfig)) {
          clusters.set(name, held);
          continue;
        }
        const cluster = createBackendCluster(name, backendConfig, this.opts.maxBodyBytes);
        const backend = new ResilientBackend(cluster, resilienceSettingsOf(backendConfig), this.opts.logger, this.opts.callObserver);
        created.push(backend);
        clusters.set(name, { config: backendConfig, backend });
      }
      const backends = new Map([...clusters].map(([name, held]) => [name, held.backend]));
      const observers = this.opts.servingObservers;
      const router = new ModelRouter(config, backends, observers);
      // Every leaf of every routing tree is checked, so a fallback can skip one known to be unready.
      // Routes are rebuilt; at commit the new monitor inherits the last results of unchanged leaves.
      // Experiment arms are routing trees of their models too: their leaves are checked alike.
      const experiments = buildSplitter(config, backends, {
        recorder: this.recorderRelay,
        logger: this.opts.logger,
        ...(observers !== undefined ? { observers } : {}),
      });
      const health = new ModelHealthMonitor([...router.leaves(), ...(experiments?.leaves() ?? [])], this.opts.logger);
      const shadows = buildShadowMirror(config, backends, {
        store: this.shadowStats,
        logger: this.opts.logger,
        ...(this.opts.shadowReporter !== undefined ? { reporter: this.opts.shadowReporter } : {}),
      });
      this.explainRelays(config, router, shadows, experiments);
      return { clusters, created, router, health, shadows, experiments };
    } catch (err) {
      void closeAll(created);
      throw err;
    }
  }

  /** Warns of each model whose `relay: true` does not apply, so an operator learns why its requests are decoded. */
  private explainRelays(config: GatewayConfig, router: ModelRouter, shadows: ShadowMirrorImpl | undefined, experiments: StickySplitter | undefined): void {
    const log = this.opts.logger;
    for (const { model, reason } of router.relayRefusals()) log.warn({ model, reason }, 'relay: true does not apply to this model; its requests are decoded');
    for (const [model, entry] of Object.entries(config.models)) {
      if (entry.serving?.relay !== true) continue;
      const reason =
        shadows?.covers(model) === true ? 'its shadow traffic needs the request decoded'
        : experiments?.covers(model) === true ? 'its experiment needs the request decoded'
        : undefined;
      if (reason !== undefined) log.warn({ model, reason }, 'relay: true does not apply to this model; its requests are decoded');
    }
  }

  private commit(clusters: Map<string, HeldCluster>, router: ModelRouter, health: ModelHealthMonitor, shadows?: ShadowMirrorImpl, experiments?: StickySplitter): void {
    if (experiments !== undefined && this.splitter !== undefined) experiments.inheritFrom(this.splitter);
    this.splitter = experiments;
    health.inheritFrom(this.health);
    const previous = this.service.swapRuntime({
      router,
      health,
      ...(shadows !== undefined ? { shadows } : {}),
      ...(experiments !== undefined ? { experiments } : {}),
    });
    const kept = new Set([...clusters.values()].map((h) => h.backend));
    const unused = [...this.clusters.values()].map((h) => h.backend).filter((c) => !kept.has(c));
    this.clusters = clusters;
    this.health = health;
    if (this.started) health.start();
    previous.health?.stop();
    if (unused.length > 0) this.retire(unused);
  }

  private retire(clusters: readonly ResilientBackend[]): void {
    const longestCall = Math.max(...clusters.map((c) => c.timeoutMs));
    this.retiring.add({ clusters, since: Date.now(), hardLimitMs: this.retireAfterMs + longestCall });
    this.opts.logger.debug({ backends: clusters.map((c) => c.name), after_ms: this.retireAfterMs }, 'backends retiring');
    this.retireTimer ??= setInterval(() => this.closeRetired(), RETIRE_CHECK_MS);
    this.retireTimer.unref();
  }

  private closeRetired(): void {
    const now = Date.now();
    for (const r of this.retiring) {
      const age = now - r.since;
      if (age < this.retireAfterMs) continue;
      if (age < r.hardLimitMs && r.clusters.some(hasCallsInFlight)) continue;
      this.retiring.delete(r);
      this.opts.logger.info({ backends: r.clusters.map((c) => c.name) }, 'closed backends no longer in the config');
      void closeAll(r.clusters);
    }
    if (this.retiring.size === 0) {
      clearInterval(this.retireTimer);
      this.retireTimer = undefined;
    }
  }
}

function hasCallsInFlight(backend: ResilientBackend): boolean {
  return backend.busy || backend.cluster.endpointStates().some((e) => e.outstanding > 0);
}

async function closeAll(clusters: readonly ResilientBackend[]): Promise<void> {
  await Promise.allSettled(clusters.map((c) => c.close()));
}
