import type { GatewayConfig } from './schema.js';

/**
 * What changed between two validated configs, by key path, for logs and the
 * admin API: `+ models.fraud`, `- backends.old`, `~ models.linear.backend: a -> b`.
 */
export interface ConfigChange {
  readonly op: '+' | '-' | '~';
  readonly path: string;
  readonly from?: unknown;
  readonly to?: unknown;
  /** The key only takes effect when the gateway restarts (see needsRestart). */
  readonly restart: boolean;
}

/** Values longer than this are cut in diff lines: a diff is for reading, the config text has the rest. */
const MAX_VALUE_CHARS = 120;

/** Sections built once at startup: the Redis connection carries the sync itself; the cache store, job workers and stream processors hold connections of their own. */
const STARTUP_SECTIONS: ReadonlySet<string> = new Set(['redis', 'cache', 'jobs', 'streams']);

/** The keys of `rate_limits` that make its Redis connection. */
const RATE_LIMIT_CONNECTION: ReadonlySet<string> = new Set(['redis', 'key_prefix', 'command_timeout_ms']);

/**
 * Keys a running gateway cannot change: listeners are bound, limits are baked
 * into the servers, and the startup sections hold their connections. The log
 * level is the exception: it applies live.
 */
export function needsRestart(path: readonly string[]): boolean {
  const [section, key] = path;
  if (section === 'server') return key !== 'log_level';
  // Rate limits apply live; their Redis connection is made at startup.
  if (section === 'rate_limits') return key !== undefined && RATE_LIMIT_CONNECTION.has(key);
  return section !== undefined && STARTUP_SECTIONS.has(section);
}

/**
 * The config a gateway can run after accepting `next`: everything from `next`
 * except the restart-only sections, which stay as they run now.
 */
export function liveEffective(running: GatewayConfig, next: GatewayConfig): GatewayConfig {
  const { redis: _redis, jobs: _jobs, ...rest } = next;
  return {
    ...rest,
    server: { ...running.server, log_level: next.server.log_level },
    rate_limits: withRateLimitConnection(next.rate_limits, running.rate_limits),
    cache: running.cache,
    streams: running.streams,
    ...(running.redis !== undefined ? { redis: running.redis } : {}),
    ...(running.jobs !== undefined ? { jobs: running.jobs } : {}),
  };
}

/** `next`'s limits on the running Redis connection. */
function withRateLimitConnection(next: GatewayConfig['rate_limits'], running: GatewayConfig['rate_limits']): GatewayConfig['rate_limits'] {
  const { redis: _redis, ...limits } = next;
  return {
    ...limits,
    key_prefix: running.key_prefix,
    command_timeout_ms: running.command_timeout_ms,
    ...(running.redis !== undefined ? { redis: running.redis } : {}),
  };
}

export function diffConfigs(before: unknown, after: unknown): ConfigChange[] {
  const changes: ConfigChange[] = [];
  walk(before, after, [], changes);
  return changes;
}

function walk(a: unknown, b: unknown, path: string[], out: ConfigChange[]): void {
  if (isRecord(a) && isRecord(b)) {
    // A key set to undefined counts as absent (optional schema keys may come out either way).
    for (const key of definedKeys(a)) {
      if (b[key] === undefined) out.push(change('-', [...path, key], a[key], undefined));
    }
    for (const key of definedKeys(b)) {
      if (a[key] === undefined) out.push(change('+', [...path, key], undefined, b[key]));
      else walk(a[key], b[key], [...path, key], out);
    }
    return;
  }
  // Arrays (endpoints, key digests) are compared whole: an index path would say little.
  if (!deepEqual(a, b)) out.push(change('~', path, a, b));
}

function change(op: ConfigChange['op'], path: string[], from: unknown, to: unknown): ConfigChange {
  return {
    op,
    path: displayPath(path),
    ...(from !== undefined ? { from } : {}),
    ...(to !== undefined ? { to } : {}),
    restart: needsRestart(path),
  };
}

/**
 * The schema renames a few nested keys (models.*.tfserving / torchserve) to
 * camelCase; diffs name them as the file does.
 */
function displayPath(path: readonly string[]): string {
  return path
    .map((key, i) => (i === 3 && path[0] === 'models' && (path[2] === 'tfserving' || path[2] === 'torchserve') ? snake(key) : key))
    .join('.');
}

function snake(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** One readable line per change. */
export function formatChange(c: ConfigChange): string {
  const suffix = c.restart ? ' (needs a restart)' : '';
  if (c.op === '~') return `~ ${c.path}: ${show(c.from)} -> ${show(c.to)}${suffix}`;
  const value = c.op === '+' ? c.to : c.from;
  // Whole entries (a model, a backend) are named; a single setting shows its value.
  return isRecord(value) ? `${c.op} ${c.path}${suffix}` : `${c.op} ${c.path}: ${show(value)}${suffix}`;
}

function show(value: unknown): string {
  const text = typeof value === 'string' ? value : value === undefined ? '(unset)' : JSON.stringify(compactEndpoints(value));
  return text.length > MAX_VALUE_CHARS ? `${text.slice(0, MAX_VALUE_CHARS - 3)}...` : text;
}

/** Endpoints are normalised to { address, weight }; weight 1 reads better as the plain address, as written. */
function compactEndpoints(value: unknown): unknown {
  if (!Array.isArray(value)) return value;
  return value.map((e) => (isRecord(e) && e.weight === 1 && typeof e.address === 'string' && Object.keys(e).length === 2 ? e.address : e));
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => deepEqual(v, b[i]));
  }
  if (!isRecord(a) || !isRecord(b)) return false;
  const keys = definedKeys(a);
  if (keys.length !== definedKeys(b).length) return false;
  return keys.every((k) => deepEqual(a[k], b[k]));
}

function definedKeys(o: Record<string, unknown>): string[] {
  return Object.keys(o).filter((k) => o[k] !== undefined);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
