import type { Logger } from '../observability/logger.js';
import { diffConfigs, formatChange, liveEffective, deepEqual } from './live-diff.js';
import { ConfigError, parseConfig } from './load.js';
import type { GatewayConfig } from './schema.js';

/** Where the running config came from. A SIGHUP re-reads the file, so it is 'file' too (logs name the trigger). */
export type ConfigSource = 'startup' | 'file' | 'admin' | 'redis';

/** The config a gateway runs, with its version. */
export interface ConfigSnapshot {
  /** Grows with every accepted change; shared by all instances when Redis is configured. */
  readonly version: number;
  /** The text it was parsed from; undefined for a config built in code (it cannot be shared). */
  readonly text: string | undefined;
  /** What runs: the validated text, except the restart-only keys, which keep their startup values. */
  readonly config: GatewayConfig;
  readonly source: ConfigSource;
  readonly appliedAt: Date;
  /** Changes in the text that wait for a restart (diff lines). */
  readonly restartPending: readonly string[];
}

export type CheckResult =
  | { readonly valid: true; readonly config: GatewayConfig; readonly diff: readonly string[]; readonly restart: readonly string[] }
  | { readonly valid: false; readonly problems: readonly string[] };

export type ApplyResult =
  | {
      readonly accepted: true;
      readonly version: number;
      readonly diff: readonly string[];
      /** Diff lines that need a restart; the running values stay. */
      readonly restart: readonly string[];
      /** The text was what already runs: nothing was applied and the version did not move. */
      readonly unchanged: boolean;
    }
  | { readonly accepted: false; readonly problems: readonly string[] };

/** Reported to listeners after every attempt, accepted or not. */
export type ApplyEvent = ApplyResult & { readonly source: ConfigSource; readonly trigger: string };

/**
 * Puts a validated config into service (see live-runtime.ts). prepare() builds
 * everything that can fail without touching traffic; commit() swaps it in.
 */
export interface RuntimeApplier {
  prepare(next: GatewayConfig): PreparedSwap;
}
export interface PreparedSwap {
  commit(): void;
  discard(): void;
}

/** Shares an accepted local change (config-sync.ts): returns its version, or undefined when it could not be shared. */
export interface VersionPublisher {
  publish(text: string, baseVersion: number): Promise<number | undefined>;
}

export interface LiveConfigOptions {
  readonly applier: RuntimeApplier;
  readonly logger: Logger;
  /** Environment overrides applied to every text (the one the gateway started with). */
  readonly env?: NodeJS.ProcessEnv;
}

/** Changes waiting for the one in progress, at most; more are refused rather than queued without bound. */
const MAX_WAITING = 16;

/**
 * The running config and its version. Every change (file, SIGHUP, admin API,
 * Redis) comes through here, one at a time: validated in full, refused with
 * every problem (the running config stays), or swapped in whole.
 */
export class LiveConfig {
  private snapshot: ConfigSnapshot;
  private chain: Promise<unknown> = Promise.resolve();
  private waiting = 0;
  private publisher: VersionPublisher | undefined;
  private readonly listeners = new Set<(event: ApplyEvent) => void>();
  /** The last shared version refused, so a poll does not refuse (and log) it again and again. */
  private refused: { version: number; text: string } | undefined;
  readonly env: NodeJS.ProcessEnv;

  constructor(
    initial: { readonly config: GatewayConfig; readonly text?: string | undefined },
    private readonly opts: LiveConfigOptions,
  ) {
    this.env = opts.env ?? process.env;
    this.snapshot = { version: 1, text: initial.text, config: initial.config, source: 'startup', appliedAt: new Date(), restartPending: [] };
  }

  get current(): ConfigSnapshot {
    return this.snapshot;
  }

  setPublisher(publisher: VersionPublisher | undefined): void {
    this.publisher = publisher;
  }

