import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig, validateConfig } from '../../src/config/load.js';
import { parseRouteConfig } from '../../src/config/route-schema.js';
import { configSchema } from '../../src/config/schema.js';

const BACKENDS = `
backends:
  triton-a: { kind: triton, protocol: grpc, endpoints: ["127.0.0.1:8001"] }
  triton-b: { kind: triton, protocol: rest, endpoints: ["127.0.0.1:8000"] }
  ts: { kind: torchserve, protocol: rest, endpoints: ["127.0.0.1:8080"] }
`;

/** The config of the feature's design, verbatim. */
const DESIGN = `${BACKENDS}
targets:
  triton-pool:
    weighted:
      - { weight: 90, backend: triton-a }
      - { weight: 10, backend: triton-b, model: linear_v2 }
models:
  linear: { backend: triton-a }
  fraud:
    timeout_ms: 2000
    fallback:
      - { target: triton-pool }
      - { backend: ts, model: fraud, id: fraud-torchserve }
    fallback_on: [connect_failure, unavailable, timeout]
  ranker:
    match:
      - when: { header: x-tenant, equals: acme }
        backend: triton-a
      - when: { version: { in: ["2", "3"] } }
        target: triton-pool
      - when: [ { parameter: priority, equals: high }, { header: x-region, prefix: eu- } ]
        backend: triton-b
    default: { backend: triton-a }
`;

function problems(text: string): string[] {
  try {
    parseConfig(text, 'test.yaml');
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  throw new Error('expected the config to be rejected');
}

/** Problems of a models (and targets) section over the shared backends. */
function routeProblems(models: Record<string, unknown>, targets?: Record<string, unknown>): string[] {
  const raw = {
    backends: {
      'triton-a': { kind: 'triton', protocol: 'grpc', endpoints: ['127.0.0.1:8001'] },
      ts: { kind: 'torchserve', protocol: 'rest', endpoints: ['127.0.0.1:8080'] },
    },
    ...(targets !== undefined ? { targets } : {}),
    models,
  };
  try {
    validateConfig(raw);
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  throw new Error('expected the config to be rejected');
}

describe('routing trees in the config: valid', () => {
  it('parses the design config: leaves, named targets, weighted, fallback, match', () => {
    const config = parseConfig(DESIGN);
    expect(config.models.linear).toEqual({ backend: 'triton-a' });
    expect(config.targets['triton-pool']).toEqual({
      weighted: [
        { weight: 90, backend: 'triton-a' },
        { weight: 10, backend: 'triton-b', model: 'linear_v2' },
      ],
    });
    expect(config.models.fraud).toEqual({
      timeout_ms: 2000,
      fallback: [{ target: 'triton-pool' }, { backend: 'ts', model: 'fraud', id: 'fraud-torchserve' }],
      fallback_on: ['connect_failure', 'unavailable', 'timeout'],
    });
    expect(config.models.ranker).toEqual({
      match: [
        { when: [{ on: 'header', name: 'x-tenant', op: 'equals', value: 'acme' }], backend: 'triton-a' },
        { when: [{ on: 'version', op: 'in', value: ['2', '3'] }], target: 'triton-pool' },
        {
          when: [
            { on: 'parameter', name: 'priority', op: 'equals', value: 'high' },
            { on: 'header', name: 'x-region', op: 'prefix', value: 'eu-' },
          ],
          backend: 'triton-b',
        },
      ],
      default: { backend: 'triton-a' },
    });
  });

  it('fills fallback_on with its default, lower-cases header names, and reads numbers as text', () => {
    const config = parseConfig(`${BACKENDS}
models:
  m:
    fallback: [ { backend: triton-a }, { match: [ { when: { header: X-Tier, in: [1, gold] }, backend: triton-b } ], default: { backend: triton-b } } ]
  n:
    fallback: [ { backend: triton-a }, { backend: triton-b } ]
    fallback_on: [5xx, resource_exhausted, 503, 429, "502"]
`);
    expect(config.models.m).toMatchObject({ fallback_on: ['connect_failure', 'unavailable', 'timeout'] });
    expect(config.models.m).toMatchObject({ fallback: [{}, { match: [{ when: [{ name: 'x-tier', value: ['1', 'gold'] }] }] }] });
    expect(config.models.n).toMatchObject({ fallback_on: ['5xx', 'resource_exhausted', 503, 429, 502] });
  });

  it('nests: a fallback of weighted groups, targets referencing targets', () => {
    const config = parseConfig(`${BACKENDS}
targets:
  a: { weighted: [ { weight: 1, backend: triton-a }, { weight: 1, target: b } ] }
  b: { backend: triton-b, timeout_ms: 50 }
models:
  m:
    fallback:
      - weighted: [ { weight: 50, target: a }, { weight: 50, backend: triton-a, version: "2" } ]
      - { weighted: [ { weight: 0, backend: ts }, { weight: 3, backend: triton-b } ] }
`);
    expect(Object.keys(config.targets)).toEqual(['a', 'b']);
    expect(config.models.m).toMatchObject({ fallback: [{ weighted: [{ weight: 50 }, { weight: 50 }] }, { weighted: [{ weight: 0 }, { weight: 3 }] }] });
  });

  it('keeps the leaf form of every existing config (server-kind settings included)', () => {
    const config = parseConfig(`${BACKENDS}
models:
  old: { backend: triton-a, model: linear, version: "1" }
  resnet: { backend: ts, model: resnet-18, torchserve: { request: raw, output_types: { scores: FP32 } } }
`);
    expect(config.models.old).toEqual({ backend: 'triton-a', model: 'linear', version: '1' });
    expect(config.models.resnet).toMatchObject({ backend: 'ts', torchserve: { request: 'raw', outputTypes: { scores: 'FP32' } } });
    expect(config.targets).toEqual({});
  });

  it('configSchema alone gives the same typed result', () => {
    const raw = { backends: { t: { kind: 'triton', protocol: 'grpc', endpoints: ['h:1'] } }, models: { m: { fallback: [{ backend: 't' }] } } };
    expect(configSchema.parse(raw).models.m).toEqual({ fallback: [{ backend: 't' }], fallback_on: ['connect_failure', 'unavailable', 'timeout'] });
    const bad = configSchema.safeParse({ ...raw, models: { m: { backend: 'x' } } });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]).toMatchObject({ path: ['models', 'm', 'backend'], message: expect.stringMatching(/unknown backend 'x'/) });
  });
});

