import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { GRPC_FRONT_DOORS } from './front-doors.js';
import { admitCall, drained, inferenceHandler, metadataValue, serviceError, unaryHandler, type GrpcApiOptions } from './calls.js';
import { admitGrpcCall, afterGate, streamMessageGate } from '../auth/grpc-guard.js';
import type { RequestTicket } from '../admission.js';
import { GatewayError, invalidArgument, toGatewayError } from '../../core/errors.js';
import type { InferRequest, InferResponse } from '../../core/inference.js';
import type { InferenceTimer } from '../../observability/inference-metrics.js';
import type { Logger } from '../../observability/logger.js';
import { TRACEPARENT_HEADER, traceFrom, type TraceContext } from '../../observability/trace-context.js';
import { REQUEST_ID_HEADER, requestIdFrom } from '../request-id.js';
import { timedContext } from '../timed-context.js';
import { logRequestFailure } from '../../observability/request-log.js';
import {
  inferRequestFromMessage,
  inferResponseToMessage,
  modelMetadataToMessage,
} from '../../protocols/v2/grpc-codec.js';
import {
  INFERENCE_SERVICE,
  type ModelInferRequestMessage,
  type ModelStreamInferResponseMessage,
} from '../../protocols/v2/grpc-proto.js';
import type { InferenceService, RequestContext } from '../../routing/inference-service.js';

export type { GrpcApiOptions } from './calls.js';

/** Requests of one ModelStreamInfer stream processed at once; beyond it the stream is paused (backpressure). */
const STREAM_MAX_IN_FLIGHT = 16;

/**
 * The client-facing gRPC API: inference.GRPCInferenceService, wire-compatible
 * with Triton's, so Triton's own clients work unchanged; plus the front doors
 * in other servers' formats (api/grpc/front-doors.ts).
 */
export function createGrpcServer(service: InferenceService, opts: GrpcApiOptions): grpc.Server {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': opts.maxMessageBytes,
    'grpc.max_send_message_length': opts.maxMessageBytes,
  });
  const log = opts.logger;

  const unary = <Req, Res>(rpc: string, handler: (req: Req, ctx: RequestContext) => Promise<Res> | Res, admit = true) =>
    unaryHandler<Req, Res>(rpc, opts, handler, admit);

  // Health and server metadata are answered by the gateway itself and never refused, so probes see it under overload.
  const handlers: grpc.UntypedServiceImplementation = {
    ServerLive: unary('ServerLive', () => ({ live: service.serverLive() }), false),
    ServerReady: unary('ServerReady', () => ({ ready: service.serverReady() }), false),
    ServerMetadata: unary('ServerMetadata', () => {
      const meta = service.serverMetadata();
      return { name: meta.name, version: meta.version, extensions: [...meta.extensions] };
    }, false),
    ModelReady: unary('ModelReady', async (req: { name?: string; version?: string }, ctx) => ({
      ready: await service.modelReady(req.name ?? '', req.version ?? '', ctx),
    })),
    ModelMetadata: unary('ModelMetadata', async (req: { name?: string; version?: string }, ctx) =>
      modelMetadataToMessage(await service.modelMetadata(req.name ?? '', req.version ?? '', ctx)),
    ),
    ModelInfer: inferenceHandler('ModelInfer', opts, async (req: ModelInferRequestMessage, ctx) => {
      // Resolved before the tensors are decoded: an unknown model is NOT_FOUND whatever the inputs hold.
      const target = service.resolve(req.model_name ?? '', req.model_version ?? '', ctx);
      return inferResponseToMessage(await service.infer(inferRequestFromMessage(req), ctx, target));
    }),
    RepositoryIndex: unary('RepositoryIndex', async (req: { ready?: boolean }, ctx) => ({
      models: (await service.modelIndex(req.ready === true, ctx)).map((e) => ({ ...e })),
    })),
    ModelStreamInfer: (call: grpc.ServerDuplexStream<ModelInferRequestMessage, ModelStreamInferResponseMessage>) => {
      // One stream is one request in flight; its messages share the stream's cancellation.
      let ticket: RequestTicket | undefined;
      try {
        ticket = admitCall(call, opts);
      } catch (err) {
        call.emit('error', serviceError(log, 'ModelStreamInfer', undefined, err));
        return;
      }
      // The stream's credential is checked once, as it opens; each message's model and rate limits as it comes.
      admitGrpcCall(opts.access, 'ModelStreamInfer', call).then(
        (principal) => {
          if (call.cancelled) ticket?.end();
          else streamInfer(call, service, opts, ticket, streamMessageGate(opts.access, principal));
        },
        (err: unknown) => {
          ticket?.end();
          call.emit('error', serviceError(log, 'ModelStreamInfer', undefined, err));
        },
      );
    },
  };
  server.addService(INFERENCE_SERVICE, handlers);
  for (const add of GRPC_FRONT_DOORS) add(server, service, opts);
  return server;
}

