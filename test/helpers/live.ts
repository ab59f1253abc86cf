import { Pool } from 'undici';
import type { ApplyEvent, LiveConfig } from '../../src/config/live-config.js';
import { parseConfig } from '../../src/config/load.js';
import { startGateway, type GatewayOptions, type RunningGateway } from '../../src/gateway.js';
import { silentLogger } from '../../src/observability/logger.js';
import type { TritonReference } from '../../reference/triton/index.js';
import { call, type HttpReply } from './http.js';

export const ADMIN_KEY = 'test-admin-key';
/** The environment tests give the gateway: an admin key, and none of the runner's INFERGATE_* overrides. */
export const ADMIN_ENV: NodeJS.ProcessEnv = { INFERGATE_ADMIN_KEY: ADMIN_KEY };

export interface LiveTextOptions {
  /** The pinned version of public model `linear` (the reference answers with it as model_version). */
  readonly linearVersion?: '1' | '2';
  /** The backend serving `linear`. */
  readonly linearBackend?: 'triton-grpc' | 'triton-rest';
  /** Extra YAML lines under `backends:` and `models:` (indented two spaces). */
  readonly backends?: string;
  readonly models?: string;
  /** Extra top-level YAML (admin:, redis:). */
  readonly extra?: string;
  /** The top-level `auth:` YAML (default: `auth: { enabled: false }`; test/auth tests access control). */
  readonly auth?: string;
  readonly requestTimeoutMs?: number;
  readonly logLevel?: string;
}

/** A config text for a gateway in front of one reference Triton, on free loopback ports. */
export function liveText(triton: TritonReference, o: LiveTextOptions = {}): string {
  return `# test config
server:
  http: { host: 127.0.0.1, port: 0 }
  grpc: { host: 127.0.0.1, port: 0 }
  request_timeout_ms: ${o.requestTimeoutMs ?? 5000}
  max_body_bytes: 1048576
  log_level: ${o.logLevel ?? 'silent'}
backends:
  triton-grpc: { kind: triton, protocol: grpc, endpoints: ["${triton.grpcEndpoint}"] }
  triton-rest: { kind: triton, protocol: rest, endpoints: ["${triton.httpEndpoint}"] }
${o.backends ?? ''}
models:
  linear: { backend: ${o.linearBackend ?? 'triton-grpc'}, version: "${o.linearVersion ?? '2'}" }
  simple: { backend: triton-grpc }
${o.models ?? ''}
${o.auth ?? 'auth: { enabled: false }'}
${o.extra ?? ''}
`;
}

export interface LiveGateway {
  readonly gateway: RunningGateway;
  readonly pool: Pool;
  close(): Promise<void>;
}

export async function startLiveGateway(text: string, options: GatewayOptions = {}): Promise<LiveGateway> {
  const env = options.env ?? ADMIN_ENV;
  const gateway = await startGateway(parseConfig(text, 'test', env), silentLogger, { configText: text, env, ...options });
  const pool = new Pool(`http://127.0.0.1:${gateway.httpPort}`, { connections: 16 });
  return {
    gateway,
    pool,
    async close() {
      await pool.close();
      await gateway.close(1000);
    },
  };
}

export const LINEAR_REQUEST = '{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}';

/** One REST infer of `model`; resolves with the status and the model_version answered. */
export async function inferVersion(pool: Pool, model = 'linear'): Promise<{ status: number; version: string | undefined; body: string }> {
  const res = await call(pool, 'POST', `/v2/models/${model}/infer`, LINEAR_REQUEST, { 'content-type': 'application/json' });
  const body = res.text();
  let version: string | undefined;
  if (res.status === 200) version = (JSON.parse(body) as { model_version?: string }).model_version;
  return { status: res.status, version, body };
}

export function admin(
  pool: Pool,
  method: 'GET' | 'PUT' | 'POST' | 'DELETE' | 'PATCH',
  path: string,
  body?: string,
  /** null sends no Authorization header. */
  key: string | null = ADMIN_KEY,
): Promise<HttpReply> {
  return call(pool, method, path, body, key !== null ? { authorization: `Bearer ${key}` } : {});
}

/** The next result `live` reports that satisfies `match`. */
export function nextResult(live: LiveConfig, match: (e: ApplyEvent) => boolean = () => true, timeoutMs = 5_000): Promise<ApplyEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no matching config result within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = live.onResult((e) => {
      if (!match(e)) return;
      clearTimeout(timer);
      off();
      resolve(e);
    });
  });
}

/** Polls `probe` until it returns true; resolves with the time it took. */
export async function until(probe: () => boolean | Promise<boolean>, timeoutMs: number, what: string, everyMs = 20): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await probe()) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
