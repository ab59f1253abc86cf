import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { createServer as createHttpServer } from 'node:http';
import { getRequestListener } from '@hono/node-server';
import type * as grpc from '@grpc/grpc-js';
import { bindGrpcServer, createGrpcServer } from './api/grpc/server.js';
import { RequestAdmission } from './api/admission.js';
import { AccessControl } from './api/auth/access-control.js';
import { createAdminApp, type BackendHealthView } from './api/http/admin.js';
import { createHttpApp } from './api/http/app.js';
import { createV2InferListener } from './api/http/v2-infer.js';
import { createJobsApp } from './api/http/jobs.js';
import { createMetricsApp } from './api/http/metrics.js';
import type { BackendCluster } from './backends/cluster.js';
import { ConfigSync, type InstanceInfo } from './config/config-sync.js';
import { combineAppliers, LiveConfig, type ApplyResult } from './config/live-config.js';
import { RuntimeSwitcher } from './config/live-runtime.js';
import { ExperimentResultsWiring } from './experiments/results-wiring.js';
import { watchConfigFile, type ConfigFileWatch } from './config/live-watch.js';
import type { GatewayConfig } from './config/schema.js';
import { GatewayError } from './core/errors.js';
import { ResponseCache, type CacheStats } from './cache/response-cache.js';
import { createCacheStore } from './cache/create-store.js';
import type { BatchJobs } from './jobs/job-queue.js';
import { createRecordPredictor } from './routing/record-predictor.js';
import { startStreamProcessors, type RunningStreamProcessors } from './streaming/stream-runner.js';
import type { Logger } from './observability/logger.js';
import { GatewayMetrics } from './observability/metrics.js';
import { SERVER_VERSION, type InferenceService } from './routing/inference-service.js';