/** Request parameter (Triton's): end each request's responses with an empty one flagged final. */
const EMPTY_FINAL_PARAMETER = 'triton_enable_empty_final_response';
/** Response parameter (Triton's): true on the last response of a request. */
const FINAL_PARAMETER = 'triton_final_response';

/** What pulling a request's next part gave: a part, the end of its parts, or its failure. */
type Step = { readonly part: InferResponse } | { readonly end: true } | { readonly error: GatewayError };

/** One request of a ModelStreamInfer stream, from its arrival until its last response is written. */
interface StreamRequest {
  readonly msg: ModelInferRequestMessage;
  readonly requestId: string | undefined;
  readonly trace: TraceContext;
  /** The answer's parts; undefined when the request failed before it reached a backend. */
  readonly parts: AsyncIterator<InferResponse> | undefined;
  /** The step asked for and not yet written: the first is asked for on arrival, the others one at a time. */
  next: Promise<Step>;
  /** The client asked for Triton's empty final response (the parameter is the gateway's to honour, not sent on). */
  readonly emptyFinal: boolean;
}

/**
 * ModelStreamInfer: each request is answered with every part its backend
 * streams (service.inferStream: a TorchServe stream, a Triton decoupled
 * model's responses; one part from any other model), each as its own
 * response, and the responses of different requests in request order: all
 * of the first request's, then the second's. Requests run concurrently, but
 * only the oldest one's parts are pulled from its backend as they are
 * written; a later request holds at most its first part until its turn. A
 * failed request answers in-band with `error_message` (as Triton does) and
 * the stream goes on. At most STREAM_MAX_IN_FLIGHT requests are in progress;
 * the stream is paused beyond that, and writes wait for the transport to
 * drain. A request with `triton_enable_empty_final_response` gets an empty
 * response flagged `triton_final_response` after its last one, unless that
 * one already carried the flag (as Triton answers). When the client goes
 * away, every request still open is cancelled and its backend stream closed,
 * and the stream's admission ticket ends once they all have.
 */
