/** Types of line-chart.js (a plain ES module the status page loads as it is; lineChart needs a DOM). */
export function niceCeiling(x: number): number;
export function shortNumber(x: number): string;
export function lineChart(chart: {
  title: string;
  unit: string;
  from: number;
  to: number;
  series: { key: string; label: string; color: string; points: { t: number; v: number | null }[] }[];
}): unknown;
