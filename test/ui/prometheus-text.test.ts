import { describe, expect, it } from 'vitest';
import { histogramQuantile, parsePrometheusText, parseValue } from '../../src/api/http/status-page/prometheus-text.js';

const SAMPLE = `# HELP infergate_requests_total Requests answered, by model, leaf, arm and status.
# TYPE infergate_requests_total counter
infergate_requests_total{model="linear",target="models.linear",arm="",code="200"} 12
infergate_requests_total{model="ranker",target="experiments.ab.arms.b",arm="b",code="503"} 3 1732480000000

# TYPE infergate_request_duration_seconds histogram
infergate_request_duration_seconds_bucket{model="linear",arm="",le="0.005"} 4
infergate_request_duration_seconds_bucket{model="linear",arm="",le="+Inf"} 12
infergate_request_duration_seconds_sum{model="linear",arm=""} 0.25
infergate_request_duration_seconds_count{model="linear",arm=""} 12
# TYPE infergate_breaker_state gauge
infergate_breaker_state{backend="triton-a",endpoint="127.0.0.1:8001"} 2
process_start_time_seconds 1.7324799e+09
`;

describe('parsePrometheusText', () => {
  it('reads samples with their labels and values, and the declared types', () => {
    const { types, samples } = parsePrometheusText(SAMPLE);
    expect(types.get('infergate_requests_total')).toBe('counter');
    expect(types.get('infergate_request_duration_seconds')).toBe('histogram');
    expect(types.get('infergate_breaker_state')).toBe('gauge');
    expect(samples).toHaveLength(8);
    expect(samples[0]).toEqual({
      name: 'infergate_requests_total',
      labels: { model: 'linear', target: 'models.linear', arm: '', code: '200' },
      value: 12,
    });
    // A timestamp after the value is not the value.
    expect(samples[1]).toMatchObject({ labels: { arm: 'b', code: '503' }, value: 3 });
    expect(samples[3]).toEqual({ name: 'infergate_request_duration_seconds_bucket', labels: { model: 'linear', arm: '', le: '+Inf' }, value: 12 });
    expect(samples[7]).toEqual({ name: 'process_start_time_seconds', labels: {}, value: 1.7324799e9 });
  });

  it('unescapes label values and keeps commas, braces and spaces inside them', () => {
    const text = String.raw`m{a="say \"hi\"",b="back\\slash",c="line\nbreak",d="x,y} z",e=""} 1` + '\n' + 'm{ a = "1" , } 2\r\n';
    const { samples } = parsePrometheusText(text);
    expect(samples[0]!.labels).toEqual({ a: 'say "hi"', b: 'back\\slash', c: 'line\nbreak', d: 'x,y} z', e: '' });
    expect(samples[1]).toEqual({ name: 'm', labels: { a: '1' }, value: 2 });
  });

  it('skips lines that are not samples', () => {
    const { samples } = parsePrometheusText('# just a comment\nm{a="unterminated} 1\n{a="x"} 2\nm notanumber\nm{a=x} 3\nok 4\n');
    expect(samples).toEqual([{ name: 'ok', labels: {}, value: 4 }]);
  });

  it('reads special values', () => {
    expect(parseValue('+Inf')).toBe(Infinity);
    expect(parseValue('-Inf')).toBe(-Infinity);
    expect(parseValue('NaN')).toBeNaN();
    expect(parseValue('1e-3')).toBe(0.001);
    expect(parseValue('-2.5')).toBe(-2.5);
    expect(parseValue('')).toBeUndefined();
    expect(parseValue('x')).toBeUndefined();
  });
});

describe('histogramQuantile', () => {
  const buckets = [
    { le: 0.1, count: 10 },
    { le: 0.2, count: 30 },
    { le: 0.5, count: 40 },
    { le: Infinity, count: 40 },
  ];

  it('interpolates linearly within the bucket the rank falls in', () => {
    // rank 20: in (0.1, 0.2], 10 of its 20 observations -> halfway.
    expect(histogramQuantile(0.5, buckets)).toBeCloseTo(0.15, 12);
    // rank 39.6: in (0.2, 0.5], 9.6 of its 10 -> 0.2 + 0.3 * 0.96.
    expect(histogramQuantile(0.99, buckets)).toBeCloseTo(0.488, 12);
    // rank 5 in the first bucket: from 0.
    expect(histogramQuantile(0.125, buckets)).toBeCloseTo(0.05, 12);
    expect(histogramQuantile(0, buckets)).toBe(0);
    expect(histogramQuantile(1, buckets)).toBeCloseTo(0.5, 12);
  });

  it('takes buckets in any order', () => {
    expect(histogramQuantile(0.5, [...buckets].reverse())).toBeCloseTo(0.15, 12);
  });

  it('answers the highest finite bound for a rank in the +Inf bucket', () => {
    expect(histogramQuantile(0.9, [{ le: 0.1, count: 5 }, { le: 1, count: 6 }, { le: Infinity, count: 10 }])).toBe(1);
  });

  it('is null for an empty histogram, one without +Inf, or a quantile outside 0..1', () => {
    expect(histogramQuantile(0.5, [{ le: 0.1, count: 0 }, { le: Infinity, count: 0 }])).toBeNull();
    expect(histogramQuantile(0.5, [{ le: 0.1, count: 3 }, { le: 1, count: 4 }])).toBeNull();
    expect(histogramQuantile(1.5, buckets)).toBeNull();
    expect(histogramQuantile(-0.1, buckets)).toBeNull();
  });

  it('treats a bucket read lower than the one before (a torn scrape) as holding nothing', () => {
    const torn = [{ le: 0.1, count: 10 }, { le: 0.2, count: 8 }, { le: 0.4, count: 20 }, { le: Infinity, count: 20 }];
    // rank 15: (0.2, 0.4] holds 10 (from 10 to 20): 0.2 + 0.2 * 5/10.
    expect(histogramQuantile(0.75, torn)).toBeCloseTo(0.3, 12);
  });
});
