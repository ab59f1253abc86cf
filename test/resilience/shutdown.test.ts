// Graceful shutdown of the real CLI (a child process) under load: SIGTERM turns readiness false for
// shutdown_delay_ms, the listeners stop accepting, accepted requests finish (or, past drain_ms, are answered 503 /
// UNAVAILABLE), responses written while draining close their keep-alive connections, and the process exits 0.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Pool } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { grpc, v2Client, type Message, type V2Client } from '../helpers/grpc-client.js';
import { spawnGateway, type ChildServer } from '../helpers/processes.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'infergate-shutdown-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

// What each test started, stopped in afterEach by its own handle (also when the test fails half-way).
const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A reference Triton in this process and a gateway child process in front of it (REST model `echo`, gRPC backend). */
async function startPair(latencyMs: number, server: Record<string, unknown>): Promise<{ triton: TritonReference; gateway: ChildServer }> {
  const triton = await startTritonReference({ host: '127.0.0.1', latencyMs });
  cleanups.push(() => triton.close());
  const config = {
    server: {
      http: { host: '127.0.0.1', port: 0 },
      grpc: { host: '127.0.0.1', port: 0 },
      log_level: 'info',
      request_timeout_ms: 20_000,
      ...server,
    },
    auth: { enabled: false },
    backends: {
      'triton-grpc': { kind: 'triton', protocol: 'grpc', endpoints: [triton.grpcEndpoint], health_check: { interval_ms: 0 } },
      'triton-rest': { kind: 'triton', protocol: 'rest', endpoints: [triton.httpEndpoint], health_check: { interval_ms: 0 } },
    },
    models: {
      echo: { backend: 'triton-grpc', model: 'identity_int32' },
      'rest.echo': { backend: 'triton-rest', model: 'identity_int32' },
    },
  };
  const file = join(dir, `gateway-${cleanups.length}-${Date.now()}.yaml`);
  // JSON is YAML.
  await writeFile(file, JSON.stringify(config, null, 2));
  const gateway = await spawnGateway(file);
  cleanups.push(() => gateway.kill('SIGKILL'));
  return { triton, gateway };
}

// ---- requests and what became of them ------------------------------------------------------------------------

/** Four INT32 values unique to request `n`. */
const valuesOf = (n: number): number[] => [n, n + 1_000, -n, 7];

function restBody(n: number): string {
  return JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 4], data: valuesOf(n) }] });
}

type RestOutcome =
  | { kind: 'response'; status: number; headers: Record<string, string | string[] | undefined>; body: string; at: number }
  /** No response at all: the connection was refused, reset or closed before the status line. */
  | { kind: 'no-response'; code: string; message: string }
  /** Headers came, then the body broke off. */
  | { kind: 'truncated'; status: number; code: string; message: string };

async function restInfer(dispatcher: Pool | Client, model: string, n: number): Promise<RestOutcome> {
  let res;
  try {
    res = await dispatcher.request({
      method: 'POST',
      path: `/v2/models/${model}/infer`,
      headers: { 'content-type': 'application/json' },
      body: restBody(n),
      headersTimeout: 20_000,
      bodyTimeout: 20_000,
    });
  } catch (err) {
    return { kind: 'no-response', code: errCode(err), message: (err as Error).message };
  }
  try {
    const body = await res.body.text();
    return { kind: 'response', status: res.statusCode, headers: res.headers, body, at: Date.now() };
  } catch (err) {
    return { kind: 'truncated', status: res.statusCode, code: errCode(err), message: (err as Error).message };
  }
}

/** A request on a connection of its own, as a new client (or a load balancer) would make it. */
async function freshRequest<T>(origin: string, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client(origin, { connectTimeout: 5_000 });
  try {
    return await fn(client);
  } finally {
    await client.destroy();
  }
}

/** GET /v2/health/ready on a fresh connection: the status, or the connection error's code. */
async function readiness(origin: string): Promise<number | string> {
  return freshRequest(origin, async (client) => {
    try {
      const res = await client.request({ method: 'GET', path: '/v2/health/ready', headersTimeout: 5_000, bodyTimeout: 5_000 });
      await res.body.dump();
      return res.statusCode;
    } catch (err) {
      return errCode(err);
    }
  });
}

