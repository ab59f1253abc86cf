// The Prometheus text exposition format (version 0.0.4), read in the browser and in tests: no imports, no build step.

/**
 * Parses an exposition into its samples and the declared type of each family.
 * Lines that are not samples (comments, blank lines) are skipped, as is a sample line that does not parse.
 * @param {string} text
 * @returns {{ types: Map<string, string>, samples: { name: string, labels: Record<string, string>, value: number }[] }}
 */
export function parsePrometheusText(text) {
  const types = new Map();
  const samples = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^#\s*TYPE\s+(\S+)\s+(\S+)/.exec(line);
      if (m) types.set(m[1], m[2]);
      continue;
    }
    const sample = parseSample(line);
    if (sample !== undefined) samples.push(sample);
  }
  return { types, samples };
}

const NAME = /^[A-Za-z_:][A-Za-z0-9_:]*/;
const LABEL_NAME = /^[A-Za-z_][A-Za-z0-9_]*/;

/** `name{a="x",b="y"} value [timestamp]`; undefined when the line is malformed. */
function parseSample(line) {
  const name = NAME.exec(line)?.[0];
  if (name === undefined) return undefined;
  let i = name.length;
  const labels = {};
  if (line[i] === '{') {
    i++;
    for (;;) {
      while (line[i] === ' ' || line[i] === ',') i++;
      if (line[i] === '}') {
        i++;
        break;
      }
      const label = LABEL_NAME.exec(line.slice(i))?.[0];
      if (label === undefined) return undefined;
      i += label.length;
      while (line[i] === ' ') i++;
      if (line[i] !== '=') return undefined;
      i++;
      while (line[i] === ' ') i++;
      if (line[i] !== '"') return undefined;
      i++;
      let value = '';
      for (;;) {
        const c = line[i];
        if (c === undefined) return undefined;
        i++;
        if (c === '"') break;
        if (c === '\\') {
          const next = line[i++];
          value += next === 'n' ? '\n' : next === undefined ? '' : next;
        } else value += c;
      }
      labels[label] = value;
    }
  }
  const rest = line.slice(i).trim().split(/\s+/);
  const value = parseValue(rest[0]);
  if (value === undefined) return undefined;
  return { name, labels, value };
}

/** A sample value: a Go float, or +Inf / -Inf / NaN. */
export function parseValue(text) {
  if (text === undefined || text === '') return undefined;
  if (text === '+Inf' || text === 'Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  const n = Number(text);
  return Number.isNaN(n) ? undefined : n;
}

/**
 * The q-quantile (0..1) of a histogram from its cumulative buckets, as PromQL's histogram_quantile does: find
 * the bucket the rank falls in and interpolate linearly within it (the first bucket starts at 0). A rank in the
 * +Inf bucket answers the highest finite bound. null when the histogram is empty or has no +Inf bucket.
 * @param {number} q
 * @param {{ le: number, count: number }[]} buckets cumulative counts, in any order
 * @returns {number | null}
 */
export function histogramQuantile(q, buckets) {
  if (!(q >= 0 && q <= 1)) return null;
  const sorted = [...buckets].sort((a, b) => a.le - b.le);
  if (sorted.length < 2 || sorted[sorted.length - 1].le !== Infinity) return null;
  // Counts are cumulative; scrapes are not atomic, so a bucket may read below the one before it: keep them monotonic.
  for (let i = 1; i < sorted.length; i++) if (sorted[i].count < sorted[i - 1].count) sorted[i] = { le: sorted[i].le, count: sorted[i - 1].count };
  const total = sorted[sorted.length - 1].count;
  if (!(total > 0)) return null;
  const rank = q * total;
  let i = 0;
  while (i < sorted.length - 1 && sorted[i].count < rank) i++;
  if (sorted[i].le === Infinity) return sorted[sorted.length - 2].le;
  const lower = i === 0 ? 0 : sorted[i - 1].le;
  const below = i === 0 ? 0 : sorted[i - 1].count;
  const inBucket = sorted[i].count - below;
  if (i === 0 && sorted[0].le <= 0) return sorted[0].le;
  if (inBucket <= 0) return sorted[i].le;
  return lower + (sorted[i].le - lower) * ((rank - below) / inBucket);
}
