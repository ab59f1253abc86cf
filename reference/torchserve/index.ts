// A stand-in for TorchServe: its REST inference API (plus read-only management calls, on the same port) and its
// gRPC inference service on real sockets, serving the deterministic handlers of models.ts. It shares no code
// with src/, so it can judge the gateway's TorchServe backend independently.
import { once } from 'node:events';
import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { createGrpcServer } from './grpc.js';
import type { InferHook, ReceivedRequest } from './models.js';
import { createRestServer } from './rest.js';

export interface TorchServeReferenceOptions {
  /** Interface to listen on; default 127.0.0.1. */
  host?: string;
  /** 0 (the default) picks a free port. Serves inference (8080 in TorchServe) and GET /models (8081). */
  httpPort?: number;
  grpcPort?: number;
  /** Delay added to every prediction request, to make load and timeout behaviour observable. */
  latencyMs?: number;
  /** Turns on TorchServe's token auth: `Authorization: Bearer <token>` on REST and in gRPC metadata. */
  token?: string;
}

export interface TorchServeReference {
  host: string;
  httpPort: number;
  grpcPort: number;
  /** "host:port", ready for a URL or a gRPC target. */
  httpEndpoint: string;
  grpcEndpoint: string;
  /**
   * inferCalls counts prediction requests received (REST POST /predictions/..., gRPC Predictions, each
   * StreamPredictions call and StreamPredictions2 message), failed and unauthorised ones included.
   * lastRequest is the latest of those as received: REST headers and body, or gRPC metadata and the
   * request message's wire bytes. Ping, describe and other calls are not recorded.
   */
  stats: { inferCalls: number; lastRequest?: ReceivedRequest };
  /** Stops both servers and drops open connections; safe to call more than once. */
  close(): Promise<void>;
}

export async function startTorchServeReference(opts: TorchServeReferenceOptions = {}): Promise<TorchServeReference> {
  const host = opts.host ?? '127.0.0.1';
  const authority = host.includes(':') ? `[${host}]` : host; // IPv6 literals need brackets in "host:port"
  const latencyMs = opts.latencyMs ?? 0;
  const stats: TorchServeReference['stats'] = { inferCalls: 0 };
  const onInfer: InferHook = async (request) => {
    stats.inferCalls++;
    stats.lastRequest = request;
    if (latencyMs > 0) await delay(latencyMs);
  };
  const frontEnd = { onInfer, ...(opts.token !== undefined ? { token: opts.token } : {}) };

  const httpServer = createRestServer(frontEnd);
  httpServer.listen(opts.httpPort ?? 0, host);
  await once(httpServer, 'listening');
  const httpPort = (httpServer.address() as AddressInfo).port;

  const grpcServer = createGrpcServer(frontEnd);
  let grpcPort: number;
  try {
    grpcPort = await bindGrpc(grpcServer, `${authority}:${opts.grpcPort ?? 0}`);
  } catch (err) {
    await closeHttp(httpServer);
    throw err;
  }

  let closing: Promise<void> | undefined;
  return {
    host,
    httpPort,
    grpcPort,
    httpEndpoint: `${authority}:${httpPort}`,
    grpcEndpoint: `${authority}:${grpcPort}`,
    stats,
    close: () => {
      closing ??= (async () => {
        grpcServer.forceShutdown();
        await closeHttp(httpServer);
      })();
      return closing;
    },
  };
}

function bindGrpc(server: grpc.Server, address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port)));
  });
}

function closeHttp(server: HttpServer): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections(); // keep-alive and streaming sockets would otherwise hold close() open
  });
}
