import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue, WaitingError, Worker, type Job, type JobType } from 'bullmq';
import { Redis } from 'ioredis';
import type { JobsConfig } from '../config/jobs-schema.js';
import { GatewayError, invalidArgument, notFound, toGatewayError } from '../core/errors.js';
import type { Logger } from '../observability/logger.js';
import type { InferenceService } from '../routing/inference-service.js';
import { createRecordPredictor } from '../routing/record-predictor.js';
import { runBatch, type BatchProgress, type BatchSpec } from './batch-runner.js';
import { formatOf, type RecordFormat } from './formats/index.js';
import {
  failureReason,
  jobView,
  progressView,
  QUEUED_TYPES,
  type JobData,
  type JobResult,
  type JobState,
  JobFinishedError,
  type JobView,
  type StoredProgress,
} from './job-view.js';
import { confineInput, confineOutput } from './paths.js';

export { JOB_STATES, JobFinishedError, type JobState, type JobView } from './job-view.js';

/** A job as a client asks for it (the HTTP layer has checked the types). */
export interface JobRequest {
  readonly model: string;
  readonly version?: string;
  readonly input: string;
  readonly output: string;
  /** Default: OUTPUT.errors.jsonl. */
  readonly errors?: string;
  readonly input_format?: RecordFormat;
  readonly output_format?: RecordFormat;
  readonly batch_size?: number;
  readonly concurrency?: number;
  readonly id_field?: string;
}

export interface BatchJobsOptions {
  readonly config: JobsConfig;
  /** The gateway's service: models are checked against its running config, and jobs predict through it. */
  readonly service: InferenceService;
  /** This instance's name, shown as a running job's `worker`. */
  readonly instanceId: string;
  readonly logger: Logger;
  /** Longest one backend request of a job may take (server.request_timeout_ms). */
  readonly requestTimeoutMs: number;
  /** Longest a Redis call of the API may take before it answers 503 (default 5 s). */
  readonly redisTimeoutMs?: number;
}

/** Status of the jobs in the queue, as GET /v1/jobs reports it. */
export interface JobCounts {
  readonly queued: number;
  readonly running: number;
  /** Jobs running on this instance now, and how many it may run at once. */
  readonly this_instance: { readonly id: string; readonly workers: number; readonly running: number };
}

/** A cancel asked of a job that has already completed or failed (the REST API answers it 409 Conflict). */
/** What the metrics read of the jobs (BatchJobs.stats()). */
export interface BatchJobStats {
  /** Jobs in the shared queue by state (completed and failed: those still kept); undefined when Redis did not answer. */
  readonly jobs?: Readonly<Record<'queued' | 'running' | 'completed' | 'failed', number>>;
  /** Rows this instance's workers finished since it started. */
  readonly rows: { readonly succeeded: number; readonly failed: number };
}


/** How often a worker looks for cancel requests of the jobs it runs. */
const CANCEL_POLL_MS = 1_000;
/** Longest a graceful close waits for the worker to hand its jobs back before it disconnects. */
const WORKER_CLOSE_MS = 10_000;
/** How often a running job's progress is written to Redis. */
const PROGRESS_EVERY_MS = 1_000;
/** The queue's counts for stats() are read from Redis at most this often... */
const STATS_MAX_AGE_MS = 5_000;
/** ...and waited for at most this long (a scrape must not hang on Redis). */
const STATS_TIMEOUT_MS = 1_000;
/** How long an API call waits for a connection being made (a gateway that just started) before it answers 503. */
const CONNECTING_WAIT_MS = 1_000;
/** When a client may try again after Redis was unreachable. */
const REDIS_RETRY_AFTER_MS = 5_000;
/** Cancel flags outlive any reasonable wait in the queue, and then go. */
const CANCEL_FLAG_TTL_S = 30 * 24 * 3600;
const JOB_NAME = 'batch';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Why this instance stopped a run it had started. */
type StopReason = 'cancel' | 'shutdown' | 'lock-lost';

interface LocalRun {
  readonly controller: AbortController;
  why?: StopReason;
  /** Settles when the run has closed its files. */
  readonly ended: Promise<void>;
}

