import { z } from 'zod';
import { BACKEND_KINDS, BACKEND_PROTOCOLS } from '../backends/backend.js';
import { MODEL_NAME_PATTERN } from '../core/names.js';
import { authSchema, rateLimitModelProblems, rateLimitsSchema } from './auth-schema.js';
import { parseExperiments } from './experiment-schema.js';
import { jobsSchema } from './jobs-schema.js';
import { streamsSchema } from './stream-schema.js';
import { parseRouteConfig, type RouteNodeConfig } from './route-schema.js';

/**
 * The gateway's configuration file (config/gateway.yaml), validated once at
 * load into typed values. Units are in the key names (`_ms`, `_bytes`).
 * Unknown keys are errors, so a typo never silently falls back to a default.
 */

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'must be host:port, e.g. 127.0.0.1:8001')
  .refine((s) => Number(s.slice(s.lastIndexOf(':') + 1)) <= 65535, 'port must be at most 65535');

const port = z.number().int().min(0).max(65535);

const listenerSchema = z.strictObject({
  host: z.string().min(1).default('0.0.0.0'),
  /** 0 picks a free port (tests). */
  port,
});

const serverSchema = z.strictObject({
  http: listenerSchema.default({ host: '0.0.0.0', port: 8000 }),
  grpc: listenerSchema.default({ host: '0.0.0.0', port: 8001 }),
  /** Largest request body (REST) or message (gRPC) accepted. */
  max_body_bytes: z
    .number()
    .int()
    .min(1024)
    .max(2 ** 31 - 1)
    .default(64 * 1024 * 1024),
  /** Deadline for a request that sets none of its own. */
  request_timeout_ms: z.number().int().positive().default(30_000),
  log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /**
   * Requests in flight in the whole gateway (inference and metadata; health
   * and admin calls are never refused). Beyond it a request is answered 503
   * with Retry-After before its body is read, so memory stays bounded.
   */
  max_in_flight_requests: z.number().int().min(1).max(1_000_000).default(10_000),
  /** On SIGTERM: longest wait for in-flight requests before the rest are answered 503 and connections close. */
  drain_ms: z.number().int().min(0).max(600_000).default(10_000),
  /** On SIGTERM: readiness reports false this long before the listeners close, so load balancers stop sending first. */
  shutdown_delay_ms: z.number().int().min(0).max(600_000).default(0),
});

/** An endpoint: "host:port", or { address, weight } for weighted round robin. */
const endpointSchema = z
  .union([hostPort, z.strictObject({ address: hostPort, weight: z.number().int().min(1).max(1000).default(1) })])
  .transform((e) => (typeof e === 'string' ? { address: e, weight: 1 } : e));

const loadBalancingSchema = z
  .strictObject({
    /**
     * least_request: power of two choices on outstanding requests (the default);
     * round_robin: weighted by each endpoint's weight; consistent_hash: a
     * request key picks the endpoint, so one key keeps one endpoint.
     */
    policy: z.enum(['least_request', 'round_robin', 'consistent_hash']).default('least_request'),
    /** With consistent_hash: the request header (or gRPC metadata) whose value is the key. */
    hash_header: z.string().regex(/^[A-Za-z0-9-]+$/, 'must be a header name').transform((h) => h.toLowerCase()).optional(),
  })
  .refine((lb) => lb.policy !== 'consistent_hash' || lb.hash_header !== undefined, {
    message: 'consistent_hash needs hash_header (the request header whose value is the key)',
    path: ['hash_header'],
  });

export type EndpointConfig = z.infer<typeof endpointSchema>;
export type LoadBalancingConfig = z.infer<typeof loadBalancingSchema>;

