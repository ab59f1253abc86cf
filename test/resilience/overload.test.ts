// Load shedding of the real CLI (a child process) at about 10x its capacity: every request is answered at once
// (200, or 429/503 with Retry-After and a JSON error; RESOURCE_EXHAUSTED/UNAVAILABLE with grpc-retry-pushback-ms
// over gRPC), health probes answer 200 throughout, memory stays flat, and the gateway serves normally afterwards.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { grpc, v2Client, type Message, type V2Client } from '../helpers/grpc-client.js';
import { rssBytes, spawnGateway, type ChildServer } from '../helpers/processes.js';

const MB = 1024 * 1024;
/** Gateway-wide limit (server.max_in_flight_requests). */
const MAX_IN_FLIGHT_REQUESTS = 200;
/** The backend's concurrency: 16 calls at once, 32 waiting up to 100 ms; at 30 ms latency about 500 calls/s. */
const BACKEND_CONCURRENCY = { max_in_flight: 16, max_queued: 32, max_queue_wait_ms: 100 };
const BACKEND_LATENCY_MS = 30;
/** Concurrent REST clients: 10x the gateway-wide limit, about 40x what the backend takes at once with its queue. */
const REST_CLIENTS = 2_000;
const REST_LOAD_MS = 10_000;
/**
 * The clients connect over this long, each sending one request, and only then all start the overload together.
 * Connecting 2000 clients in one burst, while the gateway is already saturated, can overflow the listen backlog
 * (the gateway asks for 4096; the kernel caps it at net.core.somaxconn) and the kernel then holds those
 * connections before the gateway ever sees them
 * (TcpExtListenOverflows; requests hanging 10+ s, then ECONNRESET or a connect timeout). Clients and load
 * balancers keep their connections open; this test is about what the gateway does with the requests it gets.
 */
const RAMP_MS = 2_000;
const GRPC_CLIENTS = 1_000;
const GRPC_LOAD_MS = 6_000;
/** No answer may take longer than this (generous: the shed ones are answered at once, the rest in ~100 ms). */
const ANSWER_BOUND_MS = 15_000;

let dir: string;
let triton: TritonReference;
let gateway: ChildServer;
let origin: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'infergate-overload-'));
  triton = await startTritonReference({ host: '127.0.0.1', latencyMs: BACKEND_LATENCY_MS });
  const config = {
    server: {
      http: { host: '127.0.0.1', port: 0 },
      grpc: { host: '127.0.0.1', port: 0 },
      // info is needed for spawnGateway's 'gateway listening' line; shed requests are logged at a lower level
      // or not at all, and the helper keeps only the last 64 KiB of output either way.
      log_level: 'info',
      request_timeout_ms: 10_000,
      max_in_flight_requests: MAX_IN_FLIGHT_REQUESTS,
      drain_ms: 2_000,
    },
    auth: { enabled: false },
    backends: {
      triton: {
        kind: 'triton',
        protocol: 'grpc',
        endpoints: [triton.grpcEndpoint],
        concurrency: BACKEND_CONCURRENCY,
        // Shedding is the gateway's own answer, not the backend's failure: keep the breaker out of this test.
        circuit_breaker: { enabled: false },
        health_check: { interval_ms: 0 },
      },
    },
    models: { echo: { backend: 'triton', model: 'identity_int32' } },
  };
  const file = join(dir, 'gateway.yaml');
  await writeFile(file, JSON.stringify(config, null, 2));
  gateway = await spawnGateway(file);
  origin = `http://${gateway.http}`;
}, 30_000);

afterAll(async () => {
  await gateway?.kill('SIGTERM');
  await triton?.close();
  await rm(dir, { recursive: true, force: true });
});

// ---- requests -------------------------------------------------------------------------------------------------

const valuesOf = (n: number): number[] => [n, n + 1_000, -n, 7];
const restBody = (n: number): string =>
  JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 4], data: valuesOf(n) }] });

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

