import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.js';
import { experimentSettings, type ExperimentConfig } from '../../src/config/experiment-schema.js';
import { StickySplitter, type CompiledExperiment } from '../../src/experiments/assignment.js';
import { armAt, bucketBounds, BUCKETS, stickyBucket } from '../../src/experiments/sticky-hash.js';
import type { ArmObservation } from '../../src/experiments/types.js';
import type { RequestContext } from '../../src/routing/inference-service.js';
import type { RouteNode } from '../../src/routing/route-tree.js';

/** A config as the file would give it; arms are stand-in nodes (assignment never walks them). */
function experiment(o: Partial<ExperimentConfig> & { weights?: Record<string, number> } = {}): ExperimentConfig {
  const weights = o.weights ?? { a: 50, b: 50 };
  return {
    model: 'ranker',
    key: { header: 'x-user-id' },
    salt: 'ranker-ab',
    state: 'running',
    control: 'a',
    override_header: 'x-infergate-variant-override',
    ...o,
    arms: Object.fromEntries(Object.entries(weights).map(([arm, weight]) => [arm, { weight, backend: `be-${arm}` }])),
  };
}

function compiled(config: ExperimentConfig, name = 'ranker-ab'): CompiledExperiment {
  const settings = experimentSettings(name, config);
  return { settings, arms: settings.arms.map((a) => ({ name: a.name, node: { kind: 'leaf', id: a.name } as unknown as RouteNode, leaves: [] })) };
}

/** A separately built splitter: what another gateway process (or the same one after a restart) has. */
function splitter(config: ExperimentConfig = experiment(), opts: ConstructorParameters<typeof StickySplitter>[1] = {}): StickySplitter {
  return new StickySplitter([compiled(config)], opts);
}

function ctx(headers: Record<string, string> = {}): RequestContext {
  return { deadline: Date.now() + 1000, header: (name) => headers[name] };
}

const keys = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);
const armOf = (s: StickySplitter, key: string): string => s.assign('ranker', ctx({ 'x-user-id': key }))!.arm;

describe('sticky hash', () => {
  it('is pinned: these keys keep these buckets in every process and every release', () => {
    expect([stickyBucket('ranker-ab', 'user-1'), stickyBucket('ranker-ab', 'user-2'), stickyBucket('other', 'user-1')]).toEqual(
      PINNED,
    );
    for (const key of keys.slice(0, 100)) {
      const b = stickyBucket('s', key);
      expect(b).toBeGreaterThanOrEqual(0);
      expect(b).toBeLessThan(BUCKETS);
    }
  });

  it('gives arms contiguous ranges in order, a weight-0 arm none', () => {
    const bounds = bucketBounds([30, 0, 70]);
    expect([...bounds]).toEqual([3000, 3000, 10_000]);
    expect([armAt(bounds, 0), armAt(bounds, 2999), armAt(bounds, 3000), armAt(bounds, 9999)]).toEqual([0, 0, 2, 2]);
  });
});
/** Known values: a change here moves every user of every running experiment. */
const PINNED = [5361, 4538, 2952];

