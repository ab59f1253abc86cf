import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pool } from 'undici';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { validateConfig } from '../../src/config/load.js';
import { startGateway, type RunningGateway } from '../../src/gateway.js';
import { silentLogger } from '../../src/observability/logger.js';
import { grpc, v2Client, type Message, type V2Client } from '../helpers/grpc-client.js';
import { postJson, type HttpReply } from '../helpers/http.js';

/**
 * Traffic control end to end: a gateway in front of reference Triton servers
 * on loopback, reached over REST and gRPC. Every answer says which routing
 * leaf served it (x-infergate-target) and after how many backend calls
 * (x-infergate-attempts), as headers or as gRPC trailing metadata.
 *
 * Background health checks are off in every backend here (interval_ms: 0):
 * the fallback test is about what a request does when it meets a dead group,
 * and with checks on, the checks would soon eject the dead endpoints and the
 * requests would skip them without an attempt (the last test shows that).
 */

const LINEAR_BODY = { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] };
const LINEAR_SCORES = [7, 5, 2.75];
const NO_CHECKS = { health_check: { interval_ms: 0 } };

let s1: TritonReference; // group B, and the 90/10 split
let s2: TritonReference;
let a1: TritonReference; // group A: stopped in the fallback test
let a2: TritonReference;
let gateway: RunningGateway;
let http: Pool;
let client: V2Client;

beforeAll(async () => {
  const started = await Promise.all([0, 1, 2, 3].map(() => startTritonReference({ host: '127.0.0.1' })));
  [s1, s2, a1, a2] = started as [TritonReference, TritonReference, TritonReference, TritonReference];
  const config = validateConfig({
    auth: { enabled: false },
    server: { http: { host: '127.0.0.1', port: 0 }, grpc: { host: '127.0.0.1', port: 0 }, request_timeout_ms: 5000, log_level: 'silent' },
    backends: {
      s1: { kind: 'triton', protocol: 'rest', endpoints: [s1.httpEndpoint], ...NO_CHECKS },
      s2: { kind: 'triton', protocol: 'grpc', endpoints: [s2.grpcEndpoint], ...NO_CHECKS },
      // Group A over both protocols, so both mark a dead endpoint as a connection failure.
      'a1-rest': { kind: 'triton', protocol: 'rest', endpoints: [a1.httpEndpoint], ...NO_CHECKS },
      'a2-grpc': { kind: 'triton', protocol: 'grpc', endpoints: [a2.grpcEndpoint], ...NO_CHECKS },
    },
    targets: {
      'group-a': { weighted: [{ weight: 50, backend: 'a1-rest', model: 'linear', id: 'a1' }, { weight: 50, backend: 'a2-grpc', model: 'linear', id: 'a2' }] },
      'group-b': { weighted: [{ weight: 50, backend: 's1', model: 'linear', id: 'b1' }, { weight: 50, backend: 's2', model: 'linear', id: 'b2' }] },
    },
    models: {
      linear: { backend: 's1' },
      split: { weighted: [{ weight: 90, backend: 's1', model: 'linear', id: 'ninety' }, { weight: 10, backend: 's2', model: 'linear', id: 'ten' }] },
      fraud: {
        fallback: [{ target: 'group-a' }, { target: 'group-b' }],
        // Only connection failures: the dead group must be recognised as such on REST and on gRPC.
        fallback_on: ['connect_failure'],
      },
      tenant: {
        match: [{ when: { header: 'x-tenant', equals: 'acme' }, backend: 's2', model: 'linear', id: 'acme' }],
        default: { backend: 's1', model: 'linear', id: 'everyone' },
      },
      strict: {
        fallback: [{ backend: 's1', model: 'linear', id: 'first' }, { backend: 's2', model: 'linear', id: 'second' }],
        fallback_on: ['connect_failure', 'unavailable', 'timeout', '5xx', 'resource_exhausted'],
      },
      ghost: {
        fallback: [{ backend: 's1', model: 'no_such_model', id: 'missing' }, { backend: 's2', model: 'linear', id: 'present' }],
        fallback_on: ['5xx', 'unavailable'],
      },
    },
  });
  gateway = await startGateway(config, silentLogger);
  http = new Pool(`http://127.0.0.1:${gateway.httpPort}`, { connections: 32 });
  client = v2Client(`127.0.0.1:${gateway.grpcPort}`);
}, 30_000);

afterAll(async () => {
  client?.close();
  await http?.close();
  await gateway?.close(1000);
  await Promise.all([s1, s2, a1, a2].map((s) => s?.close()));
});

/** Runs `n` calls with at most `inFlight` at once; results in call order. */
async function bounded<T>(n: number, inFlight: number, call: (i: number) => Promise<T>): Promise<T[]> {
  const out = new Array<T>(n);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < n; i = next++) out[i] = await call(i);
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, n) }, worker));
  return out;
}

