import { describe, expect, it } from 'vitest';
import type { Backend, CallOptions } from '../../src/backends/backend.js';
import { BackendCluster } from '../../src/backends/cluster.js';
import { validateConfig } from '../../src/config/load.js';
import { GatewayError, type ErrorCode } from '../../src/core/errors.js';
import type { InferRequest, InferResponse } from '../../src/core/inference.js';
import { silentLogger } from '../../src/observability/logger.js';
import { InferenceService, type RequestContext } from '../../src/routing/inference-service.js';
import { ModelHealthMonitor } from '../../src/routing/model-health.js';
import { ModelRouter } from '../../src/routing/model-router.js';
import { withDefaultResilience } from '../../src/resilience/resilient-backend.js';

/**
 * The executor through InferenceService, over in-memory endpoints (the API
 * tests run the same paths over real sockets): which leaves are tried, in what
 * order, and what onServed hears.
 */

type Behaviour = ErrorCode | 'ok' | 'connect' | 'slow';

class FakeEndpoint implements Backend {
  readonly kind = 'triton' as const;
  readonly protocol = 'grpc' as const;
  calls: InferRequest[] = [];
  deadlines: number[] = [];
  ready = true;
  constructor(
    readonly endpoint: string,
    public behaviour: Behaviour = 'ok',
  ) {}
  async infer(req: InferRequest, opts: CallOptions): Promise<InferResponse> {
    this.calls.push(req);
    this.deadlines.push(opts.deadline - Date.now());
    if (this.behaviour === 'ok') return { model: req.model, version: req.version || '1', outputs: [], parameters: { from: this.endpoint } };
    if (this.behaviour === 'slow') {
      await new Promise((r) => setTimeout(r, Math.max(0, opts.deadline - Date.now())));
      throw new GatewayError('DEADLINE_EXCEEDED', `${this.endpoint} timed out`);
    }
    if (this.behaviour === 'connect') throw new GatewayError('UNAVAILABLE', `${this.endpoint} unreachable`, { transport: 'connect' });
    throw new GatewayError(this.behaviour, `${this.endpoint} failed with ${this.behaviour}`);
  }
  async *inferStream(req: InferRequest, opts: CallOptions): AsyncIterable<InferResponse> {
    const first = await this.infer(req, opts);
    yield first;
    yield { ...first, parameters: { part: 2 } };
  }
  async modelReady(): Promise<boolean> {
    return this.ready;
  }
  async modelMetadata(): Promise<never> {
    throw new GatewayError('UNIMPLEMENTED', 'no metadata');
  }
  async serverReady(): Promise<boolean> {
    return true;
  }
  async close(): Promise<void> {}
}

const names = ['a', 'b', 'c'] as const;

function setup(models: Record<string, unknown>, timeouts: Partial<Record<(typeof names)[number], number>> = {}) {
  const endpoints = Object.fromEntries(names.map((n) => [n, new FakeEndpoint(n)])) as Record<(typeof names)[number], FakeEndpoint>;
  const backends = Object.fromEntries(names.map((n) => [n, { kind: 'triton', protocol: 'grpc', endpoints: [`${n}:1`] }]));
  const config = validateConfig({ backends, models });
  const clusters = new Map(
    names.map((n) => [n, new BackendCluster(n, 'triton', 'grpc', timeouts[n] ?? 10_000, [endpoints[n]], { intervalMs: 0, timeoutMs: 500, unhealthyAfter: 1 })]),
  );
  const router = new ModelRouter(config, withDefaultResilience(clusters, silentLogger));
  const health = new ModelHealthMonitor([...router.leaves()], silentLogger);
  return { endpoints, router, health, service: new InferenceService(router, health) };
}

function context(deadlineMs = 5_000, extra: Partial<RequestContext> = {}) {
  const served: { target: string; attempts: number }[] = [];
  const ctx: RequestContext = { deadline: Date.now() + deadlineMs, onServed: (target, attempts) => served.push({ target, attempts }), ...extra };
  return { ctx, served };
}

const request = (model: string, version = ''): InferRequest => ({ model, version, inputs: [] });

async function failure(p: Promise<unknown>): Promise<GatewayError> {
  return p.then(
    () => {
      throw new Error('expected a failure');
    },
    (e: unknown) => e as GatewayError,
  );
}

