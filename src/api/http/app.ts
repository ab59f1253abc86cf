import { Hono } from 'hono';
import { GatewayError, invalidArgument, toGatewayError } from '../../core/errors.js';
import { logRequestFailure } from '../../observability/request-log.js';
import { encodeModelMetadata } from '../../protocols/v2/rest-codec.js';
import type { InferenceService } from '../../routing/inference-service.js';
import { parseJsonObjectBody, readBody } from './body.js';
import {
  errorResponse,
  REQUEST_ID_HEADER,
  requestContext,
  requestIdFrom,
  traceOf,
  type HttpApiOptions,
  type HttpContext,
  type HttpEnv,
} from './context.js';
import { HTTP_FRONT_DOORS } from './front-doors.js';
import { accessMiddleware } from '../auth/http-guard.js';
import { ATTEMPTS_HEADER, CACHE_HEADER, TARGET_HEADER, VARIANT_HEADER } from '../served.js';

export type { HttpApiOptions } from './context.js';

const JSON_TYPE = { 'content-type': 'application/json' } as const;
/**
 * A '.' or '..' path segment, plain or percent-encoded. URL parsing would
 * resolve it before routing (so /v2/models/../infer reached another route);
 * such a path is refused as it arrived.
 */
const DOT_SEGMENT = /\/(?:\.|%2e){1,2}(?:[/?#]|$)/i;
/** Paths answered from the gateway itself: never refused by the in-flight limit, so probes see it under overload. */
const ALWAYS_ADMITTED: ReadonlySet<string> = new Set(['/v2', '/v2/health/live', '/v2/health/ready', '/ping', '/metrics']);

/**
 * The client-facing KServe v2 REST API (the routes Triton serves), plus
 * Triton's model index, but for inference itself, which the listener serves
 * ahead of this app (v2-infer.ts). Every error is `{"error": "..."}` with the status its
 * code maps to.
 */
export function createHttpApp(
  service: InferenceService,
  opts: HttpApiOptions,
  mounts: {
    readonly admin?: Hono<HttpEnv>;
    readonly experiments?: Hono<HttpEnv>;
    readonly jobs?: Hono<HttpEnv>;
    readonly metrics?: Hono<HttpEnv>;
  } = {},
): Hono<HttpEnv> {
  const app = new Hono<HttpEnv>();
  // Credentials, scopes and rate limits (api/auth), first of all: a refused request is never admitted nor read.
  if (opts.access !== undefined) app.use('*', accessMiddleware(opts.access, opts.logger));
  // /admin (api/http/admin.ts) is built by the composition root, which owns the live config; it sets its own request id.
  if (mounts.admin !== undefined) app.route('/admin', mounts.admin);
  // Experiment results (api/http/experiments.ts), built with the long-lived results object.
  if (mounts.experiments !== undefined) app.route('/v1/experiments', mounts.experiments);
  const log = opts.logger;
  const known: [string, string][] = [];
  const route = (method: 'GET' | 'POST', path: string, handler: (c: HttpContext) => Response | Promise<Response>): void => {
    app.on(method, path, handler);
    known.push([method, path]);
  };
  const context = (c: HttpContext) => requestContext(c, opts);

  app.use('*', async (c, next) => {
    const id = requestIdFrom(c.req.header(REQUEST_ID_HEADER));
    c.set('requestId', id);
    if (DOT_SEGMENT.test(c.env.incoming.url ?? '')) {
      throw invalidArgument("invalid path: '.' and '..' segments are not allowed (a model name cannot be '.' or '..')");
    }
    const admission = opts.admission;
    if (admission !== undefined && !ALWAYS_ADMITTED.has(c.req.path)) {
      // Before the body is read: a refused request costs no memory.
      const ticket = admission.admit();
      c.set('ticket', ticket);
      const out = c.env.outgoing;
      out.once('close', () => {
        if (!out.writableFinished) ticket.cancel();
        ticket.end();
      });
    }
    await next();
    // While draining, each answer closes its connection, so keep-alive clients reconnect elsewhere.
    if (admission?.draining === true) c.res.headers.set('connection', 'close');
    c.res.headers.set(REQUEST_ID_HEADER, id);
    // Every surface on this app (v2 and the front doors), errors included: which leaf served, after how many calls.
    const served = c.get('servedBy');
    if (served !== undefined) {
      c.res.headers.set(TARGET_HEADER, served.target);
      c.res.headers.set(ATTEMPTS_HEADER, String(served.attempts));
    }
    // The experiment arm the request ran on, errors included.
    const variant = c.get('variant');
    if (variant !== undefined) c.res.headers.set(VARIANT_HEADER, variant);
    const cache = c.get('cache');
    if (cache !== undefined) c.res.headers.set(CACHE_HEADER, cache);
  });

  route('GET', '/v2', (c) => c.json(service.serverMetadata()));
  route('GET', '/v2/health/live', (c) => c.body(null, service.serverLive() ? 200 : 503));
  route('GET', '/v2/health/ready', (c) => c.body(null, service.serverReady() ? 200 : 503));

  route('POST', '/v2/repository/index', async (c) => {
    const body = await readBody(c.env.incoming, opts.maxBodyBytes);
    const readyOnly = parseIndexRequest(body);
    return c.json(await service.modelIndex(readyOnly, context(c)));
  });
  for (const action of ['load', 'unload']) {
    route('POST', `/v2/repository/models/:model/${action}`, () =>
      errorResponse(
        new GatewayError(
          'UNIMPLEMENTED',
          `model ${action} is managed by each backend's own model repository; Infergate routes to the models its config declares`,
        ),
      ),
    );
  }

  const metadata = async (c: HttpContext): Promise<Response> => {
    const meta = await service.modelMetadata(c.req.param('model') ?? '', c.req.param('version') ?? '', context(c));
    return c.body(encodeModelMetadata(meta), 200, JSON_TYPE);
  };
  route('GET', '/v2/models/:model', metadata);
  route('GET', '/v2/models/:model/versions/:version', metadata);

  const ready = async (c: HttpContext): Promise<Response> => {
    const model = c.req.param('model') ?? '';
    const isReady = await service.modelReady(model, c.req.param('version') ?? '', context(c));
    return isReady ? c.body(null, 200) : errorResponse(new GatewayError('UNAVAILABLE', `model '${model}' is not ready`));
  };
  route('GET', '/v2/models/:model/ready', ready);
  route('GET', '/v2/models/:model/versions/:version/ready', ready);

  // POST /v2/models/{m}[/versions/{v}]/infer is served on node:http itself, ahead of this app (v2-infer.ts);
  // it is known here for the 405 of other methods.
  known.push(['POST', '/v2/models/:model/infer'], ['POST', '/v2/models/:model/versions/:version/infer']);

  // A known path with the wrong method is 405, as Triton answers.
  for (const [method, path] of known) {
    app.all(path, (c) =>
      errorResponse(new GatewayError('UNIMPLEMENTED', `method ${c.req.method} is not allowed on ${c.req.path}; use ${method}`), 405, {
        allow: method,
      }),
    );
  }

  // GET /metrics (api/http/metrics.ts), after the middleware: never refused by admission (ALWAYS_ADMITTED).
  if (mounts.metrics !== undefined) app.route('/metrics', mounts.metrics);
  // Batch jobs (api/http/jobs.ts), after the middleware and ahead of TF Serving's catch-all /v1/*.
  if (mounts.jobs !== undefined) app.route('/v1/jobs', mounts.jobs);
  for (const register of HTTP_FRONT_DOORS) register(app, service, opts);

  app.notFound(() => errorResponse(new GatewayError('NOT_FOUND', 'Not Found')));
  app.onError((err, c) => {
    const error = toGatewayError(err);
    logRequestFailure(log, { requestId: c.get('requestId'), trace_id: traceOf(c).traceId, method: c.req.method, path: c.req.path }, error);
    const res = errorResponse(error);
    res.headers.set(REQUEST_ID_HEADER, c.get('requestId') ?? '');
    return res;
  });
  return app;
}

/** The index request body is optional: `{"ready": true}` lists only ready models. */
function parseIndexRequest(body: Buffer): boolean {
  if (body.length === 0) return false;
  const ready = parseJsonObjectBody(body, 'the repository index request must be a JSON object').ready;
  if (ready !== undefined && typeof ready !== 'boolean') throw invalidArgument("'ready' must be a boolean");
  return ready === true;
}
