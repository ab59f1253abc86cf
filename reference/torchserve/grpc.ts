// TorchServe's gRPC inference service (org.pytorch.serve.grpc.inference.InferenceAPIsService) over grpc-js,
// with TorchServe's quirks kept: frontend errors (unknown model or version, no worker, missing model name) are
// INTERNAL, handler errors go through GRPCUtils' HTTP-to-gRPC table (so "Prediction failed" is UNAVAILABLE).
import { Buffer } from 'node:buffer';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_LOAD_OPTIONS } from '../common/grpc.js';
import { TorchServeError, predict, type HandlerReply, type InferHook } from './models.js';
import { MAX_REQUEST_BYTES } from './rest.js';

export const PROTO_DIR = fileURLToPath(new URL('../../protos/torchserve/', import.meta.url));
const SERVICE_NAME = 'org.pytorch.serve.grpc.inference.InferenceAPIsService';
const STREAM_PART_DELAY_MS = 15; // same pacing as the REST chunks
const INVALID_KEY = 'Token Authorization failed. Token either incorrect, expired, or not provided correctly';

// With these options bytes arrive as Buffers, maps as plain objects, and unset fields are absent.
const definition = protoLoader.loadSync('inference.proto', { includeDirs: [PROTO_DIR], ...PROTO_LOAD_OPTIONS });

// The decoded request objects are mapped back to their wire bytes, so stats can record exactly what a client
// sent. Wrapping requestDeserialize is the one place grpc-js hands us those bytes.
const wireBytes = new WeakMap<object, Buffer>();
const SERVICE: grpc.ServiceDefinition = Object.fromEntries(
  Object.entries(definition[SERVICE_NAME] as grpc.ServiceDefinition).map(([rpc, method]) => [rpc, {
    ...method,
    requestDeserialize: (bytes: Buffer): unknown => {
      const message: unknown = method.requestDeserialize(bytes);
      if (typeof message === 'object' && message !== null) wireBytes.set(message, bytes);
      return message;
    },
  }]),
);

interface PredictionsRequestMsg {
  model_name?: string;
  model_version?: string;
  input?: Record<string, Buffer>;
  sequence_id?: string;
}
interface PredictionResponseMsg {
  prediction?: Buffer;
  sequence_id?: string;
  status?: { code: number; message: string };
}

/** GRPCUtils.getGRPCStatusCode: how TorchServe turns a worker's HTTP status into a gRPC code. */
export function grpcCodeForHttp(status: number): grpc.status {
  const exact: Record<number, grpc.status> = {
    400: grpc.status.INVALID_ARGUMENT, 401: grpc.status.UNAUTHENTICATED, 403: grpc.status.PERMISSION_DENIED,
    404: grpc.status.NOT_FOUND, 409: grpc.status.ABORTED, 413: grpc.status.RESOURCE_EXHAUSTED,
    416: grpc.status.OUT_OF_RANGE, 429: grpc.status.RESOURCE_EXHAUSTED, 499: grpc.status.CANCELLED,
    501: grpc.status.UNIMPLEMENTED, 503: grpc.status.UNAVAILABLE, 504: grpc.status.DEADLINE_EXCEEDED,
  };
  return exact[status] ?? (status >= 400 && status < 500 ? grpc.status.FAILED_PRECONDITION : grpc.status.INTERNAL);
}

function toStatus(err: unknown): grpc.StatusObject {
  const details = err instanceof Error ? err.message : String(err);
  let code: grpc.status = grpc.status.INTERNAL;
  if (err instanceof TorchServeError && !err.frontend) code = grpcCodeForHttp(err.status);
  return { code, details, metadata: new grpc.Metadata() };
}

const denied = (): grpc.StatusObject => ({ code: grpc.status.PERMISSION_DENIED, details: INVALID_KEY, metadata: new grpc.Metadata() });

export interface GrpcOptions {
  /** When set, every call needs metadata `authorization: Bearer <token>`, Ping included. */
  token?: string;
  onInfer: InferHook;
}

