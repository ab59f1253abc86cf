import { describe, expect, it } from 'vitest';
import type { Backend } from '../../src/backends/backend.js';
import { BackendCluster } from '../../src/backends/cluster.js';
import { validateConfig } from '../../src/config/load.js';
import { DEFAULT_FALLBACK_ON, type FallbackOn } from '../../src/config/route-schema.js';
import { GatewayError, type ErrorCode } from '../../src/core/errors.js';
import { ModelRouter } from '../../src/routing/model-router.js';
import { fallbackPredicate, firstLeaf, type RouteContext, type RouteInput } from '../../src/routing/route-tree.js';
import { withDefaultResilience } from '../../src/resilience/resilient-backend.js';
import { silentLogger as quietLog } from '../../src/observability/logger.js';

/** Clusters of fake endpoints: compiling needs a cluster per backend, these tests never call one. */
function clusters(timeouts: Record<string, number>): Map<string, BackendCluster> {
  return new Map(
    Object.entries(timeouts).map(([name, ms]) => [name, new BackendCluster(name, 'triton', 'grpc', ms, [{ endpoint: `${name}:1` } as Backend])]),
  );
}

const BACKENDS = {
  a: { kind: 'triton', protocol: 'grpc', endpoints: ['127.0.0.1:1'], timeout_ms: 30_000 },
  b: { kind: 'triton', protocol: 'grpc', endpoints: ['127.0.0.1:1'], timeout_ms: 800 },
  c: { kind: 'triton', protocol: 'grpc', endpoints: ['127.0.0.1:1'], timeout_ms: 30_000 },
};

function router(models: Record<string, unknown>, targets: Record<string, unknown> = {}): ModelRouter {
  const config = validateConfig({ backends: BACKENDS, targets, models });
  return new ModelRouter(config, withDefaultResilience(clusters({ a: 30_000, b: 800, c: 30_000 }), quietLog));
}

const NO_CTX: RouteContext = {};
const req = (version = '', parameters?: Record<string, string | number | boolean>): RouteInput => ({ version, ...(parameters ? { parameters } : {}) });
const headers = (h: Record<string, string>): RouteContext => ({ header: (name) => h[name] });