describe('route execution', () => {
  const FALLBACK = { f: { fallback: [{ backend: 'a', id: 'A' }, { backend: 'b', id: 'B' }, { backend: 'c', id: 'C' }] } };

  it('a fallback tries its children in order while the failure is one it names', async () => {
    const { endpoints, service } = setup(FALLBACK);
    endpoints.a.behaviour = 'connect';
    endpoints.b.behaviour = 'UNAVAILABLE';
    const { ctx, served } = context();
    const resp = await service.infer(request('f'), ctx);
    expect(resp.parameters).toEqual({ from: 'c' });
    expect(resp.model).toBe('f');
    expect(served).toEqual([{ target: 'C', attempts: 3 }]);
    expect([endpoints.a.calls.length, endpoints.b.calls.length, endpoints.c.calls.length]).toEqual([1, 1, 1]);
  });

  it('a failure the node does not name, or a client error, is the answer at once', async () => {
    const { endpoints, service } = setup({
      f: { fallback: [{ backend: 'a', id: 'A' }, { backend: 'b', id: 'B' }], fallback_on: ['connect_failure'] },
      g: { fallback: [{ backend: 'a', id: 'gA' }, { backend: 'b', id: 'gB' }], fallback_on: ['5xx', 'unavailable', 'timeout', 'resource_exhausted'] },
    });
    endpoints.a.behaviour = 'UNAVAILABLE'; // not a connection failure
    const first = context();
    expect((await failure(service.infer(request('f'), first.ctx))).code).toBe('UNAVAILABLE');
    expect(first.served).toEqual([{ target: 'A', attempts: 1 }]);
    for (const code of ['INVALID_ARGUMENT', 'NOT_FOUND', 'FAILED_PRECONDITION'] as const) {
      endpoints.a.behaviour = code;
      const { ctx, served } = context();
      expect((await failure(service.infer(request('g'), ctx))).code).toBe(code);
      expect(served).toEqual([{ target: 'gA', attempts: 1 }]);
    }
    expect(endpoints.b.calls).toHaveLength(0);
  });

  it('when every child fails, the last failure answers, with every attempt counted', async () => {
    const { endpoints, service } = setup(FALLBACK);
    for (const e of Object.values(endpoints)) e.behaviour = 'connect';
    const { ctx, served } = context();
    expect((await failure(service.infer(request('f'), ctx))).message).toMatch(/^c unreachable/);
    expect(served).toEqual([{ target: 'C', attempts: 3 }]);
  });

  it('a leaf timeout moves on within the client deadline; past the deadline nothing more is tried', async () => {
    const { endpoints, service } = setup({ f: { timeout_ms: 50, fallback: [{ backend: 'a', id: 'A' }, { backend: 'b', id: 'B' }] } });
    endpoints.a.behaviour = 'slow';
    const ok = context(2_000);
    expect((await service.infer(request('f'), ok.ctx)).parameters).toEqual({ from: 'b' });
    expect(ok.served).toEqual([{ target: 'B', attempts: 2 }]);
    expect(endpoints.a.deadlines[0]).toBeLessThanOrEqual(50);

    // The client's own deadline is shorter than the leaf's: it runs out on the first child.
    const late = context(30);
    expect((await failure(service.infer(request('f'), late.ctx))).code).toBe('DEADLINE_EXCEEDED');
    expect(late.served).toEqual([{ target: 'A', attempts: 1 }]);
    expect(endpoints.b.calls).toHaveLength(1);
  });

  it('a leaf known unready is skipped by a fallback without an attempt, and fails fast elsewhere', async () => {
    const { endpoints, router, health, service } = setup({
      f: { fallback: [{ backend: 'a', id: 'A' }, { backend: 'b', id: 'B' }] },
      solo: { backend: 'a', id: 'S' },
    });
    endpoints.a.ready = false;
    await health.sweep('a', [...router.leaves()].filter((l) => l.backend.name === 'a'));
    const { ctx, served } = context();
    expect((await service.infer(request('f'), ctx)).parameters).toEqual({ from: 'b' });
    expect(served).toEqual([{ target: 'B', attempts: 1 }]);
    const solo = context();
    expect((await failure(service.infer(request('solo'), solo.ctx))).message).toMatch(/model 'solo' is not ready on backend 'a'/);
    expect(solo.served).toEqual([{ target: 'S', attempts: 0 }]);
    expect(endpoints.a.calls).toHaveLength(0);
  });

  it('a pinned leaf refuses another version (NOT_FOUND, never a fallback)', async () => {
    const { endpoints, service } = setup({ f: { fallback: [{ backend: 'a', version: '1', id: 'A' }, { backend: 'b', id: 'B' }] } });
    const { ctx, served } = context();
    expect((await failure(service.infer(request('f', '2'), ctx))).message).toMatch(/model 'f' has no version '2' at target 'A'/);
    expect(served).toEqual([{ target: 'A', attempts: 0 }]);
    expect(endpoints.b.calls).toHaveLength(0);
    expect((await service.infer(request('f', '1'), context().ctx)).version).toBe('1');
    expect(endpoints.a.calls[0]).toMatchObject({ model: 'f', version: '1' });
  });

  it('match rules read the context headers; backend model names come from the leaf', async () => {
    const { endpoints, service } = setup({
      m: { match: [{ when: { header: 'x-tenant', equals: 'acme' }, backend: 'b', model: 'acme_model', id: 'acme' }], default: { backend: 'a', id: 'rest' } },
    });
    const acme = context(5_000, { header: (n) => (n === 'x-tenant' ? 'acme' : undefined) });
    await service.infer(request('m'), acme.ctx);
    expect(acme.served).toEqual([{ target: 'acme', attempts: 1 }]);
    expect(endpoints.b.calls[0]!.model).toBe('acme_model');
    const other = context();
    await service.infer(request('m'), other.ctx);
    expect(other.served).toEqual([{ target: 'rest', attempts: 1 }]);
  });

  it('streams fall back until the first part, and report where they went', async () => {
    const { endpoints, service } = setup(FALLBACK);
    endpoints.a.behaviour = 'connect';
    const { ctx, served } = context();
    const parts: InferResponse[] = [];
    for await (const part of service.inferStream(request('f'), ctx)) parts.push(part);
    expect(parts.map((p) => p.parameters)).toEqual([{ from: 'b' }, { part: 2 }]);
    expect(parts.every((p) => p.model === 'f')).toBe(true);
    expect(served).toEqual([{ target: 'B', attempts: 2 }]);
  });
});