const infer = (model: string, headers: Record<string, string> = {}, body: unknown = LINEAR_BODY): Promise<HttpReply> =>
  postJson(http, `/v2/models/${model}/infer`, body, headers);

function countBy<T>(items: readonly T[], key: (t: T) => string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return counts;
}

/** A unary gRPC call with its trailing metadata (from the status, on success and failure alike). */
function grpcInfer(request: Message, metadata = new grpc.Metadata()): Promise<{ error?: grpc.ServiceError; reply?: Message; trailers: grpc.Metadata }> {
  return new Promise((resolve) => {
    let result: { error?: grpc.ServiceError; reply?: Message } = {};
    const call = client.raw.ModelInfer!.call(client.raw, request, metadata, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, reply: Message) => {
      result = err ? { error: err } : { reply };
    }) as grpc.ClientUnaryCall;
    call.on('status', (s: grpc.StatusObject) => setImmediate(() => resolve({ ...result, trailers: s.metadata })));
  });
}

const linearMessage = (model: string): Message => ({
  model_name: model,
  inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: ['1', '4'], contents: { fp32_contents: [1, 2, 3, 4] } }],
});

describe('weighted routing over REST', () => {
  it('90/10 over 10,000 requests: the x-infergate-target counts land within ±2 percentage points', async () => {
    const before = [s1.stats.inferCalls, s2.stats.inferCalls];
    const replies = await bounded(10_000, 32, () => infer('split'));
    expect(replies.filter((r) => r.status !== 200)).toHaveLength(0);
    const counts = countBy(replies, (r) => String(r.headers['x-infergate-target']));
    expect([...counts.keys()].sort()).toEqual(['ninety', 'ten']);
    expect(Math.abs(counts.get('ninety')! / 100 - 90)).toBeLessThanOrEqual(2);
    expect(Math.abs(counts.get('ten')! / 100 - 10)).toBeLessThanOrEqual(2);
    // The headers tell the truth: each backend saw exactly the requests said to be its own.
    expect([s1.stats.inferCalls - before[0]!, s2.stats.inferCalls - before[1]!]).toEqual([counts.get('ninety'), counts.get('ten')]);
    expect(replies.every((r) => r.headers['x-infergate-attempts'] === '1')).toBe(true);
    expect(replies[0]!.json<{ model_name: string; outputs: { data: number[] }[] }>()).toMatchObject({
      model_name: 'split',
      outputs: [{ data: LINEAR_SCORES }, { data: [0] }],
    });
  }, 120_000);

  it('a plain leaf model says so too: its config path, one attempt', async () => {
    const reply = await infer('linear');
    expect(reply.status).toBe(200);
    expect(reply.headers['x-infergate-target']).toBe('models.linear');
    expect(reply.headers['x-infergate-attempts']).toBe('1');
  });
});

describe('match rules', () => {
  it('on an HTTP header', async () => {
    expect((await infer('tenant', { 'x-tenant': 'acme' })).headers['x-infergate-target']).toBe('acme');
    expect((await infer('tenant', { 'X-Tenant': 'other' })).headers['x-infergate-target']).toBe('everyone');
    expect((await infer('tenant')).headers['x-infergate-target']).toBe('everyone');
  });

  it('on gRPC metadata, with the target and attempts as trailing metadata', async () => {
    const md = new grpc.Metadata();
    md.set('x-tenant', 'acme');
    const acme = await grpcInfer(linearMessage('tenant'), md);
    expect(acme.error).toBeUndefined();
    expect(acme.reply).toMatchObject({ model_name: 'tenant' });
    expect(acme.trailers.get('x-infergate-target')).toEqual(['acme']);
    expect(acme.trailers.get('x-infergate-attempts')).toEqual(['1']);
    expect(acme.trailers.get('x-request-id')).toHaveLength(1);
    const other = await grpcInfer(linearMessage('tenant'));
    expect(other.trailers.get('x-infergate-target')).toEqual(['everyone']);
  });
});