function errCode(err: unknown): string {
  const e = err as { code?: string; cause?: { code?: string } };
  return e.cause?.code ?? e.code ?? 'UNKNOWN';
}

/** A 200 whose body is the identity model's answer to request `n`, complete and exact. */
function expectEcho(outcome: RestOutcome, n: number, what: string): void {
  expect(outcome, what).toMatchObject({ kind: 'response', status: 200 });
  if (outcome.kind !== 'response') return;
  const parsed = JSON.parse(outcome.body) as { outputs?: { name: string; datatype: string; shape: number[]; data: number[] }[] };
  expect(parsed.outputs, what).toHaveLength(1);
  expect(parsed.outputs![0], what).toMatchObject({ name: 'OUTPUT0', datatype: 'INT32', shape: [1, 4], data: valuesOf(n) });
}

function grpcRequest(n: number): Message {
  const raw = Buffer.alloc(16);
  valuesOf(n).forEach((v, i) => raw.writeInt32LE(v, i * 4));
  return { model_name: 'echo', id: `g${n}`, inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: ['1', '4'] }], raw_input_contents: [raw] };
}

type GrpcOutcome = { ok: true; reply: Message } | { ok: false; error: grpc.ServiceError };

function grpcInfer(client: V2Client, n: number): Promise<GrpcOutcome> {
  return client.unary('ModelInfer', grpcRequest(n)).then(
    (reply) => ({ ok: true as const, reply }),
    (error: grpc.ServiceError) => ({ ok: false as const, error }),
  );
}

function expectGrpcEcho(outcome: GrpcOutcome, n: number, what: string): void {
  if (!outcome.ok) expect.fail(`${what}: gRPC error ${outcome.error.code} ${outcome.error.details}`);
  const reply = outcome.reply;
  expect(reply.id, what).toBe(`g${n}`);
  expect((reply.outputs as { name: string; shape: string[] }[]).map((o) => [o.name, o.shape]), what).toEqual([['OUTPUT0', ['1', '4']]]);
  const raw = (reply.raw_output_contents as Buffer[])[0]!;
  expect([0, 1, 2, 3].map((i) => raw.readInt32LE(i * 4)), what).toEqual(valuesOf(n));
}

/** Waits until the backend has received `count` inference calls: those requests are in flight in the gateway. */
async function untilBackendCalls(triton: TritonReference, count: number, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (triton.stats.inferCalls < count) {
    if (Date.now() > until) throw new Error(`only ${triton.stats.inferCalls} of ${count} inference calls reached the backend`);
    await sleep(10);
  }
}

const header = (outcome: RestOutcome, name: string): string | undefined => {
  if (outcome.kind !== 'response') return undefined;
  const value = outcome.headers[name];
  return Array.isArray(value) ? value.join(',') : value;
};