async function infer(dispatcher: Client, n: number): Promise<Reply> {
  const res = await dispatcher.request({
    method: 'POST',
    path: '/v2/models/echo/infer',
    headers: { 'content-type': 'application/json' },
    body: restBody(n),
    headersTimeout: ANSWER_BOUND_MS,
    bodyTimeout: ANSWER_BOUND_MS,
  });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

/** What is wrong with a reply under overload, or undefined when it is a correct 200 or a proper shed answer. */
function problemOf(reply: Reply, n: number): string | undefined {
  if (reply.status === 200) {
    const parsed = JSON.parse(reply.body) as { outputs?: { name: string; data: number[] }[] };
    const out = parsed.outputs?.[0];
    return out?.name === 'OUTPUT0' && JSON.stringify(out.data) === JSON.stringify(valuesOf(n)) ? undefined : `wrong body ${reply.body}`;
  }
  if (reply.status !== 429 && reply.status !== 503) return `status ${reply.status}: ${reply.body}`;
  const retryAfter = Number(reply.headers['retry-after']);
  if (!(retryAfter >= 1)) return `status ${reply.status} without Retry-After`;
  try {
    const error = (JSON.parse(reply.body) as { error?: unknown }).error;
    if (typeof error !== 'string' || error === '') return `status ${reply.status} without an error message: ${reply.body}`;
  } catch {
    return `status ${reply.status} with a body that is not JSON: ${reply.body}`;
  }
  return undefined;
}

function grpcRequest(n: number): Message {
  const raw = Buffer.alloc(16);
  valuesOf(n).forEach((v, i) => raw.writeInt32LE(v, i * 4));
  return { model_name: 'echo', id: `g${n}`, inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: ['1', '4'] }], raw_input_contents: [raw] };
}

/** Samples GET /v2/health/live and /ready every `everyMs` on a connection of their own, until stop() is called. */
function sampleHealth(everyMs: number): { stop(): Promise<{ path: string; status: number | string; ms: number }[]> } {
  const client = new Client(origin, { pipelining: 1 });
  const samples: { path: string; status: number | string; ms: number }[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      for (const path of ['/v2/health/live', '/v2/health/ready']) {
        const started = Date.now();
        try {
          const res = await client.request({ method: 'GET', path, headersTimeout: ANSWER_BOUND_MS, bodyTimeout: ANSWER_BOUND_MS });
          await res.body.dump();
          samples.push({ path, status: res.statusCode, ms: Date.now() - started });
        } catch (err) {
          samples.push({ path, status: (err as { code?: string }).code ?? String(err), ms: Date.now() - started });
        }
      }
      await sleep(everyMs);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      await client.close();
      return samples;
    },
  };
}

/** Samples the gateway's RSS every `everyMs` until stop() is called. */
function sampleRss(pid: number, everyMs: number): { stop(): Promise<number[]> } {
  const samples: number[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      samples.push(await rssBytes(pid));
      await sleep(everyMs);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return samples;
    },
  };
}

const mb = (bytes: number): number => Math.round(bytes / MB);

/** The host's TcpExtListenOverflows counter (connections dropped because a listen backlog was full), for the report. */
async function listenOverflows(): Promise<number> {
  try {
    const lines = (await readFile('/proc/net/netstat', 'utf8')).split('\n').filter((l) => l.startsWith('TcpExt:'));
    const names = lines[0]?.split(/\s+/) ?? [];
    const values = lines[1]?.split(/\s+/) ?? [];
    return Number(values[names.indexOf('ListenOverflows')] ?? NaN);
  } catch {
    return NaN;
  }
}

