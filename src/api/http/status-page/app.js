// The status page: reads the admin API and /metrics every 2 s with the admin key the user entered, and draws
// routes, experiments, backends and live traffic. Plain ES module, no framework; every value from the gateway
// goes into the page as text (textContent), never as markup.
import { parsePrometheusText } from './prometheus-text.js';
import { TrafficHistory } from './traffic-series.js';
import { lineChart } from './line-chart.js';

const REFRESH_MS = 2_000;
const WINDOW_MS = 5 * 60_000;
const MIN_SPAN_MS = 30_000;
const KEY_ITEM = 'infergate.adminKey';
const COLORS = ['#2f5fd0', '#d0452f', '#1a9a5a', '#9a3fc0', '#d08a00', '#1a8fa0', '#c03f7a', '#5a6a1a', '#6a4a2a', '#3a3a8a'];

const $ = (id) => document.getElementById(id);

/** An element with attributes (`class`, `data-*`, ...) and children (strings become text nodes). */
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null && v !== false) node.setAttribute(k, String(v));
  for (const child of children.flat(Infinity)) if (child !== undefined && child !== null && child !== false) node.append(child);
  return node;
}

class AuthError extends Error {}

const state = {
  key: sessionStorage.getItem(KEY_ITEM) ?? '',
  timer: undefined,
  running: false,
  /** Bumped by every start, so a round still awaiting from before a pause does not schedule a second loop. */
  generation: 0,
  history: new TrafficHistory({ windowMs: WINDOW_MS, maxGapMs: 4 * REFRESH_MS }),
  colors: new Map(),
};