/**
 * Durable, distributed batch jobs: a BullMQ queue in Redis that every
 * instance with a `jobs` section accepts jobs into, and a BullMQ worker on
 * each instance with `workers` > 0 that runs them with runBatch through the
 * gateway's own pipeline.
 *
 * - The files are the checkpoint: a run stopped anywhere resumes from them,
 *   so a job whose instance is killed is taken over by another instance's
 *   worker (BullMQ stalled-job detection: about lock_ms + stalled_interval_ms
 *   later) and finishes with every row exactly once.
 * - close() (graceful shutdown) stops this instance's runs and moves their
 *   jobs back to the queue, not failed: a rolling restart loses no job.
 * - cancel(): a queued job is removed from the queue at once (a record of it
 *   stays, state cancelled); a running job gets a flag in Redis that its
 *   worker reads every second, stops, and ends the job as cancelled.
 *
 * Redis keys: BullMQ's under `{key_prefix}:{queue}:`, and this class's own
 * under `{key_prefix}:{queue}:infergate:` (cancel flags, cancelled queued
 * jobs, and which live job writes which file).
 */
export class BatchJobs {
  private readonly config: JobsConfig;
  private readonly redis: Redis;
  private readonly queue: Queue;
  private worker: Worker | undefined;
  private readonly runs = new Map<string, LocalRun>();
  private cancelPoll: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;
  private readonly keyBase: string;
  private readonly timeoutMs: number;
  private rowsSucceeded = 0;
  private rowsFailed = 0;
  private stateCounts: { readonly at: number; readonly counts: Promise<BatchJobStats['jobs']> } | undefined;

