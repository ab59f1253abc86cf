import { once } from 'node:events';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { inferVersion, liveText, startLiveGateway, type LiveGateway } from '../helpers/live.js';

/** A TCP pass-through that counts the connections made through it: shows whether a pool was kept or rebuilt. */
async function countingProxy(target: string): Promise<{ endpoint: string; connections: () => number; close(): Promise<void> }> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  let count = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    count++;
    const upstream = createConnection(port, host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port: own } = server.address() as { port: number };
  return {
    endpoint: `127.0.0.1:${own}`,
    connections: () => count,
    async close() {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

describe('LiveConfig', () => {
  let triton: TritonReference;
  beforeAll(async () => {
    triton = await startTritonReference();
  });
  afterAll(async () => {
    await triton.close();
  });

  it('applies a valid change with a new version and a diff by key path', async () => {
    const before = liveText(triton, { backends: '  old: { kind: triton, protocol: grpc, endpoints: ["127.0.0.1:1"] }', models: '  legacy: { backend: old, model: linear }' });
    const gw = await startLiveGateway(before);
    try {
      const { live } = gw.gateway;
      expect(live.current).toMatchObject({ version: 1, source: 'startup', text: before });
      expect(await inferVersion(gw.pool)).toMatchObject({ status: 200, version: '2' });

      const after = liveText(triton, { linearVersion: '1', linearBackend: 'triton-rest', models: '  fraud: { backend: triton-rest, model: simple }' });
      const result = await live.propose(after, 'admin');
      expect(result.accepted).toBe(true);
      if (!result.accepted) return;
      expect(result.version).toBe(2);
      expect(result.unchanged).toBe(false);
      expect(result.diff).toEqual(
        expect.arrayContaining([
          '- backends.old',
          '- models.legacy',
          '+ models.fraud',
          '~ models.linear.backend: triton-grpc -> triton-rest',
          '~ models.linear.version: 2 -> 1',
        ]),
      );
      expect(result.diff).toHaveLength(5);
      expect(result.restart).toEqual([]);
      expect(live.current).toMatchObject({ version: 2, source: 'admin', text: after });
      expect(await inferVersion(gw.pool)).toMatchObject({ status: 200, version: '1' });
      expect((await inferVersion(gw.pool, 'legacy')).status).toBe(404);

      // The same text again is no change: no new version.
      const again = await live.propose(after, 'admin');
      expect(again).toMatchObject({ accepted: true, version: 2, unchanged: true, diff: [] });
    } finally {
      await gw.close();
    }
  });

  it('rejects an invalid change with every problem, and the running config keeps serving', async () => {
    const text = liveText(triton);
    const gw = await startLiveGateway(text);
    try {
      const { live } = gw.gateway;
      const clusterBefore = gw.gateway.backends.get('triton-grpc');
      const invalid = `${text.replace('request_timeout_ms: 5000', 'request_timeout_ms: -5')}`
        .replace('simple: { backend: triton-grpc }', 'simple: { backend: trtion-grpc }')
        .replace('kind: triton, protocol: rest', 'kind: triton, protocol: rest, timout_ms: 5');
      const result = await live.propose(invalid, 'file');
      expect(result.accepted).toBe(false);
      if (result.accepted) return;
      const problems = result.problems.join('\n');
      expect(problems).toMatch(/server\.request_timeout_ms/);
      expect(problems).toMatch(/models\.simple.*trtion-grpc/);
      expect(problems).toMatch(/backends\.triton-rest.*timout_ms/);
      expect(result.problems.length).toBeGreaterThanOrEqual(3);

      // Broken YAML is refused too.
      const yaml = await live.propose('models: [unclosed', 'admin');
      expect(yaml.accepted).toBe(false);

      expect(live.current).toMatchObject({ version: 1, text });
      expect(gw.gateway.backends.get('triton-grpc')).toBe(clusterBefore);
      expect(await inferVersion(gw.pool)).toMatchObject({ status: 200, version: '2' });
      expect(await inferVersion(gw.pool, 'simple')).toMatchObject({ status: 400 }); // reached the model: wrong inputs for 'simple'
    } finally {
      await gw.close();
    }
  });

  it('keeps the same BackendCluster (and its connections) for unchanged backends, and rebuilds changed ones', async () => {
    const proxy = await countingProxy(triton.httpEndpoint);
    const restViaProxy = (timeout: number) =>
      `  proxied: { kind: triton, protocol: rest, endpoints: ["${proxy.endpoint}"], timeout_ms: ${timeout}, max_connections: 1 }`;
    const gw = await startLiveGateway(liveText(triton, { backends: restViaProxy(5000), models: '  viaproxy: { backend: proxied, model: linear }' }));
    try {
      const { live } = gw.gateway;
      const before = new Map(gw.gateway.backends);
      expect((await inferVersion(gw.pool, 'viaproxy')).status).toBe(200);
      expect(proxy.connections()).toBe(1);

      // Only models change: every cluster is the same object, and the proxied pool's connection is reused.
      const r1 = await live.propose(liveText(triton, { linearVersion: '1', backends: restViaProxy(5000), models: '  viaproxy: { backend: proxied, model: linear, version: "1" }' }), 'admin');
      expect(r1.accepted).toBe(true);
      for (const [name, cluster] of before) expect(gw.gateway.backends.get(name), name).toBe(cluster);
      expect(await inferVersion(gw.pool, 'viaproxy')).toMatchObject({ status: 200, version: '1' });
      expect(proxy.connections()).toBe(1);

      // A changed backend gets a new cluster (and a new connection); the others stay.
      const r2 = await live.propose(liveText(triton, { linearVersion: '1', backends: restViaProxy(4000), models: '  viaproxy: { backend: proxied, model: linear, version: "1" }' }), 'admin');
      expect(r2.accepted && r2.diff).toEqual(['~ backends.proxied.timeout_ms: 5000 -> 4000']);
      expect(gw.gateway.backends.get('proxied')).not.toBe(before.get('proxied'));
      expect(gw.gateway.backends.get('triton-grpc')).toBe(before.get('triton-grpc'));
      expect(gw.gateway.backends.get('triton-rest')).toBe(before.get('triton-rest'));
      expect((await inferVersion(gw.pool, 'viaproxy')).status).toBe(200);
      expect(proxy.connections()).toBe(2);
    } finally {
      await gw.close();
      await proxy.close();
    }
  });

  it('closes a removed backend only after the requests on it have ended', async () => {
    const slow = await startTritonReference({ latencyMs: 400 });
    const slowBackend = `  slow: { kind: triton, protocol: rest, endpoints: ["${slow.httpEndpoint}"] }`;
    const gw = await startLiveGateway(liveText(triton, { backends: slowBackend, models: '  slowmodel: { backend: slow, model: linear }' }), { retireAfterMs: 700 });
    try {
      const { live } = gw.gateway;
      const cluster = gw.gateway.backends.get('slow')!;
      const inFlight = inferVersion(gw.pool, 'slowmodel');
      await new Promise((r) => setTimeout(r, 100));
      const result = await live.propose(liveText(triton), 'admin');
      expect(result.accepted && result.diff).toEqual(['- backends.slow', '- models.slowmodel']);
      expect(gw.gateway.backends.has('slow')).toBe(false);

      // The request that started on the old config finishes on it.
      expect(await inferVersion(gw.pool, 'slowmodel')).toMatchObject({ status: 404 });
      expect(await inFlight).toMatchObject({ status: 200, version: '2' });
      expect(cluster.available).toBe(true);

      // A call still counted in flight holds the retired cluster open past the grace period...
      const lease = cluster.acquire();
      await new Promise((r) => setTimeout(r, 900));
      expect(cluster.available).toBe(true);
      // ...and it closes once that call ends.
      lease.release();
      const start = Date.now();
      while (cluster.available && Date.now() - start < 2000) await new Promise((r) => setTimeout(r, 20));
      expect(cluster.available).toBe(false);
      expect(() => cluster.pick()).toThrow(/shut down/);
    } finally {
      await gw.close();
      await slow.close();
    }
  });

  it('reports server changes as needing a restart and keeps running on the old values', async () => {
    const text = liveText(triton);
    const gw = await startLiveGateway(text);
    try {
      const { live } = gw.gateway;
      const changed = text
        .replace('request_timeout_ms: 5000', 'request_timeout_ms: 7000')
        .replace('http: { host: 127.0.0.1, port: 0 }', 'http: { host: 127.0.0.1, port: 1 }')
        .replace('max_body_bytes: 1048576', 'max_body_bytes: 4096');
      const result = await live.propose(`${changed}redis: { url: "redis://127.0.0.1:1" }\n`, 'admin');
      expect(result.accepted).toBe(true);
      if (!result.accepted) return;
      expect(result.version).toBe(2);
      expect([...result.restart].sort()).toEqual([
        '+ redis (needs a restart)',
        '~ server.http.port: 0 -> 1 (needs a restart)',
        '~ server.max_body_bytes: 1048576 -> 4096 (needs a restart)',
        '~ server.request_timeout_ms: 5000 -> 7000 (needs a restart)',
      ]);
      expect(live.current.restartPending).toEqual(result.restart);
      // What runs keeps the startup values.
      expect(live.current.config.server.request_timeout_ms).toBe(5000);
      expect(live.current.config.server.http.port).toBe(0);
      expect(live.current.config.redis).toBeUndefined();
      expect(await inferVersion(gw.pool)).toMatchObject({ status: 200 });

      // The log level is the one server key that applies live, and is not flagged.
      const level = await live.propose(text.replace('log_level: silent', 'log_level: fatal'), 'admin');
      expect(level.accepted && level.diff).toEqual(['~ server.log_level: silent -> fatal']);
      expect(live.current.config.server.log_level).toBe('fatal');
      expect(live.current.restartPending).toEqual([]);
      await live.propose(text, 'admin');
    } finally {
      await gw.close();
    }
  });
});
