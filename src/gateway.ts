import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { createAdaptorServer } from '@hono/node-server';
import type * as grpc from '@grpc/grpc-js';
import { bindGrpcServer, createGrpcServer } from './api/grpc/server.js';
import { createAdminApp } from './api/http/admin.js';
import { createHttpApp } from './api/http/app.js';
import type { BackendCluster } from './backends/cluster.js';
import { ConfigSync, type InstanceInfo } from './config/config-sync.js';
import { LiveConfig, type ApplyResult } from './config/live-config.js';
import { RuntimeSwitcher } from './config/live-runtime.js';
import { ExperimentResultsWiring } from './experiments/results-wiring.js';
import { watchConfigFile, type ConfigFileWatch } from './config/live-watch.js';
import type { GatewayConfig } from './config/schema.js';
import type { Logger } from './observability/logger.js';
import type { InferenceService } from './routing/inference-service.js';

export interface GatewayOptions {
  /** The text `config` was parsed from: shown by GET /admin/config and shared through Redis. */
  readonly configText?: string;
  /** The file it came from: watched for changes (unless `watchConfigFile` is false) and re-read by reloadFromFile(). */
  readonly configFile?: string;
  readonly watchConfigFile?: boolean;
  /** Reload the file on SIGHUP (the CLI turns it on); the handler goes at close(). */
  readonly reloadOnSighup?: boolean;
  /** Environment for the overrides of reloaded texts and for admin.api_key_env (default: process.env). */
  readonly env?: NodeJS.ProcessEnv;
  /** This instance's name in the shared registry (default: host-pid-random). */
  readonly instanceId?: string;
  /** File events closer together than this make one reload (default 200 ms). */
  readonly reloadDebounceMs?: number;
  /** How long backends dropped by a reload stay open for requests that started before it (see RuntimeSwitcher). */
  readonly retireAfterMs?: number;
}

export interface RunningGateway {
  readonly httpPort: number;
  readonly grpcPort: number;
  readonly service: InferenceService;
  /** The running config and its version; every reload goes through it. */
  readonly live: LiveConfig;
  readonly instanceId: string;
  /** The backend clusters of the running config, by name. */
  readonly backends: ReadonlyMap<string, BackendCluster>;
  /** Re-reads the config file and applies it (what SIGHUP does). */
  reloadFromFile(trigger?: string): Promise<ApplyResult>;
  /** Stops accepting, lets in-flight requests finish (up to `drainMs`), then closes backends. */
  close(drainMs?: number): Promise<void>;
}

/**
 * The composition root: builds backends, routing and both listeners from one
 * validated config, and the ways to change it live (file watch, SIGHUP, the
 * admin API, Redis).
 */
