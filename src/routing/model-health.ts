import type { BackendCluster, HealthCheckSettings } from '../backends/cluster.js';
import { toGatewayError, type GatewayError } from '../core/errors.js';
import type { Logger } from '../observability/logger.js';
import type { ModelRoute } from './model-router.js';

export interface ModelHealth {
  /** True while the last check found the model ready on at least one endpoint of its backend. */
  readonly ready: boolean;
  /** Why it is not ready ('' when ready). */
  readonly reason: string;
  /** When the last check finished (ms since the epoch). */
  readonly checkedAt: number;
  /** Checks failed in a row; a route turns unready only after `unhealthyAfter` of them. */
  readonly failures: number;
  /**
   * Endpoint indexes (of the route's backend) whose last answer was that this
   * model is not ready or not there, though the endpoint itself is up. Pass it
   * as `skip` to BackendCluster.acquire()/call() so this model's calls avoid
   * them; other models still use those endpoints. An unreachable endpoint
   * keeps its previous membership: reachability is the endpoint ejection's job.
   */
  readonly unreadyEndpoints: ReadonlySet<number>;
}

/** The ejection source the health checks use on a BackendCluster. */
export const HEALTH_EJECTION = 'health';

const NO_ENDPOINTS: ReadonlySet<number> = new Set();

/** What one sweep learnt about one cluster's endpoints, across all its routes' probes. */
interface EndpointTally {
  /** 1 where some probe got an answer (ready, not ready, or an error the server sent). */
  readonly reached: Uint8Array;
  /** 1 where some probe ran. */
  readonly probed: Uint8Array;
  /** The last connection-level failure per endpoint, for the ejection log and reason. */
  readonly lastFailure: string[];
}

/** Checks of one sweep run at most this many backend calls at once. */
const SWEEP_CONCURRENCY = 16;

/**
 * Background readiness checks of every routed model on every endpoint of its
 * backend, so the gateway knows a model is unready before a request fails on
 * it: requests to it fail fast, and the model index answers from here.
 *
 * The same probes judge the endpoints themselves: one that answers none of
 * its probes (connection refused, reset, or no answer in time) in
 * `unhealthyAfter` sweeps in a row is ejected from its cluster (source
 * 'health'), so requests stop going there; its first answer restores it.
 * Ejected endpoints are still probed, which is how they come back.
 */
export class ModelHealthMonitor {
  private readonly health = new Map<ModelRoute, ModelHealth>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly sweeping = new Set<string>();
  /** Per cluster: sweeps in a row in which an endpoint answered none of its probes. */
  private readonly unreachableSweeps = new Map<BackendCluster, Int32Array>();
  private stopped = false;

  constructor(
    private readonly routes: readonly ModelRoute[],
    private readonly log: Logger,
  ) {}

  private settingsOf(route: ModelRoute): HealthCheckSettings {
    return route.backend.healthCheck;
  }

  /** Starts one ticker per backend (each backend has its own interval) and runs a first sweep now. */
  start(): void {
    const byBackend = new Map<string, ModelRoute[]>();
    for (const route of this.routes) {
      if (this.settingsOf(route).intervalMs <= 0) {
        // A cluster carried over from an earlier config may hold an ejection of
        // the earlier checks; with checks now off, nothing would ever lift it.
        liftHealthEjections(route.backend.cluster);
        continue;
      }
      const list = byBackend.get(route.backend.name) ?? [];
      list.push(route);
      byBackend.set(route.backend.name, list);
    }
    for (const [backend, routes] of byBackend) {
      const interval = this.settingsOf(routes[0]!).intervalMs;
      void this.sweep(backend, routes);
      const timer = setInterval(() => void this.sweep(backend, routes), interval);
      timer.unref();
      this.timers.push(timer);
    }
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.timers.length = 0;
  }

  get(route: ModelRoute): ModelHealth | undefined {
    return this.health.get(route);
  }

  /**
   * Takes over a previous monitor's last results for the leaves that check the
   * same thing (the same cluster object, backend model and version), so a
   * config swap keeps what is known about unchanged backends instead of
   * forgetting it until the next sweep.
   */
  inheritFrom(previous: ModelHealthMonitor): void {
    const known = new Map<BackendCluster, Map<string, ModelHealth>>();
    for (const [route, health] of previous.health) {
      const byModel = known.get(route.backend.cluster) ?? new Map<string, ModelHealth>();
      byModel.set(probeKey(route), health);
      known.set(route.backend.cluster, byModel);
    }
    for (const route of this.routes) {
      const health = known.get(route.backend.cluster)?.get(probeKey(route));
      if (health !== undefined) this.health.set(route, health);
      const sweeps = previous.unreachableSweeps.get(route.backend.cluster);
      if (sweeps !== undefined) this.unreachableSweeps.set(route.backend.cluster, sweeps);
    }
  }

  /** Checks every route of one backend; a sweep still running when the next is due is not doubled. */
  async sweep(backend: string, routes: readonly ModelRoute[]): Promise<void> {
    if (this.sweeping.has(backend) || this.stopped) return;
    this.sweeping.add(backend);
    const tallies = new Map<BackendCluster, EndpointTally>();
    try {
      let next = 0;
      const worker = async (): Promise<void> => {
        for (let i = next++; i < routes.length && !this.stopped; i = next++) await this.check(routes[i]!, tallies);
      };
      await Promise.all(Array.from({ length: Math.min(SWEEP_CONCURRENCY, routes.length) }, worker));
      if (!this.stopped) for (const [cluster, tally] of tallies) this.ejectUnreachable(cluster, tally);
    } finally {
      this.sweeping.delete(backend);
    }
  }

