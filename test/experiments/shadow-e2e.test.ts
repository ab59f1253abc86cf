import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { validateConfig } from '../../src/config/load.js';
import type { ShadowMirrorImpl, ShadowStats } from '../../src/experiments/shadow.js';
import { startGateway, type RunningGateway } from '../../src/gateway.js';
import { silentLogger } from '../../src/observability/logger.js';
import { postJson } from '../helpers/http.js';

/**
 * Shadow traffic end to end: a gateway over real sockets in front of reference
 * Triton servers, a server that accepts connections and never answers, and
 * shadows that hang, fail, agree, disagree, or agree on a known fraction.
 */

let triton: TritonReference;
let slow: TritonReference;
let hang: Server;
const hangSockets = new Set<Socket>();
let gateway: RunningGateway;
let http: Pool;

const LINEAR_V2 = { backend: 'triton-grpc', model: 'linear', version: '2' };
const LINEAR_V1 = { backend: 'triton-grpc', model: 'linear', version: '1' };

beforeAll(async () => {
  triton = await startTritonReference({ host: '127.0.0.1' });
  slow = await startTritonReference({ host: '127.0.0.1', latencyMs: 20 });
  // Accepts every request and never answers it.
  hang = createServer(() => {});
  hang.on('connection', (s) => {
    hangSockets.add(s);
    s.on('close', () => hangSockets.delete(s));
  });
  hang.listen(0, '127.0.0.1');
  await once(hang, 'listening');
  const hangEndpoint = `127.0.0.1:${(hang.address() as AddressInfo).port}`;
  const noChecks = { interval_ms: 0 };
  const config = validateConfig({
    auth: { enabled: false },
    server: { http: { host: '127.0.0.1', port: 0 }, grpc: { host: '127.0.0.1', port: 0 }, request_timeout_ms: 5000, log_level: 'silent' },
    backends: {
      'triton-grpc': { kind: 'triton', protocol: 'grpc', endpoints: [triton.grpcEndpoint], health_check: noChecks },
      'triton-rest': { kind: 'triton', protocol: 'rest', endpoints: [triton.httpEndpoint], health_check: noChecks },
      'slow-grpc': { kind: 'triton', protocol: 'grpc', endpoints: [slow.grpcEndpoint], health_check: noChecks },
      // No breaker: this backend is here to show that every copy sent ends at its own deadline (with a breaker,
      // copies fail fast once it opens; test/resilience covers that).
      'hang-rest': { kind: 'triton', protocol: 'rest', endpoints: [hangEndpoint], health_check: noChecks, circuit_breaker: { enabled: false } },
    },
    targets: { 'rest-pool': { weighted: [{ weight: 1, backend: 'triton-rest', model: 'linear', version: '2' }] } },
    models: {
      plain: LINEAR_V2,
      hangs: { ...LINEAR_V2, shadow: { percent: 100, max_concurrency: 4, timeout_ms: 300, backend: 'hang-rest', model: 'linear' } },
      errors: { ...LINEAR_V2, shadow: { percent: 100, max_concurrency: 4, backend: 'triton-grpc', model: 'no_such_model' } },
      'v1-vs-v2': { ...LINEAR_V2, shadow: { percent: 100, max_concurrency: 64, ...LINEAR_V1 } },
      same: { ...LINEAR_V2, shadow: { percent: 100, max_concurrency: 64, target: 'rest-pool' } },
      mixed: { ...LINEAR_V2, shadow: { percent: 100, max_concurrency: 64, tolerance: 1.5, ...LINEAR_V1 } },
      identity: {
        backend: 'triton-grpc', model: 'identity_fp32',
        shadow: { percent: 100, max_concurrency: 64, tolerance: 1e-6, backend: 'slow-grpc', model: 'identity_fp32' },
      },
    },
  });
  gateway = await startGateway(config, silentLogger);
  http = new Pool(`http://127.0.0.1:${gateway.httpPort}`, { connections: 8 });
});

afterAll(async () => {
  await http?.close();
  await gateway?.close(1000);
  for (const s of hangSockets) s.destroy();
  await new Promise<void>((r) => (hang ? hang.close(() => r()) : r()));
  await triton?.close();
  await slow?.close();
});

function stats(model: string): ShadowStats {
  const mirror = gateway.service.currentRuntime.shadows as ShadowMirrorImpl | undefined;
  const s = mirror?.stats(model);
  if (s === undefined) throw new Error(`no shadow stats for ${model}`);
  return s;
}

async function settled(model: string): Promise<ShadowStats> {
  for (let i = 0; i < 200 && stats(model).inFlight > 0; i++) await new Promise((r) => setTimeout(r, 20));
  return stats(model);
}

const linearBody = (x: readonly number[]) => ({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [...x] }] });

