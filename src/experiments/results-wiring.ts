import type { Hono } from 'hono';
import { createExperimentsApp, type ExperimentCatalog } from '../api/http/experiments.js';
import type { HttpEnv } from '../api/http/context.js';
import { experimentSettings } from '../config/experiment-schema.js';
import type { GatewayConfig } from '../config/schema.js';
import type { Logger } from '../observability/logger.js';
import { ExperimentGuard } from './guard.js';
import { ExperimentResults } from './results.js';
import type { ArmControl, ExperimentSettings } from './types.js';

/** What the results need of the runtime switcher (src/config/live-runtime.ts). */
export interface ExperimentsRuntime {
  readonly armControl: ArmControl;
  /** The running config's splitter: its status names the cut arms. */
  readonly experiments: { status(): readonly { readonly name: string; readonly arms: readonly { readonly name: string; readonly cut: { readonly reason: string } | null }[] }[] } | undefined;
}

/**
 * The experiment results for one gateway process: created before the runtime
 * (so every runtime's splitter and shadow mirror report to the same object and
 * counts survive config swaps), then attached to the running config for the
 * guard and the HTTP API.
 */
export class ExperimentResultsWiring {
  readonly results: ExperimentResults;
  private guard: ExperimentGuard | undefined;
  private readonly settingsCache = new WeakMap<object, readonly ExperimentSettings[]>();

  constructor(
    startup: GatewayConfig,
    private readonly logger: Logger,
  ) {
    // Redis is part of the startup config (a change needs a restart), as for the config sync.
    const redis = startup.redis;
    this.results = new ExperimentResults({
      logger,
      ...(redis !== undefined ? { redis: { url: redis.url, keyPrefix: redis.key_prefix, commandTimeoutMs: redis.command_timeout_ms } } : {}),
    });
    this.results.start();
  }

  /** Starts the guard over the running config and returns the /v1/experiments app. */
  attach(opts: { readonly current: () => GatewayConfig; readonly runtime: ExperimentsRuntime; readonly maxBodyBytes: number }): Hono<HttpEnv> {
    const list = (): readonly ExperimentSettings[] => {
      const config = opts.current();
      const experiments = config.experiments;
      if (experiments === undefined) return [];
      let cached = this.settingsCache.get(experiments);
      if (cached === undefined) {
        cached = Object.entries(experiments).map(([name, e]) => experimentSettings(name, e));
        this.settingsCache.set(experiments, cached);
      }
      return cached;
    };
    this.guard?.stop();
    this.guard = new ExperimentGuard({ results: this.results, control: opts.runtime.armControl, experiments: list, logger: this.logger });
    this.guard.start();
    const catalog: ExperimentCatalog = {
      get: (name) => list().find((e) => e.name === name),
      cutReason: (experiment, arm) =>
        opts.runtime.experiments
          ?.status()
          .find((e) => e.name === experiment)
          ?.arms.find((a) => a.name === arm)?.cut?.reason ?? undefined,
    };
    return createExperimentsApp({ results: this.results, catalog, maxBodyBytes: opts.maxBodyBytes, logger: this.logger });
  }

  async close(): Promise<void> {
    this.guard?.stop();
    await this.results.close();
  }
}
