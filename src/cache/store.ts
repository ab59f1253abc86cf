import { Redis, ReplyError } from 'ioredis';
import { LRUCache } from 'lru-cache';
import type { Logger } from '../observability/logger.js';
import { fastFailRedisOptions } from '../core/redis-options.js';

export interface CacheStoreStats {
  readonly kind: 'memory' | 'redis';
  readonly available: boolean;
  readonly entries?: number;
  readonly bytes?: number;
  readonly errors: number;
  readonly timeouts: number;
}

export interface CacheStore {
  readonly kind: 'memory' | 'redis';
  /** undefined on a miss AND on any failure (counted, never thrown): a cache outage must never fail a request. */
  get(key: string): Promise<Buffer | undefined>;
  /** Never rejects (failures counted). */
  set(key: string, value: Buffer, ttlMs: number): Promise<void>;
  stats(): CacheStoreStats;
  close(): Promise<void>;
}

/** Bytes charged per entry beyond its value (the key and the bookkeeping), so tiny entries still count. */
const ENTRY_OVERHEAD = 128;

/**
 * In-memory LRU bounded in bytes: each entry costs its value's length plus a
 * fixed overhead; the least recently used go first when a new one needs room,
 * and each entry expires after its own ttl. An entry larger than the whole
 * bound is not kept.
 */
export class MemoryStore implements CacheStore {
  readonly kind = 'memory' as const;
  private readonly lru: LRUCache<string, Buffer>;

  constructor(maxBytes: number) {
    if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) throw new RangeError(`maxBytes must be a positive integer, got ${maxBytes}`);
    this.lru = new LRUCache<string, Buffer>({
      maxSize: maxBytes,
      sizeCalculation: (value, key) => value.length + key.length + ENTRY_OVERHEAD,
      // Expired entries are dropped when read (and LRU-evicted otherwise); no timer per entry.
      ttlAutopurge: false,
    });
  }

  get(key: string): Promise<Buffer | undefined> {
    return Promise.resolve(this.lru.get(key));
  }

  set(key: string, value: Buffer, ttlMs: number): Promise<void> {
    if (ttlMs > 0) this.lru.set(key, value, { ttl: Math.ceil(ttlMs) });
    return Promise.resolve();
  }

  stats(): CacheStoreStats {
    return { kind: 'memory', available: true, entries: this.lru.size, bytes: this.lru.calculatedSize, errors: 0, timeouts: 0 };
  }

  close(): Promise<void> {
    this.lru.clear();
    return Promise.resolve();
  }
}

export interface RedisStoreOptions {
  readonly url: string;
  readonly keyPrefix: string;
  readonly commandTimeoutMs: number;
  readonly logger: Logger;
}

/**
 * Redis through ioredis: keys `${keyPrefix}:cache:${key}`, values as Buffers
 * (GET as a Buffer, SET PX). Every command is bounded by commandTimeoutMs;
 * with the offline queue off, a command fails at once while disconnected
 * instead of waiting for the reconnect, and none is retried (a miss is cheaper
 * than a late answer). The client reconnects by itself with capped backoff.
 * The outage is logged once (warn, with the reason) and the recovery once
 * (info); failures and timeouts are counted, never thrown.
 */
export class RedisStore implements CacheStore {
  readonly kind = 'redis' as const;
  private readonly client: Redis;
  private readonly prefix: string;
  private readonly logger: Logger;
  /** undefined until the first connect or failure. */
  private up: boolean | undefined;
  private closed = false;
  private errors = 0;
  private timeouts = 0;

  constructor(opts: RedisStoreOptions) {
    this.prefix = `${opts.keyPrefix}:cache:`;
    this.logger = opts.logger;
    this.client = new Redis(opts.url, fastFailRedisOptions(opts.commandTimeoutMs, 'infergate-cache'));
    this.client.on('ready', () => this.setUp(true));
    this.client.on('error', (err: Error) => {
      // Every failed reconnect attempt errors too; only the change of state is logged above debug.
      this.logger.debug({ err: err.message }, 'cache redis error');
      this.setUp(false, err.message);
    });
    this.client.on('close', () => this.setUp(false, 'connection closed'));
    this.client.connect().catch(() => undefined);
  }

  async get(key: string): Promise<Buffer | undefined> {
    if (this.closed) return undefined;
    try {
      const value = await this.client.getBuffer(this.prefix + key);
      this.succeeded();
      return value ?? undefined;
    } catch (err) {
      this.failed(err, 'get');
      return undefined;
    }
  }

  async set(key: string, value: Buffer, ttlMs: number): Promise<void> {
    if (this.closed || !(ttlMs > 0)) return;
    try {
      await this.client.set(this.prefix + key, value, 'PX', Math.max(1, Math.ceil(ttlMs)));
      this.succeeded();
    } catch (err) {
      this.failed(err, 'set');
    }
  }

  stats(): CacheStoreStats {
    return {
      kind: 'redis',
      available: !this.closed && this.up === true && this.client.status === 'ready',
      errors: this.errors,
      timeouts: this.timeouts,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.disconnect();
  }

  private failed(err: unknown, op: string): void {
    const message = err instanceof Error ? err.message : String(err);
    this.logger.debug({ err: message, op }, 'cache redis command failed');
    if (message === 'Command timed out') {
      // Slow, not gone: the connection stays up (a hung server shows as timeouts).
      this.timeouts++;
      return;
    }
    this.errors++;
    // Redis answered with an error: it is there. Anything else is the connection failing, which the
    // client may notice only a moment later ('close'); the first failed command says so already.
    if (!(err instanceof (ReplyError as new () => Error))) this.setUp(false, message);
  }

  /** A command worked: the connection is up, whatever an earlier failure suggested. */
  private succeeded(): void {
    if (this.up !== true && this.client.status === 'ready') this.setUp(true);
  }

  private setUp(up: boolean, reason?: string): void {
    if (this.closed || this.up === up) return;
    const before = this.up;
    this.up = up;
    if (up) {
      if (before === false) this.logger.info('cache redis is back; caching resumes');
      else this.logger.debug('cache redis connected');
    } else {
      this.logger.warn({ reason }, 'cache redis unavailable; requests go to the backends uncached until it returns');
    }
  }
}
