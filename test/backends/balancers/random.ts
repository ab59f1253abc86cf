/** mulberry32: a small seeded PRNG, so the statistical tests give the same numbers on every run. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** How often each index was picked in `n` picks. */
export function tally(endpoints: number, n: number, pick: () => number | undefined): number[] {
  const counts = new Array<number>(endpoints).fill(0);
  for (let i = 0; i < n; i++) {
    const p = pick();
    if (p === undefined) throw new Error('no endpoint picked');
    counts[p]!++;
  }
  return counts;
}

export const all = (): boolean => true;
