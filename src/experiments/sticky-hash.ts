import { hash32 } from '../backends/balancers/hash.js';

/**
 * Sticky assignment's hash: a key and an experiment's salt to a bucket in
 * [0, BUCKETS). It reads no process state (hash32 has no seed), so a key gets
 * the same bucket on every gateway instance and after every restart; the salt
 * makes two experiments split the same keys independently. Changing this
 * function moves every key of every experiment: treat it as a wire format
 * (test/experiments pins known values).
 */
export const BUCKETS = 10_000;

export function stickyBucket(salt: string, key: string): number {
  return hash32(`${salt}\u0000${key}`) % BUCKETS;
}

/**
 * The bucket bounds of arms with these weights, in order: arm i owns
 * [bounds[i-1], bounds[i]) (arm 0 from 0). Contiguous ranges in config order,
 * so moving w points of weight between neighbours moves about w% of the keys.
 */
export function bucketBounds(weights: readonly number[]): Uint32Array {
  const total = weights.reduce((a, b) => a + b, 0);
  const bounds = new Uint32Array(weights.length);
  let sum = 0;
  weights.forEach((w, i) => {
    sum += w;
    bounds[i] = total > 0 ? Math.round((sum * BUCKETS) / total) : 0;
  });
  return bounds;
}

/** The index of the arm owning `bucket` (binary search over the bounds). */
export function armAt(bounds: Uint32Array, bucket: number): number {
  let lo = 0;
  let hi = bounds.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (bounds[mid]! > bucket) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
