import { describe, expect, it } from 'vitest';
import { ConfigError, validateConfig } from '../../src/config/load.js';

const base = (models: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  backends: { t: { kind: 'triton', protocol: 'grpc', endpoints: ['127.0.0.1:8001'] } },
  models,
  ...extra,
});

function problemsOf(raw: unknown): readonly string[] {
  try {
    validateConfig(raw);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('serving options of a model (cache, coalesce, batching)', () => {
  it('are parsed beside the routing tree; coalescing is on with the cache unless turned off', () => {
    const config = validateConfig(
      base({
        a: { backend: 't', cache: { ttl_ms: 1000 } },
        b: { backend: 't', cache: { ttl_ms: 1000 }, coalesce: false },
        c: { backend: 't', coalesce: true, batching: { max_batch_size: 8 } },
        d: { backend: 't', cache: { enabled: false, ttl_ms: 5 } },
        e: { backend: 't' },
      }),
    );
    expect(config.models['a']!.serving).toEqual({ cache: { ttl_ms: 1000, max_entry_bytes: 1024 * 1024 }, coalesce: true });
    expect(config.models['b']!.serving).toEqual({ cache: { ttl_ms: 1000, max_entry_bytes: 1024 * 1024 }, coalesce: false });
    expect(config.models['c']!.serving).toEqual({ coalesce: true, batching: { max_batch_size: 8, max_queue_delay_ms: 2, max_queue_size: 1024 } });
    expect(config.models['d']!.serving).toEqual({ coalesce: false });
    expect(config.models['e']!.serving).toBeUndefined();
    expect(config.cache).toMatchObject({ command_timeout_ms: 50 });
    expect(config.cache.redis).toBeUndefined();
  });

  it('every mistake is reported with its key path', () => {
    const problems = problemsOf(
      base(
        {
          a: { backend: 't', cache: { ttl: 1000 } },
          b: { backend: 't', batching: { max_batch_size: 1 } },
          c: { backend: 't', coalesce: 'yes' },
        },
        { cache: { redis: 'http://x' } },
      ),
    );
    expect(problems.some((p) => p.startsWith('models.a.cache.ttl_ms'))).toBe(true);
    expect(problems.some((p) => p.startsWith('models.a.cache') && p.includes('ttl'))).toBe(true);
    expect(problems.some((p) => p.startsWith('models.b.batching.max_batch_size'))).toBe(true);
    expect(problems.some((p) => p.startsWith('models.c.coalesce'))).toBe(true);
    expect(problems.some((p) => p.startsWith('cache.redis'))).toBe(true);
  });
});
