import type { Balancer } from './balancer.js';
import { hash32 } from './hash.js';

/** Ring points per unit of (gcd-reduced) weight: enough for an even spread. */
export const POINTS_PER_WEIGHT = 100;
/** Most points on one ring; larger weight sums are scaled down to fit (memory and build time). */
const MAX_RING_POINTS = 100_000;

export interface RingEndpoint {
  /** host:port: names the endpoint's ring points, so a key's endpoint does not depend on config order. */
  readonly address: string;
  readonly weight: number;
}

/**
 * Consistent hashing on a request key: each endpoint owns `weight` x 100 points
 * on a 32-bit ring (hashes of "address#n"); a key goes to the owner of the
 * first point at or after its hash. Adding or removing an endpoint moves only
 * the keys of the arcs it gains or loses (about 1/N of them), so per-user state
 * and warm caches mostly stay where they are.
 *
 * An ineligible owner passes the key on clockwise to the next eligible one;
 * the other keys stay put. A request without a key is given to `fallback`
 * (least_request), since there is nothing to be consistent about.
 *
 * The ring is built once (sorted Uint32Array, binary search per pick) and the
 * hash has no seed, so every gateway process maps a key the same way.
 */
export class ConsistentHashBalancer implements Balancer {
  private readonly points: Uint32Array;
  /** owners[k] is the endpoint index of points[k]. */
  private readonly owners: Uint32Array;
  private readonly endpointCount: number;
  /** Scratch for the clockwise walk: endpoints already found ineligible (always zero between picks). */
  private readonly ruledOut: Uint8Array;

  constructor(
    endpoints: readonly RingEndpoint[],
    private readonly fallback: Balancer,
  ) {
    this.endpointCount = endpoints.length;
    this.ruledOut = new Uint8Array(endpoints.length);
    const perEndpoint = pointCounts(endpoints.map((e) => e.weight));

    const hashes: number[] = [];
    const ownerOf: number[] = [];
    const labels = uniqueLabels(endpoints.map((e) => e.address));
    endpoints.forEach((_, i) => {
      for (let k = 0; k < perEndpoint[i]!; k++) {
        hashes.push(hash32(`${labels[i]}#${k}`));
        ownerOf.push(i);
      }
    });
    // Sort by point; a (rare) tie is broken by label, not by config order, so rings agree however the list is ordered.
    const order = hashes.map((_, k) => k);
    order.sort((x, y) => hashes[x]! - hashes[y]! || compare(labels[ownerOf[x]!]!, labels[ownerOf[y]!]!));
    this.points = Uint32Array.from(order, (k) => hashes[k]!);
    this.owners = Uint32Array.from(order, (k) => ownerOf[k]!);
  }

  /** Ring size (for tests and status). */
  get size(): number {
    return this.points.length;
  }

  pick(key: string | undefined, eligible: (index: number) => boolean): number | undefined {
    if (key === undefined || key === '') return this.fallback.pick(undefined, eligible);
    const { points, owners } = this;
    const ringSize = points.length;
    if (ringSize === 0) return undefined;

    let pos = lowerBound(points, hash32(key));
    if (pos === ringSize) pos = 0; // past the last point: wrap to the first
    const first = owners[pos]!;
    if (eligible(first)) return first;

    // Walk clockwise to the next eligible owner, remembering owners already
    // ruled out so the walk stops once every endpoint is (bounded by the ring).
    const ruledOut = this.ruledOut;
    ruledOut[first] = 1;
    let excluded = 1;
    let found: number | undefined;
    for (let step = 1; step < ringSize && excluded < this.endpointCount; step++) {
      const owner = owners[(pos + step) % ringSize]!;
      if (ruledOut[owner] === 1) continue;
      if (eligible(owner)) {
        found = owner;
        break;
      }
      ruledOut[owner] = 1;
      excluded++;
    }
    ruledOut.fill(0);
    return found;
  }
}

/** Points per endpoint: 100 per unit of weight after dividing by the weights' gcd, scaled to fit MAX_RING_POINTS. */
function pointCounts(weights: readonly number[]): number[] {
  const units = weights.map((w) => Math.max(1, Math.floor(w)));
  const g = units.reduce(gcd, 0) || 1;
  const total = units.reduce((sum, w) => sum + (w / g) * POINTS_PER_WEIGHT, 0);
  const scale = Math.min(1, MAX_RING_POINTS / total);
  return units.map((w) => Math.max(1, Math.round((w / g) * POINTS_PER_WEIGHT * scale)));
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** The address, made unique when the config lists one twice (each entry then gets its own points). */
function uniqueLabels(addresses: readonly string[]): string[] {
  const seen = new Map<string, number>();
  return addresses.map((a) => {
    const n = seen.get(a) ?? 0;
    seen.set(a, n + 1);
    return n === 0 ? a : `${a}~${n}`;
  });
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The first position whose point is >= h (points.length when none). */
function lowerBound(points: Uint32Array, h: number): number {
  let lo = 0;
  let hi = points.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (points[mid]! < h) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
