import { describe, expect, it } from 'vitest';
import { niceCeiling, shortNumber } from '../../src/api/http/status-page/line-chart.js';

describe('line chart scale', () => {
  it('tops the axis at the next 1, 2 or 5 times a power of ten', () => {
    expect([0, -1, NaN, 0.3, 0.5, 0.51, 1, 1.2, 2, 2.01, 7, 10, 11, 49, 51, 420, 1e6].map(niceCeiling)).toEqual([
      1, 1, 1, 0.5, 0.5, 1, 1, 2, 2, 5, 10, 10, 20, 50, 100, 500, 1e6,
    ]);
  });

  it('labels values shortly', () => {
    expect([0, 0.25, 0.0025, 1.5, 2, 12.6, 250, 1500, 2_000_000].map(shortNumber)).toEqual(['0', '0.25', '0.0025', '1.5', '2', '13', '250', '1.5k', '2M']);
  });
});