/** Which leaf ids `n` first attempts land on. */
function tally(r: ModelRouter, model: string, n: number): Map<string, number> {
  const tree = r.resolve(model, '').route.tree;
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const id = firstLeaf(tree, req(), NO_CTX).id;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

describe('weighted nodes', () => {
  // 10,000 draws at 10% have a standard deviation of 0.3 points: ±2 points is more than 6 of them.
  it('90/10 over 10,000 picks lands within ±2 percentage points', () => {
    const r = router({ m: { weighted: [{ weight: 90, backend: 'a' }, { weight: 10, backend: 'b' }] } });
    const counts = tally(r, 'm', 10_000);
    expect(Math.abs((counts.get('models.m.weighted.0') ?? 0) / 100 - 90)).toBeLessThanOrEqual(2);
    expect(Math.abs((counts.get('models.m.weighted.1') ?? 0) / 100 - 10)).toBeLessThanOrEqual(2);
  });

  it('50/30/20 over three children likewise, and zero-weight children get nothing', () => {
    const r = router({
      m: {
        weighted: [
          { weight: 50, backend: 'a', id: 'A' },
          { weight: 0, backend: 'a', id: 'never' },
          { weight: 30, backend: 'b', id: 'B' },
          { weight: 20, backend: 'c', id: 'C' },
        ],
      },
    });
    const counts = tally(r, 'm', 10_000);
    expect(counts.has('never')).toBe(false);
    for (const [id, pct] of [['A', 50], ['B', 30], ['C', 20]] as const) {
      expect(Math.abs((counts.get(id) ?? 0) / 100 - pct)).toBeLessThanOrEqual(2);
    }
  });

  it('nested splits multiply: 50% of a 50/50 group inside a 60/40 split is 30%', () => {
    const r = router(
      { m: { weighted: [{ weight: 60, target: 'pool' }, { weight: 40, backend: 'c', id: 'C' }] } },
      { pool: { weighted: [{ weight: 1, backend: 'a', id: 'A' }, { weight: 1, backend: 'b', id: 'B' }] } },
    );
    const counts = tally(r, 'm', 10_000);
    for (const [id, pct] of [['A', 30], ['B', 30], ['C', 40]] as const) {
      expect(Math.abs((counts.get(id) ?? 0) / 100 - pct)).toBeLessThanOrEqual(2);
    }
  });
});

describe('match nodes', () => {
  const r = router({
    m: {
      match: [
        { when: { header: 'X-Tenant', equals: 'acme' }, backend: 'a', id: 'tenant' },
        { when: { header: 'x-region', in: ['eu-1', 'eu-2'] }, backend: 'a', id: 'region' },
        { when: { version: { in: ['2', '3'] } }, backend: 'b', id: 'v23' },
        { when: { version: { regex: '^beta-[0-9]+$' } }, backend: 'b', id: 'beta' },
        { when: { parameter: 'priority', equals: 'high' }, backend: 'c', id: 'priority' },
        { when: { parameter: 'shard', equals: 7 }, backend: 'c', id: 'shard' },
        { when: [{ header: 'x-user', prefix: 'test-' }, { parameter: 'debug', equals: true }], backend: 'c', id: 'both' },
        { when: { header: 'x-user', regex: 'admin' }, backend: 'c', id: 'admin' },
      ],
      default: { backend: 'a', id: 'default' },
    },
  });
  const tree = r.resolve('m', '').route.tree;
  const leafOf = (input: RouteInput, ctx: RouteContext = NO_CTX) => firstLeaf(tree, input, ctx).id;

  it('equals / in / prefix / regex on headers (names lower-cased), version and parameters', () => {
    expect(leafOf(req(), headers({ 'x-tenant': 'acme' }))).toBe('tenant');
    expect(leafOf(req(), headers({ 'x-tenant': 'ACME' }))).toBe('default'); // values are compared exactly
    expect(leafOf(req(), headers({ 'x-region': 'eu-2' }))).toBe('region');
    expect(leafOf(req('3'))).toBe('v23');
    expect(leafOf(req('beta-12'))).toBe('beta');
    expect(leafOf(req('beta-x'))).toBe('default');
    expect(leafOf(req('', { priority: 'high' }))).toBe('priority');
    expect(leafOf(req('', { shard: 7 }))).toBe('shard'); // a number parameter matches its text
    expect(leafOf(req('', { debug: true }), headers({ 'x-user': 'test-1' }))).toBe('both');
    expect(leafOf(req('', { debug: false }), headers({ 'x-user': 'test-1' }))).toBe('default'); // every condition must hold
    expect(leafOf(req(), headers({ 'x-user': 'the-admin-2' }))).toBe('admin'); // a regex is unanchored unless it says so
  });

  it('the first matching rule wins; absent values match nothing; the default takes the rest', () => {
    expect(leafOf(req('2'), headers({ 'x-tenant': 'acme' }))).toBe('tenant');
    expect(leafOf(req(''))).toBe('default');
    expect(leafOf(req('', {}), { header: () => undefined })).toBe('default');
  });

  it('a match leading to a fallback is walked to the fallback first child', () => {
    const rr = router({
      m: { match: [{ when: { header: 'h', equals: '1' }, fallback: [{ backend: 'b', id: 'first' }, { backend: 'c' }] }], default: { backend: 'a' } },
    });
    expect(firstLeaf(rr.resolve('m', '').route.tree, req(), headers({ h: '1' })).id).toBe('first');
  });
});

describe('compiled leaves', () => {
  it('ids are config paths (named targets under targets.*) unless the leaf names itself', () => {
    const r = router(
      { m: { fallback: [{ target: 'pool' }, { backend: 'c', id: 'last-resort' }] }, plain: { backend: 'a' } },
      { pool: { weighted: [{ weight: 1, backend: 'a' }] } },
    );
    expect(r.model('m')!.leaves.map((l) => l.id)).toEqual(['targets.pool.weighted.0', 'last-resort']);
    expect(r.resolve('plain', '').route.id).toBe('models.plain');
  });

  it('settings inherit down the tree (through targets); a node’s own wins; the backend timeout caps', () => {
    const r = router(
      {
        m: {
          timeout_ms: 2000,
          fallback: [
            { target: 'pool' },
            { backend: 'a', id: 'own', timeout_ms: 300 },
            { backend: 'b', id: 'capped' }, // b's backend timeout is 800
            { weighted: [{ weight: 1, backend: 'c', id: 'deep' }], timeout_ms: 5000 },
          ],
        },
        bare: { backend: 'c' },
      },
      { pool: { weighted: [{ weight: 1, backend: 'a', id: 'pooled' }, { weight: 1, backend: 'a', id: 'pool-own', timeout_ms: 100 }] } },
    );
    const timeouts = Object.fromEntries(r.model('m')!.leaves.map((l) => [l.id, l.timeoutMs]));
    expect(timeouts).toEqual({ pooled: 2000, 'pool-own': 100, own: 300, capped: 800, deep: 5000 });
    expect(r.resolve('bare', '').route.timeoutMs).toBe(30_000);
  });

  it('each leaf is a route of its model: name, backend model, pinned version, the whole tree', () => {
    const r = router({ m: { fallback: [{ backend: 'a', model: 'other', version: '2' }, { backend: 'b' }] } });
    const [first, second] = r.model('m')!.leaves;
    expect(first).toMatchObject({ name: 'm', backendModel: 'other', pinnedVersion: '2' });
    expect(second).toMatchObject({ name: 'm', backendModel: 'm' });
    expect(first!.tree).toBe(r.model('m')!.tree);
    expect(first!.backend.name).toBe('a');
  });

  it('the primary leaf: a fallback’s first child, a split’s heaviest, a match’s default', () => {
    const r = router({
      f: { fallback: [{ weighted: [{ weight: 1, backend: 'a', id: 'light' }, { weight: 3, backend: 'b', id: 'heavy' }] }, { backend: 'c' }] },
      w: { weighted: [{ weight: 2, backend: 'a', id: 'x' }, { weight: 2, backend: 'b', id: 'y' }] },
      m: { match: [{ when: { header: 'h', equals: '1' }, backend: 'a' }], default: { backend: 'c', id: 'dflt' } },
    });
    expect(r.resolve('f', '').route.id).toBe('heavy');
    expect(r.resolve('w', '').route.id).toBe('x'); // ties: the first
    expect(r.resolve('m', '').route.id).toBe('dflt');
    expect([...r.list()].map((l) => l.id)).toEqual(['heavy', 'x', 'dflt']);
    expect([...r.leaves()]).toHaveLength(7);
  });

  it('versions: a model whose every leaf pins one refuses others at resolve time', () => {
    const r = router({
      pinned: { weighted: [{ weight: 1, backend: 'a', version: '1' }, { weight: 1, backend: 'b', version: '2' }] },
      mixed: { fallback: [{ backend: 'a', version: '1' }, { backend: 'b' }] },
    });
    expect(r.resolve('pinned', '2').route.id).toBe('models.pinned.weighted.0');
    expect(() => r.resolve('pinned', '3')).toThrow(/has no version '3' \(served versions: '1', '2'\)/);
    expect(r.resolve('mixed', '3').backendVersion).toBe('1'); // the primary's, for metadata; the walk decides per leaf
  });
});

describe('fallback_on predicate', () => {
  const err = (code: ErrorCode, transport?: 'connect') => new GatewayError(code, 'x', transport ? { transport } : undefined);
  const CASES: [string, GatewayError][] = [
    ['connect', err('UNAVAILABLE', 'connect')],
    ['unavailable', err('UNAVAILABLE')],
    ['deadline', err('DEADLINE_EXCEEDED')],
    ['internal', err('INTERNAL')],
    ['unimplemented', err('UNIMPLEMENTED')],
    ['exhausted', err('RESOURCE_EXHAUSTED')],
  ];
  const matrix = (on: readonly FallbackOn[]) => {
    const p = fallbackPredicate(on);
    return Object.fromEntries(CASES.map(([name, e]) => [name, p(e)]));
  };

  it('maps each condition to the failures it names', () => {
    expect(matrix(DEFAULT_FALLBACK_ON)).toEqual({ connect: true, unavailable: true, deadline: true, internal: false, unimplemented: false, exhausted: false });
    expect(matrix(['connect_failure'])).toEqual({ connect: true, unavailable: false, deadline: false, internal: false, unimplemented: false, exhausted: false });
    expect(matrix(['timeout'])).toEqual({ connect: false, unavailable: false, deadline: true, internal: false, unimplemented: false, exhausted: false });
    expect(matrix(['5xx'])).toEqual({ connect: true, unavailable: true, deadline: true, internal: true, unimplemented: true, exhausted: false });
    expect(matrix(['resource_exhausted'])).toEqual({ connect: false, unavailable: false, deadline: false, internal: false, unimplemented: false, exhausted: true });
    expect(matrix([500, 429])).toEqual({ connect: false, unavailable: false, deadline: false, internal: true, unimplemented: false, exhausted: true });
    expect(matrix([503])).toEqual({ connect: true, unavailable: true, deadline: false, internal: false, unimplemented: false, exhausted: false });
  });

  it('client errors never move a fallback on, whatever it lists', () => {
    const everything = fallbackPredicate(['connect_failure', 'unavailable', 'timeout', '5xx', 'resource_exhausted', 429, 500, 503]);
    const clientCodes: ErrorCode[] = ['INVALID_ARGUMENT', 'NOT_FOUND', 'FAILED_PRECONDITION', 'OUT_OF_RANGE', 'UNAUTHENTICATED', 'PERMISSION_DENIED', 'ALREADY_EXISTS', 'ABORTED', 'CANCELLED'];
    for (const code of clientCodes) expect(everything(err(code)), code).toBe(false);
    // Even marked as a connection failure (which no adapter does for these), a client error stays one.
    expect(everything(new GatewayError('INVALID_ARGUMENT', 'x', { transport: 'connect' }))).toBe(false);
  });
});
