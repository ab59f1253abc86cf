import type { CacheSectionConfig } from '../config/schema.js';
import type { Logger } from '../observability/logger.js';
import { MemoryStore, RedisStore, type CacheStore } from './store.js';

/** The store the `cache:` section asks for: Redis when `cache.redis` is set, else an in-memory LRU bounded in bytes. */
export function createCacheStore(config: CacheSectionConfig, logger: Logger): CacheStore {
  if (config.redis === undefined) return new MemoryStore(config.memory_max_bytes);
  return new RedisStore({ url: config.redis, keyPrefix: config.key_prefix, commandTimeoutMs: config.command_timeout_ms, logger });
}