describe('10x overload of the gateway process', () => {
  it('REST: every request is answered (200, or 429/503 with Retry-After and a JSON error), probes stay 200, RSS stays flat', async () => {
    // Warm-up, and the RSS before any load.
    const warm = new Client(origin);
    expect(problemOf(await infer(warm, 1), 1)).toBeUndefined();
    await warm.close();
    const idleRss = await rssBytes(gateway.pid);

    // 2000 concurrent clients, each on a keep-alive connection of its own, connected over RAMP_MS, then each
    // sending its next request as soon as the previous one is answered: no backing off on Retry-After, the
    // worst case for the gateway. (One connection per client, not a shared pool: a pool leaves some connections
    // idle long enough to be closed, and reconnecting under saturation hits the listen backlog again.)
    const clients = Array.from({ length: REST_CLIENTS }, () => new Client(origin, { pipelining: 1, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000 }));
    const counts = new Map<string, number>();
    const problems: string[] = [];
    let slowest = 0;
    const count = (key: string): void => void counts.set(key, (counts.get(key) ?? 0) + 1);

    const health = sampleHealth(500);
    let rss: ReturnType<typeof sampleRss> | undefined;
    let stopAt = Infinity;
    let next = 10;
    const overflowsBefore = await listenOverflows();
    const send = async (pool: Client): Promise<void> => {
      const n = next++;
      const started = Date.now();
      try {
        const reply = await infer(pool, n);
        count(String(reply.status));
        const problem = problemOf(reply, n);
        if (problem !== undefined) problems.push(problem);
      } catch (err) {
        count(`error ${(err as { code?: string }).code ?? String(err)}`);
      }
      slowest = Math.max(slowest, Date.now() - started);
    };
    // Ramp: each client connects with one request; then all of them at once, for REST_LOAD_MS.
    let connected = 0;
    let go: () => void = () => {};
    const allConnected = new Promise<void>((resolve) => (go = resolve));
    const worker = async (pool: Client, startInMs: number): Promise<void> => {
      await sleep(startInMs);
      await send(pool);
      if (++connected === REST_CLIENTS) go();
      // Until everyone is connected, a light probe every second keeps this connection from idling out.
      let waiting = true;
      void allConnected.then(() => (waiting = false));
      while (waiting) {
        await Promise.race([allConnected, sleep(1_000)]);
        if (!waiting) break;
        const res = await pool.request({ method: 'GET', path: '/v2/health/live', headersTimeout: ANSWER_BOUND_MS, bodyTimeout: ANSWER_BOUND_MS });
        await res.body.dump();
      }
      while (Date.now() < stopAt) await send(pool);
    };
    const workers = Array.from({ length: REST_CLIENTS }, (_, i) => worker(clients[i]!, (i * RAMP_MS) / REST_CLIENTS));
    try {
      await Promise.race([allConnected, Promise.all(workers)]);
      stopAt = Date.now() + REST_LOAD_MS;
      rss = sampleRss(gateway.pid, 500);
      await Promise.all(workers);
    } finally {
      await Promise.all(clients.map((p) => p.close()));
    }
    const healthSamples = await health.stop();
    const rssSamples = (await rss?.stop()) ?? [];

    const byStatus = Object.fromEntries([...counts.entries()].sort());
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    const report = {
      byStatus,
      total,
      slowestMs: slowest,
      listenOverflows: (await listenOverflows()) - overflowsBefore,
      idleRssMb: mb(idleRss),
      rssMb: rssSamples.map(mb),
      health: healthSamples.map((s) => `${s.path.slice(11)}=${s.status}/${s.ms}ms`),
    };
    console.log(`REST overload: ${JSON.stringify(report)}`);

    // Every request answered, none with a transport error, none past the bound, each answer well-formed.
    expect(Object.keys(byStatus).filter((k) => !['200', '429', '503'].includes(k)), JSON.stringify(report)).toEqual([]);
    expect(problems.slice(0, 5), JSON.stringify(report)).toEqual([]);
    expect(slowest).toBeLessThan(ANSWER_BOUND_MS);
    // Real overload: much was shed, and the backend still did useful work.
    // (How many depends on the CPU left to the gateway: this machine may run other test files alongside.)
    expect(byStatus['200'] ?? 0, JSON.stringify(report)).toBeGreaterThan(100);
    expect((byStatus['429'] ?? 0) + (byStatus['503'] ?? 0), JSON.stringify(report)).toBeGreaterThan(byStatus['200'] ?? 0);

    // Probes: the gateway-wide limit never refuses them.
    expect(healthSamples.length).toBeGreaterThanOrEqual(6);
    expect(healthSamples.filter((s) => s.status !== 200), JSON.stringify(report.health)).toEqual([]);

    // Memory: bounded, and levelling off. V8 grows its heap in steps for the first seconds of a high allocation
    // rate (2000 connections' buffers and ~6k answers a second here), then collects at that size: measured by hand
    // with wrk -c2000 for 30 s (257k requests), RSS rose to ~245 MB within 10 s and stayed there; later, wrk -c2000
    // for 45 s (341k requests, this config) held the build at ~150 MB and for 30 s the tsx entry point at ~190 MB,
    // flat. On a fast machine the 10 s here can end while the heap is still growing (60-70k requests: the middle
    // third peaked near 240 MB and the last near 300 MB), so the check is that the last third of the samples does
    // not climb far above the middle third's peak (memory kept per request would keep climbing), under an absolute
    // cap for this many connections; bench/soak.ts is the long check (5 minutes, flat).
    expect(rssSamples.length).toBeGreaterThanOrEqual(10);
    expect(Math.max(...rssSamples), JSON.stringify(report.rssMb)).toBeLessThan(400 * MB);
    const third = Math.floor(rssSamples.length / 3);
    const middle = Math.max(...rssSamples.slice(third, 2 * third));
    const late = Math.max(...rssSamples.slice(2 * third));
    expect(late, JSON.stringify(report.rssMb)).toBeLessThanOrEqual(middle * 1.3 + 30 * MB);

    // After the load: normal service.
    const after = new Client(origin);
    try {
      const reply = await infer(after, 7);
      expect(reply.status, reply.body).toBe(200);
      expect(problemOf(reply, 7)).toBeUndefined();
    } finally {
      await after.close();
    }
  }, 60_000);

  it('gRPC: the same shedding as RESOURCE_EXHAUSTED or UNAVAILABLE with grpc-retry-pushback-ms', async () => {
    const clients: V2Client[] = Array.from({ length: 1 }, () => v2Client(gateway.grpc));
    const counts = new Map<string, number>();
    const problems: string[] = [];
    const count = (key: string): void => void counts.set(key, (counts.get(key) ?? 0) + 1);
    const probes: string[] = [];
    const health = sampleHealth(500);
    const stopAt = Date.now() + GRPC_LOAD_MS;
    let next = 10;
    const worker = async (client: V2Client): Promise<void> => {
      while (Date.now() < stopAt) {
        const n = next++;
        try {
          const reply = await client.unary('ModelInfer', grpcRequest(n));
          count('OK');
          const raw = (reply.raw_output_contents as Buffer[])[0]!;
          const got = [0, 1, 2, 3].map((i) => raw.readInt32LE(i * 4));
          if (JSON.stringify(got) !== JSON.stringify(valuesOf(n))) problems.push(`wrong reply ${JSON.stringify(got)} for ${n}`);
        } catch (err) {
          const e = err as grpc.ServiceError;
          const name = grpc.status[e.code] ?? String(e.code);
          count(name);
          if (e.code !== grpc.status.RESOURCE_EXHAUSTED && e.code !== grpc.status.UNAVAILABLE) problems.push(`${name}: ${e.details}`);
          else if (!(Number(e.metadata?.get('grpc-retry-pushback-ms')[0]) >= 1)) problems.push(`${name} without grpc-retry-pushback-ms: ${e.details}`);
        }
      }
    };
    // gRPC health on a connection of its own (a local subchannel pool keeps it off the load's connection), as a
    // prober's would be; answered by the gateway itself.
    const Ctor = clients[0]!.raw.constructor as new (address: string, creds: grpc.ChannelCredentials, options: object) => V2Client['raw'];
    const probe = new Ctor(gateway.grpc, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    const probeCall = (rpc: 'ServerLive' | 'ServerReady'): Promise<Message> =>
      new Promise((resolve, reject) => {
        probe[rpc]!.call(probe, {}, new grpc.Metadata(), { deadline: Date.now() + ANSWER_BOUND_MS }, (err: grpc.ServiceError | null, res: Message) =>
          err ? reject(err) : resolve(res),
        );
      });
    const grpcProbes = (async () => {
      while (Date.now() < stopAt) {
        try {
          const live = await probeCall('ServerLive');
          const ready = await probeCall('ServerReady');
          probes.push(`${String(live.live)}/${String(ready.ready)}`);
        } catch (err) {
          probes.push(`error ${(err as grpc.ServiceError).code}`);
        }
        await sleep(250);
      }
    })();
    try {
      await Promise.all([...Array.from({ length: GRPC_CLIENTS }, (_, i) => worker(clients[i % clients.length]!)), grpcProbes]);
    } finally {
      for (const c of clients) c.close();
      probe.close();
    }
    const healthSamples = await health.stop();
    const byStatus = Object.fromEntries([...counts.entries()].sort());
    console.log(`gRPC overload: ${JSON.stringify({ byStatus, probes, health: healthSamples.map((s) => `${s.status}/${s.ms}ms`) })}`);

    expect(problems.slice(0, 5), JSON.stringify(byStatus)).toEqual([]);
    expect(Object.keys(byStatus).filter((k) => !['OK', 'RESOURCE_EXHAUSTED', 'UNAVAILABLE'].includes(k))).toEqual([]);
    // Served and shed both; the counts depend on the CPU the other test files leave (they run in parallel), so the
    // bounds are loose: some served (never all refused), more shed than served, and the probes answered.
    expect(byStatus.OK ?? 0, JSON.stringify(byStatus)).toBeGreaterThan(5);
    expect((byStatus.RESOURCE_EXHAUSTED ?? 0) + (byStatus.UNAVAILABLE ?? 0), JSON.stringify(byStatus)).toBeGreaterThan(byStatus.OK ?? 0);
    expect(probes.length).toBeGreaterThanOrEqual(1);
    expect(probes.filter((p) => p !== 'true/true')).toEqual([]);
    expect(healthSamples.filter((s) => s.status !== 200)).toEqual([]);

    // After the load: normal service over gRPC.
    const after = v2Client(gateway.grpc);
    try {
      const reply = await after.unary('ModelInfer', grpcRequest(7));
      expect((reply.raw_output_contents as Buffer[])[0]!.readInt32LE(4)).toBe(1_007);
    } finally {
      after.close();
    }
  }, 40_000);
});
