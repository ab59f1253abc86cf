import { Redis } from 'ioredis';
import type { Logger } from '../observability/logger.js';
import type { LiveConfig, VersionPublisher } from './live-config.js';

/** One gateway instance as the others see it. */
export interface InstanceInfo {
  readonly id: string;
  /** The config version it runs. */
  readonly version: number;
  /** When it last said so (ISO time). */
  readonly seen_at: string;
}

export interface ConfigSyncOptions {
  readonly url: string;
  readonly keyPrefix: string;
  readonly commandTimeoutMs: number;
  readonly instanceId: string;
  readonly logger: Logger;
  /** How often this instance refreshes its registry entry and checks the shared version. */
  readonly heartbeatMs?: number;
  /** An instance missing this long drops out of the list. */
  readonly instanceTtlMs?: number;
}

/**
 * A local change: the next version is one past both the shared one and the
 * one this instance runs (Redis may have restarted empty), stored and
 * announced in one atomic step, so two instances never publish one version.
 */
const PUBLISH_CHANGE = `
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
local version = math.max(current, tonumber(ARGV[1])) + 1
redis.call('HSET', KEYS[1], 'version', version, 'text', ARGV[2])
redis.call('PUBLISH', ARGV[3], version)
return version`;

/**
 * After an outage: offers the version this instance runs, stored only when
 * Redis holds an older one (or none). Returns the version Redis then holds.
 */
const OFFER_VERSION = `
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if current >= tonumber(ARGV[1]) then return current end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'text', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return tonumber(ARGV[1])`;

/** Instances listed at most. */
const MAX_INSTANCES = 1_000;

/**
 * Shares the live config between gateway instances through Redis: a hash
 * `<prefix>:config` {version, text} holds the latest, the channel
 * `<prefix>:config` announces each new version, and `<prefix>:instances:<id>`
 * (with a TTL, indexed by the sorted set `<prefix>:instances`) says which
 * version each instance runs. Every instance applies
 * a newer version when announced, when it (re)connects, and on each heartbeat,
 * so a missed message is caught up within one heartbeat. Without Redis the
 * gateway keeps serving its current config and takes local changes.
 */
export class ConfigSync implements VersionPublisher {
  private readonly commands: Redis;
  private readonly subscriber: Redis;
  private readonly key: string;
  private readonly channel: string;
  private readonly instanceKey: string;
  private readonly indexKey: string;
  private readonly heartbeatMs: number;
  private readonly ttlMs: number;
  private heartbeat: NodeJS.Timeout | undefined;
  private up: boolean | undefined;
  private reconciling: Promise<void> | undefined;
  private again = false;
  private closed = false;
  private firstSettled: (() => void) | undefined;
  private readonly unsubscribeResults: () => void;

