import { readFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { configSchema, crossReferenceProblems, type GatewayConfig } from './schema.js';

/** A config that failed to load; `problems` holds one line per problem, each naming its key path. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly source: string,
    readonly problems: readonly string[],
  ) {
    super(`invalid config ${source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

export async function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): Promise<GatewayConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(path, [`cannot read file: ${(err as Error).message}`]);
  }
  return parseConfig(text, path, env);
}

/** Parses YAML text, applies environment overrides, and validates the result in full. */
export function parseConfig(text: string, source = '<config>', env: NodeJS.ProcessEnv = {}): GatewayConfig {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      source,
      doc.errors.map((e) => `YAML: ${e.message.split('\n')[0]}`),
    );
  }
  const raw: unknown = doc.toJS() ?? {};
  return validateConfig(applyEnvOverrides(raw, env), source);
}

export function validateConfig(raw: unknown, source = '<config>'): GatewayConfig {
  const result = configSchema.safeParse(raw);
  const problems = [
    ...(result.success ? [] : formatIssues(result.error.issues)),
    ...crossReferenceProblems(raw).map((p) => `${p.path}: ${p.message}`),
  ];
  if (problems.length > 0 || !result.success) throw new ConfigError(source, problems);
  return result.data;
}

function formatIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => {
    const path = issue.path.length > 0 ? issue.path.map(String).join('.') : '(root)';
    if (issue.code === 'unrecognized_keys') {
      return `${path}: unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')}`;
    }
    if (issue.code === 'invalid_key') return `${path}: ${issue.issues[0]?.message ?? issue.message}`;
    return `${path}: ${issue.message}`;
  });
}

/**
 * Environment overrides, for deployments that template ports and addresses:
 *   INFERGATE_HTTP_PORT, INFERGATE_GRPC_PORT, INFERGATE_HTTP_HOST, INFERGATE_GRPC_HOST
 *   INFERGATE_BACKEND_<NAME>_ENDPOINTS=host:port,host:port
 * where <NAME> is the backend name upper-cased with every other character as _.
 */
export function applyEnvOverrides(raw: unknown, env: NodeJS.ProcessEnv): unknown {
  if (!isRecord(raw)) return raw;
  const out: Record<string, unknown> = { ...raw };
  const server = isRecord(out.server) ? { ...out.server } : {};
  let serverTouched = false;
  for (const listener of ['http', 'grpc'] as const) {
    const prefix = `INFERGATE_${listener.toUpperCase()}`;
    const portText = env[`${prefix}_PORT`];
    const host = env[`${prefix}_HOST`];
    if (portText === undefined && host === undefined) continue;
    const current: Record<string, unknown> = isRecord(server[listener])
      ? { ...server[listener] }
      : { port: listener === 'http' ? 8000 : 8001 };
    // A port that is not a number is left as text so validation names the key.
    if (portText !== undefined) current.port = /^\d+$/.test(portText) ? Number(portText) : portText;
    if (host !== undefined) current.host = host;
    server[listener] = current;
    serverTouched = true;
  }
  if (serverTouched) out.server = server;
  if (isRecord(out.backends)) {
    const backends: Record<string, unknown> = { ...out.backends };
    for (const [name, backend] of Object.entries(backends)) {
      const value = env[`INFERGATE_BACKEND_${envName(name)}_ENDPOINTS`];
      if (value === undefined || !isRecord(backend)) continue;
      backends[name] = { ...backend, endpoints: value.split(',').map((s) => s.trim()).filter(Boolean) };
    }
    out.backends = backends;
  }
  return out;
}

export function envName(name: string): string {
  return name.toUpperCase().replace(/[^A-Z0-9]/g, '_');
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