/** A key handed over in the URL fragment (`#key=...`): kept like a typed one, then removed from the address bar. */
function takeKeyFromFragment() {
  const match = /(?:^#|&)key=([^&]*)/.exec(location.hash);
  if (match === null) return;
  const key = decodeURIComponent(match[1]);
  history.replaceState(null, '', location.pathname + location.search);
  if (key !== '') setKey(key);
}

function setKey(key) {
  state.key = key;
  if (key === '') sessionStorage.removeItem(KEY_ITEM);
  else sessionStorage.setItem(KEY_ITEM, key);
}

async function get(path, { text = false } = {}) {
  const res = await fetch(new URL(path, document.baseURI), {
    headers: { authorization: `Bearer ${state.key}`, accept: text ? 'text/plain' : 'application/json' },
    cache: 'no-store',
    credentials: 'omit',
  });
  if (res.status === 401) throw new AuthError((await errorOf(res)) || 'the key was refused');
  if (!res.ok) {
    const detail = `${res.status} ${(await errorOf(res)) || res.statusText}`;
    const err = new Error(`${path}: ${detail}`);
    err.status = res.status;
    err.detail = detail;
    throw err;
  }
  return text ? res.text() : res.json();
}

async function errorOf(res) {
  try {
    const body = await res.json();
    return typeof body.error === 'string' ? body.error : '';
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------------------
// The refresh loop: one round at a time, every REFRESH_MS, paused while the tab is hidden.

function showLogin(message) {
  stop();
  $('dashboard').hidden = true;
  $('signout').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message ?? '';
  setStatus('');
  $('key').focus();
}

function showDashboard() {
  $('login').hidden = true;
  $('dashboard').hidden = false;
  $('signout').hidden = false;
}

function setStatus(text, kind = '') {
  const status = $('status');
  status.textContent = text;
  status.className = kind;
}

function stop() {
  state.running = false;
  clearTimeout(state.timer);
  state.timer = undefined;
}

function start() {
  if (state.running || state.key === '') return;
  state.running = true;
  // After a pause the last scrape is too old to take a rate against.
  state.history.restart();
  void round(++state.generation);
}

async function round(generation) {
  const current = () => state.running && generation === state.generation;
  if (!current()) return;
  try {
    await refresh(current);
    if (!current()) return;
    setStatus(`updated ${new Date().toLocaleTimeString()}`);
  } catch (err) {
    if (!current()) return;
    if (err instanceof AuthError) {
      setKey('');
      showLogin(`${err.message}: enter the admin key again`);
      return;
    }
    setStatus(`cannot reach the gateway: ${err.message}`, 'error');
  }
  if (current()) state.timer = setTimeout(() => void round(generation), REFRESH_MS);
}

document.addEventListener('visibilitychange', () => {
  if (document.hidden) {
    stop();
    setStatus('paused while the tab is hidden', 'paused');
  } else if (state.key !== '') start();
});

async function refresh(current) {
  // The admin endpoints first: a refused key shows the login at once.
  const [config, routes, experiments, backends] = await Promise.all([
    get('config'),
    get('routes'),
    get('experiments'),
    get('backends'),
  ]);
  const [results, metrics] = await Promise.all([
    Promise.all(
      experiments.experiments.map((e) =>
        // With access control on, the results need the experiment's model in the key's scope too.
        get(`../v1/experiments/${encodeURIComponent(e.name)}`).catch((err) => ({ error: err.detail ?? err.message })),
      ),
    ),
    scrapeMetrics(current),
  ]);
  // Paused or signed out meanwhile: leave the page as it is.
  if (!current()) return;
  showDashboard();
  renderSummary(config, routes);
  renderTraffic(metrics);
  renderExperiments(experiments.experiments, results, routes);
  renderBackends(backends.backends);
  renderRoutes(routes);
}

/** Adds a scrape of /metrics to the history; the note says why there is none. */
async function scrapeMetrics(current) {
  try {
    const text = await get('../metrics', { text: true });
    if (current()) state.history.add(Date.now(), parsePrometheusText(text));
    return { ok: true };
  } catch (err) {
    if (err instanceof AuthError) return { ok: false, note: `/metrics refused the key: ${err.message}` };
    if (err.status === 404) return { ok: false, note: 'this gateway serves no /metrics: no live traffic charts' };
    return { ok: false, note: `cannot read /metrics: ${err.message}` };
  }
}

// ---------------------------------------------------------------------------
// Rendering

function renderSummary(config, routes) {
  const instances = config.instances ?? [];
  const parts = [
    `config v${config.version} (${config.source})`,
    `${routes.models.length} model${routes.models.length === 1 ? '' : 's'}`,
    `${instances.length} instance${instances.length === 1 ? '' : 's'}`,
  ];
  if (config.redis) parts.push(`redis ${config.redis}`);
  if ((config.restart_pending ?? []).length > 0) parts.push('restart pending');
  $('summary').textContent = parts.join(' · ');
}

function colorOf(key) {
  let color = state.colors.get(key);
  if (color === undefined) {
    color = COLORS[state.colors.size % COLORS.length];
    state.colors.set(key, color);
  }
  return color;
}

function seriesLabel(s) {
  return s.arm === null ? s.model : `${s.model} · arm ${s.arm}`;
}

const fixed = (x, digits) => (x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits));

function renderTraffic(metrics) {
  $('traffic-note').textContent = metrics.ok ? '' : metrics.note;
  const now = Date.now();
  const series = [...state.history.series].map(([key, s]) => ({ key, ...s, color: colorOf(key), label: seriesLabel(s) }));
  // The charts span the history there is (30 s at least) until it covers the whole window.
  const oldest = Math.min(now - MIN_SPAN_MS, ...series.map((s) => s.points[0]?.t ?? now));
  const from = Math.max(now - WINDOW_MS, oldest);
  series.sort((a, b) => (a.model === b.model ? (a.arm ?? '').localeCompare(b.arm ?? '') : a.model.localeCompare(b.model)));
  const charts = [
    { title: 'Requests', unit: 'per second', value: (p) => p.rps },
    { title: 'Errors', unit: 'per second', value: (p) => p.eps },
    { title: 'Latency p50', unit: 'ms', value: (p) => (p.p50 === null ? null : p.p50 * 1000) },
    { title: 'Latency p99', unit: 'ms', value: (p) => (p.p99 === null ? null : p.p99 * 1000) },
  ];
  $('charts').replaceChildren(
    ...charts.map((c) =>
      h(
        'div',
        { class: 'chart-card', 'data-chart': c.title },
        h('h3', {}, c.title, h('small', { class: 'muted' }, c.unit)),
        lineChart({
          title: c.title,
          unit: c.unit,
          from,
          to: now,
          series: series.map((s) => ({ key: s.key, label: s.label, color: s.color, points: s.points.map((p) => ({ t: p.t, v: c.value(p) })) })),
        }),
      ),
    ),
  );
  $('legend').replaceChildren(
    ...series.map((s) => {
      const swatch = h('span', { class: 'swatch' });
      swatch.style.background = s.color;
      return h('span', {}, swatch, s.label);
    }),
  );
  const rows = series.map((s) => {
    const last = s.points[s.points.length - 1];
    return h(
      'tr',
      { 'data-series': s.key },
      h('td', {}, s.model),
      h('td', {}, s.arm ?? ''),
      h('td', { class: 'num', 'data-field': 'rps' }, fixed(last?.rps, 2)),
      h('td', { class: 'num', 'data-field': 'eps' }, fixed(last?.eps, 2)),
      h('td', { class: 'num', 'data-field': 'p50' }, fixed(last?.p50 === null ? null : last?.p50 * 1000, 1)),
      h('td', { class: 'num', 'data-field': 'p99' }, fixed(last?.p99 === null ? null : last?.p99 * 1000, 1)),
    );
  });
  const head = h(
    'tr',
    {},
    ['model', 'arm'].map((t) => h('th', {}, t)),
    ['req/s', 'errors/s', 'p50 ms', 'p99 ms'].map((t) => h('th', { class: 'num' }, t)),
  );
  $('traffic-table').replaceChildren(
    h('thead', {}, head),
    h('tbody', {}, rows.length > 0 ? rows : h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'no traffic seen yet'))),
  );
}

