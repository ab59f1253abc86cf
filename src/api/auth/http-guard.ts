import type { MiddlewareHandler } from 'hono';
import { toGatewayError, type GatewayError } from '../../core/errors.js';
import type { Logger } from '../../observability/logger.js';
import { logRequestFailure } from '../../observability/request-log.js';
import { errorResponse, REQUEST_ID_HEADER, requestIdFrom, type HttpContext, type HttpEnv } from '../http/context.js';
import { ADMIN, AUTHENTICATED, METRICS, OPEN, type AccessControl, type AccessRule } from './access-control.js';

/** Answered by the gateway itself for probes: never checked (as they are never refused by the in-flight limit). */
const OPEN_PATHS: ReadonlySet<string> = new Set(['/v2', '/v2/health/live', '/v2/health/ready', '/ping']);
const LIST_JOBS: AccessRule = { kind: 'all_models', what: 'list every job' };

/**
 * What a REST request needs, from its method and raw path (as the router sees
 * it: already normalized, not yet decoded), in the order the surfaces are
 * mounted. Model names are decoded per segment as the routes decode them
 * (a name that decodes further still starts with the same characters, so no
 * encoding reaches a model outside the scope checked here).
 *
 *   /v2, /v2/health/*, /ping                         open
 *   /admin/*                                         the admin app checks (adminRefusal)
 *   /metrics                                         metrics
 *   /v2/models/{m}/...  (infer: POST .../infer)      model m
 *   /v2/repository/models/{m}/...                    model m
 *   /v1/models/{m}...   (infer: POST ...:verb)       model m (TF Serving)
 *   /predictions/{m}... (infer: POST)                model m (TorchServe)
 *   /v1/experiments/{name}/...                       the experiment's model
 *   GET /v1/jobs                                     every model ('*'); one job: its model (api/http/jobs.ts)
 *   anything else                                    any credential
 */
export function httpAccessRule(method: string, path: string): AccessRule | 'self' {
  if (OPEN_PATHS.has(path)) return OPEN;
  const s = path.split('/').filter((part) => part !== '');
  // Fixed segments compare without case: TF Serving's paths match so (/v1/MODELS/m), and being stricter costs nothing.
  const at = (i: number): string => s[i]?.toLowerCase() ?? '';
  const post = method === 'POST';
  switch (at(0)) {
    case 'admin':
      return 'self';
    case 'metrics':
      return s.length === 1 ? METRICS : AUTHENTICATED;
    case 'v2':
      if (at(1) === 'models' && s.length >= 3) return { kind: 'model', model: decodePathSegment(s[2]!), infer: post && at(s.length - 1) === 'infer' };
      if (at(1) === 'repository' && at(2) === 'models' && s.length >= 4) return { kind: 'model', model: decodePathSegment(s[3]!), infer: false };
      return AUTHENTICATED;
    case 'v1':
      if (at(1) === 'models' && s.length >= 3) {
        const raw = s[2]!;
        const colon = raw.indexOf(':');
        return { kind: 'model', model: decodePathSegment(colon >= 0 ? raw.slice(0, colon) : raw), infer: post && s[s.length - 1]!.includes(':') };
      }
      if (at(1) === 'experiments' && s.length >= 3) return { kind: 'experiment', name: decodePathSegment(s[2]!) };
      if (at(1) === 'jobs' && s.length === 2 && (method === 'GET' || method === 'HEAD')) return LIST_JOBS;
      return AUTHENTICATED;
    case 'predictions':
      return s.length >= 2 ? { kind: 'model', model: decodePathSegment(s[1]!), infer: post } : AUTHENTICATED;
    default:
      return AUTHENTICATED;
  }
}

/**
 * The REST listener's access check, first of every middleware: decides the
 * rule by path, and answers 401 (with WWW-Authenticate), 403, 429 (with
 * Retry-After) or 503 itself, before the request is admitted or its body
 * read. The principal is left in the context (`principal`) for the routes
 * that check more (a job's model). /admin/* checks itself (adminRefusal).
 */
export function accessMiddleware(access: AccessControl, logger: Logger): MiddlewareHandler<HttpEnv> {
  return async (c, next) => {
    const rule = httpAccessRule(c.req.method, pathOf(c.req.url));
    if (rule === 'self' || rule.kind === 'open') return next();
    try {
      const principal = await access.admit(rule, (name) => c.req.header(name));
      if (principal !== undefined) c.set('principal', principal);
    } catch (err) {
      return refusal(c, err, logger);
    }
    return next();
  };
}

/**
 * The admin app's check: an admin credential, whatever auth.enabled says.
 * Undefined when the request may go on, else the refusal to answer with.
 */
export async function adminRefusal(c: HttpContext, access: AccessControl, logger: Logger): Promise<Response | undefined> {
  try {
    const principal = await access.admit(ADMIN, (name) => c.req.header(name));
    if (principal !== undefined) c.set('principal', principal);
    return undefined;
  } catch (err) {
    return refusal(c, err, logger);
  }
}

/** A refused request: `{"error": ...}` with its status, the request id, and the header its status calls for; logged without the credential. */
function refusal(c: HttpContext, err: unknown, logger: Logger): Response {
  const error: GatewayError = toGatewayError(err);
  const id = c.get('requestId') ?? requestIdFrom(c.req.header(REQUEST_ID_HEADER));
  logRequestFailure(logger, { requestId: id, method: c.req.method, path: c.req.path }, error);
  return errorResponse(error, error.httpStatus, refusalHeaders(error, id));
}

/** The headers of a refusal: the request id, and WWW-Authenticate for a 401. */
export function refusalHeaders(error: GatewayError, requestId: string): Record<string, string> {
  const headers: Record<string, string> = { [REQUEST_ID_HEADER]: requestId };
  if (error.code === 'UNAUTHENTICATED') headers['www-authenticate'] = error.message.startsWith('missing') ? 'Bearer' : 'Bearer error="invalid_token"';
  return headers;
}

/** The path of a request URL as the router matches it (percent-encoding kept). */
function pathOf(url: string): string {
  const start = url.indexOf('/', url.indexOf('://') + 3);
  if (start < 0) return '/';
  const end = url.slice(start).search(/[?#]/);
  return end < 0 ? url.slice(start) : url.slice(start, start + end);
}

/** A path segment decoded as a route parameter is (a malformed escape stays as it is, as Hono leaves it). */
export function decodePathSegment(raw: string): string {
  if (!raw.includes('%')) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}
