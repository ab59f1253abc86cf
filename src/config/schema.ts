import { z } from 'zod';
import { BACKEND_KINDS, BACKEND_PROTOCOLS } from '../backends/backend.js';
import { MODEL_NAME_PATTERN, VERSION_PATTERN } from '../core/names.js';

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
});

const backendSchema = z.strictObject({
  kind: z.enum(BACKEND_KINDS),
  protocol: z.enum(BACKEND_PROTOCOLS),
  endpoints: z.array(hostPort).min(1, 'needs at least one endpoint'),
  /** Longest a single backend call may take. */
  timeout_ms: z.number().int().positive().default(30_000),
  /** Connections kept per endpoint for REST (gRPC multiplexes one channel). */
  max_connections: z.number().int().min(1).max(1024).default(64),
});

const modelSchema = z.strictObject({
  backend: z.string().min(1),
  /** The backend's own model name; defaults to the public name. */
  model: z.string().regex(MODEL_NAME_PATTERN, 'is not a valid model name').optional(),
  /** Pins a backend model version; unset lets the client's version (or the backend's latest) through. */
  version: z.string().regex(VERSION_PATTERN, 'is not a valid version').optional(),
});

export const configSchema = z.strictObject({
  server: serverSchema.default(() => serverSchema.parse({})),
  backends: z.record(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'backend names use letters, digits, _ . -'), backendSchema),
  models: z.record(z.string().regex(MODEL_NAME_PATTERN, 'is not a valid model name'), modelSchema),
});

/**
 * Checks between sections (a model's backend must be declared). Runs on the raw
 * value even when the schema fails elsewhere, so one pass reports every problem.
 */
export function crossReferenceProblems(raw: unknown): { path: string; message: string }[] {
  if (!isRecord(raw) || !isRecord(raw.models)) return [];
  const backends = isRecord(raw.backends) ? Object.keys(raw.backends) : [];
  const problems: { path: string; message: string }[] = [];
  for (const [name, model] of Object.entries(raw.models)) {
    if (!isRecord(model) || typeof model.backend !== 'string') continue;
    if (!backends.includes(model.backend)) {
      problems.push({
        path: `models.${name}.backend`,
        message: `unknown backend '${model.backend}' (declared: ${backends.join(', ') || 'none'})`,
      });
    }
  }
  return problems;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export type GatewayConfig = z.infer<typeof configSchema>;
export type BackendConfig = GatewayConfig['backends'][string];
export type ModelConfig = GatewayConfig['models'][string];
