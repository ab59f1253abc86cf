import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import type * as grpc from '@grpc/grpc-js';
import { bindGrpcServer, createGrpcServer } from './api/grpc/server.js';
import { createHttpApp } from './api/http/app.js';
import type { BackendCluster } from './backends/cluster.js';
import { createBackendCluster } from './backends/registry.js';
import type { GatewayConfig } from './config/schema.js';
import type { Logger } from './observability/logger.js';
import { InferenceService } from './routing/inference-service.js';
import { ModelHealthMonitor } from './routing/model-health.js';
import { ModelRouter } from './routing/model-router.js';

export interface RunningGateway {
  readonly httpPort: number;
  readonly grpcPort: number;
  readonly service: InferenceService;
  /** Stops accepting, lets in-flight requests finish (up to `drainMs`), then closes backends. */
  close(drainMs?: number): Promise<void>;
}

/** The composition root: builds backends, routing and both listeners from one validated config. */
export async function startGateway(config: GatewayConfig, logger: Logger): Promise<RunningGateway> {
  const maxBody = config.server.max_body_bytes;
  const clusters = new Map<string, BackendCluster>();
  for (const [name, backend] of Object.entries(config.backends)) {
    clusters.set(name, createBackendCluster(name, backend, maxBody));
  }
  const router = new ModelRouter(config, clusters);
  const health = new ModelHealthMonitor([...router.list()], logger);
  const service = new InferenceService(router, health);
  const apiOptions = { requestTimeoutMs: config.server.request_timeout_ms, logger };

  const app = createHttpApp(service, { ...apiOptions, maxBodyBytes: maxBody });
  const http = createAdaptorServer({ fetch: app.fetch }) as HttpServer;
  const grpcServer = createGrpcServer(service, { ...apiOptions, maxMessageBytes: maxBody });

  let httpPort: number;
  let grpcPort: number;
  try {
    httpPort = await listen(http, config.server.http.host, config.server.http.port);
    grpcPort = await bindGrpcServer(grpcServer, config.server.grpc.host, config.server.grpc.port);
  } catch (err) {
    http.close();
    grpcServer.forceShutdown();
    await Promise.allSettled([...clusters.values()].map((c) => c.close()));
    throw err;
  }
  health.start();
  logger.info(
    { http: `${config.server.http.host}:${httpPort}`, grpc: `${config.server.grpc.host}:${grpcPort}`, models: Object.keys(config.models).length, backends: clusters.size },
    'gateway listening',
  );

  let closing: Promise<void> | undefined;
  const close = (drainMs = 10_000): Promise<void> => {
    closing ??= (async () => {
      service.startDraining();
      health.stop();
      await Promise.all([closeHttp(http, drainMs), closeGrpc(grpcServer, drainMs)]);
      await Promise.allSettled([...clusters.values()].map((c) => c.close()));
      logger.info('gateway stopped');
    })();
    return closing;
  };
  return { httpPort, grpcPort, service, close };
}

function listen(server: HttpServer, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** Stops accepting; idle keep-alive sockets close now, busy ones after their response or at the drain limit. */
function closeHttp(server: HttpServer, drainMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.closeAllConnections(), drainMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}

function closeGrpc(server: grpc.Server, drainMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, drainMs);
    timer.unref();
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