function streamInfer(
  call: grpc.ServerDuplexStream<ModelInferRequestMessage, ModelStreamInferResponseMessage>,
  service: InferenceService,
  opts: GrpcApiOptions,
  ticket: RequestTicket | undefined,
  /** Each message's access check (its model's scope, synchronously; then its rate limits); undefined without access control. */
  gate?: (model: string) => Promise<void>,
): void {
  const log = opts.logger;
  // The stream's own signal, so its backend calls stop when the client goes away even without admission;
  // the ticket's (a shutdown giving up) reaches it too.
  const controller = new AbortController();
  const ticketSignal = ticket?.signal;
  if (ticketSignal?.aborted) controller.abort(ticketSignal.reason);
  else ticketSignal?.addEventListener('abort', () => controller.abort(ticketSignal.reason), { once: true });
  const signal = controller.signal;
  // The stream's request id (the client's x-request-id, or a new one) goes back in its initial metadata; each
  // message gets an id of its own. The stream's trace (its traceparent, or a new one) is every message's.
  const initial = new grpc.Metadata();
  initial.set(REQUEST_ID_HEADER, requestIdFrom(metadataValue(call.metadata, REQUEST_ID_HEADER)));
  call.sendMetadata(initial);
  const trace = traceFrom(metadataValue(call.metadata, TRACEPARENT_HEADER));

  const pending: StreamRequest[] = [];
  let inputEnded = false;
  let flushing = false;
  let cancelled = false;
  let finished = false;
  const finish = (): void => {
    if (finished) return;
    finished = true;
    ticket?.end();
  };

  // Each message of a long-lived stream gets its own deadline and request id.
  const open = (msg: ModelInferRequestMessage): StreamRequest => {
    let ctx: RequestContext = { deadline: Date.now() + opts.requestTimeoutMs, requestId: randomUUID(), signal, trace };
    let timer: InferenceTimer | undefined;
    let emptyFinal = false;
    try {
      // A model outside the stream's scope is refused before it is resolved; the rate limits are awaited before the call.
      const admitted = gate?.(msg.model_name ?? '');
      admitted?.catch(() => undefined);
      // An inference from here on: timed for the metrics to its first part (or its failure).
      timer = opts.metrics?.start();
      if (timer !== undefined) ctx = timedContext(ctx, timer);
      // Resolved before the tensors are decoded: an unknown model is NOT_FOUND whatever the inputs hold.
      const target = service.resolve(msg.model_name ?? '', msg.model_version ?? '', ctx);
      const request = inferRequestFromMessage(msg);
      emptyFinal = emptyFinalRequested(request);
      const start = () => service.inferStream(withoutEmptyFinal(request), ctx, target);
      const parts = (admitted === undefined ? start() : afterGate(admitted, start))[Symbol.asyncIterator]();
      return { msg, requestId: ctx.requestId, trace, parts, next: timer !== undefined ? timedStep(pull(parts), timer) : pull(parts), emptyFinal };
    } catch (err) {
      timer?.end(err);
      return { msg, requestId: ctx.requestId, trace, parts: undefined, next: Promise.resolve({ error: toGatewayError(err) }), emptyFinal };
    }
  };

  const write = async (reply: ModelStreamInferResponseMessage): Promise<void> => {
    if (cancelled || call.cancelled) return;
    if (!call.write(reply)) await drained(call);
  };

  const fail = (req: StreamRequest, error: GatewayError): Promise<void> => {
    logFailure(log, 'ModelStreamInfer', req.requestId, error, req.trace.traceId);
    return write(errorReply(req, error));
  };

  /** Writes every response of the request at the head, pulling its parts one at a time. */
  const answer = async (req: StreamRequest): Promise<void> => {
    let lastFinal = false;
    for (;;) {
      const step = await req.next;
      if (cancelled) return;
      if ('error' in step) return fail(req, step.error);
      if ('end' in step) {
        if (req.emptyFinal && !lastFinal) await write(emptyFinalReply(req.msg));
        return;
      }
      lastFinal = step.part.parameters?.[FINAL_PARAMETER] === true;
      let reply: ModelStreamInferResponseMessage;
      try {
        reply = { error_message: '', infer_response: inferResponseToMessage(withRequestId(step.part, req.msg)) };
      } catch (err) {
        // A part the v2 codec cannot carry ends the request: its backend stream is closed, the failure told in-band.
        await req.parts?.return?.().catch(() => undefined);
        return fail(req, toGatewayError(err));
      }
      await write(reply);
      if (cancelled || req.parts === undefined) return;
      req.next = pull(req.parts);
    }
  };

  const flush = async (): Promise<void> => {
    if (flushing) return;
    flushing = true;
    try {
      while (pending.length > 0 && !cancelled) {
        await answer(pending[0]!);
        if (cancelled) return; // cancel() closes what is still pending
        pending.shift();
        if (call.isPaused() && pending.length < STREAM_MAX_IN_FLIGHT) call.resume();
      }
      if (inputEnded && pending.length === 0 && !cancelled) {
        call.end();
        finish();
      }
    } finally {
      flushing = false;
    }
  };

  /** The client went away (or the call failed): stop every open request and release its backend stream. */
  const cancel = (): void => {
    if (cancelled) return;
    cancelled = true;
    controller.abort(new GatewayError('CANCELLED', 'the client closed the stream before the answer'));
    const open = pending.splice(0);
    void Promise.allSettled(open.map((req) => req.parts?.return?.())).then(finish);
  };

  call.on('data', (msg: ModelInferRequestMessage) => {
    if (cancelled) return;
    pending.push(open(msg));
    if (pending.length >= STREAM_MAX_IN_FLIGHT) call.pause();
    void flush();
  });
  call.on('end', () => {
    inputEnded = true;
    void flush();
  });
  call.on('cancelled', cancel);
  call.on('error', cancel);
}