describe('routing trees in the config: each invalid tree is rejected with its key path', () => {
  it('unknown backend, at any depth', () => {
    expect(routeProblems({ fraud: { fallback: [{ backend: 'triton-a' }, { backend: 'tss', model: 'fraud' }] } })).toEqual([
      "models.fraud.fallback.1.backend: unknown backend 'tss' (declared: triton-a, ts)",
    ]);
    // A leaf with another problem still has its backend checked.
    expect(routeProblems({ m: { backend: 'nope', version: '../1' } })).toEqual([
      expect.stringMatching(/^models\.m\.version: /),
      "models.m.backend: unknown backend 'nope' (declared: triton-a, ts)",
    ]);
  });

  it('negative, fractional, missing and all-zero weights', () => {
    expect(routeProblems({ x: { weighted: [{ weight: -1, backend: 'triton-a' }, { weight: 1, backend: 'ts' }] } })).toEqual([
      'models.x.weighted.0.weight: must be an integer >= 0',
    ]);
    expect(routeProblems({ x: { weighted: [{ weight: 0.5, backend: 'triton-a' }] } })).toEqual(['models.x.weighted.0.weight: must be an integer >= 0']);
    expect(routeProblems({ x: { weighted: [{ backend: 'triton-a' }] } })[0]).toMatch(/^models\.x\.weighted\.0\.weight: missing/);
    expect(routeProblems({ x: { weighted: [{ weight: 0, backend: 'triton-a' }, { weight: 0, backend: 'ts' }] } })).toEqual([
      'models.x.weighted: needs at least one weight > 0',
    ]);
    expect(routeProblems({ x: { weighted: [] } })[0]).toMatch(/^models\.x\.weighted: must be a list of at least one/);
  });

  it('a cycle between targets, and a target referencing itself', () => {
    expect(routeProblems({ m: { target: 'a' } }, { a: { target: 'b' }, b: { target: 'a' } })).toEqual(['targets.a.target: cycle a -> b -> a']);
    expect(routeProblems({ m: { target: 'a' } }, { a: { fallback: [{ backend: 'ts' }, { target: 'a' }] } })).toEqual([
      'targets.a.fallback.1.target: cycle a -> a',
    ]);
    expect(routeProblems({ m: { target: 'c' } }, { c: { weighted: [{ weight: 1, target: 'd' }] }, d: { match: [{ when: { header: 'h', equals: 'v' }, target: 'e' }], default: { backend: 'ts' } }, e: { target: 'c' } })).toEqual([
      'targets.c.weighted.0.target: cycle c -> d -> e -> c',
    ]);
  });

  it('an unknown target', () => {
    expect(routeProblems({ m: { fallback: [{ target: 'pool' }] } }, { other: { backend: 'ts' } })).toEqual([
      "models.m.fallback.0.target: unknown target 'pool' (declared: other)",
    ]);
  });

  it('a duplicate model (or any duplicate key), with the line of the first', () => {
    const text = `${BACKENDS}
models:
  linear: { backend: triton-a }
  other: { backend: triton-a }
  linear: { backend: triton-b }
`;
    expect(problems(text)).toEqual(['models.linear: duplicate key (first at line 8)']);
    const nested = `${BACKENDS}
models:
  m:
    fallback:
      - { backend: triton-a, model: a, model: b }
`;
    expect(problems(nested)).toEqual(['models.m.fallback.0.model: duplicate key (first at line 10)']);
  });

  it('a bad regular expression, in every position a condition can take', () => {
    const bad = (when: unknown) => routeProblems({ r: { match: [{ when, backend: 'ts' }], default: { backend: 'ts' } } });
    expect(bad({ header: 'x-a', regex: '(' })).toEqual([expect.stringMatching(/^models\.r\.match\.0\.when\.regex: invalid regular expression: /)]);
    expect(bad([{ header: 'x-a', equals: 'a' }, { parameter: 'p', regex: '[z-a]' }])).toEqual([
      expect.stringMatching(/^models\.r\.match\.0\.when\.1\.regex: invalid regular expression: /),
    ]);
    expect(bad({ version: { regex: '*' } })).toEqual([expect.stringMatching(/^models\.r\.match\.0\.when\.version\.regex: invalid regular expression: /)]);
  });

  it('missing fields: default with match, the node kind, when, the operator', () => {
    expect(routeProblems({ r: { match: [{ when: { header: 'x', equals: 'a' }, backend: 'ts' }] } })).toEqual([
      "models.r: needs 'default' with 'match' (the node for requests no rule matches)",
    ]);
    expect(routeProblems({ x: { timeout_ms: 5 } })).toEqual(['models.x: a node needs exactly one of backend, target, weighted, fallback, match']);
    expect(routeProblems({ x: { backend: 'ts', fallback: [{ backend: 'ts' }] } })).toEqual([
      'models.x: a node needs exactly one of backend, target, weighted, fallback, match (found backend, fallback)',
    ]);
    expect(routeProblems({ r: { match: [{ backend: 'ts' }], default: { backend: 'ts' } } })[0]).toMatch(/^models\.r\.match\.0\.when: missing/);
    expect(routeProblems({ r: { match: [{ when: { header: 'x' }, backend: 'ts' }], default: { backend: 'ts' } } })).toEqual([
      'models.r.match.0.when: needs exactly one of equals, in, prefix, regex',
    ]);
    expect(routeProblems({ r: { match: [{ when: { header: 'x', equals: 'a', prefix: 'b' }, backend: 'ts' }], default: { backend: 'ts' } } })).toEqual([
      'models.r.match.0.when: needs exactly one of equals, in, prefix, regex (found equals, prefix)',
    ]);
    expect(routeProblems({ r: { match: [{ when: { cookie: 'x', equals: 'a' }, backend: 'ts' }], default: { backend: 'ts' } } })).toEqual([
      'models.r.match.0.when: a condition needs exactly one of header, parameter, version',
    ]);
  });

  it('fallback_on: client errors never fall back; unknown conditions are named', () => {
    const on = (list: unknown) => routeProblems({ f: { fallback: [{ backend: 'ts' }, { backend: 'triton-a' }], fallback_on: list } });
    expect(on([404])).toEqual(['models.f.fallback_on.0: 404 is a client error: client errors never fall back (429 is the only 4xx allowed)']);
    expect(on(['unavailable', '4xx'])).toEqual(['models.f.fallback_on.1: 4xx are client errors: client errors never fall back']);
    expect(on(['timeouts'])[0]).toMatch(/^models\.f\.fallback_on\.0: must be one of connect_failure, unavailable, timeout, 5xx, resource_exhausted/);
    expect(on([200])[0]).toMatch(/^models\.f\.fallback_on\.0: 200 is not a status to fall back on/);
    expect(on([])[0]).toMatch(/^models\.f\.fallback_on: must be a list of at least one/);
  });

  it('server-kind settings only on leaves of that kind, and keys out of place', () => {
    expect(routeProblems({ m: { fallback: [{ backend: 'triton-a', torchserve: { request: 'raw' } }] } })).toEqual([
      "models.m.fallback.0.torchserve: applies only to models on a torchserve backend ('triton-a' is triton)",
    ]);
    expect(routeProblems({ m: { fallback: [{ backend: 'ts' }], default: { backend: 'ts' } } })).toEqual(["models.m: 'default' applies only to a match node"]);
    expect(routeProblems({ m: { backend: 'ts', weight: 3 } })).toEqual(["models.m: 'weight' applies only to the children of a weighted node"]);
    expect(routeProblems({ m: { weighted: [{ weight: 1, backend: 'ts', timout_ms: 3 }] } })).toEqual(["models.m.weighted.0: unknown key 'timout_ms'"]);
    expect(routeProblems({ m: { target: 'a', model: 'x' } }, { a: { backend: 'ts' } })).toEqual([
      "models.m: 'model' applies only to a leaf (a node with backend)",
    ]);
  });

  it('settings and ids are checked: timeout_ms, duplicate ids, id shapes', () => {
    expect(routeProblems({ m: { fallback: [{ backend: 'ts' }], timeout_ms: -5 } })[0]).toMatch(/^models\.m\.timeout_ms: /);
    expect(routeProblems({ a: { backend: 'ts', id: 'one' }, b: { fallback: [{ backend: 'ts' }, { backend: 'triton-a', id: 'one' }] } })).toEqual([
      "models.b.fallback.1.id: duplicate id 'one' (also at models.a)",
    ]);
    expect(routeProblems({ a: { backend: 'ts', id: 'models.b' } })[0]).toMatch(/^models\.a\.id: must not start with 'models\.'/);
    expect(routeProblems({ a: { backend: 'ts', id: 'a b' } })[0]).toMatch(/^models\.a\.id: must be 1-128 letters/);
  });

  it('reports every problem at once, with those of other sections', () => {
    const found = problems(`
backends:
  triton-a: { kind: triton, protocol: grpc, endpoints: ["127.0.0.1:8001"], timout_ms: 5 }
targets:
  a: { target: b }
  b: { target: a }
models:
  x: { weighted: [ { weight: -1, backend: triton-a }, { weight: 2, backend: nope } ] }
  r:
    match: [ { when: { header: x, regex: "(" }, backend: triton-a } ]
  y: { backend: triton-a, model: "a/b" }
`);
    expect(found).toEqual([
      "backends.triton-a: unknown key 'timout_ms'",
      'targets.a.target: cycle a -> b -> a',
      'models.x.weighted.0.weight: must be an integer >= 0',
      "models.x.weighted.1.backend: unknown backend 'nope' (declared: triton-a)",
      "models.r: needs 'default' with 'match' (the node for requests no rule matches)",
      expect.stringMatching(/^models\.r\.match\.0\.when\.regex: invalid regular expression: /),
      'models.y.model: is not a valid model name',
    ]);
  });

  it('parseRouteConfig never throws, whatever the shape', () => {
    for (const raw of [null, 3, [], { models: 'x' }, { models: { a: [] } }, { models: { a: { match: 'x' } } }, { targets: [], models: {} }]) {
      expect(() => parseRouteConfig(raw)).not.toThrow();
    }
    expect(parseRouteConfig({ models: { a: [] } }).problems).toEqual([
      { path: ['models', 'a'], message: 'must be a map with one of backend, target, weighted, fallback, match' },
    ]);
  });
});
