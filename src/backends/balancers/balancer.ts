/**
 * One load-balancing policy over a backend's endpoints, addressed by index
 * (0 .. endpoints - 1, in config order). Built once per config; `pick` runs
 * per request, so it allocates nothing and does no work proportional to the
 * number of routes.
 */
export interface Balancer {
  /**
   * An endpoint index for which `eligible(i)` holds, or undefined when none
   * does. `key` is the request's hash key (consistent hashing only; the other
   * policies ignore it).
   */
  pick(key: string | undefined, eligible: (index: number) => boolean): number | undefined;
}

/** A uniform random number in [0, 1), injectable so tests can be deterministic. */
export type RandomSource = () => number;

/** A uniform random integer in [0, n). */
export function randomIndex(random: RandomSource, n: number): number {
  // Math.min guards a random source that returns exactly 1.
  return Math.min(n - 1, Math.floor(random() * n));
}