  constructor(private readonly opts: BatchJobsOptions) {
    this.config = opts.config;
    this.timeoutMs = opts.redisTimeoutMs ?? 5_000;
    this.keyBase = `${this.config.key_prefix}:${this.config.queue}:infergate`;
    // The API's connection fails fast while Redis is away (503 at once), rather than queueing commands.
    this.redis = new Redis(this.config.redis, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: this.timeoutMs,
      connectTimeout: 5_000,
      retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times - 1, 5), 2_000),
      connectionName: `infergate-jobs:${opts.instanceId}`,
    });
    this.redis.on('error', (err: Error) => opts.logger.debug({ err: err.message }, 'jobs: redis error'));
    this.queue = new Queue(this.config.queue, { connection: this.redis, prefix: this.config.key_prefix });
    this.queue.on('error', (err: Error) => opts.logger.debug({ err: err.message }, 'jobs: queue error'));
  }

  /** Starts this instance's worker (when `workers` > 0): from now on it takes jobs from the queue. */
  start(): void {
    if (this.config.workers === 0 || this.worker !== undefined || this.closing !== undefined) return;
    const log = this.opts.logger;
    const worker = new Worker(this.config.queue, (job, token) => this.process(job, token), {
      connection: { url: this.config.redis, connectionName: `infergate-jobs-worker:${this.opts.instanceId}` },
      prefix: this.config.key_prefix,
      concurrency: this.config.workers,
      lockDuration: this.config.lock_ms,
      stalledInterval: this.config.stalled_interval_ms,
      maxStalledCount: this.config.max_stalled,
      name: this.opts.instanceId,
    });
    worker.on('error', (err: Error) => log.debug({ err: err.message }, 'jobs: worker error'));
    // Another worker took the job (this instance lost its lock, e.g. Redis was away too long): stop writing its files.
    worker.on('lockRenewalFailed', (ids: string[]) => {
      for (const id of ids) this.stop(id, 'lock-lost');
    });
    worker.on('completed', (job) => void this.forget(job).catch(() => undefined));
    worker.on('failed', (job) => {
      if (job !== undefined) void this.forget(job).catch(() => undefined);
    });
    this.worker = worker;
    this.cancelPoll = setInterval(() => void this.pollCancels(), CANCEL_POLL_MS);
    this.cancelPoll.unref();
    log.info({ queue: this.config.queue, workers: this.config.workers }, 'jobs: worker started');
  }

  /** Checks a request and queues the job; the view says 'queued'. */
  async submit(request: JobRequest): Promise<JobView> {
    this.checkOpen();
    const cfg = this.config;
    const version = request.version ?? '';
    // The running config's routing: unknown models (and versions a pinned route does not serve) are 404.
    this.opts.service.resolve(request.model, version);
    const batchSize = request.batch_size ?? cfg.batch_size;
    const concurrency = request.concurrency ?? cfg.concurrency;
    if (batchSize > cfg.max_batch_size) throw invalidArgument(`batch_size ${batchSize} is over this gateway's limit of ${cfg.max_batch_size} (jobs.max_batch_size)`);
    if (concurrency > cfg.max_concurrency) {
      throw invalidArgument(`concurrency ${concurrency} is over this gateway's limit of ${cfg.max_concurrency} (jobs.max_concurrency)`);
    }
    // Formats first (a cheap check on the names), then the file system.
    formatOf(request.input, request.input_format);
    formatOf(request.output, request.output_format);
    const errorsGiven = request.errors ?? `${request.output}.errors.jsonl`;
    const input = await confineInput(request.input, cfg.input_dirs);
    const output = await confineOutput(request.output, cfg.output_dirs, 'output');
    const errors = await confineOutput(errorsGiven, cfg.output_dirs, 'errors');
    if (output === input) throw invalidArgument(`output '${request.output}' is the input file`);
    if (errors === input || errors === output) throw invalidArgument(`errors '${errorsGiven}' is the ${errors === input ? 'input' : 'output'} file`);

    const id = randomUUID();
    const data: JobData = {
      model: request.model,
      version,
      input,
      output,
      errors,
      ...(request.input_format !== undefined ? { input_format: request.input_format } : {}),
      ...(request.output_format !== undefined ? { output_format: request.output_format } : {}),
      batch_size: batchSize,
      concurrency,
      ...(request.id_field !== undefined ? { id_field: request.id_field } : {}),
      submitted_by: this.opts.instanceId,
    };
    await this.claimFiles(id, [output, errors]);
    let job: Job;
    try {
      job = await this.redisCall(() =>
        this.queue.add(JOB_NAME, data, {
          jobId: id,
          attempts: 1,
          removeOnComplete: { count: cfg.keep_completed },
          removeOnFail: { count: cfg.keep_completed },
        }),
      );
    } catch (err) {
      await this.releaseFiles(id, [output, errors]).catch(() => undefined);
      throw err;
    }
    this.opts.logger.info({ job: id, model: data.model, input, output }, 'jobs: job queued');
    return jobView(job, 'waiting');
  }

  /** The job's view; NOT_FOUND when unknown (or forgotten: see keep_completed). */
  async get(id: string): Promise<JobView> {
    this.checkOpen();
    const found = await this.find(id);
    if (found === undefined) throw notFound(`unknown job '${id}'`);
    return found;
  }

  /** Newest first, at most `limit` (1-1000), of one state or all. */
  async list(opts: { state?: JobState; limit?: number } = {}): Promise<{ jobs: JobView[]; counts: JobCounts }> {
    this.checkOpen();
    const limit = Math.max(1, Math.min(1_000, opts.limit ?? 100));
    const state = opts.state;
    const views: JobView[] = [];
    const take = async (types: JobType | JobType[], bullState: string): Promise<void> => {
      const jobs = await this.redisCall(() => this.queue.getJobs(types, 0, limit - 1, false));
      // A job removed between the range and its fetch comes back empty.
      for (const job of jobs) if (job !== undefined && job !== null) views.push(jobView(job, bullState));
    };
    if (state === undefined || state === 'queued') await take([...QUEUED_TYPES], 'waiting');
    if (state === undefined || state === 'running') await take('active', 'active');
    if (state === undefined || state === 'failed') await take('failed', 'failed');
    if (state === undefined || state === 'completed' || state === 'cancelled') {
      // Cancelled running jobs end as BullMQ completed jobs: page through until enough of the asked state.
      const page = Math.max(limit, 100);
      let matched = 0;
      for (let start = 0; start < this.config.keep_completed && matched < limit; start += page) {
        const jobs = await this.redisCall(() => this.queue.getJobs('completed', start, start + page - 1, false));
        for (const job of jobs) {
          if (job === undefined || job === null) continue;
          const view = jobView(job, 'completed');
          if (state !== undefined && view.state !== state) continue;
          views.push(view);
          matched++;
        }
        if (jobs.length < page) break;
      }
    }
    if (state === undefined || state === 'cancelled') views.push(...(await this.cancelledQueued(limit)));
    views.sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0));
    return { jobs: views.slice(0, limit), counts: await this.counts() };
  }

  /** Queued and running jobs in the queue, and this instance's share. */
  async counts(): Promise<JobCounts> {
    const c = await this.redisCall(() => this.queue.getJobCounts(...QUEUED_TYPES, 'active'));
    const queued = QUEUED_TYPES.reduce((n, t) => n + (c[t] ?? 0), 0);
    return {
      queued,
      running: c.active ?? 0,
      this_instance: { id: this.opts.instanceId, workers: this.config.workers, running: this.runs.size },
    };
  }

  /**
   * For the metrics: the queue's jobs by state (one bounded Redis call at most
   * every STATS_MAX_AGE_MS, shared by concurrent callers; none while Redis is
   * away) and the rows this instance's workers finished.
   */
  async stats(): Promise<BatchJobStats> {
    const now = Date.now();
    if (this.stateCounts === undefined || now - this.stateCounts.at >= STATS_MAX_AGE_MS) {
      this.stateCounts = { at: now, counts: this.readStateCounts() };
    }
    const jobs = await this.stateCounts.counts;
    return { ...(jobs !== undefined ? { jobs } : {}), rows: { succeeded: this.rowsSucceeded, failed: this.rowsFailed } };
  }

  private async readStateCounts(): Promise<BatchJobStats['jobs']> {
    if (this.redis.status !== 'ready' || this.closing !== undefined) return undefined;
    try {
      const c = await within(this.queue.getJobCounts(...QUEUED_TYPES, 'active', 'completed', 'failed'), STATS_TIMEOUT_MS);
      const queued = QUEUED_TYPES.reduce((n, t) => n + (c[t] ?? 0), 0);
      return { queued, running: c.active ?? 0, completed: c.completed ?? 0, failed: c.failed ?? 0 };
    } catch {
      return undefined;
    }
  }

  /**
   * Cancels a job. Queued: removed from the queue now, state cancelled
   * (`immediate` true). Running: its worker stops it within about a second
   * and it ends as cancelled; the view says cancel_requested meanwhile.
   * Already cancelled: the view again. Completed or failed: JobFinishedError (409).
   */
  async cancel(id: string): Promise<{ view: JobView; immediate: boolean }> {
    this.checkOpen();
    const loaded = UUID.test(id) ? await this.load(id) : undefined;
    if (loaded === undefined) {
      const tomb = UUID.test(id) ? await this.tombstone(id) : undefined;
      if (tomb !== undefined) return { view: tomb, immediate: true };
      throw notFound(`unknown job '${id}'`);
    }
    const { job, state } = loaded;
    if (state === 'completed' || state === 'failed') {
      const view = jobView(job, state);
      if (view.state === 'cancelled') return { view, immediate: true };
      throw new JobFinishedError(id, view.state);
    }
    // The flag first: if the job starts running meanwhile, its worker sees it at once.
    await this.redisCall(() => this.redis.set(this.cancelKey(id), new Date().toISOString(), 'EX', CANCEL_FLAG_TTL_S));
    if (state !== 'active') {
      const now = Date.now();
      const cancelled: JobView = { ...jobView(job, 'waiting'), state: 'cancelled', finished_at: new Date(now).toISOString() };
      // The record goes in before the job goes out, so a GET in between finds one or the other.
      await this.redisCall(() => this.redis.set(this.tombKey(id), JSON.stringify(cancelled)));
      const removed = await this.redisCall(() => this.queue.remove(id));
      if (removed === 1) {
        await this.redisCall(async () => {
          await this.redis.zadd(this.cancelledIndexKey(), now, id);
          await this.trimCancelled();
          await this.redis.del(this.cancelKey(id));
        }).catch(() => undefined);
        await this.releaseFiles(id, [cancelled.output, cancelled.errors]).catch(() => undefined);
        this.opts.logger.info({ job: id }, 'jobs: queued job cancelled');
        return { view: cancelled, immediate: true };
      }
      // A worker took it in the meantime: it is running now, and the flag stops it.
      await this.redis.del(this.tombKey(id)).catch(() => undefined);
    }
    this.stop(id, 'cancel');
    this.opts.logger.info({ job: id }, 'jobs: cancel requested for a running job');
    const fresh = (await this.load(id)) ?? { job, state };
    return { view: jobView(fresh.job, fresh.state, fresh.state === 'active'), immediate: false };
  }

  /**
   * Stops this instance's worker: its running jobs are stopped (their files
   * stay resumable) and moved back to the queue for another worker, not
   * failed; then the connections close.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.cancelPoll);
      for (const id of this.runs.keys()) this.stop(id, 'shutdown');
      const worker = this.worker;
      if (worker !== undefined) {
        const running = this.runs.size;
        // The runs stop at once. With Redis away, the worker's own last calls would wait for its return: once the
        // runs have ended (their files closed), the worker is force-closed instead, and in any case bounded.
        const redisUp = this.redis.status === 'ready';
        if (!redisUp) await this.runsEnded(WORKER_CLOSE_MS);
        const closed = await within(worker.close(!redisUp), WORKER_CLOSE_MS).then(
          () => true,
          () => false,
        );
        if (!closed) {
          this.opts.logger.warn({ wait_ms: WORKER_CLOSE_MS }, 'jobs: the worker did not close in time (Redis away?); disconnecting it');
          await within(worker.disconnect(), 1_000).catch(() => undefined);
        } else if (running > 0) {
          this.opts.logger.info({ jobs: running }, 'jobs: running jobs handed back to the queue');
        }
      }
      await within(this.queue.close(), this.timeoutMs).catch(() => undefined);
      if (this.redis.status === 'ready') await within(this.redis.quit(), this.timeoutMs).catch(() => undefined);
      this.redis.disconnect();
    })();
    return this.closing;
  }

  /** Resolves once no run of this instance is left (or after `ms`). */
  private async runsEnded(ms: number): Promise<void> {
    const until = Date.now() + ms;
    while (this.runs.size > 0 && Date.now() < until) await sleep(20);
  }

  // ---- the worker side

  private async process(job: Job, token: string | undefined): Promise<JobResult> {
    const id = job.id!;
    const data = job.data as JobData;
    const previous = job.progress as Partial<StoredProgress> | number | undefined;
    const startedAt = typeof previous === 'object' && previous?.started_at !== undefined ? previous.started_at : new Date().toISOString();
    const base = { worker: this.opts.instanceId, started_at: startedAt };
    // Cancelled while it waited, too late to be removed from the queue.
    if ((await this.redis.get(this.cancelKey(id)).catch(() => null)) !== null) {
      return { outcome: 'cancelled', progress: typeof previous === 'object' && previous !== null ? strip(previous) : zeroProgress(), ...base };
    }
    // The same job taken again by this instance (after it lost the lock) starts once the earlier run closed its files.
    await this.runs.get(id)?.ended;
    let ended!: () => void;
    const run: LocalRun = { controller: new AbortController(), ended: new Promise<void>((resolve) => (ended = resolve)) };
    this.runs.set(id, run);
    // Taken while this instance was closing: straight back to the queue.
    if (this.closing !== undefined) this.stop(id, 'shutdown');
    const reporter = progressReporter(job, base, this.opts.logger);
    try {
      let summary: (BatchProgress & { readonly state?: string }) | undefined;
      let last: BatchProgress | undefined;
      try {
        // The config may have changed since the job was queued, and files since they were checked.
        this.opts.service.resolve(data.model, data.version);
        await confineInput(data.input, this.config.input_dirs);
        await confineOutput(data.output, this.config.output_dirs, 'output');
        await confineOutput(data.errors, this.config.output_dirs, 'errors');
        reporter.report(undefined);
        this.opts.logger.info({ job: id, attempt: job.attemptsStarted }, 'jobs: job started');
        const spec: BatchSpec = {
          input: data.input,
          output: data.output,
          errors: data.errors,
          batchSize: data.batch_size,
          concurrency: data.concurrency,
          ...(data.input_format !== undefined ? { inputFormat: data.input_format } : {}),
          ...(data.output_format !== undefined ? { outputFormat: data.output_format } : {}),
          ...(data.id_field !== undefined ? { idField: data.id_field } : {}),
        };
        const predictor = createRecordPredictor(this.opts.service, { model: data.model, version: data.version, timeoutMs: this.opts.requestTimeoutMs });
        summary = await runBatch(spec, predictor, {
          signal: run.controller.signal,
          progressIntervalMs: PROGRESS_EVERY_MS,
          onRows: (succeeded, failed) => {
            this.rowsSucceeded += succeeded;
            this.rowsFailed += failed;
          },
          onProgress: (p) => {
            last = p;
            reporter.report(p);
          },
        });
      } catch (err) {
        // A run stopped on purpose ends as its reason says, whatever the stop made it throw.
        if (run.why === undefined) {
          const error = toGatewayError(err);
          this.opts.logger.warn({ job: id, code: error.code, err: error.message }, 'jobs: job failed');
          throw new Error(failureReason(error.code, error.message), { cause: err });
        }
        summary = last;
      }
      // Redis calls of the worker's connection wait for Redis to come back: skipped while it is away, else bounded.
      const redisUp = this.redis.status === 'ready';
      if (redisUp) await within(reporter.flush(), this.timeoutMs).catch(() => undefined);
      if (run.why === 'shutdown') {
        // Back to the queue for another worker (or this one after its restart); never failed by a rolling restart.
        // With Redis away the move cannot happen: the job's lock then expires and another worker takes it as stalled.
        if (!redisUp) {
          this.opts.logger.warn({ job: id }, 'jobs: Redis is away: the job is taken over by another worker once its lock expires');
        } else if (token !== undefined) {
          await within(job.moveToWait(token), this.timeoutMs).catch((err: unknown) =>
            this.opts.logger.warn({ job: id, err: (err as Error).message }, 'jobs: could not move the job back to the queue; it is taken over once its lock expires'),
          );
        }
        throw new WaitingError();
      }
      if (run.why === 'lock-lost') {
        this.opts.logger.warn({ job: id }, 'jobs: this worker lost the job (its lock expired); it stopped writing');
        throw new WaitingError();
      }
      const progress = summary !== undefined ? progressView(summary) : zeroProgress();
      if (run.why === 'cancel' || summary?.state === 'cancelled') {
        this.opts.logger.info({ job: id, done: progress.done }, 'jobs: job cancelled');
        return { outcome: 'cancelled', progress: { ...progress, eta_seconds: null }, ...base };
      }
      this.opts.logger.info({ job: id, succeeded: progress.succeeded, failed: progress.failed, resumed: progress.resumed }, 'jobs: job completed');
      return { outcome: 'completed', progress, ...base };
    } finally {
      if (this.runs.get(id) === run) this.runs.delete(id);
      ended();
    }
  }

  private stop(id: string, why: StopReason): void {
    const run = this.runs.get(id);
    if (run === undefined || run.why !== undefined) return;
    run.why = why;
    run.controller.abort(new GatewayError('CANCELLED', `job ${why === 'cancel' ? 'cancelled' : 'stopped'}`));
  }

  private async pollCancels(): Promise<void> {
    const ids = [...this.runs.keys()];
    if (ids.length === 0 || this.redis.status !== 'ready') return;
    try {
      const flags = await this.redis.mget(ids.map((id) => this.cancelKey(id)));
      flags.forEach((flag, i) => {
        if (flag !== null) this.stop(ids[i]!, 'cancel');
      });
    } catch (err) {
      this.opts.logger.debug({ err: (err as Error).message }, 'jobs: cancel poll failed');
    }
  }

  /** A finished job no longer holds its files, nor a cancel flag. */
  private async forget(job: Job): Promise<void> {
    const data = job.data as JobData;
    await this.releaseFiles(job.id!, [data.output, data.errors]);
    await this.redis.del(this.cancelKey(job.id!));
  }

  // ---- files held by live jobs

  /**
   * Records that job `id` writes `paths`, refusing (409) a path another live
   * job writes. A holder that is no longer live (a finished job whose release
   * was missed) gives way.
   */
  private async claimFiles(id: string, paths: readonly string[]): Promise<void> {
    const claimed: string[] = [];
    try {
      for (const path of paths) {
        for (let attempt = 0; ; attempt++) {
          const ok = await this.redisCall(() => this.redis.hsetnx(this.outputsKey(), path, id));
          if (ok === 1) {
            claimed.push(path);
            break;
          }
          const holder = await this.redisCall(() => this.redis.hget(this.outputsKey(), path));
          if (holder === null) continue;
          if (holder !== id && (await this.isLive(holder))) {
            throw new GatewayError('ALREADY_EXISTS', `'${path}' is written by job ${holder}, which is ${'still queued or running'}; wait for it, cancel it, or choose another file`);
          }
          // A stale holder: replaced only if it is still the one seen (another submit may have won meanwhile).
          const swapped = await this.redisCall(() =>
            this.redis.eval(SWAP_IF_EQUAL, 1, this.outputsKey(), path, holder, id),
          );
          if (swapped === 1) {
            claimed.push(path);
            break;
          }
          if (attempt > 5) throw new GatewayError('ABORTED', `'${path}' is being claimed by several jobs at once; try again`);
        }
      }
    } catch (err) {
      await this.releaseFiles(id, claimed).catch(() => undefined);
      throw err;
    }
  }

  private async releaseFiles(id: string, paths: readonly string[]): Promise<void> {
    for (const path of paths) await this.redis.eval(DELETE_IF_EQUAL, 1, this.outputsKey(), path, id);
  }

  private async isLive(id: string): Promise<boolean> {
    const job = await this.redisCall(() => this.queue.getJob(id));
    if (job === undefined || job === null) return false;
    const state = await this.redisCall(() => job.getState());
    return state !== 'completed' && state !== 'failed' && state !== 'unknown';
  }

  // ---- lookups

  private async find(id: string): Promise<JobView | undefined> {
    if (!UUID.test(id)) return undefined;
    const loaded = await this.load(id);
    if (loaded === undefined) return this.tombstone(id);
    const { job, state } = loaded;
    const flagged = state === 'active' && (await this.redisCall(() => this.redis.exists(this.cancelKey(id)))) === 1;
    return jobView(job, state, flagged);
  }

  /**
   * The job and its state, consistent: the state is read first (states only move on: queued, running, finished,
   * or back to queued), so the job's fields are at least as new; when they say it finished meanwhile, the state
   * is read again.
   */
  private async load(id: string): Promise<{ job: Job; state: string } | undefined> {
    let state: string = await this.redisCall(() => this.queue.getJobState(id));
    if (state === 'unknown') return undefined;
    const job = await this.redisCall(() => this.queue.getJob(id));
    if (job === undefined || job === null) return undefined;
    if (job.finishedOn !== undefined && job.finishedOn !== null && state !== 'completed' && state !== 'failed') {
      state = await this.redisCall(() => job.getState());
    }
    return { job, state };
  }

  private async tombstone(id: string): Promise<JobView | undefined> {
    const text = await this.redisCall(() => this.redis.get(this.tombKey(id)));
    return text === null ? undefined : (JSON.parse(text) as JobView);
  }

  private async cancelledQueued(limit: number): Promise<JobView[]> {
    const ids = await this.redisCall(() => this.redis.zrevrange(this.cancelledIndexKey(), 0, limit - 1));
    if (ids.length === 0) return [];
    const texts = await this.redisCall(() => this.redis.mget(ids.map((id) => this.tombKey(id))));
    return texts.filter((t): t is string => t !== null).map((t) => JSON.parse(t) as JobView);
  }

  /** Cancelled queued jobs are kept as finished jobs are: keep_completed of them. */
  private async trimCancelled(): Promise<void> {
    const excess = (await this.redis.zcard(this.cancelledIndexKey())) - this.config.keep_completed;
    if (excess <= 0) return;
    const old = await this.redis.zrange(this.cancelledIndexKey(), 0, excess - 1);
    if (old.length === 0) return;
    await this.redis.del(...old.map((id) => this.tombKey(id)));
    await this.redis.zrem(this.cancelledIndexKey(), ...old);
  }

  // ---- Redis

  /** A Redis call of the API: UNAVAILABLE (503, Retry-After) at once when Redis is away, or when it takes too long. */
  private async redisCall<T>(call: () => Promise<T>): Promise<T> {
    if (this.redis.status !== 'ready') await this.connected();
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        call(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(redisUnavailable(`Redis did not answer within ${this.timeoutMs} ms`)), this.timeoutMs);
        }),
      ]);
    } catch (err) {
      if (err instanceof GatewayError) throw err;
      throw redisUnavailable((err as Error).message, err);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Returns once the connection is ready: at once when it is, after a moment when it is connecting (a gateway that
   * just started, Redis just back), else UNAVAILABLE.
   */
  private async connected(): Promise<void> {
    const status = this.redis.status;
    if (status === 'ready') return;
    if (status === 'connecting' || status === 'connect') {
      const ready = await new Promise<boolean>((resolve) => {
        const done = (ok: boolean): void => {
          clearTimeout(timer);
          this.redis.off('ready', onReady);
          this.redis.off('close', onClose);
          resolve(ok);
        };
        const onReady = (): void => done(true);
        const onClose = (): void => done(false);
        const timer = setTimeout(() => done(false), CONNECTING_WAIT_MS);
        this.redis.once('ready', onReady);
        this.redis.once('close', onClose);
      });
      if (ready) return;
    }
    throw redisUnavailable(`Redis is not connected (${this.redis.status})`);
  }

  private checkOpen(): void {
    if (this.closing !== undefined) throw new GatewayError('UNAVAILABLE', 'the gateway is shutting down; retry on another instance', { retryAfterMs: 1_000 });
  }

  private cancelKey(id: string): string {
    return `${this.keyBase}:cancel:${id}`;
  }

  private tombKey(id: string): string {
    return `${this.keyBase}:cancelled:${id}`;
  }

  private cancelledIndexKey(): string {
    return `${this.keyBase}:cancelled`;
  }

  private outputsKey(): string {
    return `${this.keyBase}:outputs`;
  }
}

