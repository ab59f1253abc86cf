import { Hono } from 'hono';
import type { InstanceInfo } from '../../config/config-sync.js';
import type { ApplyResult, LiveConfig } from '../../config/live-config.js';
import { GatewayError, toGatewayError } from '../../core/errors.js';
import type { ExperimentStatus } from '../../experiments/assignment.js';
import { experimentPatchText } from './admin-experiments.js';
import type { Logger } from '../../observability/logger.js';
import { parseJsonBody, readBody } from './body.js';
import { REQUEST_ID_HEADER, requestIdFrom, type HttpContext, type HttpEnv } from './context.js';
import type { BackendStatus } from '../../resilience/resilient-backend.js';
import type { CacheStats } from '../../cache/response-cache.js';
import type { StreamProcessorMetrics } from '../../streaming/stream-processor.js';
import { routesView } from '../../routing/route-view.js';
import { registerStatusPage } from './status-page/index.js';
import type { AccessControl } from '../auth/access-control.js';
import { adminRefusal } from '../auth/http-guard.js';

export interface AdminApiOptions {
  readonly live: LiveConfig;
  /** Who may call: admin credentials (the `admin:` section's keys, admin API keys and tokens). */
  readonly access: AccessControl;
  /** The server's body limit applies to config texts too. */
  readonly maxBodyBytes: number;
  readonly logger: Logger;
  /** Every gateway instance sharing the config, with the version each runs (just this one without Redis); never rejects. */
  instances(): Promise<readonly InstanceInfo[]>;
  /** 'connected' / 'unavailable' when Redis is configured; undefined without it. */
  redisStatus?(): 'connected' | 'unavailable';
  /** The running config's experiments, with effective weights and guard cuts (none when absent). */
  experiments?(): readonly ExperimentStatus[];
  /** Every backend's endpoints with their health, breaker, load shedding and retry state. */
  backends?(): readonly BackendHealthView[];
  /** The response cache's counters and its store's state. */
  cache?(): CacheStats;
  /** Each stream processor's counters, lag and latency. */
  streams?(): Readonly<Record<string, StreamProcessorMetrics>>;
}

/** One backend in GET /admin/backends: its resilience state and what the background checks know of its models. */
export interface BackendHealthView extends BackendStatus {
  readonly models: readonly { readonly model: string; readonly target: string; readonly ready: boolean | null; readonly reason: string }[];
}

const NO_STORE = { 'cache-control': 'no-store' } as const;

/**
 * The admin API, mounted under /admin on the REST listener:
 *   GET  /admin/config                    the running config, its version, and every instance's version
 *   PUT  /admin/config[?dry_run=true]     a new config (YAML or JSON text): applied, or only checked
 *   POST /admin/config/validate           the dry run under its own name
 *   GET  /admin/experiments               every experiment: state, arms, configured and effective weights, cuts
 *   PATCH /admin/experiments/{name}       {"state"?, "weights"?: {arm: n}}: applied as a config change (as PUT /admin/config)
 *   GET  /admin/cache                     the response cache: hits, misses, coalesced calls, the store's state
 *   GET  /admin/streams                   stream processors: events in/out/failed/dead-lettered, lag, latency
 *   GET  /admin/backends                  every backend: endpoints (ejections, breaker state, calls, failures),
 *                                         load shedding, retry budget, and its models' readiness
 *   GET  /admin/routes                    every model's routing tree (weights, fallbacks, match rules, leaf ids)
 *                                         and every experiment's arms, from the running config
 *   GET  /admin/ui                        the status page (status-page/): its shell is public, its data needs the key
 * Every call needs `Authorization: Bearer <key>`; with no key configured at all
 * the API answers 403, so it is never open by default.
 */