/** Per endpoint: opens on errors, takes the endpoint out of load balancing, probes it back in. */
export const circuitBreakerSchema = z.strictObject({
  enabled: z.boolean().default(true),
  /** Opens when failures exceed this percentage of the calls in the window. */
  error_threshold_percent: z.number().min(1).max(100).default(50),
  window_ms: z.number().int().min(100).max(3_600_000).default(10_000),
  window_buckets: z.number().int().min(1).max(100).default(10),
  /** Calls in the window before the breaker may open at all. */
  minimum_requests: z.number().int().min(1).default(20),
  /** How long an open breaker waits before probing the endpoint again. */
  reset_timeout_ms: z.number().int().min(10).max(3_600_000).default(5_000),
  /** Calls let through while half-open; all must succeed to close. */
  half_open_probes: z.number().int().min(1).max(100).default(1),
});

/** Retries of calls that never reached a backend or were refused as unavailable (connection refused/reset, UNAVAILABLE, 503). */
export const retrySchema = z
  .strictObject({
    /** Attempts per call, the first included: 1 turns retries off. */
    max_attempts: z.number().int().min(1).max(10).default(3),
    backoff_base_ms: z.number().int().min(0).max(60_000).default(10),
    backoff_max_ms: z.number().int().min(0).max(60_000).default(200),
    /** Retries at most this percentage of calls over budget_window_ms, so retries cannot multiply an outage. */
    budget_percent: z.number().min(0).max(100).default(20),
    budget_window_ms: z.number().int().min(1_000).max(600_000).default(10_000),
    /** Retries always allowed per second, so a backend with little traffic can still retry. */
    min_retries_per_second: z.number().min(0).max(10_000).default(5),
  })
  .refine((r) => r.backoff_max_ms >= r.backoff_base_ms, { message: 'backoff_max_ms must be at least backoff_base_ms', path: ['backoff_max_ms'] });

/** Load shedding: calls to the backend at once, and a bounded queue of calls waiting for a slot. */
export const concurrencySchema = z.strictObject({
  max_in_flight: z.number().int().min(1).max(100_000).default(1_024),
  /** Calls waiting for a slot; beyond it a call is refused at once (429 with Retry-After). */
  max_queued: z.number().int().min(0).max(100_000).default(1_024),
  /** Longest a call waits for a slot before it is refused (never past its deadline). */
  max_queue_wait_ms: z.number().int().min(0).max(600_000).default(1_000),
});

const backendSchema = z.strictObject({
  kind: z.enum(BACKEND_KINDS),
  protocol: z.enum(BACKEND_PROTOCOLS),
  endpoints: z.array(endpointSchema).min(1, 'needs at least one endpoint'),
  load_balancing: loadBalancingSchema.default({ policy: 'least_request' }),
  /** Longest a single backend call may take. */
  timeout_ms: z.number().int().positive().default(30_000),
  /** Connections kept per endpoint for REST (gRPC multiplexes one channel). */
  max_connections: z.number().int().min(1).max(1024).default(64),
  /** Background readiness checks of every model routed to this backend. */
  health_check: z
    .strictObject({
      /** 0 turns the checks off. */
      interval_ms: z.number().int().min(0).default(5_000),
      timeout_ms: z.number().int().positive().default(2_000),
      /** Failed checks in a row before a ready model is marked unready. */
      unhealthy_after: z.number().int().min(1).max(100).default(2),
    })
    .default({ interval_ms: 5_000, timeout_ms: 2_000, unhealthy_after: 2 }),
  circuit_breaker: circuitBreakerSchema.default(() => circuitBreakerSchema.parse({})),
  retry: retrySchema.default(() => retrySchema.parse({})),
  concurrency: concurrencySchema.default(() => concurrencySchema.parse({})),
});

/** Who may use /admin/*: API keys, given as SHA-256 hex digests or read from an environment variable. */
const adminSchema = z.strictObject({
  /** SHA-256 (hex) of each accepted admin key; the keys themselves never sit in the file. */
  api_key_sha256: z.array(z.string().regex(/^[0-9a-f]{64}$/, 'must be a lower-case hex SHA-256 digest')).default([]),
  /** An environment variable holding one more accepted key (plain). */
  api_key_env: z.string().regex(/^[A-Z_][A-Z0-9_]*$/).default('INFERGATE_ADMIN_KEY'),
});

