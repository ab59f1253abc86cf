import type { HealthCheckSettings } from '../backends/cluster.js';
import { toGatewayError } from '../core/errors.js';
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
}

/** Checks of one sweep run at most this many backend calls at once. */
const SWEEP_CONCURRENCY = 16;

/**
 * Background readiness checks of every routed model on every endpoint of its
 * backend, so the gateway knows a model is unready before a request fails on
 * it: requests to it fail fast, and the model index answers from here.
 */
export class ModelHealthMonitor {
  private readonly health = new Map<ModelRoute, ModelHealth>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly sweeping = new Set<string>();
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
      if (this.settingsOf(route).intervalMs <= 0) continue;
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

  /** Checks every route of one backend; a sweep still running when the next is due is not doubled. */
  async sweep(backend: string, routes: readonly ModelRoute[]): Promise<void> {
    if (this.sweeping.has(backend) || this.stopped) return;
    this.sweeping.add(backend);
    try {
      let next = 0;
      const worker = async (): Promise<void> => {
        for (let i = next++; i < routes.length && !this.stopped; i = next++) await this.check(routes[i]!);
      };
      await Promise.all(Array.from({ length: Math.min(SWEEP_CONCURRENCY, routes.length) }, worker));
    } finally {
      this.sweeping.delete(backend);
    }
  }

  private async check(route: ModelRoute): Promise<void> {
    const settings = this.settingsOf(route);
    const deadline = Date.now() + settings.timeoutMs;
    const version = route.pinnedVersion ?? '';
    const results = await Promise.all(
      route.backend.endpoints.map((endpoint) =>
        endpoint.modelReady(route.backendModel, version, { deadline, model: route.options }).then(
          (ready) => (ready ? '' : `model '${route.backendModel}' is not ready on ${endpoint.endpoint}`),
          (err: unknown) => toGatewayError(err).message,
        ),
      ),
    );
    if (this.stopped) return;
    const okNow = results.some((reason) => reason === '');
    const before = this.health.get(route);
    const failures = okNow ? 0 : (before?.failures ?? 0) + 1;
    // A ready model turns unready only after repeated failures, so one slow check does not stop its traffic.
    const ready = okNow || (before?.ready === true && failures < settings.unhealthyAfter);
    const reason = okNow ? '' : results.join('; ');
    this.health.set(route, { ready, reason, checkedAt: Date.now(), failures });
    if (before !== undefined && before.ready !== ready) {
      if (ready) this.log.info({ model: route.name, backend: route.backend.name }, 'model is ready again');
      else this.log.warn({ model: route.name, backend: route.backend.name, reason }, 'model is not ready');
    } else if (before === undefined && !ready) {
      this.log.warn({ model: route.name, backend: route.backend.name, reason }, 'model is not ready');
    }
  }
}
