/**
 * Latency histograms with fixed log-spaced buckets: 8 per doubling from
 * 0.1 ms to about 105 s (bucket width ~9%, so a percentile read at a bucket's
 * geometric middle is within ~4.5% of the truth), plus one underflow and one
 * overflow bucket. Memory is constant whatever the traffic.
 */

export const LATENCY_MIN_MS = 0.1;
const PER_DOUBLING = 8;
const DOUBLINGS = 20;
/** Bucket 0: below LATENCY_MIN_MS; 1..N: log-spaced; N + 1: above the last bound. */
export const LATENCY_BUCKETS = PER_DOUBLING * DOUBLINGS + 2;

/** The bucket a latency falls in. */
export function latencyBucket(ms: number): number {
  if (!(ms >= LATENCY_MIN_MS)) return 0; // also NaN and negatives
  const i = 1 + Math.floor(Math.log2(ms / LATENCY_MIN_MS) * PER_DOUBLING);
  return Math.min(i, LATENCY_BUCKETS - 1);
}

/** [low, high) of a bucket in ms (the overflow bucket's high is Infinity). */
export function bucketBounds(i: number): readonly [number, number] {
  if (i <= 0) return [0, LATENCY_MIN_MS];
  const low = LATENCY_MIN_MS * 2 ** ((i - 1) / PER_DOUBLING);
  if (i >= LATENCY_BUCKETS - 1) return [low, Infinity];
  return [low, LATENCY_MIN_MS * 2 ** (i / PER_DOUBLING)];
}

/** The representative value of a bucket: its geometric middle (underflow: half the minimum; overflow: its low bound). */
function bucketValue(i: number): number {
  const [low, high] = bucketBounds(i);
  if (i <= 0) return LATENCY_MIN_MS / 2;
  if (!Number.isFinite(high)) return low;
  return Math.sqrt(low * high);
}

/** The q-quantile (0..1) of the histogram `counts` (length LATENCY_BUCKETS); undefined when empty. */
export function histogramQuantile(counts: ArrayLike<number>, q: number): number | undefined {
  let total = 0;
  for (let i = 0; i < counts.length; i++) total += counts[i]!;
  if (total === 0) return undefined;
  // The smallest value with at least q of the observations at or below it.
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i]!;
    if (seen >= rank) return bucketValue(i);
  }
  return bucketValue(counts.length - 1);
}
