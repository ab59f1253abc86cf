// A stand-in for TorchServe: its REST inference API (plus read-only management calls, on the same port) and its
// gRPC inference service on real sockets, serving the deterministic handlers of models.ts. It shares no code
// with src/, so it can judge the gateway's TorchServe backend independently.
import { setTimeout as delay } from 'node:timers/promises';
import { listenBoth, type ListenOptions, type ReferenceServers } from '../common/listen.js';
import { createGrpcServer } from './grpc.js';
import type { InferHook, ReceivedRequest } from './models.js';
import { createRestServer } from './rest.js';

export interface TorchServeReferenceOptions extends ListenOptions {
  /** 0 (the default) picks a free port. Serves inference (8080 in TorchServe) and GET /models (8081). */
  httpPort?: number;
  /** Delay added to every prediction request, to make load and timeout behaviour observable. */
  latencyMs?: number;
  /** Turns on TorchServe's token auth: `Authorization: Bearer <token>` on REST and in gRPC metadata. */
  token?: string;
}

export interface TorchServeReference extends ReferenceServers {
  /**
   * inferCalls counts prediction requests received (REST POST /predictions/..., gRPC Predictions, each
   * StreamPredictions call and StreamPredictions2 message), failed and unauthorised ones included.
   * lastRequest is the latest of those as received: REST headers and body, or gRPC metadata and the
   * request message's wire bytes. Ping, describe and other calls are not recorded.
   */
  stats: { inferCalls: number; lastRequest?: ReceivedRequest };
}

export async function startTorchServeReference(opts: TorchServeReferenceOptions = {}): Promise<TorchServeReference> {
  const latencyMs = opts.latencyMs ?? 0;
  const stats: TorchServeReference['stats'] = { inferCalls: 0 };
  const onInfer: InferHook = async (request) => {
    stats.inferCalls++;
    stats.lastRequest = request;
    if (latencyMs > 0) await delay(latencyMs);
  };
  const frontEnd = { onInfer, ...(opts.token !== undefined ? { token: opts.token } : {}) };

  const servers = await listenBoth(opts, createRestServer(frontEnd), () => createGrpcServer(frontEnd));
  return { ...servers, stats };
}