function renderExperiments(experiments, results, routes) {
  if (experiments.length === 0) {
    $('experiment-list').replaceChildren(h('p', { class: 'muted' }, 'No experiments in the running config.'));
    return;
  }
  $('experiment-list').replaceChildren(
    h(
      'div',
      { class: 'grid-cards wide' },
      experiments.map((e, i) => {
        const result = results[i] ?? {};
        const byArm = new Map((result.arms ?? []).map((a) => [a.name, a]));
        const total = e.arms.reduce((sum, a) => sum + a.effective_weight, 0);
        const split = h(
          'div',
          { class: 'split', 'aria-label': 'effective split' },
          e.arms
            .filter((a) => a.effective_weight > 0)
            .map((a) => {
              const part = h('span', { title: `${a.name}: ${percent(a.effective_weight, total)}` }, `${a.name} ${percent(a.effective_weight, total)}`);
              part.style.flexGrow = String(a.effective_weight);
              part.style.background = colorOf(`${e.model}/${a.name}`);
              return part;
            }),
        );
        const armsView = new Map((routes.experiments.find((x) => x.name === e.name)?.arms ?? []).map((a) => [a.name, a]));
        const rows = e.arms.map((a) => {
          const r = byArm.get(a.name);
          const cut = a.cut?.reason ?? r?.cut_reason;
          return h(
            'tr',
            { 'data-arm': a.name, 'data-weight': a.weight, 'data-effective-weight': a.effective_weight },
            h('td', {}, a.name, a.name === e.control ? h('span', { class: 'muted' }, ' (control)') : null),
            h('td', { class: 'num', 'data-field': 'weight' }, `${a.weight} (${percent(a.weight, e.arms.reduce((s, x) => s + x.weight, 0))})`),
            h('td', { class: 'num', 'data-field': 'effective' }, `${a.effective_weight} (${percent(a.effective_weight, total)})`),
            h('td', { class: 'num', 'data-field': 'requests' }, r ? String(r.requests) : '–'),
            h('td', { class: 'num', 'data-field': 'errors' }, r ? String(r.errors) : '–'),
            h('td', { class: 'num', 'data-field': 'error-rate' }, r ? `${(r.error_rate * 100).toFixed(2)}%` : '–'),
            h('td', { class: 'num' }, r ? fixed(r.latency_ms?.p50, 1) : '–'),
            h('td', { class: 'num' }, r ? fixed(r.latency_ms?.p99, 1) : '–'),
            h('td', {}, cut ? h('span', { class: 'badge cut', title: cut }, 'cut') : null, cut ? ` ${cut}` : '', armNodeText(armsView.get(a.name))),
          );
        });
        return h(
          'article',
          { class: 'experiment', 'data-experiment': e.name, 'data-state': e.state },
          h('h3', {}, e.name, h('span', { class: `badge ${e.state}` }, e.state)),
          h(
            'div',
            { class: 'muted' },
            `model ${e.model} · sticky key ${e.key_header} · control ${e.control}`,
            result.counts ? ` · counts ${result.counts}` : '',
            result.error ? h('div', { class: 'note', 'data-field': 'results-error' }, `no per-arm counts: ${result.error}`) : null,
          ),
          split,
          h(
            'div',
            { class: 'scroll' },
            h(
              'table',
              {},
              h(
                'thead',
                {},
                h(
                  'tr',
                  {},
                  h('th', {}, 'arm'),
                  ['weight', 'effective', 'requests', 'errors', 'error rate', 'p50 ms', 'p99 ms'].map((t) => h('th', { class: 'num' }, t)),
                  h('th', {}, 'target'),
                ),
              ),
              h('tbody', {}, rows),
            ),
          ),
        );
      }),
    ),
  );
}