describe('client errors never fall back', () => {
  it('a 4xx from the backend is the answer after one attempt, even under a fallback naming 5xx', async () => {
    const before = s2.stats.inferCalls;
    const bad = await infer('strict', {}, { inputs: [{ name: 'WRONG', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
    expect(bad.status).toBe(400);
    expect(bad.headers['x-infergate-target']).toBe('first');
    expect(bad.headers['x-infergate-attempts']).toBe('1');
    const missing = await infer('ghost');
    expect(missing.status).toBe(404);
    expect(missing.headers['x-infergate-target']).toBe('missing');
    expect(missing.headers['x-infergate-attempts']).toBe('1');
    expect(s2.stats.inferCalls).toBe(before);
  });

  it('over gRPC the failure carries the trailers as well', async () => {
    const request = linearMessage('strict');
    (request.inputs as { name: string }[])[0]!.name = 'WRONG';
    const bad = await grpcInfer(request);
    expect(bad.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(bad.trailers.get('x-infergate-target')).toEqual(['first']);
    expect(bad.trailers.get('x-infergate-attempts')).toEqual(['1']);
  });
});

describe('a fallback of two weighted groups', () => {
  it('serves from group A while it is up', async () => {
    const replies = await bounded(200, 16, () => infer('fraud'));
    expect(replies.every((r) => r.status === 200 && r.headers['x-infergate-attempts'] === '1')).toBe(true);
    expect(new Set(replies.map((r) => r.headers['x-infergate-target']))).toEqual(new Set(['a1', 'a2']));
  });

  it('keeps serving with 0 client errors when the whole of group A is down: 2 attempts until its breakers open, then 1', async () => {
    await Promise.all([a1.close(), a2.close()]);
    const before = s1.stats.inferCalls + s2.stats.inferCalls;
    const replies = await bounded(1_000, 32, () => infer('fraud'));
    const failed = replies.filter((r) => r.status !== 200);
    expect(failed.map((r) => `${r.status} ${r.text()}`).slice(0, 3)).toEqual([]);
    // The first requests pay a refused connection on group A; once A's circuit breakers open, its endpoints are out
    // of rotation, so A fails at once without a backend call and the fallback's call is the only attempt.
    const attempts = countBy(replies, (r) => String(r.headers['x-infergate-attempts']));
    expect([...attempts.keys()].sort()).toEqual(['1', '2']);
    expect(attempts.get('2')).toBeGreaterThanOrEqual(20); // breakers open only after minimum_requests calls
    const targets = countBy(replies, (r) => String(r.headers['x-infergate-target']));
    expect([...targets.keys()].sort()).toEqual(['b1', 'b2']);
    expect(s1.stats.inferCalls + s2.stats.inferCalls - before).toBe(1_000);
    expect(replies[0]!.json<{ outputs: { data: number[] }[] }>().outputs[0]!.data).toEqual(LINEAR_SCORES);

    // gRPC clients see the same.
    const viaGrpc = await grpcInfer(linearMessage('fraud'));
    expect(viaGrpc.error).toBeUndefined();
    expect(viaGrpc.trailers.get('x-infergate-attempts')).toEqual(['1']);
  }, 60_000);
});

describe('with health checks on', () => {
  it('once the checks eject a dead group, requests skip it: still 0 errors, now 1 attempt', async () => {
    const dead = await startTritonReference({ host: '127.0.0.1' });
    const live = await startTritonReference({ host: '127.0.0.1' });
    const checks = { health_check: { interval_ms: 50, timeout_ms: 500, unhealthy_after: 1 } };
    const own = await startGateway(
      validateConfig({
        auth: { enabled: false },
        server: { http: { host: '127.0.0.1', port: 0 }, grpc: { host: '127.0.0.1', port: 0 }, log_level: 'silent' },
        backends: {
          dead: { kind: 'triton', protocol: 'rest', endpoints: [dead.httpEndpoint], ...checks },
          live: { kind: 'triton', protocol: 'grpc', endpoints: [live.grpcEndpoint], ...checks },
        },
        models: { linear: { fallback: [{ backend: 'dead', id: 'dead' }, { backend: 'live', id: 'live' }] } },
      }),
      silentLogger,
    );
    const pool = new Pool(`http://127.0.0.1:${own.httpPort}`, { connections: 8 });
    try {
      expect((await postJson(pool, '/v2/models/linear/infer', LINEAR_BODY)).headers['x-infergate-target']).toBe('dead');
      await dead.close();
      const seen: string[] = [];
      await expect
        .poll(
          async () => {
            const reply = await postJson(pool, '/v2/models/linear/infer', LINEAR_BODY);
            seen.push(`${reply.status} ${String(reply.headers['x-infergate-attempts'])}`);
            return reply.headers['x-infergate-attempts'];
          },
          { timeout: 5_000, interval: 20 },
        )
        .toBe('1');
      // Before the checks caught up, requests paid one failed attempt on the dead group; none failed.
      expect(seen.filter((s) => s !== '200 1' && s !== '200 2')).toEqual([]);
      const reply = await postJson(pool, '/v2/models/linear/infer', LINEAR_BODY);
      expect([reply.status, reply.headers['x-infergate-target'], reply.headers['x-infergate-attempts']]).toEqual([200, 'live', '1']);
    } finally {
      await pool.close();
      await own.close(500);
      await Promise.all([dead.close(), live.close()]);
    }
  }, 30_000);
});
