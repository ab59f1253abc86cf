import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCachedResponse } from '../../src/cache/codec.js';
import { ResponseCache, type CachePolicy } from '../../src/cache/response-cache.js';
import { MemoryStore, RedisStore, type CacheStore } from '../../src/cache/store.js';
import { GatewayError } from '../../src/core/errors.js';
import type { InferResponse } from '../../src/core/inference.js';
import { silentLogger } from '../../src/observability/logger.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';

const POLICY: CachePolicy = { ttlMs: 60_000, maxEntryBytes: 1 << 20 };

function response(tag: number, bytes = 16): InferResponse {
  const data = Buffer.alloc(bytes, tag);
  return { model: 'linear', version: '1', id: `r${tag}`, outputs: [{ name: 'Y', datatype: 'UINT8', shape: [bytes], data }] };
}

const later = (ms = 10_000) => ({ deadline: Date.now() + ms });

/** A fetch that counts its runs and answers `resp` after `ms` (or fails with `fail`). */
function fetcher(resp: InferResponse, ms = 20, fail?: Error) {
  const f = async (): Promise<InferResponse> => {
    f.runs++;
    await sleep(ms);
    if (fail) throw fail;
    return resp;
  };
  f.runs = 0;
  return f;
}

function memoryCache(maxBytes = 1 << 24): { cache: ResponseCache; store: CacheStore } {
  const store = new MemoryStore(maxBytes);
  return { cache: new ResponseCache(store, silentLogger), store };
}