/** Redis, shared by the gateway's instances: live config (and later caches, jobs, counters). */
const redisSchema = z.strictObject({
  url: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL'),
  /** Prefix of every key and channel the gateway uses, so several deployments can share one Redis. */
  key_prefix: z.string().regex(/^[A-Za-z0-9:_-]+$/).default('infergate'),
  /** Longest a Redis command may take before the gateway goes on without it. */
  command_timeout_ms: z.number().int().positive().default(500),
});

/** Where answers of models with `cache:` are kept: Redis when `redis` is set (shared by instances), else memory. */
const cacheSectionSchema = z.strictObject({
  redis: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL').optional(),
  key_prefix: z.string().regex(/^[A-Za-z0-9:_-]+$/).default('infergate'),
  /** A slow or unreachable Redis costs a request at most this long; the backend answers instead. */
  command_timeout_ms: z.number().int().min(1).max(10_000).default(50),
  /** The in-memory cache's size bound (used when `redis` is not set). */
  memory_max_bytes: z.number().int().min(1024).max(64 * 1024 ** 3).default(256 * 1024 * 1024),
});

export type CacheSectionConfig = z.infer<typeof cacheSectionSchema>;

/** A name a backend or a target is declared under. */
const declaredName = (what: string) => z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, `${what} names use letters, digits, _ . -`);

/**
 * Every section, with `models` and `targets` taken as they are: their routing
 * trees are checked by route-schema.ts, whose messages name the exact key.
 */
export const baseConfigSchema = z.strictObject({
  server: serverSchema.default(() => serverSchema.parse({})),
  admin: adminSchema.default(() => adminSchema.parse({})),
  /** Access control: API keys and JWTs, with the models each may call (auth-schema.ts); on unless `enabled: false`. */
  auth: authSchema.default(() => authSchema.parse({})),
  /** Token buckets per API key and per model, in memory or shared through Redis (auth-schema.ts). */
  rate_limits: rateLimitsSchema.default(() => rateLimitsSchema.parse({})),
  redis: redisSchema.optional(),
  cache: cacheSectionSchema.default(() => cacheSectionSchema.parse({})),
  backends: z.record(declaredName('backend'), backendSchema),
  /** Named routing trees, referenced from models (and other targets) as `{ target: name }`. */
  targets: z.record(declaredName('target'), z.unknown()).default({}),
  /** Public model name -> its routing tree (a leaf `{ backend, ... }` in the simplest case). */
  models: z.record(z.string().regex(MODEL_NAME_PATTERN, 'is not a valid model name'), z.unknown()),
  /** A/B experiments on public models; checked by experiment-schema.ts (arms are routing nodes). */
  experiments: z.unknown().optional(),
  /** Durable batch jobs over Redis (POST /v1/jobs); startup config. */
  jobs: jobsSchema.optional(),
  /** Stream processors run inside the gateway (Redis Streams in, predictions out); startup config. */
  streams: streamsSchema,
});

/**
 * The whole config. Use validateConfig() (config/load.ts) to read one: when
 * another section is invalid zod skips this transform, and validateConfig
 * still checks the routes, so one pass reports every problem.
 */
export const configSchema = baseConfigSchema.transform((base, ctx) => {
  const routes = parseRouteConfig(base);
  const experiments = parseExperiments(base);
  for (const p of [...routes.problems, ...experiments.problems]) ctx.addIssue({ code: 'custom', message: p.message, path: [...p.path] });
  for (const p of rateLimitModelProblems(base)) ctx.addIssue({ code: 'custom', message: p.message, path: p.path });
  return { ...base, targets: routes.targets, models: routes.models, experiments: experiments.experiments };
});

export type GatewayConfig = z.infer<typeof configSchema>;
export type BackendConfig = GatewayConfig['backends'][string];
/** One model's routing tree (a leaf, or weighted / fallback / match nodes over leaves). */
export type ModelConfig = RouteNodeConfig;