export function createGrpcServer(opts: GrpcOptions): grpc.Server {
  // Like TorchServe, inbound messages are capped at max_request_size; grpc-js answers RESOURCE_EXHAUSTED.
  const server = new grpc.Server({ 'grpc.max_receive_message_length': MAX_REQUEST_BYTES });
  const authorized = (metadata: grpc.Metadata): boolean =>
    opts.token === undefined || metadata.get('authorization')[0]?.toString() === `Bearer ${opts.token}`;
  const received = (metadata: grpc.Metadata, request: object): Promise<void> =>
    opts.onInfer({ headers: metadataRecord(metadata), body: wireBytes.get(request) ?? Buffer.alloc(0) });

  const implementation: grpc.UntypedServiceImplementation = {
    Ping: (call: grpc.ServerUnaryCall<unknown, { health: string }>, callback: grpc.sendUnaryData<{ health: string }>) => {
      if (!authorized(call.metadata)) return callback(denied());
      callback(null, { health: JSON.stringify({ status: 'Healthy' }, null, 2) });
    },

    Predictions: (call: grpc.ServerUnaryCall<PredictionsRequestMsg, PredictionResponseMsg>, callback: grpc.sendUnaryData<PredictionResponseMsg>) => {
      received(call.metadata, call.request)
        .then(() => {
          if (!authorized(call.metadata)) return callback(denied());
          const reply = run(call.request);
          callback(null, response(reply.body, call.request));
        })
        .catch((err: unknown) => callback(toStatus(err)));
    },

    // One response per streamed part; a non-streaming handler's answer is a single response.
    StreamPredictions: (call: grpc.ServerWritableStream<PredictionsRequestMsg, PredictionResponseMsg>) => {
      received(call.metadata, call.request)
        .then(async () => {
          if (!authorized(call.metadata)) return call.emit('error', denied());
          const reply = run(call.request);
          await writeParts(call, reply, call.request);
          if (!call.cancelled) call.end();
        })
        .catch((err: unknown) => call.emit('error', toStatus(err)));
    },

    // Bidirectional: requests are answered in order; a failed one gets an in-band `status` (as TorchServe does
    // on this rpc) and the stream goes on.
    StreamPredictions2: (call: grpc.ServerDuplexStream<PredictionsRequestMsg, PredictionResponseMsg>) => {
      if (!authorized(call.metadata)) return call.emit('error', denied());
      let queue: Promise<void> = Promise.resolve();
      call.on('data', (request: PredictionsRequestMsg) => {
        queue = queue.then(async () => {
          try {
            await received(call.metadata, request);
            await writeParts(call, run(request), request);
          } catch (err) {
            const { code, details } = toStatus(err);
            safeWrite(call, { ...response(undefined, request), status: { code, message: details } });
          }
        });
      });
      call.on('end', () => void queue.then(() => call.cancelled || call.end()));
      call.on('error', () => {}); // cancellation surfaces here; the queue just drains
    },
  };
  server.addService(SERVICE, implementation);
  return server;
}

function run(request: PredictionsRequestMsg): HandlerReply {
  return predict(request.model_name ?? '', request.model_version || undefined, {
    input: new Map(Object.entries(request.input ?? {})),
  });
}

/** A PredictionResponse; sequence_id is echoed only when the request carried one. */
function response(prediction: Buffer | undefined, request: PredictionsRequestMsg): PredictionResponseMsg {
  return {
    ...(prediction ? { prediction } : {}),
    ...(request.sequence_id !== undefined ? { sequence_id: request.sequence_id } : {}),
  };
}

async function writeParts(call: grpc.ServerWritableStream<PredictionsRequestMsg, PredictionResponseMsg> | grpc.ServerDuplexStream<PredictionsRequestMsg, PredictionResponseMsg>, reply: HandlerReply, request: PredictionsRequestMsg): Promise<void> {
  const parts = reply.parts ?? [reply.body];
  for (const [i, part] of parts.entries()) {
    if (call.cancelled) return;
    if (i > 0) await delay(STREAM_PART_DELAY_MS);
    safeWrite(call, response(part, request));
  }
}

function safeWrite(call: grpc.ServerWritableStream<PredictionsRequestMsg, PredictionResponseMsg> | grpc.ServerDuplexStream<PredictionsRequestMsg, PredictionResponseMsg>, message: PredictionResponseMsg): void {
  try {
    if (!call.cancelled) call.write(message);
  } catch {
    // the client went away mid-stream; nothing left to tell it
  }
}

/** Metadata as a flat record: repeated keys joined with ", ", binary (-bin) values in base64. */
function metadataRecord(metadata: grpc.Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, values] of Object.entries(metadata.toJSON())) {
    out[key] = values.map((v) => (Buffer.isBuffer(v) ? v.toString('base64') : v)).join(', ');
  }
  return out;
}