describe('ResponseCache', () => {
  it('1,000 concurrent calls with one key make exactly one fetch, then HIT from the store', async () => {
    const { cache, store } = memoryCache();
    const fetch = fetcher(response(1));
    const answers = await Promise.all(Array.from({ length: 1_000 }, () => cache.getOrFetch('k', POLICY, 'use', later(), fetch)));
    expect(fetch.runs).toBe(1);
    expect(answers.every((a) => a.outcome === 'MISS' && a.response.outputs[0]!.data[0] === 1)).toBe(true);
    expect(cache.stats()).toMatchObject({ hits: 0, misses: 1_000, coalesced: 999, stored: 1, inFlight: 0 });
    expect(store.stats().entries).toBe(1);

    const again = await cache.getOrFetch('k', POLICY, 'use', later(), fetch);
    expect(again.outcome).toBe('HIT');
    expect(again.response.outputs[0]!.data.equals(response(1).outputs[0]!.data)).toBe(true);
    expect(again.response).toMatchObject({ model: 'linear', version: '1', id: 'r1' });
    expect(fetch.runs).toBe(1);
    expect(cache.stats().hits).toBe(1);
  });

  it('coalesces without a policy too, and then stores nothing', async () => {
    const { cache, store } = memoryCache();
    const fetch = fetcher(response(2));
    const answers = await Promise.all(Array.from({ length: 1_000 }, () => cache.getOrFetch('k', undefined, 'use', later(), fetch)));
    expect(fetch.runs).toBe(1);
    expect(answers.every((a) => a.outcome === 'MISS')).toBe(true);
    expect(store.stats().entries).toBe(0);
    await cache.getOrFetch('k', undefined, 'use', later(), fetch);
    expect(fetch.runs).toBe(2);
    expect(cache.stats()).toMatchObject({ stored: 0, coalesced: 999, inFlight: 0 });
  });

  it('shares a failure with every waiter, stores nothing, and fetches again on the next call', async () => {
    const { cache, store } = memoryCache();
    const boom = new GatewayError('UNAVAILABLE', 'backend down');
    const failing = fetcher(response(3), 20, boom);
    const results = await Promise.allSettled(Array.from({ length: 100 }, () => cache.getOrFetch('k', POLICY, 'use', later(), failing)));
    expect(failing.runs).toBe(1);
    expect(results.every((r) => r.status === 'rejected' && r.reason === boom)).toBe(true);
    expect(store.stats().entries).toBe(0);
    expect(cache.stats()).toMatchObject({ stored: 0, inFlight: 0 });

    const ok = fetcher(response(3));
    const next = await cache.getOrFetch('k', POLICY, 'use', later(), ok);
    expect(ok.runs).toBe(1);
    expect(next.outcome).toBe('MISS');
    expect((await cache.getOrFetch('k', POLICY, 'use', later(), ok)).outcome).toBe('HIT');
  });

  it('does not store an entry larger than maxEntryBytes', async () => {
    const { cache, store } = memoryCache();
    const fetch = fetcher(response(4, 10_000), 1);
    await cache.getOrFetch('k', { ttlMs: 60_000, maxEntryBytes: 5_000 }, 'use', later(), fetch);
    await cache.getOrFetch('k', { ttlMs: 60_000, maxEntryBytes: 5_000 }, 'use', later(), fetch);
    expect(fetch.runs).toBe(2);
    expect(store.stats().entries).toBe(0);
    expect(cache.stats()).toMatchObject({ tooLarge: 2, stored: 0 });
    // Within the bound it is stored.
    await cache.getOrFetch('k', { ttlMs: 60_000, maxEntryBytes: 20_000 }, 'use', later(), fetch);
    expect(store.stats().entries).toBe(1);
  });

  it('no-store never stores (nor looks up); no-cache skips the lookup but stores', async () => {
    const { cache, store } = memoryCache();
    await store.set('k', encodeCachedResponse(response(5)), 60_000);

    const fresh = fetcher(response(6), 1);
    const noStore = await cache.getOrFetch('k', POLICY, 'no-store', later(), fresh);
    expect(noStore).toMatchObject({ outcome: 'MISS' });
    expect(noStore.response.id).toBe('r6');
    expect((await cache.getOrFetch('k', POLICY, 'use', later(), fresh)).response.id).toBe('r5');

    const other = fetcher(response(7), 1);
    await cache.getOrFetch('n', POLICY, 'no-store', later(), other);
    expect(await store.get('n')).toBeUndefined();

    const noCache = await cache.getOrFetch('k', POLICY, 'no-cache', later(), fetcher(response(8), 1));
    expect(noCache).toMatchObject({ outcome: 'MISS', response: { id: 'r8' } });
    // ... and its fresh answer replaced the old entry.
    const hit = await cache.getOrFetch('k', POLICY, 'use', later(), fresh);
    expect(hit).toMatchObject({ outcome: 'HIT', response: { id: 'r8' } });
  });

  it('no-cache and no-store calls join a fetch in flight; the result is stored if any participant stores', async () => {
    const { cache, store } = memoryCache();
    const fetch = fetcher(response(9), 30);
    const calls = [
      cache.getOrFetch('k', POLICY, 'no-store', later(), fetch),
      cache.getOrFetch('k', POLICY, 'no-cache', later(), fetch),
      cache.getOrFetch('k', undefined, 'use', later(), fetch),
      cache.getOrFetch('k', POLICY, 'use', later(), fetch),
    ];
    const answers = await Promise.all(calls);
    expect(fetch.runs).toBe(1);
    expect(answers.every((a) => a.outcome === 'MISS')).toBe(true);
    expect(store.stats().entries).toBe(1);

    // Only no-store participants: nothing stored.
    const only = fetcher(response(10), 30);
    await Promise.all([cache.getOrFetch('m', POLICY, 'no-store', later(), only), cache.getOrFetch('m', undefined, 'use', later(), only)]);
    expect(only.runs).toBe(1);
    expect(await store.get('m')).toBeUndefined();
  });

  it("a follower's deadline ends its own wait only; the fetch goes on, answers the others, and is stored", async () => {
    const { cache } = memoryCache();
    const fetch = fetcher(response(11), 200);
    const leader = cache.getOrFetch('k', POLICY, 'use', later(), fetch);
    const start = Date.now();
    const follower = cache.getOrFetch('k', POLICY, 'use', { deadline: Date.now() + 30 }, fetch);
    const err = await follower.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe('DEADLINE_EXCEEDED');
    expect(Date.now() - start).toBeLessThan(150);
    const patient = cache.getOrFetch('k', POLICY, 'use', later(), fetch);
    expect((await leader).outcome).toBe('MISS');
    expect((await patient).outcome).toBe('MISS');
    expect(fetch.runs).toBe(1);
    expect((await cache.getOrFetch('k', POLICY, 'use', later(), fetch)).outcome).toBe('HIT');

    // A deadline already past: refused at once, nothing fetched.
    const none = fetcher(response(12));
    await expect(cache.getOrFetch('z', POLICY, 'use', { deadline: Date.now() - 1 }, none)).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    expect(none.runs).toBe(0);
  });

  it("a follower's abort ends its own wait only: signal.reason when a GatewayError, else CANCELLED", async () => {
    const { cache } = memoryCache();
    const fetch = fetcher(response(13), 150);
    const leader = cache.getOrFetch('k', POLICY, 'use', later(), fetch);
    const a = new AbortController();
    const b = new AbortController();
    const f1 = cache.getOrFetch('k', POLICY, 'use', { ...later(), signal: a.signal }, fetch);
    const f2 = cache.getOrFetch('k', POLICY, 'no-cache', { ...later(), signal: b.signal }, fetch);
    await sleep(10);
    const mine = new GatewayError('UNAVAILABLE', 'draining');
    a.abort(mine);
    b.abort();
    await expect(f1).rejects.toBe(mine);
    await expect(f2).rejects.toMatchObject({ code: 'CANCELLED' });
    expect((await leader).response.id).toBe('r13');
    expect(fetch.runs).toBe(1);

    const c = new AbortController();
    c.abort();
    await expect(cache.getOrFetch('k2', POLICY, 'use', { ...later(), signal: c.signal }, fetch)).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(fetch.runs).toBe(1);
  });

  it('treats a corrupt entry as a miss, counts it and overwrites it', async () => {
    const { cache, store } = memoryCache();
    await store.set('k', Buffer.from('garbage'), 60_000);
    const fetch = fetcher(response(14), 1);
    expect((await cache.getOrFetch('k', POLICY, 'use', later(), fetch)).outcome).toBe('MISS');
    expect(cache.stats().decodeErrors).toBe(1);
    expect((await cache.getOrFetch('k', POLICY, 'use', later(), fetch)).outcome).toBe('HIT');
  });

  it('keeps keys apart', async () => {
    const { cache } = memoryCache();
    const a = await cache.getOrFetch('a', POLICY, 'use', later(), fetcher(response(15), 1));
    const b = await cache.getOrFetch('b', POLICY, 'use', later(), fetcher(response(16), 1));
    expect(a.response.id).toBe('r15');
    expect(b.response.id).toBe('r16');
  });
});