  private async check(route: ModelRoute, tallies: Map<BackendCluster, EndpointTally>): Promise<void> {
    const settings = this.settingsOf(route);
    // Probes go to every endpoint directly, past the breakers: an ejected endpoint must still be checked to come back.
    const cluster = route.backend.cluster;
    const deadline = Date.now() + settings.timeoutMs;
    const version = route.pinnedVersion ?? '';
    // Per endpoint: true = ready, false = up but the model is not ready there, a GatewayError = the probe failed.
    const answers = await Promise.all(
      cluster.endpoints.map((endpoint) =>
        endpoint.modelReady(route.backendModel, version, { deadline, model: route.options }).then(
          (ready) => ready,
          (err: unknown) => toGatewayError(err),
        ),
      ),
    );
    if (this.stopped) return;

    let tally = tallies.get(cluster);
    if (tally === undefined) {
      const n = cluster.endpoints.length;
      tally = { reached: new Uint8Array(n), probed: new Uint8Array(n), lastFailure: new Array<string>(n).fill('') };
      tallies.set(cluster, tally);
    }
    const before = this.health.get(route);
    let unready = before?.unreadyEndpoints ?? NO_ENDPOINTS;
    const reasons: string[] = [];
    answers.forEach((answer, i) => {
      tally.probed[i] = 1;
      if (answer !== true) {
        reasons.push(answer === false ? `model '${route.backendModel}' is not ready on ${cluster.endpoints[i]!.endpoint}` : answer.message);
      }
      if (answer instanceof Error && isConnectionFailure(answer)) {
        tally.lastFailure[i] = answer.message;
        return;
      }
      // The endpoint answered: it is up, whatever it said about this model.
      tally.reached[i] = 1;
      this.endpointReached(cluster, i);
      if ((answer === true) === unready.has(i)) unready = toggled(unready, i);
    });

    const okNow = answers.some((a) => a === true);
    const failures = okNow ? 0 : (before?.failures ?? 0) + 1;
    // A ready model turns unready only after repeated failures, so one slow check does not stop its traffic.
    const ready = okNow || (before?.ready === true && failures < settings.unhealthyAfter);
    const reason = okNow ? '' : reasons.join('; ');
    this.health.set(route, { ready, reason, checkedAt: Date.now(), failures, unreadyEndpoints: unready });
    if (before !== undefined && before.ready !== ready) {
      if (ready) this.log.info({ model: route.name, backend: route.backend.name }, 'model is ready again');
      else this.log.warn({ model: route.name, backend: route.backend.name, reason }, 'model is not ready');
    } else if (before === undefined && !ready) {
      this.log.warn({ model: route.name, backend: route.backend.name, reason }, 'model is not ready');
    }
  }

  /** An endpoint answered a probe: its run of unreachable sweeps ends, and a health ejection is lifted at once. */
  private endpointReached(cluster: BackendCluster, i: number): void {
    const runs = this.unreachableSweeps.get(cluster);
    if (runs !== undefined) runs[i] = 0;
    if (!cluster.isEjected(i, HEALTH_EJECTION)) return;
    const back = cluster.restore(i, HEALTH_EJECTION);
    const endpoint = cluster.endpoints[i]!.endpoint;
    this.log.info({ backend: cluster.name, endpoint }, back ? 'endpoint restored' : 'endpoint answers again (still ejected by another source)');
  }

  /**
   * After a sweep: an endpoint that answered none of its probes (all failed to
   * connect or timed out) `unhealthyAfter` sweeps in a row leaves rotation, so
   * requests stop paying a connection failure or a timeout on it.
   */
  private ejectUnreachable(cluster: BackendCluster, tally: EndpointTally): void {
    let runs = this.unreachableSweeps.get(cluster);
    if (runs === undefined) {
      runs = new Int32Array(cluster.endpoints.length);
      this.unreachableSweeps.set(cluster, runs);
    }
    for (let i = 0; i < runs.length; i++) {
      if (tally.probed[i] !== 1 || tally.reached[i] === 1) continue;
      runs[i]!++;
      if (runs[i]! < cluster.healthCheck.unhealthyAfter || cluster.isEjected(i, HEALTH_EJECTION)) continue;
      const reason = `unreachable in ${runs[i]} checks in a row: ${tally.lastFailure[i]}`;
      cluster.eject(i, reason, HEALTH_EJECTION);
      this.log.warn({ backend: cluster.name, endpoint: cluster.endpoints[i]!.endpoint, reason }, 'endpoint ejected');
    }
  }
}

/** Connection-level: the endpoint could not be reached or did not answer in time (not an answer about the model). */
function isConnectionFailure(err: GatewayError): boolean {
  return err.code === 'UNAVAILABLE' || err.code === 'DEADLINE_EXCEEDED';
}

/** A copy of `set` with `i` added or removed (sets handed out are never changed in place). */
function toggled(set: ReadonlySet<number>, i: number): ReadonlySet<number> {
  const next = new Set(set);
  if (!next.delete(i)) next.add(i);
  return next;
}

function liftHealthEjections(cluster: BackendCluster): void {
  for (let i = 0; i < cluster.endpoints.length; i++) cluster.restore(i, HEALTH_EJECTION);
}

/** What a readiness check of a leaf asks its cluster: one model at one version. */
function probeKey(route: ModelRoute): string {
  return `${route.backendModel}\u0000${route.pinnedVersion ?? ''}`;
}