describe('graceful shutdown of the gateway process on SIGTERM', () => {
  it('under load with a long enough drain: every accepted request completes, readiness is false during the delay, exit 0', async () => {
    // The backend answers after 1 s; readiness is false for 500 ms, then the listeners close and the drain
    // (up to 10 s) waits for what is still running, so the requests in flight span the delay and the drain.
    const { triton, gateway } = await startPair(1_000, { shutdown_delay_ms: 500, drain_ms: 10_000 });
    const origin = `http://${gateway.http}`;
    const pool = new Pool(origin, { connections: 80 });
    cleanups.push(() => pool.destroy());
    const rpc = v2Client(gateway.grpc);
    cleanups.push(() => rpc.close());

    // Warm up both surfaces (connections to the gateway and from it to both backends).
    expectEcho(await restInfer(pool, 'echo', 1), 1, 'warm-up REST via gRPC backend');
    expectEcho(await restInfer(pool, 'rest.echo', 2), 2, 'warm-up REST via REST backend');
    expectGrpcEcho(await grpcInfer(rpc, 3), 3, 'warm-up gRPC');
    const before = triton.stats.inferCalls;

    const REST = 60;
    const GRPC = 12;
    const rest = Array.from({ length: REST }, (_, i) => restInfer(pool, i % 2 === 0 ? 'echo' : 'rest.echo', 100 + i));
    const grpcCalls = Array.from({ length: GRPC }, (_, i) => grpcInfer(rpc, 500 + i));
    await untilBackendCalls(triton, before + REST + GRPC);

    const exit = gateway.kill('SIGTERM');
    const signalledAt = Date.now();

    // Readiness on fresh connections, and new requests (REST on fresh connections, gRPC on the open channel),
    // until the listener refuses connections.
    const readinessSeen: (number | string)[] = [];
    let drainingSeenAt: number | undefined;
    const late: { n: number; sentAt: number; outcome: Promise<RestOutcome> }[] = [];
    const lateGrpc: { n: number; outcome: Promise<GrpcOutcome> }[] = [];
    let refusedAt: number | undefined;
    for (let i = 0; Date.now() - signalledAt < 4_000; i++) {
      const state = await readiness(origin);
      readinessSeen.push(state);
      if (state === 503) drainingSeenAt ??= Date.now();
      if (state === 'ECONNREFUSED') {
        refusedAt ??= Date.now();
        // A few more attempts after the refusal, then stop.
        if (Date.now() - refusedAt > 300) break;
      }
      if (i % 2 === 0) {
        const n = 1_000 + i;
        late.push({ n, sentAt: Date.now(), outcome: freshRequest(origin, (client) => restInfer(client, 'echo', n)) });
        lateGrpc.push({ n: 2_000 + i, outcome: grpcInfer(rpc, 2_000 + i) });
      }
      await sleep(20);
    }

    // Readiness: maybe 200 until the signal is handled, then 503 while the listener is open, then refused.
    const first503 = readinessSeen.indexOf(503);
    expect(first503, `readiness after SIGTERM: ${readinessSeen.join(' ')}`).toBeGreaterThanOrEqual(0);
    expect(readinessSeen.slice(first503).filter((s) => s === 200), `readiness after SIGTERM: ${readinessSeen.join(' ')}`).toEqual([]);
    // A probe whose connection sat in the accept queue as the listener closed is reset by the kernel: allowed only
    // right at that moment, just before the refusals start.
    const firstRefused = readinessSeen.indexOf('ECONNREFUSED');
    const atClose = (i: number) => readinessSeen[i] === 'ECONNRESET' && firstRefused >= 0 && i === firstRefused - 1;
    expect(readinessSeen.filter((s, i) => s !== 200 && s !== 503 && s !== 'ECONNREFUSED' && !atClose(i)), readinessSeen.join(' ')).toEqual([]);
    expect(refusedAt, 'the listener closes after the delay').toBeDefined();
    // The delay is honoured (a generous lower bound: at least most of the 500 ms).
    expect(refusedAt! - signalledAt).toBeGreaterThanOrEqual(350);

    // Every request in flight at the signal: 200 with its own complete answer.
    const restOutcomes = await Promise.all(rest);
    restOutcomes.forEach((o, i) => expectEcho(o, 100 + i, `in-flight REST #${i}`));
    // Answers written while draining close their keep-alive connections. (Under a busy CPU some requests may
    // have been answered before the gateway handled the signal: only those that came well after readiness was
    // seen false are sure to have been written while draining.)
    const drainedAnswers = restOutcomes.filter((o) => o.kind === 'response' && o.at > drainingSeenAt! + 100);
    expect(drainedAnswers.map((o) => header(o, 'connection'))).toEqual(drainedAnswers.map(() => 'close'));

    // Requests sent after the signal: served in full (accepted during the delay), a clear error, or refused.
    const lateRest = await Promise.all(late.map(async ({ n, sentAt, outcome }) => ({ n, sentAt, outcome: await outcome })));
    for (const { n, sentAt, outcome } of lateRest) {
      if (outcome.kind === 'response' && outcome.status === 200) {
        expectEcho(outcome, n, `late REST ${n}`);
        if (sentAt > drainingSeenAt!) expect(header(outcome, 'connection'), `late REST ${n}`).toBe('close');
      }
      else if (outcome.kind === 'response') {
        expect(outcome.status, outcome.body).toBe(503);
        expect(JSON.parse(outcome.body)).toMatchObject({ error: expect.any(String) });
      } else {
        // Refused once the listener is closed; a connection still in the accept queue as it closed is reset by the
        // kernel instead (as for the probes above).
        expect(outcome, `late REST ${n}`).toMatchObject({ kind: 'no-response' });
        expect(['ECONNREFUSED', 'ECONNRESET'], `late REST ${n}`).toContain((outcome as { code?: string }).code);
      }
    }
    // Some were accepted during the delay, some refused after it.
    expect(lateRest.some(({ outcome }) => outcome.kind === 'response' && outcome.status === 200)).toBe(true);
    expect(lateRest.some(({ outcome }) => outcome.kind === 'no-response')).toBe(true);

    expect(await exit, gateway.output()).toEqual({ code: 0, signal: null });
    expect(gateway.output()).toContain('gateway stopped');
    expect(gateway.output()).not.toContain('drain time is up');

    // gRPC, the same: the calls in flight at the signal, and those sent after it (served in full if they arrived
    // during the delay, else UNAVAILABLE once the listener has gone).
    const grpcOutcomes = await Promise.all(grpcCalls);
    grpcOutcomes.forEach((o, i) => expectGrpcEcho(o, 500 + i, `in-flight gRPC #${i}`));
    for (const { n, outcome } of await Promise.all(lateGrpc.map(async ({ n, outcome }) => ({ n, outcome: await outcome })))) {
      if (outcome.ok) expectGrpcEcho(outcome, n, `late gRPC ${n}`);
      else expect(outcome.error.code, `late gRPC ${n}: ${outcome.error.details}`).toBe(grpc.status.UNAVAILABLE);
    }
  });

  it('with a drain shorter than the backend latency: in-flight requests get 503 / UNAVAILABLE naming the shutdown, and the process exits early', async () => {
    const LATENCY_MS = 5_000;
    const { triton, gateway } = await startPair(LATENCY_MS, { shutdown_delay_ms: 0, drain_ms: 200 });
    const origin = `http://${gateway.http}`;
    const pool = new Pool(origin, { connections: 40 });
    cleanups.push(() => pool.destroy());
    const rpc = v2Client(gateway.grpc);
    cleanups.push(() => rpc.close());
    // Connect the gRPC channel first (ServerLive is answered by the gateway itself, without the backend).
    await rpc.unary('ServerLive', {});

    const REST = 30;
    const GRPC = 6;
    const startedAt = Date.now();
    const rest = Array.from({ length: REST }, (_, i) => restInfer(pool, i % 2 === 0 ? 'echo' : 'rest.echo', 100 + i));
    const grpcCalls = Array.from({ length: GRPC }, (_, i) => grpcInfer(rpc, 500 + i));
    await untilBackendCalls(triton, REST + GRPC);

    const signalledAt = Date.now();
    const exit = await gateway.kill('SIGTERM');
    const exitedAfterMs = Date.now() - signalledAt;
    expect(exit, gateway.output()).toEqual({ code: 0, signal: null });
    // The backend would have answered LATENCY_MS after the requests started; the gateway gave up after its
    // 200 ms drain (plus process exit), far sooner. Bound: well under the latency still left at the signal.
    expect(exitedAfterMs, gateway.output()).toBeLessThan(LATENCY_MS - (signalledAt - startedAt) - 1_500);
    expect(gateway.output()).toContain('drain time is up');

    for (const [i, outcome] of (await Promise.all(rest)).entries()) {
      expect(outcome, `REST #${i}`).toMatchObject({ kind: 'response', status: 503 });
      if (outcome.kind !== 'response') continue;
      expect(outcome.headers['content-type'], `REST #${i}`).toMatch(/^application\/json/);
      expect(JSON.parse(outcome.body), `REST #${i}`).toEqual({ error: expect.stringMatching(/shutting down/) });
      expect(Number(header(outcome, 'retry-after')), `REST #${i}`).toBeGreaterThanOrEqual(1);
      expect(header(outcome, 'connection'), `REST #${i}`).toBe('close');
    }
    for (const [i, outcome] of (await Promise.all(grpcCalls)).entries()) {
      expect(outcome.ok, `gRPC #${i}`).toBe(false);
      if (outcome.ok) continue;
      expect({ code: outcome.error.code, details: outcome.error.details }, `gRPC #${i}`).toEqual({
        code: grpc.status.UNAVAILABLE,
        details: expect.stringMatching(/shutting down/),
      });
      expect(Number(outcome.error.metadata.get('grpc-retry-pushback-ms')[0]), `gRPC #${i}`).toBeGreaterThanOrEqual(1);
    }
  });

  it('the last request to finish during the drain is a gRPC call: its reply still arrives in full', async () => {
    // One gRPC call in flight and nothing else: when it completes, the drain is over and the gateway closes its
    // listeners. The reply must reach the client before the connection goes.
    const { triton, gateway } = await startPair(800, { shutdown_delay_ms: 0, drain_ms: 10_000 });
    const rpc = v2Client(gateway.grpc);
    cleanups.push(() => rpc.close());
    await rpc.unary('ServerLive', {});

    const call = grpcInfer(rpc, 42);
    await untilBackendCalls(triton, 1);
    const exit = await gateway.kill('SIGTERM');
    expect(exit, gateway.output()).toEqual({ code: 0, signal: null });
    expectGrpcEcho(await call, 42, 'the one gRPC call in flight at the signal');
  });

  it('keep-alive clients: a response written while draining carries connection: close, and the next request goes elsewhere', async () => {
    const { gateway } = await startPair(600, { shutdown_delay_ms: 1_000, drain_ms: 10_000 });
    const origin = `http://${gateway.http}`;
    // Two keep-alive clients, one connection each.
    const busy = new Client(origin, { pipelining: 1 });
    const idle = new Client(origin, { pipelining: 1 });
    cleanups.push(() => busy.destroy(), () => idle.destroy());

    // Before the signal, answers keep the connection open.
    const beforeBusy = await restInfer(busy, 'echo', 1);
    const beforeIdle = await restInfer(idle, 'rest.echo', 2);
    expectEcho(beforeBusy, 1, 'busy, before');
    expectEcho(beforeIdle, 2, 'idle, before');
    expect(header(beforeBusy, 'connection')).toBe('keep-alive');
    expect(header(beforeIdle, 'connection')).toBe('keep-alive');

    // `busy` has a request in flight at the signal; `idle` sends one on its open connection during the delay.
    const inFlight = restInfer(busy, 'echo', 3);
    await sleep(150);
    const exit = gateway.kill('SIGTERM');
    const states: (number | string)[] = [];
    while (states.at(-1) !== 503) {
      states.push(await readiness(origin));
      expect(states.length, states.join(' ')).toBeLessThan(100);
      if (states.at(-1) !== 503) await sleep(10);
    }
    const duringDelay = await restInfer(idle, 'rest.echo', 4);

    const inFlightOutcome = await inFlight;
    expectEcho(inFlightOutcome, 3, 'busy, in flight at the signal');
    expect(header(inFlightOutcome, 'connection')).toBe('close');
    expectEcho(duringDelay, 4, 'idle, sent during the delay');
    expect(header(duringDelay, 'connection')).toBe('close');

    // Both connections were closed by those answers; once the listener has closed, a new one is refused.
    await sleep(1_000);
    const after = await restInfer(idle, 'echo', 5);
    expect(after).toMatchObject({ kind: 'no-response', code: 'ECONNREFUSED' });

    expect(await exit, gateway.output()).toEqual({ code: 0, signal: null });
  });
});
