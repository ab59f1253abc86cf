// A stand-in for TensorFlow Serving: its REST (8501-style) and gRPC (8500-style) APIs on real sockets, serving
// the deterministic models of models.ts. It shares no code with src/, so it can judge the gateway's codecs
// independently.
import { once } from 'node:events';
import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { createGrpcServer } from './grpc.js';
import type { InferHook } from './models.js';
import { createRestServer } from './rest.js';

export interface TfServingReferenceOptions {
  /** Interface to listen on; default 127.0.0.1. */
  host?: string;
  /** 0 (the default) picks a free port. */
  httpPort?: number;
  grpcPort?: number;
  /** Delay added to every predict call, to make load and timeout behaviour observable. */
  latencyMs?: number;
  /**
   * How gRPC Predict writes output values: 'typed' *_val fields like real TF Serving (the default), or raw
   * 'tensor_content'. DT_STRING always uses string_val.
   */
  responseForm?: 'typed' | 'tensor_content';
  /** In the typed form, send an output whose elements are all equal as a single element (TF's broadcast form). */
  broadcastScalars?: boolean;
}

export interface TfServingReference {
  host: string;
  httpPort: number;
  grpcPort: number;
  /** "host:port", ready for a URL or a gRPC target. */
  httpEndpoint: string;
  grpcEndpoint: string;
  /** inferCalls counts predict requests received (REST and gRPC), failed ones included. */
  stats: { inferCalls: number };
  /** Stops both servers and drops open connections; safe to call more than once. */
  close(): Promise<void>;
}

export async function startTfServingReference(opts: TfServingReferenceOptions = {}): Promise<TfServingReference> {
  const host = opts.host ?? '127.0.0.1';
  const authority = host.includes(':') ? `[${host}]` : host; // IPv6 literals need brackets in "host:port"
  const latencyMs = opts.latencyMs ?? 0;
  const stats = { inferCalls: 0 };
  const onInfer: InferHook = async () => {
    stats.inferCalls++;
    if (latencyMs > 0) await delay(latencyMs);
  };

  const httpServer = createRestServer(onInfer);
  httpServer.listen(opts.httpPort ?? 0, host);
  await once(httpServer, 'listening');
  const httpPort = (httpServer.address() as AddressInfo).port;

  const grpcServer = createGrpcServer(onInfer, {
    responseForm: opts.responseForm ?? 'typed',
    broadcastScalars: opts.broadcastScalars ?? false,
  });
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
    server.closeAllConnections(); // keep-alive sockets would otherwise hold close() open
  });
}
