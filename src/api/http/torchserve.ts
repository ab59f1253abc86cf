import { toGatewayError } from '../../core/errors.js';
import type { InferRequest, InferResponse } from '../../core/inference.js';
import { logRequestFailure } from '../../observability/request-log.js';
import { TorchServeError } from '../../protocols/torchserve/error.js';
import {
  bodyInput,
  bodyInputSpec,
  DEFAULT_BODY_INPUT,
  errorReply,
  pingReply,
  renderAnswer,
  type BodyInputSpec,
  type TorchServeReply,
} from '../../protocols/torchserve/front-door.js';
import { DEFAULT_TORCHSERVE_OPTIONS } from '../../protocols/torchserve/mapping.js';
import type { InferenceService, RequestContext } from '../../routing/inference-service.js';
import type { RouteTarget } from '../../routing/model-router.js';
import { readBody } from './body.js';
import { inferenceRoute, REQUEST_ID_HEADER, requestContext, traceOf, withRetryAfter, type HttpContext } from './context.js';
import type { HttpFrontDoor } from './front-doors.js';

/**
 * TorchServe's inference REST API on the gateway, so TorchServe clients call
 * it unchanged: POST /predictions/{model}[/{version}] and GET /ping, through
 * the same InferenceService as the v2 API, whatever server the model is on.
 *
 * The body is read once into a buffer with 4 spare bytes in front and becomes
 * a one-element BYTES input in place (no second copy); it reaches a TorchServe
 * backend unchanged. A backend that streams (a TorchServe handler's
 * intermediate responses) has its parts sent as HTTP chunks as they arrive; an
 * answer in one part goes out whole, with Content-Length. Errors are
 * TorchServe's `{"code", "type", "message"}`.
 */
export const registerTorchServeRoutes: HttpFrontDoor = (app, service, opts) => {
  const log = opts.logger;

  const fail = (c: HttpContext, err: unknown): Response => {
    const error = toGatewayError(err);
    // Answered, not thrown: the metrics hear the error here.
    c.get('inference')?.end(error);
    logRequestFailure(log, { requestId: c.get('requestId'), trace_id: traceOf(c).traceId, method: c.req.method, path: c.req.path }, error);
    return withRetryAfter(jsonResponse(c, errorReply(error, error instanceof TorchServeError ? error : undefined)), error);
  };

  app.get('/ping', (c) => jsonResponse(c, pingReply(service.serverReady())));

  // Timed to the answer's status: a streamed answer's first part.
  const predict = inferenceRoute(opts, async (c: HttpContext): Promise<Response> => {
    try {
      const model = c.req.param('model') ?? '';
      const version = c.req.param('version') ?? '';
      // Resolved first: an unknown model is a 404 whatever the body holds.
      const target = service.resolve(model, version, c.get('inference'));
      // The client going away cancels the backend call (the context's signal, from the request's admission ticket).
      const ctx: RequestContext = requestContext(c, opts);
      const framed = await readBody(c.env.incoming, opts.maxBodyBytes, { reserve: 4 });
      const input = bodyInput(await bodyInputOf(service, target, ctx), framed, c.req.header('content-type'));
      const request: InferRequest = { model, version, inputs: [input] };
      const parts = service.inferStream(request, ctx, target)[Symbol.asyncIterator]();
      return await answer(c, parts, outputNameOf(target), (err) => {
        const fields = { requestId: c.get('requestId'), trace_id: traceOf(c).traceId, method: c.req.method, path: c.req.path, midStream: true };
        logRequestFailure(log, fields, toGatewayError(err));
      });
    } catch (err) {
      return fail(c, err);
    }
  });
  app.post('/predictions/:model', predict);
  app.post('/predictions/:model/:version', predict);
};

/**
 * What a TorchServe client's body (or lone `data` entry) becomes as a tensor:
 * the model's single input where the backend reports exactly one (from the
 * cached metadata), else `data`. TorchServe reports no tensor metadata, so its
 * models skip the lookup.
 */
export async function bodyInputOf(service: InferenceService, target: RouteTarget, ctx: RequestContext): Promise<BodyInputSpec> {
  if (target.route.backend.kind === 'torchserve') return DEFAULT_BODY_INPUT;
  return bodyInputSpec((await service.cachedModelMetadata(target, ctx)).inputs);
}

/** The output a model's answer is the bare value of (its TorchServe `outputName`, default OUTPUT0). */
export function outputNameOf(target: RouteTarget): string {
  return target.route.options.torchserve?.outputName ?? DEFAULT_TORCHSERVE_OPTIONS.outputName;
}

/**
 * The answer, from the backend's parts. Failures up to the first part still
 * get a proper error status (the caller's catch). An answer whose parts have
 * ended by the next event-loop turn after the first (every non-streaming
 * backend) goes out whole, with Content-Length; otherwise each part is written
 * as an HTTP chunk as it comes. A failure after the first chunk can no longer
 * change the status: it is logged and the connection is cut, so the client
 * sees an incomplete chunked reply rather than a silently truncated one.
 */
async function answer(
  c: HttpContext,
  parts: AsyncIterator<InferResponse>,
  outputName: string,
  onStreamError: (err: unknown) => void,
): Promise<Response> {
  const headers = { [REQUEST_ID_HEADER]: c.get('requestId') };
  const first = await parts.next();
  if (first.done) return new Response(null, { status: 200, headers });
  const head = renderAnswer(first.value, outputName);
  const streamHeaders = { ...headers, 'content-type': head.contentType };
  let next = following(parts);
  const early = await Promise.race([next, nextTurn()]);
  if (early?.done === true) return new Response(head.body as Uint8Array<ArrayBuffer>, { status: 200, headers: streamHeaders });
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(head.body);
    },
    async pull(controller) {
      try {
        const part = await next;
        if (part.done) return controller.close();
        controller.enqueue(renderAnswer(part.value, outputName).body);
        next = following(parts);
      } catch (err) {
        onStreamError(err);
        controller.error(err);
      }
    },
    async cancel() {
      await parts.return?.(); // the client went away
    },
  });
  return new Response(body, { status: 200, headers: streamHeaders });
}

/** The next part; a rejection nobody awaits (the client left first) is not an unhandled one. */
function following(parts: AsyncIterator<InferResponse>): Promise<IteratorResult<InferResponse>> {
  const next = parts.next();
  next.catch(() => undefined);
  return next;
}

/** Resolves (to undefined) after the I/O callbacks of the current event-loop turn. */
function nextTurn(): Promise<undefined> {
  return new Promise((resolve) => setImmediate(() => resolve(undefined)));
}

function jsonResponse(c: HttpContext, reply: TorchServeReply): Response {
  return new Response(reply.body, {
    status: reply.status,
    headers: { 'content-type': 'application/json', [REQUEST_ID_HEADER]: c.get('requestId') },
  });
}