/** `n` requests, `concurrency` at a time: the client's latencies (ms) and the count of non-200 answers. */
async function load(model: string, n: number, concurrency: number, body: (i: number) => unknown): Promise<{ latencies: number[]; errors: number }> {
  const latencies: number[] = [];
  let errors = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < n; i = next++) {
      const started = performance.now();
      const reply = await postJson(http, `/v2/models/${model}/infer`, body(i));
      latencies.push(performance.now() - started);
      if (reply.status !== 200) errors++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { latencies, errors };
}

function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

describe('a shadow never touches the client', () => {
  it('a hanging shadow and a failing one change neither the latency distribution nor the error count', async () => {
    const N = 500;
    const body = (i: number) => linearBody([i % 7, 1, 2, 3]);
    await load('plain', 50, 8, body); // warm-up: connections, JIT
    const plain = await load('plain', N, 8, body);
    const hangs = await load('hangs', N, 8, body);
    const errors = await load('errors', N, 8, body);

    expect(plain.errors).toBe(0);
    expect(hangs.errors).toBe(0);
    expect(errors.errors).toBe(0);
    // No client waited on its shadow: the hanging shadow never answers (its calls end at the shadow's 300 ms
    // timeout), so were clients tied to it, every request, the median included, would take 300 ms or more.
    expect(quantile(hangs.latencies, 0.5)).toBeLessThan(300);

    // The hanging shadow: at most 4 copies in flight, the rest dropped; every copy sent ends at its own 300 ms deadline.
    const h = await settled('hangs');
    expect(h.sampled).toBe(N);
    expect(h.sent + h.dropped).toBe(N);
    expect(h.sent).toBeGreaterThanOrEqual(4);
    expect(h.dropped).toBeGreaterThan(0);
    expect(h.failed).toBe(h.sent);
    expect(h.agreed + h.disagreed).toBe(0);
    expect(h.shadowLatency.count).toBe(h.sent);
    expect(h.shadowLatency.sumMs / h.shadowLatency.count).toBeGreaterThanOrEqual(250);

    // The failing shadow (an unknown model): every copy sent fails, none is compared.
    const e = await settled('errors');
    expect(e.sampled).toBe(N);
    expect(e.sent + e.dropped).toBe(N);
    expect(e.failed).toBe(e.sent);
    expect(e.agreed + e.disagreed).toBe(0);
  });
});

describe('agreement', () => {
  it('linear version 1 against version 2 disagrees on every input', async () => {
    const run = await load('v1-vs-v2', 50, 4, (i) => linearBody([i, -i, i / 2, 1]));
    expect(run.errors).toBe(0);
    const s = await settled('v1-vs-v2');
    expect(s).toMatchObject({ sent: 50, dropped: 0, failed: 0, agreed: 0, disagreed: 50, agreementRate: 0 });
  });

  it('the same model through another route and protocol agrees on every input', async () => {
    const run = await load('same', 50, 4, (i) => linearBody([i, -i, i / 3, 0.1 * i]));
    expect(run.errors).toBe(0);
    const s = await settled('same');
    expect(s).toMatchObject({ sent: 50, failed: 0, agreed: 50, disagreed: 0, agreementRate: 1 });
  });

  it('a float identity on a slower server agrees within the tolerance; its latency is reported', async () => {
    const run = await load('identity', 20, 4, (i) => ({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 3], data: [i, 0.1 * i, -i] }] }));
    expect(run.errors).toBe(0);
    const s = await settled('identity');
    expect(s).toMatchObject({ sent: 20, agreed: 20, agreementRate: 1 });
    expect(s.shadowLatency.count).toBe(20);
    expect(s.shadowLatency.sumMs / 20).toBeGreaterThanOrEqual(18);
    expect(s.primaryLatency.count).toBe(20);
  });

  it('a known fraction: version 1 against 2 within 1.5 agrees exactly when the CLASS does', async () => {
    // SCORES of v1 and v2 differ by their biases, (0.1, -0.2, 0.3) against (1, 0, -1): at most 1.3, within the
    // tolerance, so a copy agrees iff the argmax CLASS agrees. x = 0: v2 scores (1, 0, -1) -> class 0, v1
    // (0.1, -0.2, 0.3) -> class 2: disagree. x = (0, 0, 10, 0): x·W = (-5, 20, 10), class 1 under both: agree.
    // One input in four is zero: agreement exactly 0.75.
    const agreeing = [0, 0, 10, 0];
    const zero = [0, 0, 0, 0];
    const run = await load('mixed', 80, 4, (i) => linearBody(i % 4 === 0 ? zero : agreeing));
    expect(run.errors).toBe(0);
    const s = await settled('mixed');
    expect(s).toMatchObject({ sent: 80, failed: 0, agreed: 60, disagreed: 20, agreementRate: 0.75 });
  });
});
