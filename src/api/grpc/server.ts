import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { GRPC_FRONT_DOORS } from './front-doors.js';
import { admitCall, serviceError, unaryHandler, type GrpcApiOptions } from './calls.js';
import type { RequestTicket } from '../admission.js';
import { toGatewayError, type GatewayError } from '../../core/errors.js';
import type { Logger } from '../../observability/logger.js';
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
    ModelInfer: unary('ModelInfer', async (req: ModelInferRequestMessage, ctx) => {
      // Resolved before the tensors are decoded: an unknown model is NOT_FOUND whatever the inputs hold.
      const target = service.resolve(req.model_name ?? '', req.model_version ?? '');
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
      const signal = ticket?.signal;
      // Each message of a long-lived stream gets its own deadline and request id.
      const newContext = (): RequestContext => ({
        deadline: Date.now() + opts.requestTimeoutMs,
        requestId: randomUUID(),
        ...(signal !== undefined ? { signal } : {}),
      });
      streamInfer(call, service, newContext, log, () => ticket?.end());
    },
  };
  server.addService(INFERENCE_SERVICE, handlers);
  for (const add of GRPC_FRONT_DOORS) add(server, service, opts);
  return server;
}

/**
 * ModelStreamInfer: each request gets one response, in request order; a failed
 * request answers in-band with `error_message` (as Triton does) and the stream
 * goes on. At most STREAM_MAX_IN_FLIGHT requests are in progress; the stream
 * is paused beyond that, and writes wait for the transport to drain.
 */
function streamInfer(
  call: grpc.ServerDuplexStream<ModelInferRequestMessage, ModelStreamInferResponseMessage>,
  service: InferenceService,
  newContext: () => RequestContext,
  log: Logger,
  done: () => void,
): void {
  const pending: Promise<ModelStreamInferResponseMessage>[] = [];
  let inputEnded = false;
  let flushing = false;
  let cancelled = false;

  const answer = async (msg: ModelInferRequestMessage): Promise<ModelStreamInferResponseMessage> => {
    const ctx = newContext();
    try {
      const target = service.resolve(msg.model_name ?? '', msg.model_version ?? '');
      const resp = await service.infer(inferRequestFromMessage(msg), ctx, target);
      return { error_message: '', infer_response: inferResponseToMessage(resp) };
    } catch (err) {
      const error = toGatewayError(err);
      logFailure(log, 'ModelStreamInfer', ctx.requestId, error);
      return {
        error_message: error.message,
        infer_response: { model_name: msg.model_name ?? '', model_version: msg.model_version ?? '', id: msg.id ?? '' },
      };
    }
  };

  const flush = async (): Promise<void> => {
    if (flushing) return;
    flushing = true;
    try {
      while (pending.length > 0 && !cancelled) {
        const reply = await pending[0]!;
        pending.shift();
        if (!call.write(reply)) await new Promise<void>((resolve) => call.once('drain', resolve));
        if (call.isPaused() && pending.length < STREAM_MAX_IN_FLIGHT) call.resume();
      }
      if (inputEnded && pending.length === 0 && !cancelled) {
        call.end();
        done();
      }
    } finally {
      flushing = false;
    }
  };

  call.on('data', (msg: ModelInferRequestMessage) => {
    pending.push(answer(msg));
    if (pending.length >= STREAM_MAX_IN_FLIGHT) call.pause();
    void flush();
  });
  call.on('end', () => {
    inputEnded = true;
    void flush();
  });
  call.on('cancelled', () => {
    cancelled = true;
    done();
  });
  call.on('error', () => {
    cancelled = true;
    done();
  });
}

function logFailure(log: Logger, rpc: string, requestId: string | undefined, error: GatewayError): void {
  logRequestFailure(log, { requestId, rpc }, error);
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
