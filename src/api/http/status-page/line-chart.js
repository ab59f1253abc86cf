// A small time-series line chart drawn as inline SVG (no library): one path per series over a fixed time window.

const SVG = 'http://www.w3.org/2000/svg';
const WIDTH = 460;
const HEIGHT = 170;
const PAD = { left: 48, right: 10, top: 10, bottom: 22 };

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The smallest 1, 2 or 5 times a power of ten at or above x (x > 0). */
export function niceCeiling(x) {
  if (!(x > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(x));
  for (const step of [1, 2, 5, 10]) if (step * power >= x * (1 - 1e-9)) return step * power;
  return 10 * power;
}

/** A value for an axis label: short, no trailing zeros. */
export function shortNumber(x) {
  if (x === 0) return '0';
  const abs = Math.abs(x);
  if (abs >= 1e6) return `${+(x / 1e6).toFixed(1)}M`;
  if (abs >= 1e3) return `${+(x / 1e3).toFixed(1)}k`;
  if (abs >= 10) return String(Math.round(x));
  if (abs >= 1) return String(+x.toFixed(1));
  return String(+x.toPrecision(2));
}

/**
 * An <svg> of `series` between `from` and `to` (ms). A null value breaks its line.
 * @param {{ title: string, unit: string, from: number, to: number,
 *           series: { key: string, label: string, color: string, points: { t: number, v: number | null }[] }[] }} chart
 * @returns {SVGSVGElement}
 */
export function lineChart(chart) {
  const { from, to } = chart;
  let max = 0;
  for (const s of chart.series) for (const p of s.points) if (p.v !== null && p.t >= from && p.v > max) max = p.v;
  const top = niceCeiling(max);
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const x = (t) => PAD.left + ((t - from) / (to - from)) * plotW;
  const y = (v) => PAD.top + plotH - (v / top) * plotH;

  const svg = el('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: 'chart', role: 'img', 'aria-label': `${chart.title} (${chart.unit})` });
  svg.append(el('title', {}, `${chart.title} (${chart.unit})`));
  for (const frac of [0, 0.5, 1]) {
    const gy = y(top * frac);
    svg.append(el('line', { x1: PAD.left, x2: WIDTH - PAD.right, y1: gy, y2: gy, class: 'grid' }));
    svg.append(el('text', { x: PAD.left - 6, y: gy + 4, 'text-anchor': 'end', class: 'axis' }, shortNumber(top * frac)));
  }
  const seconds = Math.round((to - from) / 1000);
  svg.append(el('text', { x: PAD.left, y: HEIGHT - 6, class: 'axis' }, seconds < 120 ? `-${seconds} s` : `-${Math.round(seconds / 60)} min`));
  svg.append(el('text', { x: WIDTH - PAD.right, y: HEIGHT - 6, 'text-anchor': 'end', class: 'axis' }, 'now'));

  for (const s of chart.series) {
    let d = '';
    let drawn = 0;
    let pen = false;
    for (const p of s.points) {
      if (p.t < from || p.v === null || !Number.isFinite(p.v)) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${x(p.t).toFixed(1)} ${y(p.v).toFixed(1)}`;
      pen = true;
      drawn++;
    }
    if (drawn === 0) continue;
    const path = el('path', { d, stroke: s.color, class: 'series', 'data-series': s.key, 'data-points': drawn });
    path.append(el('title', {}, s.label));
    svg.append(path);
    // A lone point has no line to show: mark it.
    if (drawn === 1) {
      const only = s.points.find((p) => p.t >= from && p.v !== null && Number.isFinite(p.v));
      svg.append(el('circle', { cx: x(only.t), cy: y(only.v), r: 2.5, fill: s.color }));
    }
  }
  return svg;
}
