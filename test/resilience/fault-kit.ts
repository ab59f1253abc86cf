// Shared pieces of the fault-injection tests (test/resilience/faults*.test.ts): an in-process gateway built from a
// plain config object, REST and gRPC inference calls that report what the client saw (status, headers or trailers,
// elapsed time) instead of throwing, a bounded load generator, and the gateway's per-endpoint resilience state.
import { Pool } from 'undici';
import { validateConfig } from '../../src/config/load.js';
import { startGateway, type RunningGateway } from '../../src/gateway.js';
import { silentLogger } from '../../src/observability/logger.js';
import type { BackendHealthView } from '../../src/api/http/admin.js';
import type { EndpointStatus } from '../../src/resilience/resilient-backend.js';
import { grpc, v2Client, type Message, type V2Client } from '../helpers/grpc-client.js';
import { postJson } from '../helpers/http.js';

export const LINEAR_BODY = { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] };
export const BAD_BODY = { inputs: [{ name: 'WRONG', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] };
export const LINEAR_SCORES = [7, 5, 2.75];
/** Background health checks off: only the circuit breakers take endpoints out of rotation. */
export const NO_CHECKS = { health_check: { interval_ms: 0 } } as const;

export interface FaultGateway {
  readonly gateway: RunningGateway;
  readonly http: Pool;
  readonly grpc: V2Client;
  readonly httpBase: string;
  /** The backend's endpoints as backendStatus() reports them (breaker, calls, failures, ejection). */
  backend(name: string): BackendHealthView;
  endpoint(backend: string, index: number): EndpointStatus;
  close(): Promise<void>;
}

/** Starts a gateway on free loopback ports from config sections (validated like a config file). */
export async function startFaultGateway(
  sections: { backends: Record<string, unknown>; models: Record<string, unknown>; targets?: Record<string, unknown>; server?: Record<string, unknown> },
  opts: { connections?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<FaultGateway> {
  const config = validateConfig({
    auth: { enabled: false },
    server: {
      http: { host: '127.0.0.1', port: 0 },
      grpc: { host: '127.0.0.1', port: 0 },
      request_timeout_ms: 10_000,
      log_level: 'silent',
      ...sections.server,
    },
    backends: sections.backends,
    ...(sections.targets !== undefined ? { targets: sections.targets } : {}),
    models: sections.models,
  });
  const gateway = await startGateway(config, silentLogger, { env: opts.env ?? {} });
  const httpBase = `http://127.0.0.1:${gateway.httpPort}`;
  const http = new Pool(httpBase, { connections: opts.connections ?? 32 });
  const client = v2Client(`127.0.0.1:${gateway.grpcPort}`);
  const backend = (name: string): BackendHealthView => {
    const found = gateway.backendStatus().find((b) => b.name === name);
    if (found === undefined) throw new Error(`no backend ${name}`);
    return found;
  };
  return {
    gateway,
    http,
    grpc: client,
    httpBase,
    backend,
    endpoint: (name, index) => backend(name).endpoints[index]!,
    async close() {
      client.close();
      await http.close();
      await gateway.close(500);
    },
  };
}

/** What a REST client saw. */
export interface RestOutcome {
  readonly status: number;
  readonly ms: number;
  readonly retryAfter: string | undefined;
  readonly target: string | undefined;
  readonly attempts: string | undefined;
  readonly text: string;
}

export async function restInfer(pool: Pool, model: string, headers: Record<string, string> = {}, body: unknown = LINEAR_BODY): Promise<RestOutcome> {
  const started = performance.now();
  try {
    const reply = await postJson(pool, `/v2/models/${model}/infer`, body, headers);
    const h = (name: string): string | undefined => {
      const v = reply.headers[name];
      return Array.isArray(v) ? v[0] : v;
    };
    return {
      status: reply.status,
      ms: performance.now() - started,
      retryAfter: h('retry-after'),
      target: h('x-infergate-target'),
      attempts: h('x-infergate-attempts'),
      text: reply.text(),
    };
  } catch (err) {
    // The gateway cut the connection: a client error like any other, status 0.
    return { status: 0, ms: performance.now() - started, retryAfter: undefined, target: undefined, attempts: undefined, text: String(err) };
  }
}

/** What a gRPC client saw: code 0 is OK. */
export interface GrpcOutcome {
  readonly code: grpc.status;
  readonly details: string;
  readonly ms: number;
  readonly trailers: grpc.Metadata;
  readonly reply?: Message;
}

export function linearMessage(model: string): Message {
  return { model_name: model, inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: ['1', '4'], contents: { fp32_contents: [1, 2, 3, 4] } }] };
}

export function grpcInfer(client: V2Client, model: string, deadlineMs = 10_000, request: Message = linearMessage(model)): Promise<GrpcOutcome> {
  const started = performance.now();
  return new Promise((resolve) => {
    let result: { code: grpc.status; details: string; reply?: Message } = { code: grpc.status.OK, details: '' };
    const call = client.raw.ModelInfer!.call(
      client.raw,
      request,
      new grpc.Metadata(),
      { deadline: Date.now() + deadlineMs },
      (err: grpc.ServiceError | null, reply: Message) => {
        result = err ? { code: err.code, details: err.details } : { code: grpc.status.OK, details: '', reply };
      },
    ) as grpc.ClientUnaryCall;
    call.on('status', (s: grpc.StatusObject) => setImmediate(() => resolve({ ...result, ms: performance.now() - started, trailers: s.metadata })));
  });
}

/** Runs `n` calls with at most `inFlight` at once; results in call order. */
export async function bounded<T>(n: number, inFlight: number, call: (i: number) => Promise<T>): Promise<T[]> {
  const out = new Array<T>(n);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < n; i = next++) out[i] = await call(i);
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, n) }, worker));
  return out;
}

/** `workers` loops calling `call` until stop() (or `maxMs`, a safety bound); every result is kept. */
export function steadyLoad<T>(workers: number, call: () => Promise<T>, maxMs: number): { results: T[]; stop(): Promise<T[]> } {
  const results: T[] = [];
  let stopped = false;
  const until = Date.now() + maxMs;
  const loops = Array.from({ length: workers }, async () => {
    while (!stopped && Date.now() < until) results.push(await call());
  });
  return {
    results,
    async stop() {
      stopped = true;
      await Promise.all(loops);
      return results;
    },
  };
}

/** Polls `probe` every `intervalMs` until it returns true; throws with `what` after `timeoutMs`. */
export async function until(what: string, probe: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 10): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

export function countBy<T>(items: readonly T[], key: (t: T) => string | number): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) {
    const k = String(key(item));
    counts[k] = (counts[k] ?? 0) + 1;
  }
  return counts;
}

/** A short list of what went wrong, for assertion messages (empty when nothing did). */
export function restFailures(outcomes: readonly RestOutcome[]): string[] {
  return outcomes.filter((o) => o.status !== 200).slice(0, 5).map((o) => `${o.status} ${o.text.slice(0, 200)}`);
}

export function grpcFailures(outcomes: readonly GrpcOutcome[]): string[] {
  return outcomes.filter((o) => o.code !== grpc.status.OK).slice(0, 5).map((o) => `${grpc.status[o.code]} ${o.details.slice(0, 200)}`);
}

export { grpc };
