import type { RedisOptions } from 'ioredis';

/**
 * Options of a Redis client consulted on the request path (the response
 * cache, the rate limits): a command fails fast rather than wait, since the
 * gateway goes on without Redis. Nothing is queued while disconnected, a
 * command caught by a dropped connection fails at the first reconnect attempt
 * instead of being resent, and reconnects back off up to 2 s.
 */
export function fastFailRedisOptions(commandTimeoutMs: number, connectionName: string): RedisOptions {
  return {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: commandTimeoutMs,
    connectTimeout: Math.max(1_000, commandTimeoutMs * 4),
    retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times - 1, 5), 2_000),
    connectionName,
  };
}
