import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import type { BackendCluster } from '../../src/backends/cluster.js';
import { createBackendCluster } from '../../src/backends/registry.js';
import { validateConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/schema.js';
import { GatewayError } from '../../src/core/errors.js';
import { startGateway } from '../../src/gateway.js';
import { createLogger, silentLogger } from '../../src/observability/logger.js';
import { postJson } from '../helpers/http.js';
import { InferenceService } from '../../src/routing/inference-service.js';
import { ModelHealthMonitor } from '../../src/routing/model-health.js';
import { ModelRouter, type ModelRoute } from '../../src/routing/model-router.js';
import { withDefaultResilience } from '../../src/resilience/resilient-backend.js';

let triton: TritonReference;
let clusters: Map<string, BackendCluster>;
let router: ModelRouter;
let monitor: ModelHealthMonitor;
let service: InferenceService;
let routes: ModelRoute[];
let config: GatewayConfig;

beforeAll(async () => {
  triton = await startTritonReference();
  config = validateConfig({
    backends: {
      // Two endpoints, one of them dead: a model is ready while any endpoint serves it.
      t: { kind: 'triton', protocol: 'rest', endpoints: [triton.httpEndpoint, '127.0.0.1:1'], health_check: { interval_ms: 0, unhealthy_after: 2 } },
      gone: { kind: 'triton', protocol: 'grpc', endpoints: ['127.0.0.1:1'], health_check: { interval_ms: 0, timeout_ms: 500 } },
    },
    models: { linear: { backend: 't' }, unready: { backend: 't' }, lost: { backend: 'gone', model: 'linear' } },
  });
  clusters = new Map(Object.entries(config.backends).map(([name, b]) => [name, createBackendCluster(name, b, 1 << 20)]));
  router = new ModelRouter(config, withDefaultResilience(clusters, silentLogger));
  routes = [...router.list()];
  monitor = new ModelHealthMonitor(routes, silentLogger);
  service = new InferenceService(router, monitor);
});
afterAll(async () => {
  monitor?.stop();
  await Promise.all([...(clusters?.values() ?? [])].map((c) => c.close()));
  await triton?.close();
});

const route = (name: string) => routes.find((r) => r.name === name)!;
const ctx = () => ({ deadline: Date.now() + 2000 });

describe('ModelHealthMonitor', () => {
  it('knows which models are ready after a sweep', async () => {
    await monitor.sweep('t', [route('linear'), route('unready')]);
    await monitor.sweep('gone', [route('lost')]);
    expect(monitor.get(route('linear'))).toMatchObject({ ready: true, reason: '', failures: 0 });
    expect(monitor.get(route('unready'))).toMatchObject({ ready: false, failures: 1 });
    expect(monitor.get(route('unready'))!.reason).toMatch(/not ready/);
    expect(monitor.get(route('lost'))!.reason).toMatch(/unreachable/);
  });

  it('a request to a model known unready fails fast, without a backend call', async () => {
    const before = triton.stats.inferCalls;
    const err = await service
      .infer({ model: 'unready', version: '', inputs: [] }, ctx())
      .then(() => undefined, (e: unknown) => e as GatewayError);
    expect(err?.code).toBe('UNAVAILABLE');
    expect(err?.message).toMatch(/model 'unready' is not ready on backend 't' \(checked \d+ ms ago\)/);
    expect(triton.stats.inferCalls).toBe(before);
  });

  it('the model index answers from the last checks', async () => {
    const index = await service.modelIndex(false, ctx());
    expect(index.map((e) => [e.name, e.state])).toEqual([
      ['linear', 'READY'],
      ['unready', 'UNAVAILABLE'],
      ['lost', 'UNAVAILABLE'],
    ]);
  });

  it('a ready model turns unready only after `unhealthy_after` failed checks, and ready after one success', async () => {
    const flaky = await startTritonReference();
    const port = flaky.httpPort;
    const config = validateConfig({
      backends: { f: { kind: 'triton', protocol: 'rest', endpoints: [flaky.httpEndpoint], health_check: { interval_ms: 0, timeout_ms: 500, unhealthy_after: 2 } } },
      models: { linear: { backend: 'f' } },
    });
    const cluster = createBackendCluster('f', config.backends.f!, 1 << 20);
    const own = new ModelRouter(config, withDefaultResilience(new Map([['f', cluster]]), silentLogger));
    const [linear] = [...own.list()];
    const watch = new ModelHealthMonitor([linear!], silentLogger);
    let server: Awaited<ReturnType<typeof startTritonReference>> | undefined;
    try {
      await watch.sweep('f', [linear!]);
      expect(watch.get(linear!)).toMatchObject({ ready: true, failures: 0 });
      await flaky.close();
      await watch.sweep('f', [linear!]);
      expect(watch.get(linear!)).toMatchObject({ ready: true, failures: 1 });
      await watch.sweep('f', [linear!]);
      expect(watch.get(linear!)).toMatchObject({ ready: false, failures: 2 });
      expect(watch.get(linear!)!.reason).toMatch(/unreachable/);
      server = await startTritonReference({ httpPort: port });
      await watch.sweep('f', [linear!]);
      expect(watch.get(linear!)).toMatchObject({ ready: true, failures: 0, reason: '' });
    } finally {
      watch.stop();
      await cluster.close();
      await server?.close();
    }
  });

  it('a new monitor over a rebuilt router inherits what the old one knew about the same clusters', async () => {
    await monitor.sweep('t', [route('linear'), route('unready')]);
    // A config swap rebuilds every route object over the same (reused) clusters.
    const rebuilt = [...new ModelRouter(config, withDefaultResilience(clusters, silentLogger)).list()];
    const next = new ModelHealthMonitor(rebuilt, silentLogger);
    expect(next.get(rebuilt.find((r) => r.name === 'unready')!)).toBeUndefined();
    next.inheritFrom(monitor);
    expect(next.get(rebuilt.find((r) => r.name === 'unready')!)).toMatchObject({ ready: false });
    expect(next.get(rebuilt.find((r) => r.name === 'linear')!)).toMatchObject({ ready: true });
    // A cluster that was replaced (another object) inherits nothing.
    const replaced = new Map(clusters);
    replaced.set('t', createBackendCluster('t', config.backends.t!, 1 << 20));
    const other = [...new ModelRouter(config, withDefaultResilience(replaced, silentLogger)).list()];
    const fresh = new ModelHealthMonitor(other, silentLogger);
    fresh.inheritFrom(monitor);
    expect(fresh.get(other.find((r) => r.name === 'unready')!)).toBeUndefined();
    await replaced.get('t')!.close();
  });

  it('start() checks right away and on its interval; stop() ends the checks', async () => {
    const config = validateConfig({
      backends: { t: { kind: 'triton', protocol: 'grpc', endpoints: [triton.grpcEndpoint], health_check: { interval_ms: 50 } } },
      models: { linear: { backend: 't' } },
    });
    const cluster = createBackendCluster('t', config.backends.t!, 1 << 20);
    const [linear] = [...new ModelRouter(config, withDefaultResilience(new Map([['t', cluster]]), silentLogger)).list()];
    const watch = new ModelHealthMonitor([linear!], silentLogger);
    try {
      watch.start();
      await expect.poll(() => watch.get(linear!)?.ready, { timeout: 2000 }).toBe(true);
      const first = watch.get(linear!)!.checkedAt;
      await expect.poll(() => watch.get(linear!)!.checkedAt, { timeout: 2000 }).toBeGreaterThan(first);
      watch.stop();
      const last = watch.get(linear!)!.checkedAt;
      await new Promise((r) => setTimeout(r, 200));
      expect(watch.get(linear!)!.checkedAt).toBe(last);
    } finally {
      watch.stop();
      await cluster.close();
    }
  });
});

/** A logger whose JSON lines land in `lines`, to check what the monitor reports. */
function capturingLogger(): { logger: ReturnType<typeof createLogger>; lines: { msg: string; endpoint?: string; reason?: string }[] } {
  const lines: { msg: string; endpoint?: string; reason?: string }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: createLogger('info', sink), lines };
}

