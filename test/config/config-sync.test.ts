import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { admin, inferVersion, liveText, nextResult, startLiveGateway, until, type LiveGateway } from '../helpers/live.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';

interface ConfigView {
  version: number;
  source: string;
  redis?: string;
  instances: { id: string; version: number; seen_at: string }[];
}

describe('config sync through Redis', () => {
  let triton: TritonReference;
  let redis: RedisServer;
  beforeAll(async () => {
    [triton, redis] = await Promise.all([startTritonReference(), startRedis()]);
  });
  afterAll(async () => {
    await Promise.all([triton.close(), redis.stop()]);
  });

  it('shares changes between instances, survives a Redis outage, and catches up after it', async () => {
    const prefix = `t-${randomBytes(4).toString('hex')}`;
    const extra = `redis: { url: "${redis.url}", key_prefix: "${prefix}", command_timeout_ms: 300 }`;
    const text = liveText(triton, { extra });
    const versionText = (v: '1' | '2', more = '') => liveText(triton, { extra, linearVersion: v, models: more });
    const started: LiveGateway[] = [];
    const start = async (id: string): Promise<LiveGateway> => {
      const gw = await startLiveGateway(text, { instanceId: id });
      started.push(gw);
      return gw;
    };
    const view = async (gw: LiveGateway): Promise<ConfigView> => (await admin(gw.pool, 'GET', '/admin/config')).json<ConfigView>();
    try {
      const a = await start('gw-a');
      const b = await start('gw-b');
      expect(a.gateway.live.current.version).toBe(1);
      expect(b.gateway.live.current.version).toBe(1);

      // A change PUT to A is live on B within a second.
      const put = await admin(a.pool, 'PUT', '/admin/config', versionText('1'));
      expect(put.status, put.text()).toBe(200);
      expect(put.json()).toMatchObject({ version: 2, diff: ['~ models.linear.version: 2 -> 1'] });
      const took = await until(async () => (await inferVersion(b.pool)).version === '1', 1_000, "B serving A's change");
      expect(took).toBeLessThan(1_000);
      expect(b.gateway.live.current).toMatchObject({ version: 2, source: 'redis', text: versionText('1') });

      // B lists both instances with the version each runs.
      await until(
        async () => {
          const v = await view(b);
          return v.instances.length === 2 && v.instances.every((i) => i.version === 2);
        },
        3_000,
        'both instances listed at version 2',
      );
      const listed = await view(b);
      expect(listed).toMatchObject({ version: 2, source: 'redis', redis: 'connected' });
      expect(listed.instances.map((i) => i.id)).toEqual(['gw-a', 'gw-b']);

      // An instance started later (from the older file text) takes the latest version.
      const c = await start('gw-c');
      expect(c.gateway.live.current).toMatchObject({ version: 2, source: 'redis' });
      expect(await inferVersion(c.pool)).toMatchObject({ status: 200, version: '1' });
      await until(async () => (await view(a)).instances.length === 3, 3_000, 'three instances listed');
      await c.close();
      started.pop();
      expect((await view(a)).instances.map((i) => i.id)).toEqual(['gw-a', 'gw-b']);

      // An invalid config in Redis (written by some other tool) is refused everywhere; everyone keeps serving.
      const tool = new Redis(redis.url);
      const refusedA = nextResult(a.gateway.live, (e) => !e.accepted);
      const refusedB = nextResult(b.gateway.live, (e) => !e.accepted);
      await tool.hset(`${prefix}:config`, 'version', '3', 'text', 'models: { x: { backend: nope } }\nbackends: {}\n');
      await tool.publish(`${prefix}:config`, '3');
      for (const refused of await Promise.all([refusedA, refusedB])) {
        expect(refused).toMatchObject({ accepted: false, source: 'redis' });
        expect(!refused.accepted && refused.problems.join('\n')).toMatch(/unknown backend 'nope'/);
      }
      await tool.quit();
      expect(a.gateway.live.current.version).toBe(2);
      expect(b.gateway.live.current.version).toBe(2);
      // The next change goes past the refused version.
      expect((await admin(b.pool, 'PUT', '/admin/config', versionText('2'))).json()).toMatchObject({ version: 4 });
      await until(async () => a.gateway.live.current.version === 4, 1_000, 'A at version 4');

      // Redis goes down: both keep serving, with no failed request, and a change on A applies on A.
      let stop = false;
      const failures: string[] = [];
      let served = 0;
      const loop = async (gw: LiveGateway): Promise<void> => {
        while (!stop) {
          const r = await inferVersion(gw.pool);
          if (r.status === 200) served++;
          else failures.push(`${r.status} ${r.body}`);
        }
      };
      const loops = [loop(a), loop(a), loop(b), loop(b)];
      await redis.kill();
      await until(async () => (await view(a)).redis === 'unavailable', 2_000, 'A sees Redis down');
      const local = await admin(a.pool, 'PUT', '/admin/config', versionText('1', '  simple2: { backend: triton-grpc, model: simple }'));
      expect(local.status, local.text()).toBe(200);
      expect(local.json()).toMatchObject({ version: 5 });
      expect(await inferVersion(a.pool)).toMatchObject({ version: '1' });
      expect(await inferVersion(b.pool)).toMatchObject({ version: '2' });
      expect((await view(b)).instances).toEqual([{ id: 'gw-b', version: 4, seen_at: expect.any(String) }]);
      // A while down: both serve on, B on its version.
      await new Promise((r) => setTimeout(r, 1_000));
      expect(b.gateway.live.current.version).toBe(4);
      expect(served).toBeGreaterThan(50);

      // Redis returns (empty: no persistence): A offers its newer version and B catches up.
      await redis.restart();
      const caughtUp = await until(async () => b.gateway.live.current.version === 5, 8_000, 'B catching up after the outage');
      expect(caughtUp).toBeLessThan(8_000);
      expect(await inferVersion(b.pool)).toMatchObject({ status: 200, version: '1' });
      stop = true;
      await Promise.all(loops);
      expect(failures).toEqual([]);
      await until(async () => {
        const v = await view(b);
        return v.redis === 'connected' && v.instances.length === 2 && v.instances.every((i) => i.version === 5);
      }, 5_000, 'both listed at version 5');
    } finally {
      for (const gw of started) await gw.close();
    }
  });

  it('starts on its file when Redis is down, and shares it once Redis is up', async () => {
    const down = await startRedis();
    await down.kill();
    const prefix = `t-${randomBytes(4).toString('hex')}`;
    const text = liveText(triton, { extra: `redis: { url: "${down.url}", key_prefix: "${prefix}" }` });
    const t0 = Date.now();
    const gw = await startLiveGateway(text, { instanceId: 'lonely' });
    try {
      expect(Date.now() - t0).toBeLessThan(3_000);
      expect(await inferVersion(gw.pool)).toMatchObject({ status: 200, version: '2' });
      expect((await admin(gw.pool, 'GET', '/admin/config')).json()).toMatchObject({ version: 1, redis: 'unavailable' });
      await down.restart();
      const tool = new Redis(down.url);
      try {
        await until(async () => (await tool.hget(`${prefix}:config`, 'version')) === '1', 5_000, 'file config shared');
        expect(await tool.hget(`${prefix}:config`, 'text')).toBe(text);
      } finally {
        await tool.quit();
      }
    } finally {
      await gw.close();
      await down.stop();
    }
  });
});
