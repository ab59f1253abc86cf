import { readFile } from 'node:fs/promises';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node as YamlNode } from 'yaml';
import type { z } from 'zod';
import { rateLimitModelProblems } from './auth-schema.js';
import { parseExperiments } from './experiment-schema.js';
import { formatRouteProblem, parseRouteConfig, zodIssueMessage } from './route-schema.js';
import { baseConfigSchema, type GatewayConfig } from './schema.js';
import { streamModelProblems } from './stream-schema.js';

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
  // Duplicate keys are found below with their paths; the YAML library would only say "must be unique".
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { uniqueKeys: false, prettyErrors: true, lineCounter });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      source,
      doc.errors.map((e) => `YAML: ${e.message.split('\n')[0]}`),
    );
  }
  // Duplicates are reported first, with every other problem after them.
  const problems = duplicateKeys(doc.contents, [], lineCounter);
  const raw: unknown = doc.toJS() ?? {};
  let config: GatewayConfig | undefined;
  try {
    config = validateConfig(applyEnvOverrides(raw, env), source);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(...err.problems);
  }
  if (problems.length > 0 || config === undefined) throw new ConfigError(source, problems);
  return config;
}

/**
 * Every key given twice in one map, anywhere in the file, as
 * "models.linear: duplicate key (first at line 12)". YAML would keep the last
 * value silently; a duplicate model or backend is almost always a mistake.
 */
function duplicateKeys(node: unknown, path: readonly (string | number)[], lines: LineCounter): string[] {
  const found: string[] = [];
  if (isMap(node)) {
    const firstLine = new Map<string, number>();
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      const at = [...path, key];
      const offset = (pair.key as YamlNode | null)?.range?.[0];
      const line = offset !== undefined ? lines.linePos(offset).line : 0;
      const first = firstLine.get(key);
      if (first !== undefined) found.push(`${at.join('.')}: duplicate key (first at line ${first})`);
      else firstLine.set(key, line);
      found.push(...duplicateKeys(pair.value, at, lines));
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => found.push(...duplicateKeys(item, [...path, i], lines)));
  }
  return found;
}

/**
 * Validates a config value in full: every section's shape (zod), and the
 * routing trees of `models` and `targets` (route-schema.ts) even when another
 * section failed, so one pass reports every problem, each with its key path.
 */
export function validateConfig(raw: unknown, source = '<config>'): GatewayConfig {
  const base = baseConfigSchema.safeParse(raw);
  const routes = parseRouteConfig(raw);
  const experiments = parseExperiments(raw);
  const problems = [
    ...(base.success ? [] : formatIssues(base.error.issues)),
    ...routes.problems.map(formatRouteProblem),
    ...experiments.problems.map(formatRouteProblem),
    ...rateLimitModelProblems(raw).map(formatRouteProblem),
    ...(base.success ? streamModelProblems(base.data.streams, Object.keys(base.data.models)).map((m) => `streams: ${m}`) : []),
  ];
  if (problems.length > 0 || !base.success) throw new ConfigError(source, problems);
  return { ...base.data, targets: routes.targets, models: routes.models, experiments: experiments.experiments };
}

function formatIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => {
    const path = issue.path.length > 0 ? issue.path.map(String).join('.') : '(root)';
    return `${path}: ${zodIssueMessage(issue)}`;
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