const LISTEN_BACKLOG = 4_096;
/** After the drain time, how long requests get to write their 503 before connections are closed. */
const ABORT_GRACE_MS = 2_000;
/** Once no request is in flight, how long the listeners get to write their last answers before connections are closed. */
const FLUSH_GRACE_MS = 2_000;

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
  /** Each backend's endpoints, breakers, load shedding and retry budget (GET /admin/backends). */
  backendStatus(): BackendHealthView[];
  /** Requests in flight now (inference and metadata). */
  readonly inFlight: number;
  /** The response cache's counters (hits, misses, coalesced calls, its store's state). */
  cacheStats(): CacheStats;
  /** Re-reads the config file and applies it (what SIGHUP does). */
  reloadFromFile(trigger?: string): Promise<ApplyResult>;
  /**
   * Graceful shutdown: readiness turns false (for server.shutdown_delay_ms
   * before anything else), the listeners stop accepting, in-flight requests
   * finish for up to `drainMs` (default server.drain_ms), those still running
   * then are answered 503 UNAVAILABLE, and backends close.
   */
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
  // Credentials, scopes and rate limits; first, since a key_env that is not set stops the start here. Swapped with each config.
  const access = new AccessControl(config, { env: options.env ?? process.env, logger });
  // Experiment results outlive config swaps: every runtime's splitter and shadow mirror report to this one object.
  const experimentResults = new ExperimentResultsWiring(config, logger);
  // The cache store is part of the startup config (changing it needs a restart); per-model policies apply live.
  const cache = new ResponseCache(createCacheStore(config.cache, logger), logger);
  // Prometheus metrics (GET /metrics), on a registry of this gateway's own.
  const metrics = new GatewayMetrics(SERVER_VERSION);
  const switcher = new RuntimeSwitcher(config, {
    maxBodyBytes: maxBody,
    logger,
    cache,
    callObserver: metrics.backendCalls,
    servingObservers: metrics.serving,
    experimentRecorder: experimentResults.results,
    shadowReporter: experimentResults.results,
    ...(options.retireAfterMs !== undefined ? { retireAfterMs: options.retireAfterMs } : {}),
  });
  const service = switcher.service;
  const backendStatus = (): BackendHealthView[] => {
    const runtime = service.currentRuntime;
    const leaves = [...runtime.router.leaves()];
    return [...switcher.resilientBackends.values()].map((b) => ({
      ...b.status(),
      models: leaves
        .filter((leaf) => leaf.backend === b)
        .map((leaf) => {
          const known = runtime.health?.get(leaf);
          return { model: leaf.name, target: leaf.id, ready: known?.ready ?? null, reason: known?.reason ?? 'not checked yet' };
        }),
    }));
  };
  const live = new LiveConfig(
    { config, text: options.configText },
    { applier: combineAppliers(access, switcher), logger, ...(options.env !== undefined ? { env: options.env } : {}) },
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

  // Startup settings: changing the limit or the drain needs a restart, like the listeners.
  const admission = new RequestAdmission(config.server.max_in_flight_requests);
  const apiOptions = { requestTimeoutMs: config.server.request_timeout_ms, logger, admission, access, metrics: metrics.inference };
  let streams: RunningStreamProcessors | undefined;
  const admin = createAdminApp({
    live,
    access,
    maxBodyBytes: maxBody,
    logger,
    instances: async () => (sync !== undefined ? sync.instances().catch(() => [self()]) : [self()]),
    ...(sync !== undefined ? { redisStatus: () => (sync.connected ? 'connected' : 'unavailable') } : {}),
    experiments: () => switcher.experiments?.status() ?? [],
    backends: () => backendStatus(),
    cache: () => cache.stats(),
    streams: () => streams?.metrics() ?? {},
  });
  const experiments = experimentResults.attach({ current: () => live.current.config, runtime: switcher, maxBodyBytes: maxBody });
  // Batch jobs are startup config (changing `jobs` needs a restart, like the cache store); without it /v1/jobs answers 501.
  const jobs =
    config.jobs !== undefined
      ? // Loaded only here: BullMQ and the file formats cost ~30 MB of memory a gateway without jobs does not need.
        new (await import('./jobs/job-queue.js')).BatchJobs({ config: config.jobs, service, instanceId, logger, requestTimeoutMs: config.server.request_timeout_ms })
      : undefined;
  const jobsApi = createJobsApp(jobs, { maxBodyBytes: maxBody });
  metrics.attach({
    configVersion: () => live.current.version,
    admission,
    backends: () => [...switcher.resilientBackends.values()].map((b) => b.status()),
    cache: () => cache.stats(),
    streams: () => streams?.metrics() ?? {},
    ...(jobs !== undefined ? { jobs: () => jobs.stats() } : {}),
  });
  const app = createHttpApp(service, { ...apiOptions, maxBodyBytes: maxBody }, { admin, experiments, jobs: jobsApi, metrics: createMetricsApp(metrics) });
  // The v2 inference route runs on node:http itself (api/http/v2-infer.ts); every other request goes to the Hono app.
  const inferListener = createV2InferListener(service, { ...apiOptions, maxBodyBytes: maxBody });
  const honoListener = getRequestListener(app.fetch);
  const http: HttpServer = createHttpServer((req, res) => {
    if (!inferListener(req, res)) void honoListener(req, res);
  });
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
    await jobs?.close();
    await sync?.close();
    switcher.freeze();
    await switcher.close();
    await cache.close();
    await access.close();
    throw err;
  }
  switcher.start();
  jobs?.start();
  // Stream processors are startup config too; they predict through the same service as the listeners.
  if (config.streams.length > 0) {
    const timeoutMs = config.server.request_timeout_ms;
    streams = await startStreamProcessors(config.streams, (model, version) => createRecordPredictor(service, { model, version, timeoutMs }), logger);
  }

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
  const close = (drainMs = config.server.drain_ms): Promise<void> => {
    closing ??= (async () => {
      // No config change lands while draining.
      removeSighup?.();
      watch?.close();
      service.startDraining();
      admission.startDraining();
      switcher.freeze();
      // Running jobs stop now and go back to the queue (resumable, not failed) while requests drain; before backends close.
      const jobsClosed = jobs?.close();
      // Stream processors stop reading; events in flight get the drain time, the rest stay pending for other consumers.
      const streamsStopped = streams?.stop(drainMs);
      const delayMs = config.server.shutdown_delay_ms;
      logger.info({ in_flight: admission.inFlight, delay_ms: delayMs, drain_ms: drainMs }, 'shutting down: readiness is now false');
      // Load balancers see readiness turn false and stop sending before the listeners close.
      if (delayMs > 0) await sleep(delayMs);
      await sync?.close();
      const httpClosed = stopAccepting(http);
      const grpcClosed = new Promise<void>((resolve) => grpcServer.tryShutdown(() => resolve()));
      if (!(await admission.idle(drainMs))) {
        logger.warn({ in_flight: admission.inFlight, drain_ms: drainMs }, 'drain time is up: answering the requests still in flight with 503');
        admission.abortAll(new GatewayError('UNAVAILABLE', 'the gateway is shutting down; retry on another instance', { retryAfterMs: 1_000 }));
        await admission.idle(ABORT_GRACE_MS);
      }
      // Every tracked request has its answer, though the last ones may still be on their way out: the listeners
      // get a moment to flush them (gRPC's graceful shutdown ends once its streams are written) before what is
      // left, idle connections and untracked probes, is closed.
      const flushed = Promise.all([httpClosed, grpcClosed]);
      await Promise.race([flushed, sleep(FLUSH_GRACE_MS, undefined, { ref: false })]);
      http.closeAllConnections();
      grpcServer.forceShutdown();
      await flushed;
      await jobsClosed;
      await streamsStopped;
      await switcher.close();
      await cache.close();
      await access.close();
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
    backendStatus,
    cacheStats: () => cache.stats(),
    get inFlight() {
      return admission.inFlight;
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
    // A deeper accept queue than Node's default 511 (the kernel caps it at somaxconn), so a burst of new
    // connections waits to be accepted and shed with a proper answer instead of being dropped by the kernel.
    server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** Stops accepting: idle keep-alive sockets close now, busy ones after their answer (it says `connection: close`). */
function stopAccepting(server: HttpServer): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}
