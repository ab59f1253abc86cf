import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import type { BackendCluster } from '../../src/backends/cluster.js';
import { createBackendCluster } from '../../src/backends/registry.js';
import { validateConfig } from '../../src/config/load.js';
import { GatewayError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/observability/logger.js';
import { InferenceService } from '../../src/routing/inference-service.js';
import { ModelHealthMonitor } from '../../src/routing/model-health.js';
import { ModelRouter, type ModelRoute } from '../../src/routing/model-router.js';

let triton: TritonReference;
let clusters: Map<string, BackendCluster>;
let router: ModelRouter;
let monitor: ModelHealthMonitor;
let service: InferenceService;
let routes: ModelRoute[];

beforeAll(async () => {
  triton = await startTritonReference();
  const config = validateConfig({
    backends: {
      // Two endpoints, one of them dead: a model is ready while any endpoint serves it.
      t: { kind: 'triton', protocol: 'rest', endpoints: [triton.httpEndpoint, '127.0.0.1:1'], health_check: { interval_ms: 0, unhealthy_after: 2 } },
      gone: { kind: 'triton', protocol: 'grpc', endpoints: ['127.0.0.1:1'], health_check: { interval_ms: 0, timeout_ms: 500 } },
    },
    models: { linear: { backend: 't' }, unready: { backend: 't' }, lost: { backend: 'gone', model: 'linear' } },
  });
  clusters = new Map(Object.entries(config.backends).map(([name, b]) => [name, createBackendCluster(name, b, 1 << 20)]));
  router = new ModelRouter(config, clusters);
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
    const own = new ModelRouter(config, new Map([['f', cluster]]));
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

  it('start() checks right away and on its interval; stop() ends the checks', async () => {
    const config = validateConfig({
      backends: { t: { kind: 'triton', protocol: 'grpc', endpoints: [triton.grpcEndpoint], health_check: { interval_ms: 50 } } },
      models: { linear: { backend: 't' } },
    });
    const cluster = createBackendCluster('t', config.backends.t!, 1 << 20);
    const [linear] = [...new ModelRouter(config, new Map([['t', cluster]])).list()];
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