  constructor(
    private readonly live: LiveConfig,
    private readonly opts: ConfigSyncOptions,
  ) {
    this.key = `${opts.keyPrefix}:config`;
    this.channel = `${opts.keyPrefix}:config`;
    this.instanceKey = `${opts.keyPrefix}:instances:${opts.instanceId}`;
    this.indexKey = `${opts.keyPrefix}:instances`;
    this.heartbeatMs = opts.heartbeatMs ?? 3_000;
    this.ttlMs = opts.instanceTtlMs ?? 10_000;
    const common = {
      lazyConnect: true,
      maxRetriesPerRequest: 1,
      // Commands fail at once while disconnected: a reload never waits on Redis.
      enableOfflineQueue: false,
      connectTimeout: Math.max(1_000, opts.commandTimeoutMs * 4),
      retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times - 1, 5), 2_000),
    };
    this.commands = new Redis(opts.url, { ...common, commandTimeout: opts.commandTimeoutMs, connectionName: `infergate:${opts.instanceId}` });
    this.subscriber = new Redis(opts.url, { ...common, connectionName: `infergate-sub:${opts.instanceId}` });

    this.commands.on('ready', () => {
      this.setUp(true);
      void this.reconcile().finally(() => this.settleFirst());
    });
    this.commands.on('close', () => {
      this.setUp(false);
      this.settleFirst();
    });
    // Errors come with every failed reconnect; the state change above is what gets logged.
    this.commands.on('error', (err: Error) => this.opts.logger.debug({ err: err.message }, 'redis error'));
    this.subscriber.on('error', (err: Error) => this.opts.logger.debug({ err: err.message }, 'redis subscriber error'));
    this.subscriber.on('ready', () => {
      // Also after a reconnect: announcements made meanwhile were lost, so look at the hash again.
      this.subscriber.subscribe(this.channel).then(
        () => void this.reconcile(),
        (err: unknown) => this.opts.logger.debug({ err: (err as Error).message }, 'redis subscribe failed'),
      );
    });
    this.subscriber.on('message', (channel: string) => {
      if (channel === this.channel) void this.reconcile();
    });
    // Every change accepted here updates this instance's registry entry at once.
    this.unsubscribeResults = live.onResult((event) => {
      if (event.accepted && !event.unchanged) void this.writeHeartbeat().catch(() => undefined);
    });
  }

  /**
   * Connects and takes the shared config when it is newer than the file's.
   * Waits at most `waitMs` (a down Redis must not stop the gateway starting).
   */
  async start(waitMs = 2_000): Promise<void> {
    const first = new Promise<void>((resolve) => (this.firstSettled = resolve));
    this.heartbeat = setInterval(() => {
      if (this.up === true) void this.reconcile();
    }, this.heartbeatMs);
    this.heartbeat.unref();
    this.commands.connect().catch(() => undefined);
    this.subscriber.connect().catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([first, new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)))]);
    clearTimeout(timer);
  }

  get connected(): boolean {
    return this.up === true;
  }

  /** VersionPublisher: stores and announces a local change; undefined when Redis is away (the change stays local). */
  async publish(text: string, baseVersion: number): Promise<number | undefined> {
    if (this.commands.status !== 'ready') return undefined;
    const version = await this.commands.eval(PUBLISH_CHANGE, 1, this.key, baseVersion, text, this.channel);
    return Number(version);
  }

  /** Every registered instance with its version; this one alone when Redis is away. */
  async instances(): Promise<InstanceInfo[]> {
    const self = this.self();
    if (this.commands.status !== 'ready') return [self];
    // The index (not a SCAN) finds the entries: a shared Redis may hold many other keys.
    const ids = await this.commands.zrangebyscore(this.indexKey, Date.now(), '+inf', 'LIMIT', 0, MAX_INSTANCES);
    const values = ids.length > 0 ? await this.commands.mget(...ids.map((id) => `${this.opts.keyPrefix}:instances:${id}`)) : [];
    const found = new Map<string, InstanceInfo>();
    for (const value of values) {
      const info = parseInstance(value);
      if (info !== undefined) found.set(info.id, info);
    }
    found.set(self.id, self);
    return [...found.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribeResults();
    clearInterval(this.heartbeat);
    this.settleFirst();
    if (this.commands.status === 'ready') {
      await this.commands.multi().del(this.instanceKey).zrem(this.indexKey, this.opts.instanceId).exec().catch(() => undefined);
    }
    this.commands.disconnect();
    this.subscriber.disconnect();
  }

  private self(): InstanceInfo {
    return { id: this.opts.instanceId, version: this.live.current.version, seen_at: new Date().toISOString() };
  }

  private settleFirst(): void {
    this.firstSettled?.();
    this.firstSettled = undefined;
  }

  private setUp(up: boolean): void {
    if (this.closed || this.up === up) return;
    const wasDown = this.up === false;
    this.up = up;
    const version = this.live.current.version;
    if (up) this.opts.logger.info({ version }, wasDown ? 'redis is back; catching up with the shared config' : 'redis connected; sharing the config');
    else this.opts.logger.warn({ version }, 'redis unavailable; serving the current config, changes stay local until it returns');
  }

  /** One reconciliation at a time; triggers arriving meanwhile make one more pass. */
  private reconcile(): Promise<void> {
    if (this.reconciling !== undefined) {
      this.again = true;
      return this.reconciling;
    }
    this.reconciling = (async () => {
      try {
        do {
          this.again = false;
          await this.reconcileOnce();
        } while (this.again && !this.closed);
      } catch (err) {
        this.opts.logger.debug({ err: (err as Error).message }, 'config sync pass failed; retrying on reconnect or heartbeat');
      } finally {
        this.reconciling = undefined;
      }
    })();
    return this.reconciling;
  }

  private async reconcileOnce(): Promise<void> {
    if (this.closed || this.commands.status !== 'ready') return;
    const [versionText, text] = await this.commands.hmget(this.key, 'version', 'text');
    const mine = this.live.current;
    const remote = typeof versionText === 'string' && typeof text === 'string' ? { version: Number(versionText), text } : undefined;
    if (remote !== undefined && (remote.version > mine.version || (remote.version === mine.version && remote.text !== mine.text))) {
      if (mine.source === 'startup') this.opts.logger.info({ version: remote.version }, 'redis holds a newer shared config than the file; it wins');
      await this.live.adopt(remote.version, remote.text, 'redis');
    } else if ((remote === undefined || remote.version < mine.version) && mine.text !== undefined) {
      // Redis lost the config (restarted empty) or missed changes made here while it was away.
      const held = Number(await this.commands.eval(OFFER_VERSION, 1, this.key, mine.version, mine.text, this.channel));
      if (held > mine.version) this.again = true;
    }
    await this.writeHeartbeat();
  }

  private async writeHeartbeat(): Promise<void> {
    if (this.closed || this.commands.status !== 'ready') return;
    const now = Date.now();
    // The entry expires by itself; the index holds each id until the same moment, and drops the expired ones.
    await this.commands
      .multi()
      .set(this.instanceKey, JSON.stringify(this.self()), 'PX', this.ttlMs)
      .zadd(this.indexKey, now + this.ttlMs, this.opts.instanceId)
      .zremrangebyscore(this.indexKey, '-inf', now)
      .exec();
  }
}

function parseInstance(value: string | null): InstanceInfo | undefined {
  if (value === null) return undefined;
  try {
    const v = JSON.parse(value) as Partial<InstanceInfo>;
    if (typeof v.id !== 'string' || typeof v.version !== 'number' || typeof v.seen_at !== 'string') return undefined;
    return { id: v.id, version: v.version, seen_at: v.seen_at };
  } catch {
    return undefined;
  }
}