export function createAdminApp(opts: AdminApiOptions): Hono<HttpEnv> {
  const app = new Hono<HttpEnv>();
  const { live } = opts;

  // Ahead of the key check: the page's HTML, scripts and styles hold no data; the page sends the key for its data.
  registerStatusPage(app);

  app.use('*', async (c, next) => {
    // Mounted ahead of the v2 middleware, so the request id is set here.
    const id = requestIdFrom(c.req.header(REQUEST_ID_HEADER));
    c.set('requestId', id);
    c.header(REQUEST_ID_HEADER, id);
    const denied = await adminRefusal(c, opts.access, opts.logger);
    if (denied !== undefined) return denied;
    await next();
  });

  app.get('/config', async (c) => {
    const current = live.current;
    const instances = await opts.instances();
    return c.json(
      {
        version: current.version,
        source: current.source,
        applied_at: current.appliedAt.toISOString(),
        config_text: current.text ?? null,
        restart_pending: current.restartPending,
        ...(opts.redisStatus !== undefined ? { redis: opts.redisStatus() } : {}),
        instances,
      },
      200,
      NO_STORE,
    );
  });

  const dryRun = async (c: HttpContext): Promise<Response> => {
    const text = await configText(c, opts.maxBodyBytes);
    const checked = live.check(text, 'admin dry run');
    return checked.valid
      ? c.json({ valid: true, problems: [], diff: checked.diff, restart: checked.restart })
      : c.json({ valid: false, problems: checked.problems, diff: [] });
  };

  app.put('/config', async (c) => {
    if (isTrue(c.req.query('dry_run'))) return dryRun(c);
    const text = await configText(c, opts.maxBodyBytes);
    const result: ApplyResult = await live.propose(text, 'admin');
    if (!result.accepted) return c.json({ error: 'invalid config: the running config stays', problems: result.problems }, 400);
    return c.json({ version: result.version, diff: result.diff, restart: result.restart, unchanged: result.unchanged });
  });
  app.post('/config/validate', dryRun);

  let patches: Promise<unknown> = Promise.resolve();
  const serial = <T>(task: () => Promise<T>): Promise<T> => {
    const run = patches.then(task, task);
    patches = run.catch(() => undefined);
    return run;
  };
  app.get('/experiments', (c) => c.json({ version: live.current.version, experiments: opts.experiments?.() ?? [] }, 200, NO_STORE));
  app.get('/cache', (c) => c.json({ cache: opts.cache?.() ?? null }, 200, NO_STORE));
  app.get('/streams', (c) => c.json({ streams: opts.streams?.() ?? {} }, 200, NO_STORE));
  app.get('/backends', (c) => c.json({ version: live.current.version, backends: opts.backends?.() ?? [] }, 200, NO_STORE));
  app.get('/routes', (c) => {
    const current = live.current;
    return c.json({ version: current.version, ...routesView(current.config) }, 200, NO_STORE);
  });
  app.patch('/experiments/:name', async (c) => {
    const name = c.req.param('name');
    const body = await readBody(c.env.incoming, opts.maxBodyBytes);
    const patch = parseJsonBody(body);
    const current = live.current;
    if (current.text === undefined) throw new GatewayError('FAILED_PRECONDITION', 'the running config has no text to edit (built in code)');
    // One patch at a time, each on the text the previous one left, so concurrent patches all apply.
    const result: ApplyResult = await serial(() => {
      const latest = live.current.text ?? current.text!;
      return live.propose(experimentPatchText(latest, live.current.config, name, patch), 'admin', `admin: experiment ${name}`);
    });
    if (!result.accepted) return c.json({ error: 'invalid change: the running config stays', problems: result.problems }, 400);
    return c.json({ version: result.version, diff: result.diff, restart: result.restart, unchanged: result.unchanged });
  });
  app.all('/experiments', (c) => c.json({ error: `method ${c.req.method} is not allowed on /admin/experiments; use GET` }, 405, { allow: 'GET' }));
  app.all('/experiments/:name', (c) =>
    c.json({ error: `method ${c.req.method} is not allowed on /admin/experiments/{name}; use PATCH` }, 405, { allow: 'PATCH' }),
  );

  app.all('/config', (c) => c.json({ error: `method ${c.req.method} is not allowed on /admin/config; use GET or PUT` }, 405, { allow: 'GET, PUT' }));
  app.all('/config/validate', (c) =>
    c.json({ error: `method ${c.req.method} is not allowed on /admin/config/validate; use POST` }, 405, { allow: 'POST' }),
  );

  app.onError((err, c) => {
    const error = toGatewayError(err);
    if (error.httpStatus >= 500) opts.logger.error({ err: error.message, path: c.req.path }, 'admin request failed');
    return c.json({ error: error.message }, error.httpStatus as 400);
  });
  return app;
}

async function configText(c: HttpContext, limit: number): Promise<string> {
  const body = await readBody(c.env.incoming, limit);
  return body.toString('utf8');
}

function isTrue(value: string | undefined): boolean {
  return value !== undefined && ['true', '1', 'yes', ''].includes(value.toLowerCase());
}