/** Asks an answer for its next part; never rejects (a failure is a step), so steps may wait unobserved. */
function pull(parts: AsyncIterator<InferResponse>): Promise<Step> {
  return parts.next().then(
    (r): Step => (r.done === true ? { end: true } : { part: r.value }),
    (err: unknown): Step => ({ error: toGatewayError(err) }),
  );
}

/** `step` (a request's first), ending `timer` when it comes: the request's time to its first part, or its failure. */
function timedStep(step: Promise<Step>, timer: InferenceTimer): Promise<Step> {
  return step.then((s) => {
    timer.end('error' in s ? s.error : undefined);
    return s;
  });
}

/** The request's `triton_enable_empty_final_response`; Triton accepts only a bool. */
function emptyFinalRequested(req: InferRequest): boolean {
  const value = req.parameters?.[EMPTY_FINAL_PARAMETER];
  if (value === undefined || typeof value === 'boolean') return value === true;
  throw invalidArgument(`invalid value type for '${EMPTY_FINAL_PARAMETER}' parameter, expected bool_param`);
}

function withoutEmptyFinal(req: InferRequest): InferRequest {
  if (req.parameters?.[EMPTY_FINAL_PARAMETER] === undefined) return req;
  const { [EMPTY_FINAL_PARAMETER]: _asked, ...parameters } = req.parameters;
  const { parameters: _all, ...rest } = req;
  return Object.keys(parameters).length > 0 ? { ...rest, parameters } : rest;
}

/** Parts after the first may not carry the request's id (the service sets it on the first); every response does. */
function withRequestId(part: InferResponse, msg: ModelInferRequestMessage): InferResponse {
  return part.id === undefined && msg.id ? { ...part, id: msg.id } : part;
}

function errorReply(req: StreamRequest, error: GatewayError): ModelStreamInferResponseMessage {
  const { msg } = req;
  return {
    error_message: error.message,
    infer_response: {
      model_name: msg.model_name ?? '',
      model_version: msg.model_version ?? '',
      id: msg.id ?? '',
      // A failure ends the request: said so to a client that counts on the final flag.
      ...(req.emptyFinal ? { parameters: { [FINAL_PARAMETER]: { bool_param: true } } } : {}),
    },
  };
}

function emptyFinalReply(msg: ModelInferRequestMessage): ModelStreamInferResponseMessage {
  return {
    error_message: '',
    infer_response: {
      model_name: msg.model_name ?? '',
      model_version: msg.model_version ?? '',
      id: msg.id ?? '',
      outputs: [],
      raw_output_contents: [],
      parameters: { [FINAL_PARAMETER]: { bool_param: true } },
    },
  };
}

function logFailure(log: Logger, rpc: string, requestId: string | undefined, error: GatewayError, traceId: string): void {
  logRequestFailure(log, { requestId, trace_id: traceId, rpc }, error);
}

/** Binds the server; resolves with the port it listens on (useful with port 0). */
export function bindGrpcServer(server: grpc.Server, host: string, port: number): Promise<number> {
  const address = host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
  return new Promise((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, boundPort) => {
      if (err) reject(err);
      else resolve(boundPort);
    });
  });
}
