/**
 * The statistics the experiment results report: confidence intervals for a
 * proportion (Wilson) and a mean (Student t), a two-proportion z-test and
 * Welch's t-test, each two-sided. Pure functions, no dependency: the t
 * distribution comes from the regularized incomplete beta function
 * (Numerical Recipes' continued fraction, evaluated by the modified Lentz
 * method).
 */

export type Interval = readonly [low: number, high: number];

export interface TestResult {
  readonly statistic: number;
  /** Two-sided. */
  readonly pValue: number;
  /** Degrees of freedom (t tests). */
  readonly df?: number;
}

/** z for a two-sided 95% interval. */
export const Z95 = 1.959963984540054;

/** ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; ~15 significant digits). */
export function logGamma(x: number): number {
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905,
    -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  const z = x - 1;
  let sum = c[0]!;
  for (let i = 1; i < 9; i++) sum += c[i]! / (z + i);
  const t = z + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(sum);
}

/** The continued fraction of I_x(a, b), by the modified Lentz method. */
function betaContinuedFraction(x: number, a: number, b: number): number {
  const tiny = 1e-300;
  const eps = 1e-15;
  const qab = a + b;
  const qap = a + 1;
  const qam = a - 1;
  let c = 1;
  let d = 1 - (qab * x) / qap;
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 10_000; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (qab + m) * x) / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < eps) break;
  }
  return h;
}

/** The regularized incomplete beta function I_x(a, b), 0 <= x <= 1, a, b > 0. */
export function regularizedIncompleteBeta(x: number, a: number, b: number): number {
  if (!(a > 0 && b > 0)) throw new RangeError('a and b must be positive');
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const lnFront = logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log1p(-x);
  const front = Math.exp(lnFront);
  // The fraction converges fast for x < (a + 1) / (a + b + 2); otherwise use the symmetry I_x(a,b) = 1 - I_{1-x}(b,a).
  if (x < (a + 1) / (a + b + 2)) return (front * betaContinuedFraction(x, a, b)) / a;
  return 1 - (front * betaContinuedFraction(1 - x, b, a)) / b;
}

/** P(|T| >= |t|) for Student's t with `df` degrees of freedom (df may be fractional). */
export function studentTTwoSided(t: number, df: number): number {
  if (!Number.isFinite(t)) return Number.isNaN(t) ? NaN : 0;
  if (!(df > 0)) return NaN;
  return regularizedIncompleteBeta(df / (df + t * t), df / 2, 0.5);
}

/** The two-sided critical value t* with P(|T| >= t*) = alpha (bisection on the CDF). */
export function studentTCritical(df: number, alpha = 0.05): number {
  if (!(df > 0)) return NaN;
  let lo = 0;
  let hi = 1;
  while (studentTTwoSided(hi, df) > alpha && hi < 1e12) hi *= 2;
  for (let i = 0; i < 200 && hi - lo > 1e-12 * hi; i++) {
    const mid = (lo + hi) / 2;
    if (studentTTwoSided(mid, df) > alpha) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/** The complementary error function (W. J. Cody's rational Chebyshev fit via Numerical Recipes' erfcc, |error| < 1.2e-7). */
export function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}

/** Φ(z), the standard normal CDF. */
export function normalCdf(z: number): number {
  return 0.5 * erfc(-z / Math.SQRT2);
}

/** P(|Z| >= |z|) for a standard normal Z. */
export function normalTwoSided(z: number): number {
  if (Number.isNaN(z)) return NaN;
  return Math.min(1, erfc(Math.abs(z) / Math.SQRT2));
}

/** Wilson score interval for `successes` out of `n` (n = 0: [0, 1]). */
export function wilsonInterval(successes: number, n: number, z = Z95): Interval {
  if (n <= 0) return [0, 1];
  const p = successes / n;
  const z2 = z * z;
  const denom = 1 + z2 / n;
  const center = (p + z2 / (2 * n)) / denom;
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / denom;
  return [Math.max(0, center - half), Math.min(1, center + half)];
}

/** Sample mean and unbiased variance from count, sum and sum of squares. */
export function meanAndVariance(n: number, sum: number, sumSquares: number): { mean: number; variance: number } {
  if (n <= 0) return { mean: NaN, variance: NaN };
  const mean = sum / n;
  if (n < 2) return { mean, variance: NaN };
  // Clamped: rounding can make it slightly negative for constant data.
  const variance = Math.max(0, (sumSquares - n * mean * mean) / (n - 1));
  return { mean, variance };
}

/** Student t interval for a mean (95% by default); undefined with fewer than 2 values. */
export function meanInterval(n: number, sum: number, sumSquares: number, alpha = 0.05): Interval | undefined {
  const { mean, variance } = meanAndVariance(n, sum, sumSquares);
  if (n < 2 || !Number.isFinite(variance)) return undefined;
  const half = studentTCritical(n - 1, alpha) * Math.sqrt(variance / n);
  return [mean - half, mean + half];
}

/**
 * Two-proportion z-test with the pooled proportion: H0 p1 = p2. Statistic
 * (p2 - p1) / se, so positive means the second group is higher. No data or
 * no variance (both all 0 or all 1): z = 0, p = 1.
 */
export function twoProportionZTest(x1: number, n1: number, x2: number, n2: number): TestResult {
  if (n1 <= 0 || n2 <= 0) return { statistic: 0, pValue: 1 };
  const p1 = x1 / n1;
  const p2 = x2 / n2;
  const pooled = (x1 + x2) / (n1 + n2);
  const se = Math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2));
  if (se === 0) return { statistic: 0, pValue: 1 };
  const z = (p2 - p1) / se;
  return { statistic: z, pValue: normalTwoSided(z) };
}

/** A group's summary for Welch's test. */
export interface Moments {
  readonly n: number;
  readonly mean: number;
  /** Unbiased sample variance. */
  readonly variance: number;
}

/**
 * Welch's unequal-variance t-test, H0 mean1 = mean2. Statistic (m2 - m1) / se
 * (positive: the second is higher), df by Welch–Satterthwaite. Needs n >= 2 in
 * both; with zero variance in both: t = 0, p = 1 when the means are equal.
 */
export function welchTTest(a: Moments, b: Moments): TestResult | undefined {
  if (a.n < 2 || b.n < 2) return undefined;
  const va = a.variance / a.n;
  const vb = b.variance / b.n;
  const se2 = va + vb;
  if (se2 === 0) {
    return a.mean === b.mean ? { statistic: 0, pValue: 1, df: a.n + b.n - 2 } : { statistic: b.mean > a.mean ? Infinity : -Infinity, pValue: 0, df: a.n + b.n - 2 };
  }
  const t = (b.mean - a.mean) / Math.sqrt(se2);
  const df = (se2 * se2) / ((va * va) / (a.n - 1) + (vb * vb) / (b.n - 1));
  return { statistic: t, pValue: studentTTwoSided(t, df), df };
}
