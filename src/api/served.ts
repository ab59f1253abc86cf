import type { CacheMode } from '../cache/response-cache.js';

/**
 * The response headers (REST) and trailing metadata (gRPC) that say where an
 * inference went: the id of the routing leaf that served it (or failed last)
 * and the number of backend calls it took, fallbacks included.
 */
export const TARGET_HEADER = 'x-infergate-target';
export const ATTEMPTS_HEADER = 'x-infergate-attempts';
/** The experiment arm an inference ran on (see experiments/assignment.ts); a client may send it back to stay on it. */
export { VARIANT_HEADER } from '../experiments/assignment.js';

/** What RequestContext.onServed reported for one request. */
export interface ServedBy {
  readonly target: string;
  readonly attempts: number;
}

/** Whether a cached model's answer came from the cache: HIT or MISS. */
export const CACHE_HEADER = 'x-infergate-cache';

/**
 * The cache directive of a Cache-Control value (header or gRPC metadata):
 * no-store skips the lookup and the store, no-cache only the lookup.
 */
export function cacheModeOf(value: string | undefined): CacheMode | undefined {
  if (value === undefined) return undefined;
  const v = value.toLowerCase();
  if (v.includes('no-store')) return 'no-store';
  if (v.includes('no-cache')) return 'no-cache';
  return undefined;
}

/** The context field for a Cache-Control value: `{ cacheMode }` when it has a directive, else nothing. */
export function cacheModeField(value: string | undefined): { cacheMode?: CacheMode } {
  const mode = cacheModeOf(value);
  return mode !== undefined ? { cacheMode: mode } : {};
}
