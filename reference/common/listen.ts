// The server lifecycle the three references share: an HTTP server and a gRPC server on (possibly free) ports of
// one interface, endpoints written as "host:port", and a close() that tests can call from any teardown.
import { once } from 'node:events';
import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';

export interface ListenOptions {
  /** Interface to listen on; default 127.0.0.1. */
  host?: string;
  /** 0 (the default) picks a free port. */
  httpPort?: number;
  grpcPort?: number;
}

export interface ReferenceServers {
  host: string;
  httpPort: number;
  grpcPort: number;
  /** "host:port", ready for a URL or a gRPC target. */
  httpEndpoint: string;
  grpcEndpoint: string;
  /** Stops both servers and drops open connections; safe to call more than once. */
  close(): Promise<void>;
}

/**
 * Starts httpServer, then the gRPC server from createGrpc (only once HTTP listens, so a failed HTTP bind leaves
 * nothing to clean up). If gRPC cannot bind, the HTTP server is closed again before the error is thrown.
 */
export async function listenBoth(
  opts: ListenOptions,
  httpServer: HttpServer,
  createGrpc: () => grpc.Server,
): Promise<ReferenceServers> {
  const host = opts.host ?? '127.0.0.1';
  const authority = host.includes(':') ? `[${host}]` : host; // IPv6 literals need brackets in "host:port"

  httpServer.listen(opts.httpPort ?? 0, host);
  await once(httpServer, 'listening');
  const httpPort = (httpServer.address() as AddressInfo).port;

  const grpcServer = createGrpc();
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
    close: () => {
      // forceShutdown, not tryShutdown: open streams would otherwise keep a test's teardown waiting.
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
