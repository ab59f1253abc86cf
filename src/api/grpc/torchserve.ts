import * as grpc from '@grpc/grpc-js';
import type { InferRequest } from '../../core/inference.js';
import {
  DEFAULT_BODY_INPUT,
  inputMapInputs,
  isLoneBody,
  pingHealth,
  renderAnswer,
} from '../../protocols/torchserve/front-door.js';
import {
  TORCHSERVE_SERVICE,
  type PredictionResponseMessage,
  type PredictionsRequestMessage,
} from '../../protocols/torchserve/grpc-proto.js';
import type { InferenceService, RequestContext } from '../../routing/inference-service.js';
import type { RouteTarget } from '../../routing/model-router.js';
import { bodyInputOf, outputNameOf } from '../http/torchserve.js';
import { admitCall, callContext, drained, inferenceHandler, serviceError, unaryHandler, type GrpcApiOptions } from './calls.js';
import type { InferenceTimer } from '../../observability/inference-metrics.js';
import { timedContext } from '../timed-context.js';
import { admitGrpcCall } from '../auth/grpc-guard.js';
import type { RequestTicket } from '../admission.js';
import type { GrpcFrontDoor } from './front-doors.js';

/**
 * TorchServe's gRPC inference API (org.pytorch.serve.grpc.inference.InferenceAPIsService)
 * on the gateway's gRPC port, so TorchServe's gRPC clients call it unchanged,
 * through the same InferenceService as the v2 API:
 * - Ping: `{"status": "Healthy"}` (Unhealthy while draining), always OK, as TorchServe does;
 * - Predictions: the input map as BYTES inputs (front-door.ts), the answer as `prediction`;
 * - StreamPredictions: one PredictionResponse per part as the backend streams them;
 * - StreamPredictions2 (sequence inference, bidirectional): UNIMPLEMENTED.
 * Errors are gRPC statuses by the gateway's codes (NOT_FOUND for an unknown
 * model, where TorchServe would say INTERNAL).
 */
export const addTorchServeServices: GrpcFrontDoor = (server, service, opts) => {
  const handlers: grpc.UntypedServiceImplementation = {
    Ping: unaryHandler('Ping', opts, () => ({ health: pingHealth(service.serverReady()) }), false),
    Predictions: inferenceHandler('Predictions', opts, async (msg: PredictionsRequestMessage, ctx): Promise<PredictionResponseMessage> => {
      const { target, request } = await canonicalRequest(service, msg, ctx);
      const answer = await service.infer(request, ctx, target);
      return reply(msg, renderAnswer(answer, outputNameOf(target)).body);
    }),
    StreamPredictions: (call: grpc.ServerWritableStream<PredictionsRequestMessage, PredictionResponseMessage>) => {
      void streamPredictions(call, service, opts);
    },
    StreamPredictions2: (call: grpc.ServerDuplexStream<PredictionsRequestMessage, PredictionResponseMessage>) => {
      call.emit('error', {
        code: grpc.status.UNIMPLEMENTED,
        details: 'StreamPredictions2 (sequence inference) is not supported by Infergate; use Predictions or StreamPredictions',
      });
    },
  };
  server.addService(TORCHSERVE_SERVICE, handlers);
};

/** The client's request in canonical form; the model is resolved before the inputs are looked at. */
async function canonicalRequest(
  service: InferenceService,
  msg: PredictionsRequestMessage,
  ctx: RequestContext,
): Promise<{ target: RouteTarget; request: InferRequest }> {
  const model = msg.model_name ?? '';
  const version = msg.model_version ?? '';
  const target = service.resolve(model, version, ctx);
  const input = msg.input ?? {};
  const body = isLoneBody(input) ? await bodyInputOf(service, target, ctx) : DEFAULT_BODY_INPUT;
  return { target, request: { model, version, inputs: inputMapInputs(input, body) } };
}

/** A PredictionResponse; sequence_id is echoed when the request carried one, as TorchServe does. */
function reply(msg: PredictionsRequestMessage, prediction: Buffer): PredictionResponseMessage {
  return { prediction, ...(msg.sequence_id !== undefined ? { sequence_id: msg.sequence_id } : {}) };
}

/**
 * StreamPredictions: each part is written as it arrives, waiting for the
 * transport to drain; the client cancelling the call aborts the backend call.
 */
async function streamPredictions(
  call: grpc.ServerWritableStream<PredictionsRequestMessage, PredictionResponseMessage>,
  service: InferenceService,
  opts: GrpcApiOptions,
): Promise<void> {
  let ctx: RequestContext | undefined;
  let ticket: RequestTicket | undefined;
  let timer: InferenceTimer | undefined;
  const trailer = new grpc.Metadata();
  try {
    // The client cancelling the call aborts the backend call (the ticket's signal).
    ticket = admitCall(call, opts);
    ctx = callContext(call, opts, trailer, ticket?.signal);
    await admitGrpcCall(opts.access, 'StreamPredictions', call, call.request);
    // An inference from here on: timed for the metrics to its first part (or its failure).
    timer = opts.metrics?.start();
    if (timer !== undefined) ctx = timedContext(ctx, timer);
    const { target, request } = await canonicalRequest(service, call.request, ctx);
    const outputName = outputNameOf(target);
    for await (const part of service.inferStream(request, ctx, target)) {
      timer?.end();
      if (call.cancelled) return;
      if (!call.write(reply(call.request, renderAnswer(part, outputName).body))) await drained(call);
    }
    timer?.end();
    if (call.cancelled) return;
    trailer.set('x-request-id', ctx.requestId ?? '');
    call.end(trailer);
  } catch (err) {
    timer?.end(err);
    if (!call.cancelled) call.emit('error', serviceError(opts.logger, 'StreamPredictions', ctx?.requestId, err, trailer, ctx?.trace?.traceId));
  } finally {
    ticket?.end();
  }
}
