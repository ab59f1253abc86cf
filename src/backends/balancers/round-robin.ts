import type { Balancer } from './balancer.js';

/**
 * Smooth weighted round robin (nginx's algorithm): on each pick every eligible
 * endpoint's running score grows by its weight, the highest score wins and
 * pays back the sum of eligible weights. Over any W = sum(weights) picks each
 * endpoint is chosen exactly `weight` times, interleaved rather than in bursts
 * (3:1 gives a a b a, not a a a b).
 *
 * Ineligible endpoints neither gain nor pay, so the eligible ones keep their
 * proportions among themselves. O(endpoints) per pick, no allocation.
 */
export class RoundRobinBalancer implements Balancer {
  private readonly weights: Int32Array;
  private readonly current: Int32Array;

  constructor(weights: readonly number[]) {
    this.weights = Int32Array.from(weights, (w) => Math.max(1, Math.floor(w)));
    this.current = new Int32Array(weights.length);
  }

  pick(_key: string | undefined, eligible: (index: number) => boolean): number | undefined {
    const { weights, current } = this;
    let total = 0;
    let best = -1;
    for (let i = 0; i < weights.length; i++) {
      if (!eligible(i)) continue;
      current[i]! += weights[i]!;
      total += weights[i]!;
      if (best < 0 || current[i]! > current[best]!) best = i;
    }
    if (best < 0) return undefined;
    current[best]! -= total;
    return best;
  }
}