describe('sticky assignment', () => {
  it('splits 10,000 keys 50/50 within 2 points', () => {
    const s = splitter();
    const b = keys.filter((k) => armOf(s, k) === 'b').length;
    expect(Math.abs(b / keys.length - 0.5)).toBeLessThanOrEqual(0.02);
  });

  it('splits 10,000 keys 90/10 and 3 ways by weight as well', () => {
    const s = splitter(experiment({ weights: { a: 90, b: 10 } }));
    expect(Math.abs(keys.filter((k) => armOf(s, k) === 'b').length / keys.length - 0.1)).toBeLessThanOrEqual(0.02);
    const three = splitter(experiment({ weights: { a: 20, b: 30, c: 50 } }));
    const counts = { a: 0, b: 0, c: 0 } as Record<string, number>;
    for (const k of keys) counts[armOf(three, k)]!++;
    expect(Math.abs(counts.a! / 10_000 - 0.2)).toBeLessThanOrEqual(0.02);
    expect(Math.abs(counts.b! / 10_000 - 0.3)).toBeLessThanOrEqual(0.02);
    expect(Math.abs(counts.c! / 10_000 - 0.5)).toBeLessThanOrEqual(0.02);
  });

  it('gives every key the same arm from two separately built splitters (two processes, or a restart)', () => {
    const first = splitter();
    const second = splitter();
    const restarted = splitter(experiment());
    for (const k of keys) {
      const arm = armOf(first, k);
      expect(armOf(second, k)).toBe(arm);
      expect(armOf(restarted, k)).toBe(arm);
      expect(armOf(first, k)).toBe(arm);
    }
  });

  it('gives every key the same bucket in another Node process', () => {
    const module = fileURLToPath(new URL('../../src/experiments/sticky-hash.ts', import.meta.url));
    const script = `import { stickyBucket } from ${JSON.stringify(module)};
      const out = []; for (let i = 0; i < 10000; i++) out.push(stickyBucket('ranker-ab', 'user-' + i));
      process.stdout.write(JSON.stringify(out));`;
    const output = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(JSON.parse(output)).toEqual(keys.map((k) => stickyBucket('ranker-ab', k)));
  });

  it('a different salt splits the same keys independently', () => {
    const one = splitter();
    const other = splitter(experiment({ salt: 'another-salt' }));
    const same = keys.filter((k) => armOf(one, k) === armOf(other, k)).length;
    expect(Math.abs(same / keys.length - 0.5)).toBeLessThanOrEqual(0.03);
  });

  it('moving 10 points of weight moves 8-12% of 10,000 keys, all of them toward the arm that gained', () => {
    const before = splitter(experiment({ weights: { a: 50, b: 50 } }));
    const after = splitter(experiment({ weights: { a: 40, b: 60 } }));
    const moved = keys.filter((k) => armOf(before, k) !== armOf(after, k));
    expect(moved.length / keys.length).toBeGreaterThanOrEqual(0.08);
    expect(moved.length / keys.length).toBeLessThanOrEqual(0.12);
    for (const k of moved) expect([armOf(before, k), armOf(after, k)]).toEqual(['a', 'b']);
  });

  it('splits requests without a key by weight', () => {
    let seed = 1;
    const random = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
    const s = splitter(experiment({ weights: { a: 70, b: 30 } }), { random });
    let b = 0;
    for (let i = 0; i < 10_000; i++) if (s.assign('ranker', ctx())!.arm === 'b') b++;
    expect(Math.abs(b / 10_000 - 0.3)).toBeLessThanOrEqual(0.02);
    // A context without a header reader is split the same way.
    expect(['a', 'b']).toContain(s.assign('ranker', { deadline: 0 })!.arm);
  });

  it('keeps a client that sends its arm back on it (when the arm exists and has weight), a key still wins', () => {
    const s = splitter(experiment({ weights: { a: 50, b: 50, c: 0 } }), { random: () => 0 });
    for (let i = 0; i < 20; i++) expect(s.assign('ranker', ctx({ 'x-infergate-variant': 'b' }))!.arm).toBe('b');
    // random 0 lands on the first arm: unknown and weight-0 arms are ignored
    expect(s.assign('ranker', ctx({ 'x-infergate-variant': 'zzz' }))!.arm).toBe('a');
    expect(s.assign('ranker', ctx({ 'x-infergate-variant': 'c' }))!.arm).toBe('a');
    const key = keys.find((k) => armOf(s, k) === 'a')!;
    expect(s.assign('ranker', ctx({ 'x-user-id': key, 'x-infergate-variant': 'b' }))!.arm).toBe('a');
  });

  it('forces any arm with the override header, unless overrides are disabled', () => {
    const s = splitter(experiment({ weights: { a: 100, b: 0 } }));
    const key = keys[0]!;
    expect(armOf(s, key)).toBe('a');
    expect(s.assign('ranker', ctx({ 'x-user-id': key, 'x-infergate-variant-override': 'b' }))!.arm).toBe('b');
    expect(s.assign('ranker', ctx({ 'x-infergate-variant-override': 'nope' }))!.arm).toBe('a');
    const disabled = splitter(experiment({ weights: { a: 100, b: 0 }, override_header: false }));
    expect(disabled.assign('ranker', ctx({ 'x-user-id': key, 'x-infergate-variant-override': 'b' }))!.arm).toBe('a');
  });

  it('sends everything to control when paused or ended, overrides included, and records none of it', () => {
    for (const state of ['paused', 'ended'] as const) {
      const seen: string[] = [];
      const s = splitter(experiment({ state, control: 'b' }), { recorder: { recordRequest: (_e, arm) => seen.push(arm) } });
      for (const k of keys.slice(0, 200)) {
        const a = s.assign('ranker', ctx({ 'x-user-id': k, 'x-infergate-variant-override': 'a' }))!;
        expect(a.arm).toBe('b');
        s.record(a, { ok: true, latencyMs: 1 });
      }
      expect(seen).toEqual([]);
      expect(s.status()[0]!.arms.map((a) => a.effective_weight)).toEqual([0, 100]);
    }
  });

  it('leaves other models alone', () => {
    expect(splitter().assign('other', ctx({ 'x-user-id': 'u' }))).toBeUndefined();
  });

  it('forwards records to the recorder, and survives a recorder that throws', () => {
    const seen: [string, string, ArmObservation][] = [];
    const s = splitter(experiment(), { recorder: { recordRequest: (e, arm, o) => seen.push([e, arm, o]) } });
    const a = s.assign('ranker', ctx({ 'x-user-id': 'u1' }))!;
    s.record(a, { ok: false, latencyMs: 12 });
    expect(seen).toEqual([['ranker-ab', a.arm, { ok: false, latencyMs: 12 }]]);
    const throwing = splitter(experiment(), {
      recorder: {
        recordRequest: () => {
          throw new Error('boom');
        },
      },
    });
    expect(() => throwing.record(a, { ok: true, latencyMs: 1 })).not.toThrow();
  });

  it('cutArm sends the arm\'s keys to control, shows it in status, and a new weight reinstates it', () => {
    const s = splitter(experiment({ weights: { a: 50, b: 30, c: 20 } }));
    const before = new Map(keys.map((k) => [k, armOf(s, k)]));
    s.cutArm('ranker-ab', 'b', 'error rate 0.2 > 0.05');
    for (const k of keys) {
      const was = before.get(k)!;
      expect(armOf(s, k)).toBe(was === 'b' ? 'a' : was);
    }
    // The sticky header cannot bring a client back onto a cut arm; the override still can.
    expect(s.assign('ranker', ctx({ 'x-infergate-variant': 'b' }))!.arm).not.toBe('b');
    expect(s.assign('ranker', ctx({ 'x-infergate-variant-override': 'b' }))!.arm).toBe('b');
    const status = s.status()[0]!;
    expect(status.arms.map((a) => [a.name, a.weight, a.effective_weight])).toEqual([
      ['a', 50, 80],
      ['b', 30, 0],
      ['c', 20, 20],
    ]);
    expect(status.arms[1]!.cut).toEqual({ reason: 'error rate 0.2 > 0.05', at: expect.any(String) });
    // The control arm cannot be cut; unknown arms are ignored.
    s.cutArm('ranker-ab', 'a', 'x');
    s.cutArm('ranker-ab', 'zz', 'x');
    s.cutArm('nope', 'b', 'x');
    expect(s.status()[0]!.arms.map((a) => a.cut !== null)).toEqual([false, true, false]);

    // A config swap keeps the cut while b's weight is unchanged; a new weight for b reinstates it.
    const same = splitter(experiment({ weights: { a: 40, b: 30, c: 30 } }));
    same.inheritFrom(s);
    expect(same.status()[0]!.arms[1]!.cut).not.toBeNull();
    const reweighted = splitter(experiment({ weights: { a: 50, b: 40, c: 10 } }));
    reweighted.inheritFrom(s);
    expect(reweighted.status()[0]!.arms[1]!.cut).toBeNull();
  });
});

