import { randomIndex, type Balancer, type RandomSource } from './balancer.js';

/**
 * Power of two choices on outstanding requests: sample two distinct eligible
 * endpoints at random and send to the one with fewer calls in flight. Nearly
 * as good as scanning for the least loaded endpoint, without the herd effect
 * of every request choosing the same momentarily idle one, and O(1) when all
 * endpoints are eligible.
 *
 * `outstanding` is the cluster's live in-flight count per endpoint, read here,
 * written only by the cluster.
 */
export class LeastRequestBalancer implements Balancer {
  constructor(
    private readonly outstanding: ArrayLike<number>,
    private readonly random: RandomSource = Math.random,
  ) {}

  pick(_key: string | undefined, eligible: (index: number) => boolean): number | undefined {
    const n = this.outstanding.length;
    if (n <= 1) return n === 1 && eligible(0) ? 0 : undefined;

    // Fast path: two distinct endpoints drawn from all of them; usually both are eligible.
    let a = randomIndex(this.random, n);
    let b = randomIndex(this.random, n - 1);
    if (b >= a) b++;
    if (!eligible(a) || !eligible(b)) {
      // Some are ineligible: draw the pair again among the eligible ones only,
      // so the choice stays uniform over eligible pairs.
      const m = countEligible(n, eligible);
      if (m === 0) return undefined;
      if (m === 1) return nthEligible(n, eligible, 0);
      const ra = randomIndex(this.random, m);
      let rb = randomIndex(this.random, m - 1);
      if (rb >= ra) rb++;
      a = nthEligible(n, eligible, ra);
      b = nthEligible(n, eligible, rb);
    }
    // (a, b) is a uniformly random ordered pair, so keeping `a` on a tie is a fair coin flip.
    return this.outstanding[b]! < this.outstanding[a]! ? b : a;
  }
}

function countEligible(n: number, eligible: (index: number) => boolean): number {
  let m = 0;
  for (let i = 0; i < n; i++) if (eligible(i)) m++;
  return m;
}

/** The index of the rank-th eligible endpoint (rank < the eligible count). */
function nthEligible(n: number, eligible: (index: number) => boolean, rank: number): number {
  for (let i = 0; i < n; i++) {
    if (eligible(i) && rank-- === 0) return i;
  }
  throw new Error('nthEligible: rank out of range'); // unreachable when rank < countEligible
}
