import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { Singleflight } from '../../src/cache/singleflight.js';

describe('Singleflight', () => {
  it('runs fn once for 1,000 concurrent calls with one key; one leader', async () => {
    const sf = new Singleflight<number>();
    let runs = 0;
    const fn = async (): Promise<number> => {
      runs++;
      await sleep(20);
      return 42;
    };
    const calls = Array.from({ length: 1_000 }, () => sf.run('k', fn));
    expect(sf.size).toBe(1);
    expect(calls.filter((c) => c.leader)).toHaveLength(1);
    expect(calls[0]!.leader).toBe(true);
    const values = await Promise.all(calls.map((c) => c.promise));
    expect(values.every((v) => v === 42)).toBe(true);
    expect(runs).toBe(1);
    expect(sf.size).toBe(0);
  });

  it('keeps different keys apart', async () => {
    const sf = new Singleflight<string>();
    const a = sf.run('a', async () => 'A');
    const b = sf.run('b', async () => 'B');
    expect(a.leader && b.leader).toBe(true);
    expect(sf.size).toBe(2);
    expect(await a.promise).toBe('A');
    expect(await b.promise).toBe('B');
    expect(sf.size).toBe(0);
  });

  it('shares a failure (also a synchronous throw), forgets it, and runs again on the next call', async () => {
    const sf = new Singleflight<number>();
    let runs = 0;
    const failing = async (): Promise<number> => {
      runs++;
      await sleep(5);
      throw new Error('boom');
    };
    const calls = Array.from({ length: 10 }, () => sf.run('k', failing));
    const results = await Promise.allSettled(calls.map((c) => c.promise));
    expect(results.every((r) => r.status === 'rejected' && (r.reason as Error).message === 'boom')).toBe(true);
    expect(runs).toBe(1);
    expect(sf.size).toBe(0);

    const sync = sf.run('k', () => {
      throw new Error('sync');
    });
    await expect(sync.promise).rejects.toThrow('sync');
    expect(sf.size).toBe(0);

    const next = sf.run('k', async () => 7);
    expect(next.leader).toBe(true);
    expect(await next.promise).toBe(7);
  });

  it('holds only keys in flight', async () => {
    const sf = new Singleflight<number>();
    for (let i = 0; i < 100; i++) await sf.run(`k${i}`, async () => i).promise;
    expect(sf.size).toBe(0);
  });
});