describe('experiments config', () => {
  const base = {
    backends: { ta: { kind: 'triton', protocol: 'rest', endpoints: ['127.0.0.1:1'] }, tb: { kind: 'triton', protocol: 'grpc', endpoints: ['127.0.0.1:2'] } },
    targets: { pool: { weighted: [{ weight: 1, backend: 'ta' }, { weight: 1, backend: 'tb' }] } },
    models: { ranker: { backend: 'ta' }, other: { backend: 'tb' } },
  };
  const problems = (experiments: unknown): string[] => {
    try {
      validateConfig({ ...base, experiments });
      return [];
    } catch (err) {
      return [...(err as { problems: string[] }).problems];
    }
  };

  it('parses an experiment with its defaults', () => {
    const config = validateConfig({
      ...base,
      experiments: { 'ranker-ab': { model: 'ranker', key: { header: 'X-User-Id' }, control: 'a', arms: { a: { weight: 50, backend: 'ta' }, b: { weight: 50, target: 'pool' } } } },
    });
    const e = config.experiments['ranker-ab']!;
    expect(e).toMatchObject({ model: 'ranker', key: { header: 'x-user-id' }, salt: 'ranker-ab', state: 'running', control: 'a', override_header: 'x-infergate-variant-override' });
    expect(Object.keys(e.arms)).toEqual(['a', 'b']);
    expect(experimentSettings('ranker-ab', e).arms).toEqual([{ name: 'a', weight: 50 }, { name: 'b', weight: 50 }]);
    const guarded = validateConfig({
      ...base,
      experiments: {
        x: { model: 'ranker', key: { header: 'x-u' }, control: 'a', override_header: false, arms: { a: { weight: 1, backend: 'ta' } }, guard: { max_error_rate: 0.05, window_s: 30 } },
      },
    });
    expect(experimentSettings('x', guarded.experiments.x!)).toMatchObject({ guard: { maxErrorRate: 0.05, minRequests: 100, windowMs: 30_000 } });
    expect(experimentSettings('x', guarded.experiments.x!).overrideHeader).toBeUndefined();
    expect(validateConfig(base).experiments).toEqual({});
  });

  it('reports every problem with its key path', () => {
    const found = problems({
      one: {
        model: 'nope',
        key: { header: 'x-u' },
        control: 'z',
        state: 'stopped',
        arms: { a: { weight: 1.5, backend: 'ta' }, b: { weight: 1, backend: 'tx' }, c: { weight: 1, target: 'ghost' }, d: { backend: 'ta' } },
      },
      two: { model: 'ranker', key: { header: 'x-u' }, control: 'a', arms: { a: { weight: 0, backend: 'ta' }, b: { weight: 0, backend: 'tb' } } },
      three: { model: 'ranker', key: {}, control: 'a', arms: { a: { weight: 1, backend: 'ta', weighted: [] } }, guard: { min_requests: 5 } },
      four: { model: 'other', key: { header: 'x-u' }, control: 'a', arms: { '1': { weight: 1, backend: 'tb' }, a: { weight: 1, fallback: [{ backend: 'tb', bogus: 1 }] } } },
    });
    const text = found.join('\n');
    expect(text).toContain("experiments.one.model: unknown model 'nope'");
    expect(text).toContain('experiments.one.state:');
    expect(text).toContain('experiments.one.arms.a.weight: must be an integer >= 0');
    expect(text).toContain("experiments.one.arms.b.backend: unknown backend 'tx'");
    expect(text).toContain("experiments.one.arms.c.target: unknown target 'ghost'");
    expect(text).toContain('experiments.one.arms.d.weight: missing');
    expect(text).toContain("experiments.one.control: unknown arm 'z'");
    expect(text).toContain('experiments.two.arms: needs at least one arm with weight > 0');
    expect(text).toContain("experiments.three.model: model 'ranker' already has experiment 'two'");
    expect(text).toContain('experiments.three.key.header');
    expect(text).toContain('experiments.three.arms.a: a node needs exactly one of');
    expect(text).toContain('experiments.three.guard: a guard needs max_error_rate or max_p99_ms');
    expect(text).toContain('experiments.four.arms.1: arm names start with a letter');
    expect(text).toContain("experiments.four.arms.a.fallback.0: unknown key 'bogus'");
  });
});