export async function startGateway(config: GatewayConfig, logger: Logger, options: GatewayOptions = {}): Promise<RunningGateway> {
  const maxBody = config.server.max_body_bytes;
  const instanceId = options.instanceId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  // Experiment results outlive config swaps: every runtime's splitter and shadow mirror report to this one object.
  const experimentResults = new ExperimentResultsWiring(config, logger);
  const switcher = new RuntimeSwitcher(config, {
    maxBodyBytes: maxBody,
    logger,
    experimentRecorder: experimentResults.results,
    shadowReporter: experimentResults.results,
    ...(options.retireAfterMs !== undefined ? { retireAfterMs: options.retireAfterMs } : {}),
  });
  const service = switcher.service;
  const live = new LiveConfig(
    { config, text: options.configText },
    { applier: switcher, logger, ...(options.env !== undefined ? { env: options.env } : {}) },
  );

  // Redis is part of the startup config only: changing it needs a restart.
  const sync =
    config.redis !== undefined
      ? new ConfigSync(live, {
          url: config.redis.url,
          keyPrefix: config.redis.key_prefix,
          commandTimeoutMs: config.redis.command_timeout_ms,
          instanceId,
          logger,
        })
      : undefined;
  const self = (): InstanceInfo => ({ id: instanceId, version: live.current.version, seen_at: new Date().toISOString() });

  const apiOptions = { requestTimeoutMs: config.server.request_timeout_ms, logger };
  const admin = createAdminApp({
    live,
    maxBodyBytes: maxBody,
    logger,
    instances: async () => (sync !== undefined ? sync.instances().catch(() => [self()]) : [self()]),
    ...(sync !== undefined ? { redisStatus: () => (sync.connected ? 'connected' : 'unavailable') } : {}),
    experiments: () => switcher.experiments?.status() ?? [],
  });
  const experiments = experimentResults.attach({ current: () => live.current.config, runtime: switcher, maxBodyBytes: maxBody });
  const app = createHttpApp(service, { ...apiOptions, maxBodyBytes: maxBody }, { admin, experiments });
  const http = createAdaptorServer({ fetch: app.fetch }) as HttpServer;
  // The guard and the results' Redis connection stop with the REST listener (at close(), or a failed start).
  http.once('close', () => void experimentResults.close());
  const grpcServer = createGrpcServer(service, { ...apiOptions, maxMessageBytes: maxBody });

  let httpPort: number;
  let grpcPort: number;
  try {
    if (sync !== undefined) {
      live.setPublisher(sync);
      // Before listening, so an instance whose file is older than the shared config never serves the file's.
      await sync.start();
    }
    httpPort = await listen(http, config.server.http.host, config.server.http.port);
    grpcPort = await bindGrpcServer(grpcServer, config.server.grpc.host, config.server.grpc.port);
  } catch (err) {
    http.close();
    grpcServer.forceShutdown();
    await sync?.close();
    switcher.freeze();
    await switcher.close();
    throw err;
  }
  switcher.start();

  const file = options.configFile;
  const reloadFromFile = async (trigger = 'sighup'): Promise<ApplyResult> => {
    if (file === undefined) return { accepted: false, problems: ['the gateway was not started from a file'] };
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      logger.warn({ file, trigger, err: (err as Error).message }, 'config reload failed: cannot read the file; the running config stays');
      return { accepted: false, problems: [`cannot read ${file}: ${(err as Error).message}`] };
    }
    return live.propose(text, 'file', trigger);
  };
  const watch: ConfigFileWatch | undefined =
    file !== undefined && options.watchConfigFile !== false
      ? watchConfigFile(file, (text) => void live.propose(text, 'file', 'file change'), {
          logger,
          ...(options.configText !== undefined ? { initialText: options.configText } : {}),
          ...(options.reloadDebounceMs !== undefined ? { debounceMs: options.reloadDebounceMs } : {}),
        })
      : undefined;
  const removeSighup = options.reloadOnSighup === true ? installSighupReload(() => void reloadFromFile('sighup')) : undefined;

  logger.info(
    {
      http: `${config.server.http.host}:${httpPort}`,
      grpc: `${config.server.grpc.host}:${grpcPort}`,
      models: Object.keys(live.current.config.models).length,
      backends: switcher.backends.size,
      config_version: live.current.version,
      instance: instanceId,
      ...(sync !== undefined ? { redis: sync.connected ? 'connected' : 'unavailable' } : {}),
    },
    'gateway listening',
  );

  let closing: Promise<void> | undefined;
  const close = (drainMs = 10_000): Promise<void> => {
    closing ??= (async () => {
      // No config change lands while draining.
      removeSighup?.();
      watch?.close();
      service.startDraining();
      switcher.freeze();
      await sync?.close();
      await Promise.all([closeHttp(http, drainMs), closeGrpc(grpcServer, drainMs)]);
      await switcher.close();
      logger.info('gateway stopped');
    })();
    return closing;
  };
  return {
    httpPort,
    grpcPort,
    service,
    live,
    instanceId,
    get backends() {
      return switcher.backends;
    },
    reloadFromFile,
    close,
  };
}

/** Calls `reload` on every SIGHUP (the conventional "re-read your config"); returns the uninstaller. */
export function installSighupReload(reload: () => void): () => void {
  const onSignal = (): void => reload();
  process.on('SIGHUP', onSignal);
  return () => process.off('SIGHUP', onSignal);
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
