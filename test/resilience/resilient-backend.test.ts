import { afterEach, describe, expect, it } from 'vitest';
import type { Backend, CallOptions } from '../../src/backends/backend.js';
import { BackendCluster } from '../../src/backends/cluster.js';
import { GatewayError, type ErrorCode } from '../../src/core/errors.js';
import type { InferRequest, InferResponse } from '../../src/core/inference.js';
import { silentLogger } from '../../src/observability/logger.js';
import { ResilientBackend, type GuardContext } from '../../src/resilience/resilient-backend.js';
import { DEFAULT_RESILIENCE, type ResilienceSettings } from '../../src/resilience/settings.js';

/**
 * The policy layer on scripted endpoints: which endpoint each attempt goes
 * to, when a call is retried, and when the budget or the breakers say no.
 * The fault tests (faults*.test.ts) run the same paths against reference
 * servers over real sockets.
 */

type Behaviour = 'ok' | 'connect' | ErrorCode;

class ScriptedEndpoint implements Backend {
  readonly kind = 'triton' as const;
  readonly protocol = 'grpc' as const;
  calls = 0;
  constructor(
    readonly endpoint: string,
    public behaviour: Behaviour = 'ok',
  ) {}
  async infer(req: InferRequest, _opts: CallOptions): Promise<InferResponse> {
    this.calls++;
    if (this.behaviour === 'ok') return { model: req.model, version: '1', outputs: [], parameters: { from: this.endpoint } };
    if (this.behaviour === 'connect') throw new GatewayError('UNAVAILABLE', `${this.endpoint} refused`, { transport: 'connect' });
    throw new GatewayError(this.behaviour, `${this.endpoint} failed with ${this.behaviour}`);
  }
  async modelReady(): Promise<boolean> {
    return true;
  }
  async modelMetadata(): Promise<never> {
    throw new GatewayError('UNIMPLEMENTED', 'not scripted');
  }
  async serverReady(): Promise<boolean> {
    return true;
  }
  async close(): Promise<void> {}
}

const opened: ResilientBackend[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((b) => b.close()));
});

function backendOf(endpoints: ScriptedEndpoint[], settings: Partial<{ [K in keyof ResilienceSettings]: Partial<ResilienceSettings[K]> }> = {}): ResilientBackend {
  const cluster = new BackendCluster('b', 'triton', 'grpc', 1_000, endpoints, undefined, { policy: 'round_robin' });
  const backend = new ResilientBackend(
    cluster,
    {
      breaker: { ...DEFAULT_RESILIENCE.breaker, ...settings.breaker },
      retry: { ...DEFAULT_RESILIENCE.retry, backoffBaseMs: 0, backoffMaxMs: 0, ...settings.retry },
      concurrency: { ...DEFAULT_RESILIENCE.concurrency, ...settings.concurrency },
    },
    silentLogger,
  );
  opened.push(backend);
  return backend;
}

const ctx = (): GuardContext => ({ deadline: Date.now() + 5_000 });
const req: InferRequest = { model: 'm', version: '', inputs: [] };
const callOn = (backend: ResilientBackend) => backend.call((e) => e.infer(req, { deadline: Date.now() + 1_000 }), ctx());

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (err) {
    return (err as GatewayError).code;
  }
}

describe('retries', () => {
  it('a refused connection is retried once on the other endpoint, and the caller sees the answer', async () => {
    const dead = new ScriptedEndpoint('dead', 'connect');
    const live = new ScriptedEndpoint('live');
    const backend = backendOf([dead, live]);
    const answers = await Promise.all(Array.from({ length: 10 }, () => callOn(backend)));
    expect(answers.every((a) => a.parameters?.from === 'live')).toBe(true);
    expect(dead.calls).toBe(5); // round robin sent every other first attempt there
    expect(live.calls).toBe(10);
    expect(backend.status().retries.retries).toBe(5);
  });

  it('UNAVAILABLE answered by the server is retried; INTERNAL, timeouts and client errors are not', async () => {
    for (const [behaviour, retried] of [['UNAVAILABLE', true], ['INTERNAL', false], ['DEADLINE_EXCEEDED', false], ['INVALID_ARGUMENT', false]] as const) {
      const bad = new ScriptedEndpoint('bad', behaviour);
      const good = new ScriptedEndpoint('good');
      const backend = backendOf([bad, good]);
      const code = await codeOf(callOn(backend)); // round robin: the first call goes to 'bad'
      expect(code, behaviour).toBe(retried ? 'OK' : behaviour);
      expect(good.calls, behaviour).toBe(retried ? 1 : 0);
    }
  });

  it('a retry goes to a different endpoint or not at all', async () => {
    const only = new ScriptedEndpoint('only', 'connect');
    const backend = backendOf([only]);
    expect(await codeOf(callOn(backend))).toBe('UNAVAILABLE');
    expect(only.calls).toBe(1);
  });

  it('stops at max_attempts', async () => {
    const eps = [1, 2, 3, 4].map((i) => new ScriptedEndpoint(`e${i}`, 'connect'));
    const backend = backendOf(eps, { retry: { maxAttempts: 3 }, breaker: { enabled: false } });
    expect(await codeOf(callOn(backend))).toBe('UNAVAILABLE');
    expect(eps.reduce((n, e) => n + e.calls, 0)).toBe(3);
  });

  it('the retry budget caps retries: with 0% and no minimum, failures reach the caller', async () => {
    const dead = new ScriptedEndpoint('dead', 'connect');
    const live = new ScriptedEndpoint('live');
    const backend = backendOf([dead, live], { retry: { budgetPercent: 0, minRetriesPerSecond: 0 }, breaker: { enabled: false } });
    const codes = await Promise.all(Array.from({ length: 10 }, () => codeOf(callOn(backend))));
    expect(codes.filter((c) => c === 'UNAVAILABLE')).toHaveLength(5);
    expect(backend.status().retries.denied).toBe(5);
  });

  it('no retry when the backoff would pass the deadline', async () => {
    const dead = new ScriptedEndpoint('dead', 'connect');
    const live = new ScriptedEndpoint('live');
    const backend = backendOf([dead, live], { retry: { backoffBaseMs: 10_000, backoffMaxMs: 10_000 }, breaker: { enabled: false } });
    // Full jitter draws below the cap; a deadline 1 ms away is below nearly any draw.
    const code = await codeOf(backend.call((e) => e.infer(req, { deadline: Date.now() + 1_000 }), { deadline: Date.now() + 1 }));
    expect(code).toBe('UNAVAILABLE');
    expect(live.calls).toBe(0);
  });
});