const SWAP_IF_EQUAL = `if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) return 1 end return 0`;
const DELETE_IF_EQUAL = `if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0`;

function redisUnavailable(detail: string, cause?: unknown): GatewayError {
  return new GatewayError('UNAVAILABLE', `the jobs queue is unavailable: ${detail}; try again later`, {
    cause,
    retryAfterMs: REDIS_RETRY_AFTER_MS,
  });
}

/** The promise, or a rejection once `ms` have passed. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function zeroProgress(): JobResult['progress'] {
  return { total: null, done: 0, succeeded: 0, failed: 0, resumed: 0, rows_per_second: 0, eta_seconds: null };
}

function strip(p: Partial<StoredProgress>): JobResult['progress'] {
  return { ...zeroProgress(), ...Object.fromEntries(Object.entries(p).filter(([k]) => k !== 'worker' && k !== 'started_at')) };
}

/**
 * Writes a run's progress to its job, at most one write in flight: a report
 * that comes while one is being written replaces any waiting one.
 */
function progressReporter(job: Job, base: { worker: string; started_at: string }, logger: Logger) {
  let latest: StoredProgress | undefined;
  let writing: Promise<void> | undefined;
  const prior = typeof job.progress === 'object' && job.progress !== null ? strip(job.progress as Partial<StoredProgress>) : zeroProgress();
  const drain = async (): Promise<void> => {
    while (latest !== undefined) {
      const next = latest;
      latest = undefined;
      try {
        await job.updateProgress(next);
      } catch (err) {
        logger.debug({ job: job.id, err: (err as Error).message }, 'jobs: progress not written');
      }
    }
    writing = undefined;
  };
  return {
    /** undefined: the run is starting (the last known progress, with this worker's name). */
    report(p: BatchProgress | undefined): void {
      latest = { ...(p !== undefined ? progressView(p) : prior), ...base };
      writing ??= drain();
    },
    flush: async (): Promise<void> => {
      await writing;
    },
  };
}
