import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStore, RedisStore } from '../../src/cache/store.js';
import { createLogger } from '../../src/observability/logger.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';

/** A logger whose lines land in `lines` (parsed). */
function capturingLogger(): { logger: ReturnType<typeof createLogger>; lines: { level: string; msg: string; reason?: string }[] } {
  const lines: { level: string; msg: string; reason?: string }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line));
      cb();
    },
  });
  return { logger: createLogger('info', sink), lines };
}

async function until(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await check()) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

async function timed<T>(p: Promise<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await p;
  return { value, ms: performance.now() - start };
}

describe('MemoryStore', () => {
  it('gets what was set, and misses what was not', async () => {
    const store = new MemoryStore(1 << 20);
    await store.set('a', Buffer.from('alpha'), 10_000);
    expect((await store.get('a'))?.toString()).toBe('alpha');
    expect(await store.get('b')).toBeUndefined();
    expect(store.stats()).toMatchObject({ kind: 'memory', available: true, entries: 1, errors: 0, timeouts: 0 });
  });

  it('stays within its byte bound, evicting the least recently used first', async () => {
    const store = new MemoryStore(10_000);
    for (let i = 0; i < 20; i++) await store.set(`k${i}`, Buffer.alloc(1_000, i), 60_000);
    const stats = store.stats();
    expect(stats.bytes).toBeLessThanOrEqual(10_000);
    expect(stats.entries).toBeLessThan(20);
    expect(stats.entries).toBeGreaterThan(5);
    // The oldest went, the newest stayed.
    expect(await store.get('k0')).toBeUndefined();
    expect((await store.get('k19'))?.[0]).toBe(19);

    // A read makes an entry recent: it outlives entries set before it.
    const survivors: string[] = [];
    for (let i = 0; i < 20; i++) if ((await store.get(`k${i}`)) !== undefined) survivors.push(`k${i}`);
    const oldest = survivors[0]!;
    await store.get(oldest);
    await store.set('new', Buffer.alloc(1_000), 60_000);
    expect(await store.get(oldest)).toBeDefined();
    expect(await store.get(survivors[1]!)).toBeUndefined();
  });

  it('does not keep an entry larger than the whole bound', async () => {
    const store = new MemoryStore(1_000);
    await store.set('big', Buffer.alloc(5_000), 60_000);
    expect(await store.get('big')).toBeUndefined();
    expect(store.stats().bytes).toBe(0);
  });

  it('expires each entry after its own ttl', async () => {
    const store = new MemoryStore(1 << 20);
    await store.set('short', Buffer.from('s'), 40);
    await store.set('long', Buffer.from('l'), 10_000);
    expect(await store.get('short')).toBeDefined();
    await sleep(80);
    expect(await store.get('short')).toBeUndefined();
    expect(await store.get('long')).toBeDefined();
  });
});

describe('RedisStore against a real redis', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis.stop();
  });

  it('sets and gets Buffers under the prefix, with a ttl, and survives an outage on its own', async () => {
    const { logger, lines } = capturingLogger();
    const prefix = `t-${randomBytes(4).toString('hex')}`;
    const store = new RedisStore({ url: redis.url, keyPrefix: prefix, commandTimeoutMs: 50, logger });
    try {
      await until(() => store.stats().available, 5_000, 'the store to connect');
      const value = randomBytes(4096);
      await store.set('k1', value, 60_000);
      expect((await store.get('k1'))?.equals(value)).toBe(true);
      expect(await store.get('missing')).toBeUndefined();

      // Stored under `${prefix}:cache:${key}` (checked through a second client).
      const { Redis } = await import('ioredis');
      const probe = new Redis(redis.url);
      try {
        expect((await probe.getBuffer(`${prefix}:cache:k1`))?.equals(value)).toBe(true);
        const pttl = await probe.pttl(`${prefix}:cache:k1`);
        expect(pttl).toBeGreaterThan(50_000);
        expect(pttl).toBeLessThanOrEqual(60_000);
      } finally {
        probe.disconnect();
      }

      await store.set('short', Buffer.from('x'), 50);
      expect(await store.get('short')).toBeDefined();
      await sleep(120);
      expect(await store.get('short')).toBeUndefined();
      expect(store.stats()).toMatchObject({ kind: 'redis', available: true, errors: 0, timeouts: 0 });

      // Redis dies: every call still answers at once, as a miss, and is counted.
      await redis.kill();
      for (let i = 0; i < 5; i++) {
        const got = await timed(store.get('k1'));
        expect(got.value).toBeUndefined();
        expect(got.ms).toBeLessThan(500);
        const put = await timed(store.set('k2', value, 60_000));
        expect(put.ms).toBeLessThan(500);
      }
      const down = store.stats();
      expect(down.available).toBe(false);
      expect(down.errors + down.timeouts).toBeGreaterThanOrEqual(10);
      const warns = lines.filter((l) => l.level === 'warn');
      expect(warns).toHaveLength(1);
      expect(warns[0]!.reason).toBeTruthy();

      // Back again: the store reconnects by itself (the restarted redis is empty) and logs it once.
      await redis.restart();
      await until(async () => {
        await store.set('k3', value, 60_000);
        return (await store.get('k3'))?.equals(value) === true;
      }, 10_000, 'the store to work again');
      expect(store.stats().available).toBe(true);
      await sleep(100);
      expect(lines.filter((l) => l.level === 'warn')).toHaveLength(1);
      expect(lines.filter((l) => l.level === 'info' && /back/.test(l.msg))).toHaveLength(1);
    } finally {
      await store.close();
    }
    // Closed: still never throws.
    expect(await store.get('k3')).toBeUndefined();
    await store.set('k4', Buffer.from('x'), 1_000);
  });

  it('bounds every command by commandTimeoutMs when redis hangs, counting timeouts', async () => {
    const proxy = await startFaultProxy(`127.0.0.1:${redis.port}`);
    const { logger } = capturingLogger();
    const store = new RedisStore({ url: `redis://${proxy.endpoint}`, keyPrefix: 'hang', commandTimeoutMs: 50, logger });
    try {
      await until(() => store.stats().available, 5_000, 'the store to connect');
      await store.set('k', Buffer.from('v'), 60_000);
      await proxy.setMode({ kind: 'hang' });
      const got = await timed(store.get('k'));
      expect(got.value).toBeUndefined();
      expect(got.ms).toBeLessThan(300);
      const put = await timed(store.set('k', Buffer.from('w'), 60_000));
      expect(put.ms).toBeLessThan(300);
      expect(store.stats().timeouts).toBe(2);
      await proxy.setMode({ kind: 'pass' });
      await until(async () => (await store.get('k')) !== undefined, 5_000, 'answers after the hang');
    } finally {
      await store.close();
      await proxy.close();
    }
  });

  it('answers misses quickly when redis is not there from the start', async () => {
    const { logger, lines } = capturingLogger();
    const store = new RedisStore({ url: 'redis://127.0.0.1:1', keyPrefix: 'none', commandTimeoutMs: 50, logger });
    try {
      const got = await timed(store.get('k'));
      expect(got.value).toBeUndefined();
      expect(got.ms).toBeLessThan(500);
      await store.set('k', Buffer.from('v'), 1_000);
      expect(store.stats()).toMatchObject({ available: false });
      expect(store.stats().errors).toBeGreaterThanOrEqual(2);
      await until(() => lines.some((l) => l.level === 'warn'), 2_000, 'the outage warning');
    } finally {
      await store.close();
    }
  });
});
