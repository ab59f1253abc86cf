import type { HttpBindings } from '@hono/node-server';
import type { Context } from 'hono';
import type { GatewayError } from '../../core/errors.js';
import type { Logger } from '../../observability/logger.js';
import { encodeError } from '../../protocols/v2/rest-codec.js';
import type { RequestContext } from '../../routing/inference-service.js';
import type { ServedBy } from '../served.js';

/**
 * The Hono environment of every REST surface: the Node request/response, the
 * request id, and where an inference was served (set through the context's
 * onServed; the app's middleware turns it into response headers).
 */
export type HttpEnv = { Bindings: HttpBindings; Variables: { requestId: string; servedBy?: ServedBy; variant?: string } };
export type HttpContext = Context<HttpEnv>;

export interface HttpApiOptions {
  readonly maxBodyBytes: number;
  readonly requestTimeoutMs: number;
  readonly logger: Logger;
}

export { REQUEST_ID_HEADER, requestIdFrom } from '../request-id.js';

export function requestContext(c: HttpContext, opts: HttpApiOptions): RequestContext {
  const headers = c.env.incoming.headers;
  return {
    deadline: Date.now() + opts.requestTimeoutMs,
    requestId: c.get('requestId'),
    header: (name) => {
      const value = headers[name];
      return Array.isArray(value) ? value[0] : value;
    },
    onServed: (target, attempts) => c.set('servedBy', { target, attempts }),
    onVariant: (_experiment, arm) => c.set('variant', arm),
  };
}

/** A v2-style error reply, `{"error": "..."}`; front doors with their own error shape build theirs. */
export function errorResponse(error: GatewayError, status = error.httpStatus, headers: Record<string, string> = {}): Response {
  return new Response(encodeError(error.message), { status, headers: { 'content-type': 'application/json', ...headers } });
}