  /** Called after every attempt; returns the unsubscribe function. */
  onResult(listener: (event: ApplyEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Validates `text` in full and diffs it against what runs, without applying anything (the dry run). */
  check(text: string, label = '<config>'): CheckResult {
    let config: GatewayConfig;
    try {
      config = parseConfig(text, label, this.env);
    } catch (err) {
      return { valid: false, problems: err instanceof ConfigError ? err.problems : [(err as Error).message] };
    }
    const changes = diffConfigs(this.snapshot.config, config);
    return {
      valid: true,
      config,
      diff: changes.map(formatChange),
      restart: changes.filter((c) => c.restart).map(formatChange),
    };
  }

  /** A change made here (file, SIGHUP, admin API): applied, then shared with the other instances. */
  propose(text: string, source: Exclude<ConfigSource, 'startup' | 'redis'>, trigger: string = source): Promise<ApplyResult> {
    return this.exclusive(source, trigger, async () => {
      const checked = this.check(text, trigger);
      if (!checked.valid) return { accepted: false, problems: checked.problems };
      if (text === this.snapshot.text) return { accepted: true, version: this.snapshot.version, diff: [], restart: checked.restart, unchanged: true };
      return this.install(checked, text, source, async (base) => {
        try {
          return (await this.publisher?.publish(text, base)) ?? base + 1;
        } catch (err) {
          this.opts.logger.warn({ err: (err as Error).message }, 'could not share the config change; applied here only');
          return base + 1;
        }
      });
    });
  }

  /**
   * A version shared by another instance: applied when newer than ours, or
   * when it has our version with another text (two instances changed the
   * config while Redis was away: the one that reached Redis first wins).
   * Resolves undefined when there was nothing to do.
   */
  adopt(version: number, text: string, source: ConfigSource = 'redis'): Promise<ApplyResult | undefined> {
    if (!this.wants(version, text)) return Promise.resolve(undefined);
    return this.exclusive(source, `${source} version ${version}`, async () => {
      if (!this.wants(version, text)) return undefined;
      const checked = this.check(text, `${source} version ${version}`);
      if (!checked.valid) {
        this.refused = { version, text };
        return { accepted: false, problems: checked.problems };
      }
      if (version === this.snapshot.version) this.opts.logger.warn({ version }, 'shared config has our version with another text; taking the shared one');
      return this.install(checked, text, source, () => Promise.resolve(version));
    });
  }

  private wants(version: number, text: string): boolean {
    const { version: mine, text: ours } = this.snapshot;
    if (version < mine || (version === mine && text === ours)) return false;
    return !(this.refused !== undefined && this.refused.version === version && this.refused.text === text);
  }

  /** Swaps in a validated config: runtime first built, then versioned, then committed. */
  private async install(
    checked: Extract<CheckResult, { valid: true }>,
    text: string,
    source: ConfigSource,
    versionFor: (base: number) => Promise<number>,
  ): Promise<ApplyResult> {
    const before = this.snapshot;
    const next = liveEffective(before.config, checked.config);
    // A text that differs only in comments or layout changes no runtime, but still gets a version (the text is shared).
    let swap: PreparedSwap | undefined;
    if (!deepEqual(next, before.config)) {
      try {
        swap = this.opts.applier.prepare(next);
      } catch (err) {
        return { accepted: false, problems: [`cannot build the runtime: ${(err as Error).message}`] };
      }
    }
    const version = await versionFor(before.version);
    swap?.commit();
    if (next.server.log_level !== before.config.server.log_level) this.opts.logger.level = next.server.log_level;
    this.snapshot = { version, text, config: next, source, appliedAt: new Date(), restartPending: checked.restart };
    this.refused = undefined;
    return { accepted: true, version, diff: checked.diff, restart: checked.restart, unchanged: false };
  }

  /** Runs one change at a time, logs and reports its outcome. */
  private exclusive<T extends ApplyResult | undefined>(source: ConfigSource, trigger: string, fn: () => Promise<T>): Promise<T> {
    if (this.waiting >= MAX_WAITING) {
      const busy: ApplyResult = { accepted: false, problems: [`too many config changes waiting (${MAX_WAITING}); try again`] };
      return Promise.resolve(busy as T);
    }
    this.waiting++;
    const run = this.chain.then(async () => {
      this.waiting--;
      const result = await fn().catch((err: unknown): ApplyResult => ({ accepted: false, problems: [`internal error: ${(err as Error).message}`] }));
      if (result !== undefined) this.report(result, source, trigger);
      return result as T;
    });
    this.chain = run;
    return run;
  }

  private report(result: ApplyResult, source: ConfigSource, trigger: string): void {
    const log = this.opts.logger;
    if (!result.accepted) {
      log.warn({ source, trigger, problems: result.problems }, 'config change rejected; the running config stays');
    } else if (result.unchanged) {
      log.info({ source, trigger, version: result.version }, 'config unchanged');
    } else {
      log.info(
        { source, trigger, version: result.version, changes: result.diff.length, diff: result.diff.slice(0, 20), ...(result.restart.length > 0 ? { needs_restart: result.restart } : {}) },
        'config applied',
      );
    }
    for (const listener of this.listeners) listener({ ...result, source, trigger });
  }
}

/**
 * Several runtime pieces swapped as one: each prepared in order (a failure
 * discards those already prepared, and the change is refused), then all
 * committed together.
 */
export function combineAppliers(...appliers: readonly RuntimeApplier[]): RuntimeApplier {
  return {
    prepare(next) {
      const prepared: PreparedSwap[] = [];
      try {
        for (const applier of appliers) prepared.push(applier.prepare(next));
      } catch (err) {
        for (const swap of prepared) swap.discard();
        throw err;
      }
      return {
        commit: () => {
          for (const swap of prepared) swap.commit();
        },
        discard: () => {
          for (const swap of prepared) swap.discard();
        },
      };
    },
  };
}