/** Builds one backend `b` with model `linear` from a validated config, and its route. */
function single(endpoints: string[], unhealthyAfter = 2) {
  const config = validateConfig({
    backends: { b: { kind: 'triton', protocol: 'rest', endpoints, health_check: { interval_ms: 0, timeout_ms: 500, unhealthy_after: unhealthyAfter } } },
    models: { linear: { backend: 'b' } },
  });
  const cluster = createBackendCluster('b', config.backends.b!, 1 << 20);
  const [linear] = [...new ModelRouter(config, withDefaultResilience(new Map([['b', cluster]]), silentLogger)).list()];
  return { cluster, route: linear! };
}

describe('endpoint ejection from the background checks', () => {
  it('a killed endpoint is ejected after `unhealthy_after` failed sweeps, and restored on its first answer', async () => {
    const live = await startTritonReference();
    let victim = await startTritonReference();
    const port = victim.httpPort;
    const { cluster, route: linear } = single([live.httpEndpoint, victim.httpEndpoint], 2);
    const { logger, lines } = capturingLogger();
    const watch = new ModelHealthMonitor([linear], logger);
    try {
      await watch.sweep('b', [linear]);
      expect(cluster.endpointStates().map((e) => e.ejected)).toEqual([false, false]);

      await victim.close();
      await watch.sweep('b', [linear]);
      expect(cluster.isEjected(1)).toBe(false); // one failed sweep is not enough
      await watch.sweep('b', [linear]);
      const state = cluster.endpointStates()[1]!;
      expect(state).toMatchObject({ address: victim.httpEndpoint, ejected: true });
      expect(state.reason).toMatch(/^health: unreachable in 2 checks in a row: .*unreachable/);
      expect(lines.filter((l) => l.msg === 'endpoint ejected')).toMatchObject([{ endpoint: victim.httpEndpoint }]);
      // The model is still ready: the live endpoint serves it.
      expect(watch.get(linear)).toMatchObject({ ready: true, failures: 0 });
      // Requests now reach only the live endpoint.
      for (let i = 0; i < 20; i++) expect(cluster.pick()).toBe(cluster.endpoints[0]);

      // Still down: stays ejected, not ejected twice.
      await watch.sweep('b', [linear]);
      expect(lines.filter((l) => l.msg === 'endpoint ejected')).toHaveLength(1);

      victim = await startTritonReference({ httpPort: port });
      await watch.sweep('b', [linear]);
      expect(cluster.endpointStates()[1]).toMatchObject({ ejected: false, reason: '' });
      expect(lines.filter((l) => l.msg === 'endpoint restored')).toMatchObject([{ endpoint: victim.httpEndpoint }]);
    } finally {
      watch.stop();
      await cluster.close();
      await Promise.all([live.close(), victim.close()]);
    }
  });

  it('health checks do not lift an ejection another source holds', async () => {
    const { cluster, route: linear } = single([triton.httpEndpoint]);
    const watch = new ModelHealthMonitor([linear], silentLogger);
    try {
      cluster.eject(0, 'tripped', 'breaker');
      await watch.sweep('b', [linear]);
      expect(cluster.endpointStates()[0]).toMatchObject({ ejected: true, reason: 'breaker: tripped' });
    } finally {
      await cluster.close();
    }
  });

  it('a model not ready on one endpoint avoids that endpoint for that model only', async () => {
    // An endpoint that is up but reports `linear` not ready (Triton answers 400), until told otherwise.
    let readyThere = false;
    const server = http.createServer((req, res) => {
      res.statusCode = req.url === '/v2/models/linear/ready' && readyThere ? 200 : 400;
      res.end(JSON.stringify({ error: 'model not ready' }));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const partial = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    const { cluster, route: linear } = single([triton.httpEndpoint, partial]);
    const watch = new ModelHealthMonitor([linear], silentLogger);
    try {
      await watch.sweep('b', [linear]);
      const health = watch.get(linear)!;
      expect(health).toMatchObject({ ready: true });
      expect([...health.unreadyEndpoints]).toEqual([1]);
      expect(cluster.isEjected(1)).toBe(false); // it answers: other models may still use it
      for (let i = 0; i < 20; i++) expect(cluster.pick(undefined, health.unreadyEndpoints)).toBe(cluster.endpoints[0]);

      readyThere = true;
      await watch.sweep('b', [linear]);
      expect(watch.get(linear)!.unreadyEndpoints.size).toBe(0);
    } finally {
      watch.stop();
      await cluster.close();
      server.closeAllConnections();
      server.close();
    }
  });

  it('through the gateway: one dead endpoint of two, ejected, then every request answered by the live one', async () => {
    const live = await startTritonReference();
    const dead = await startTritonReference();
    await dead.close(); // its port now refuses connections
    const config = validateConfig({
      auth: { enabled: false },
      server: { http: { host: '127.0.0.1', port: 0 }, grpc: { host: '127.0.0.1', port: 0 }, log_level: 'silent' },
      backends: {
        t: {
          kind: 'triton',
          protocol: 'rest',
          endpoints: [live.httpEndpoint, dead.httpEndpoint],
          // Round robin would send every other request to the dead endpoint if it were not ejected.
          load_balancing: { policy: 'round_robin' },
          health_check: { interval_ms: 50, timeout_ms: 500, unhealthy_after: 2 },
        },
      },
      models: { linear: { backend: 't' } },
    });
    const gateway = await startGateway(config, silentLogger);
    const pool = new Pool(`http://127.0.0.1:${gateway.httpPort}`, { connections: 4 });
    try {
      const cluster = [...gateway.service.currentRuntime.router.list()][0]!.backend.cluster;
      await expect.poll(() => cluster.isEjected(1), { timeout: 5000 }).toBe(true);
      const before = live.stats.inferCalls;
      const body = { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] };
      const statuses = await Promise.all(
        Array.from({ length: 100 }, () => postJson(pool, '/v2/models/linear/infer', body).then((r) => r.status)),
      );
      expect(statuses.filter((s) => s !== 200)).toEqual([]);
      expect(live.stats.inferCalls - before).toBe(100);
    } finally {
      await pool.close();
      await gateway.close(1000);
      await live.close();
    }
  });
});