/** An arm's node in one line: its leaf or the kind of its tree. */
function armNodeText(arm) {
  if (arm === undefined) return '';
  const n = arm.node;
  if (n.kind === 'leaf') return h('span', { class: 'muted' }, ` → ${n.backend} / ${n.model}${n.version ? ` v${n.version}` : ''}`);
  if (n.kind === 'target') return h('span', { class: 'muted' }, ` → target ${n.target}`);
  return h('span', { class: 'muted' }, ` → ${n.kind}`);
}

function percent(part, total) {
  if (!(total > 0)) return '0%';
  const p = (part / total) * 100;
  return `${Number.isInteger(p) ? p : p.toFixed(1)}%`;
}

/** healthy: every endpoint in rotation, breakers closed, models ready; down: no endpoint in rotation. */
function backendHealth(b) {
  if (b.available === 0) return 'down';
  const trouble =
    b.endpoints.some((e) => e.ejected || e.breaker?.state !== 'closed') || b.models.some((m) => m.ready === false);
  return trouble ? 'degraded' : 'healthy';
}

function renderBackends(backends) {
  $('backend-list').replaceChildren(
    h(
      'div',
      { class: 'grid-cards wide' },
      backends.map((b) => {
        const health = backendHealth(b);
        const endpoints = b.endpoints.map((e) => {
          const breaker = e.breaker?.state ?? 'closed';
          return [
            h(
              'tr',
              { 'data-endpoint': e.address, 'data-ejected': String(e.ejected), 'data-breaker': breaker },
              h('td', {}, h('code', {}, e.address)),
              h('td', {}, h('span', { class: `badge ${e.ejected ? 'ejected' : 'in-rotation'}` }, e.ejected ? 'ejected' : 'in rotation')),
              h('td', {}, h('span', { class: `badge ${breaker}` }, breaker.replace('_', '-'))),
              h('td', { class: 'num' }, String(e.calls)),
              h('td', { class: 'num' }, String(e.failures)),
              h('td', { class: 'num' }, String(e.outstanding)),
            ),
            e.reason ? h('tr', { class: 'reason', 'data-reason-for': e.address }, h('td', { colspan: 6 }, e.reason)) : null,
          ];
        });
        const models = b.models.map((m) => {
          const ready = m.ready === null ? 'unknown' : m.ready ? 'ready' : 'not-ready';
          return [
            h(
              'tr',
              { 'data-model': m.model, 'data-target': m.target, 'data-ready': ready },
              h('td', {}, m.model),
              h('td', {}, h('code', {}, m.target)),
              h('td', {}, h('span', { class: `badge ${ready}` }, ready.replace('-', ' '))),
            ),
            m.ready === true || !m.reason ? null : h('tr', { class: 'reason', 'data-reason-for': m.target }, h('td', { colspan: 3 }, m.reason)),
          ];
        });
        return h(
          'article',
          { class: 'backend', 'data-backend': b.name, 'data-health': health },
          h(
            'h3',
            {},
            b.name,
            h('span', { class: `badge ${health}` }, health),
            h('span', { class: 'muted' }, `${b.kind} · ${b.protocol} · ${b.available}/${b.endpoints.length} endpoints in rotation`),
          ),
          h(
            'div',
            { class: 'scroll' },
            h(
              'table',
              { class: 'endpoints' },
              h(
                'thead',
                {},
                h(
                  'tr',
                  {},
                  ['endpoint', 'state', 'breaker'].map((t) => h('th', {}, t)),
                  ['calls', 'failures', 'in flight'].map((t) => h('th', { class: 'num' }, t)),
                ),
              ),
              h('tbody', {}, endpoints),
            ),
          ),
          models.length > 0
            ? h('table', {}, h('thead', {}, h('tr', {}, ['model', 'leaf', 'readiness'].map((t) => h('th', {}, t)))), h('tbody', {}, models))
            : null,
          h(
            'div',
            { class: 'muted' },
            `in flight ${b.concurrency.inFlight}/${b.concurrency.maxInFlight} · queued ${b.concurrency.queued} · shed ${b.concurrency.shed}` +
              ` · retries ${b.retries.retries} (denied ${b.retries.denied})`,
          ),
        );
      }),
    ),
  );
}