describe('ResponseCache over Redis', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis.stop();
  });

  it('answers every call from fetch while Redis is down, and caches again once it is back', async () => {
    const store = new RedisStore({ url: redis.url, keyPrefix: `t-${randomBytes(4).toString('hex')}`, commandTimeoutMs: 50, logger: silentLogger });
    const cache = new ResponseCache(store, silentLogger);
    try {
      const deadline = Date.now() + 20_000;
      for (let i = 0; i < 50 && !store.stats().available; i++) await sleep(50);
      const fetch = fetcher(response(20), 20);
      const first = await Promise.all(Array.from({ length: 200 }, () => cache.getOrFetch('k', POLICY, 'use', { deadline }, fetch)));
      expect(fetch.runs).toBe(1);
      expect(first.every((a) => a.outcome === 'MISS')).toBe(true);
      // The write is not awaited by the answer: wait for it to land.
      for (let i = 0; i < 50 && (await store.get('k')) === undefined; i++) await sleep(10);
      expect((await cache.getOrFetch('k', POLICY, 'use', { deadline }, fetch)).outcome).toBe('HIT');

      // Redis dies mid-way, with calls in flight.
      const slow = fetcher(response(21), 100);
      const inFlight = Array.from({ length: 100 }, () => cache.getOrFetch('j', POLICY, 'use', { deadline }, slow));
      await redis.kill();
      const started = Date.now();
      const during = await Promise.all([
        ...inFlight,
        ...Array.from({ length: 100 }, () => cache.getOrFetch('k', POLICY, 'use', { deadline }, fetcher(response(22), 5))),
        ...Array.from({ length: 100 }, (_, i) => cache.getOrFetch(`x${i % 10}`, POLICY, 'use', { deadline }, fetcher(response(23), 5))),
      ]);
      expect(Date.now() - started).toBeLessThan(1_000);
      expect(during.every((a) => a.outcome === 'MISS')).toBe(true);
      expect(slow.runs).toBe(1);
      expect(cache.stats().store.available).toBe(false);
      expect(cache.stats().store.errors).toBeGreaterThan(0);

      await redis.restart();
      const again = fetcher(response(24), 1);
      let outcome = 'MISS';
      for (let i = 0; i < 200 && outcome !== 'HIT'; i++) {
        outcome = (await cache.getOrFetch('back', POLICY, 'use', { deadline }, again)).outcome;
        if (outcome !== 'HIT') await sleep(50);
      }
      expect(outcome).toBe('HIT');
      expect(cache.stats().store.available).toBe(true);
    } finally {
      await cache.close();
    }
  });
});