describe('circuit breakers', () => {
  it('an endpoint whose breaker opens leaves rotation; with every breaker open calls fail fast with a retry hint', async () => {
    const a = new ScriptedEndpoint('a', 'INTERNAL');
    const b = new ScriptedEndpoint('b', 'INTERNAL');
    const backend = backendOf([a, b], { breaker: { minimumRequests: 4, resetTimeoutMs: 60_000 } });
    for (let i = 0; i < 8; i++) await codeOf(callOn(backend));
    const status = backend.status();
    expect(status.endpoints.map((e) => e.breaker.state)).toEqual(['open', 'open']);
    expect(status.endpoints.every((e) => e.ejected && e.reason.startsWith('breaker:'))).toBe(true);
    expect(status.available).toBe(0);
    const before = a.calls + b.calls;
    const err = await callOn(backend).catch((e: unknown) => e as GatewayError);
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe('UNAVAILABLE');
    expect((err as GatewayError).transport).toBe('connect'); // so a fallback moves on
    expect((err as GatewayError).retryAfterMs).toBeGreaterThan(50_000);
    expect(a.calls + b.calls).toBe(before);
  });

  it('client errors never open a breaker', async () => {
    const a = new ScriptedEndpoint('a', 'INVALID_ARGUMENT');
    const backend = backendOf([a], { breaker: { minimumRequests: 2 } });
    for (let i = 0; i < 20; i++) expect(await codeOf(callOn(backend))).toBe('INVALID_ARGUMENT');
    expect(backend.status().endpoints[0]!.breaker.state).toBe('closed');
    expect(backend.status().endpoints[0]!.failures).toBe(0);
  });

  it('a timeout of the client’s own deadline does not count against the endpoint; the backend’s own timeout does', async () => {
    const slow = new ScriptedEndpoint('slow', 'DEADLINE_EXCEEDED');
    const backend = backendOf([slow], { breaker: { minimumRequests: 2 } });
    // The client's deadline has passed when the failure is judged: its own.
    for (let i = 0; i < 5; i++) {
      const past = Date.now() - 1;
      await codeOf(backend.call((e) => e.infer(req, { deadline: past }), { deadline: past, clientDeadline: past }));
    }
    expect(backend.status().endpoints[0]!.failures).toBe(0);
    for (let i = 0; i < 5; i++) await codeOf(callOn(backend));
    expect(backend.status().endpoints[0]!.failures).toBeGreaterThan(0);
    expect(backend.status().endpoints[0]!.breaker.state).toBe('open');
  });
});

describe('load shedding', () => {
  it('beyond max_in_flight and max_queued a call is refused at once with RESOURCE_EXHAUSTED and a retry hint', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const a = new ScriptedEndpoint('a');
    const backend = backendOf([a], { concurrency: { maxInFlight: 1, maxQueued: 1, maxQueueWaitMs: 5_000 } });
    const held = backend.call(async () => {
      await gate;
      return 'first';
    }, ctx());
    const queued = backend.call(async () => 'second', ctx());
    const refused = await backend.call(async () => 'third', ctx()).catch((e: unknown) => e as GatewayError);
    expect((refused as GatewayError).code).toBe('RESOURCE_EXHAUSTED');
    expect((refused as GatewayError).retryAfterMs).toBeGreaterThan(0);
    expect(backend.status().concurrency).toMatchObject({ inFlight: 1, queued: 1, shed: 1 });
    release();
    expect(await held).toBe('first');
    expect(await queued).toBe('second');
    expect(backend.status().concurrency).toMatchObject({ inFlight: 0, queued: 0 });
  });

  it('hold() keeps the slot until release()', async () => {
    const backend = backendOf([new ScriptedEndpoint('a')], { concurrency: { maxInFlight: 1, maxQueued: 0 } });
    const held = await backend.hold(async () => 'stream', ctx());
    expect(await codeOf(backend.call(async () => 'x', ctx()))).toBe('RESOURCE_EXHAUSTED');
    held.release();
    expect(await backend.call(async () => 'x', ctx())).toBe('x');
  });
});