function renderRoutes(routes) {
  $('route-list').replaceChildren(
    h(
      'div',
      { class: 'grid-cards' },
      routes.models.map((m) =>
        h(
          'article',
          { class: 'route', 'data-model': m.name },
          h(
            'h3',
            {},
            m.name,
            m.experiment ? h('span', { class: 'muted' }, `experiment ${m.experiment} splits its traffic (this tree is not used while it exists)`) : null,
          ),
          h('div', { class: 'tree' }, nodeView(m.tree)),
          m.shadow ? h('div', { class: 'tree' }, h('span', { class: 'node-kind' }, `shadow ${m.shadow.percent}% → `), nodeView(m.shadow.node)) : null,
        ),
      ),
    ),
  );
}

function conditionText(c) {
  const subject = c.on === 'version' ? 'version' : `${c.on} ${c.name}`;
  const value = Array.isArray(c.value) ? `[${c.value.map((v) => JSON.stringify(v)).join(', ')}]` : JSON.stringify(c.value);
  return `${subject} ${c.op} ${value}`;
}

function settings(node) {
  return node.timeout_ms !== undefined ? h('span', { class: 'muted' }, ` timeout ${node.timeout_ms} ms`) : null;
}

/** A routing node, nested: leaves with their backend, model and id; splits with their weights. */
function nodeView(node) {
  switch (node.kind) {
    case 'leaf':
      return h(
        'span',
        { class: 'leaf', 'data-leaf': node.id, 'data-backend': node.backend },
        '→ ',
        h('b', {}, node.backend),
        ` / ${node.model}${node.version ? ` v${node.version}` : ''} `,
        h('code', { class: 'leaf-id' }, node.id),
        settings(node),
      );
    case 'target':
      return h('span', {}, h('span', { class: 'node-kind' }, `target ${node.target}`), settings(node), h('ul', {}, h('li', {}, nodeView(node.node))));
    case 'weighted':
      return h(
        'span',
        {},
        h('span', { class: 'node-kind' }, 'weighted'),
        settings(node),
        h(
          'ul',
          {},
          node.children.map((c) => {
            const bar = h('span', { class: 'bar' });
            bar.style.width = `${Math.max(2, Math.round(c.share * 60))}px`;
            return h(
              'li',
              { 'data-weight': c.weight, 'data-share': c.share },
              bar,
              h('span', { class: 'weight' }, percent(c.share, 1)),
              h('span', { class: 'muted' }, `weight ${c.weight} `),
              nodeView(c.node),
            );
          }),
        ),
      );
    case 'fallback':
      return h(
        'span',
        {},
        h('span', { class: 'node-kind' }, 'fallback'),
        h('span', { class: 'muted' }, ` on ${node.fallback_on.join(', ')}`),
        settings(node),
        h('ol', {}, node.children.map((c) => h('li', {}, nodeView(c)))),
      );
    case 'match':
      return h(
        'span',
        {},
        h('span', { class: 'node-kind' }, 'match'),
        settings(node),
        h(
          'ul',
          {},
          node.rules.map((r) => h('li', {}, h('span', { class: 'muted' }, `when ${r.when.map(conditionText).join(' and ')} `), nodeView(r.node))),
          h('li', {}, h('span', { class: 'muted' }, 'default '), nodeView(node.default)),
        ),
      );
    default:
      return h('span', { class: 'muted' }, `unknown node ${node.kind}`);
  }
}

// ---------------------------------------------------------------------------

$('login').addEventListener('submit', (event) => {
  event.preventDefault();
  const key = $('key').value.trim();
  if (key === '') return;
  $('key').value = '';
  setKey(key);
  setStatus('loading...');
  start();
});

$('signout').addEventListener('click', () => {
  setKey('');
  showLogin('');
});

takeKeyFromFragment();
if (state.key === '') showLogin();
else start();
