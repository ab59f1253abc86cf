import { describe, expect, it } from 'vitest';
import type { Backend } from '../../src/backends/backend.js';
import { BackendCluster } from '../../src/backends/cluster.js';
import { validateConfig } from '../../src/config/load.js';
import { ModelRouter } from '../../src/routing/model-router.js';
import { routesView, type RouteView } from '../../src/routing/route-view.js';
import { withDefaultResilience } from '../../src/resilience/resilient-backend.js';
import { silentLogger } from '../../src/observability/logger.js';

const BACKENDS = {
  a: { kind: 'triton', protocol: 'grpc', endpoints: ['127.0.0.1:1'] },
  b: { kind: 'triton', protocol: 'rest', endpoints: ['127.0.0.1:1'] },
};

const CONFIG = validateConfig({
  backends: BACKENDS,
  targets: {
    pool: { weighted: [{ weight: 3, backend: 'a' }, { weight: 1, backend: 'b', model: 'linear_v2', id: 'canary' }, { weight: 0, backend: 'b' }] },
  },
  models: {
    linear: { backend: 'a', version: '2', timeout_ms: 500 },
    fraud: { timeout_ms: 2000, fallback: [{ target: 'pool' }, { backend: 'b', model: 'fraud' }], fallback_on: ['unavailable', 503] },
    ranker: {
      match: [
        { when: { header: 'x-tenant', equals: 'acme' }, backend: 'a' },
        { when: [{ version: { in: ['2', '3'] } }, { parameter: 'priority', prefix: 'hi' }], target: 'pool' },
      ],
      default: { backend: 'b' },
      shadow: { percent: 10, target: 'pool' },
    },
  },
  experiments: {
    'ranker-ab': { model: 'ranker', key: { header: 'x-user-id' }, control: 'a', arms: { a: { weight: 70, backend: 'a' }, b: { weight: 30, target: 'pool' } } },
  },
});

function leafIds(node: RouteView): string[] {
  switch (node.kind) {
    case 'leaf':
      return [node.id];
    case 'target':
      return leafIds(node.node);
    case 'weighted':
      // Zero-weight children are shown, but get no traffic and are not compiled.
      return node.children.filter((c) => c.weight > 0).flatMap((c) => leafIds(c.node));
    case 'fallback':
      return node.children.flatMap(leafIds);
    case 'match':
      return [...node.rules.flatMap((r) => leafIds(r.node)), ...leafIds(node.default)];
  }
}

describe('routesView', () => {
  const view = routesView(CONFIG);

  it('shows each node as configured, with weights and shares, named targets resolved in place', () => {
    expect(view.models.map((m) => m.name)).toEqual(['linear', 'fraud', 'ranker']);
    expect(view.models[0]).toEqual({
      name: 'linear',
      experiment: null,
      tree: { kind: 'leaf', id: 'models.linear', backend: 'a', model: 'linear', version: '2', timeout_ms: 500 },
      shadow: null,
    });
    const fraud = view.models[1]!.tree;
    expect(fraud).toMatchObject({ kind: 'fallback', fallback_on: ['unavailable', 503], timeout_ms: 2000 });
    if (fraud.kind !== 'fallback') throw new Error('not a fallback');
    expect(fraud.children[0]).toEqual({
      kind: 'target',
      target: 'pool',
      node: {
        kind: 'weighted',
        children: [
          { weight: 3, share: 0.75, node: { kind: 'leaf', id: 'targets.pool.weighted.0', backend: 'a', model: 'fraud', version: null } },
          { weight: 1, share: 0.25, node: { kind: 'leaf', id: 'canary', backend: 'b', model: 'linear_v2', version: null } },
          { weight: 0, share: 0, node: { kind: 'leaf', id: 'targets.pool.weighted.2', backend: 'b', model: 'fraud', version: null } },
        ],
      },
    });
    expect(fraud.children[1]).toEqual({ kind: 'leaf', id: 'models.fraud.fallback.1', backend: 'b', model: 'fraud', version: null });
  });

  it('shows match rules with their conditions, the default, the shadow and the experiment', () => {
    const ranker = view.models[2]!;
    expect(ranker.experiment).toBe('ranker-ab');
    expect(ranker.shadow?.percent).toBe(10);
    expect(ranker.tree.kind).toBe('match');
    if (ranker.tree.kind !== 'match') throw new Error('not a match');
    expect(ranker.tree.rules.map((r) => r.when)).toEqual([
      [{ on: 'header', name: 'x-tenant', op: 'equals', value: 'acme' }],
      [
        { on: 'version', op: 'in', value: ['2', '3'] },
        { on: 'parameter', name: 'priority', op: 'prefix', value: 'hi' },
      ],
    ]);
    expect(ranker.tree.default).toEqual({ kind: 'leaf', id: 'models.ranker.default', backend: 'b', model: 'ranker', version: null });
    expect(view.experiments).toEqual([
      {
        name: 'ranker-ab',
        model: 'ranker',
        arms: [
          { name: 'a', weight: 70, node: { kind: 'leaf', id: 'experiments.ranker-ab.arms.a', backend: 'a', model: 'ranker', version: null } },
          { name: 'b', weight: 30, node: expect.objectContaining({ kind: 'target', target: 'pool' }) },
        ],
      },
    ]);
  });

  it('names every leaf with the id the compiled router answers with', () => {
    const clusters = new Map(
      Object.keys(BACKENDS).map((name) => [name, new BackendCluster(name, 'triton', 'grpc', 30_000, [{ endpoint: `${name}:1` } as Backend])]),
    );
    const router = new ModelRouter(CONFIG, withDefaultResilience(clusters, silentLogger));
    for (const m of view.models) {
      expect(leafIds(m.tree), m.name).toEqual(router.model(m.name)!.leaves.map((l) => l.id));
    }
  });
});
