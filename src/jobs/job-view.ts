import type { Job } from 'bullmq';
import { GatewayError, HTTP_STATUS, type ErrorCode } from '../core/errors.js';
import type { BatchProgress } from './batch-runner.js';
import type { RecordFormat } from './formats/index.js';

/** A job's life: queued -> running -> completed | failed | cancelled (running -> queued again when its worker stops or dies). */
export type JobState = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';
export const JOB_STATES: readonly JobState[] = ['queued', 'running', 'completed', 'failed', 'cancelled'];

/** What a job was asked to do, as stored with it in Redis (paths already confined and resolved). */
export interface JobData {
  readonly model: string;
  /** '' for the server's choice. */
  readonly version: string;
  readonly input: string;
  readonly output: string;
  readonly errors: string;
  readonly input_format?: RecordFormat;
  readonly output_format?: RecordFormat;
  readonly batch_size: number;
  readonly concurrency: number;
  readonly id_field?: string;
  /** The instance that accepted it. */
  readonly submitted_by: string;
}

export interface JobProgressView {
  /** Rows in the input; null until counted. */
  readonly total: number | null;
  /** Rows finished, by every run of the job (succeeded + failed). */
  readonly done: number;
  readonly succeeded: number;
  readonly failed: number;
  /** Rows the latest run found already done (written by an earlier run that was stopped or killed). */
  readonly resumed: number;
  /** Rows per second of the latest run. */
  readonly rows_per_second: number;
  readonly eta_seconds: number | null;
}

/** The progress a running job reports about every second (BullMQ's job.progress). */
export interface StoredProgress extends JobProgressView {
  /** The instance running it. */
  readonly worker: string;
  /** When its first run started (ISO 8601). */
  readonly started_at: string;
}

/** What a finished run returns (BullMQ's returnvalue): completed, or stopped by a cancel. */
export interface JobResult {
  readonly outcome: 'completed' | 'cancelled';
  readonly progress: JobProgressView;
  readonly worker: string;
  readonly started_at: string;
}

/** One job as the API shows it: what it was asked to do (its stored data, but for who accepted it), and how it went. */
export interface JobView extends Omit<JobData, 'submitted_by'> {
  readonly id: string;
  readonly state: JobState;
  readonly created_at: string;
  readonly started_at?: string;
  readonly finished_at?: string;
  readonly progress: JobProgressView;
  /** Why it failed. */
  readonly error?: { readonly code: string; readonly message: string };
  /** Runs started: 1, plus one each time it was taken back from a stopped or dead worker. */
  readonly attempts: number;
  /** The instance running it (running), or that ran it last. */
  readonly worker?: string;
  /** A cancel was asked for; a running job stops within about a second. */
  readonly cancel_requested?: boolean;
}

export const NO_PROGRESS: JobProgressView = {
  total: null,
  done: 0,
  succeeded: 0,
  failed: 0,
  resumed: 0,
  rows_per_second: 0,
  eta_seconds: null,
};

export function progressView(p: BatchProgress): JobProgressView {
  return {
    total: p.total ?? null,
    done: p.done,
    succeeded: p.succeeded,
    failed: p.failed,
    resumed: p.resumed,
    rows_per_second: Math.round(p.rowsPerSecond * 10) / 10,
    eta_seconds: p.etaSeconds === undefined ? null : Math.round(p.etaSeconds),
  };
}

/** A failure as the job stores it (BullMQ keeps a message only): "CODE: message". */
export function failureReason(code: ErrorCode, message: string): string {
  return `${code}: ${message}`;
}

export function parseFailure(reason: string | undefined): { code: string; message: string } {
  const text = reason ?? 'unknown failure';
  const m = /^([A-Z_]+): ([\s\S]*)$/.exec(text);
  if (m !== null && Object.hasOwn(HTTP_STATUS, m[1]!)) return { code: m[1]!, message: m[2]! };
  // BullMQ's own reasons, e.g. "job stalled more than allowable limit" (its worker died max_stalled times).
  return { code: 'ABORTED', message: text };
}

/** The BullMQ states that the API calls queued. */
export const QUEUED_TYPES = ['waiting', 'prioritized', 'delayed', 'waiting-children'] as const;

/** A BullMQ job (with its state, when known) as the API shows it. */
export function jobView(job: Job, bullState: string, cancelRequested = false): JobView {
  const data = job.data as JobData;
  const common = {
    id: job.id ?? '',
    model: data.model,
    version: data.version,
    input: data.input,
    output: data.output,
    errors: data.errors,
    ...(data.input_format !== undefined ? { input_format: data.input_format } : {}),
    ...(data.output_format !== undefined ? { output_format: data.output_format } : {}),
    batch_size: data.batch_size,
    concurrency: data.concurrency,
    ...(data.id_field !== undefined ? { id_field: data.id_field } : {}),
    created_at: new Date(job.timestamp).toISOString(),
    attempts: job.attemptsStarted ?? job.attemptsMade ?? 0,
  };
  const stored = storedProgress(job.progress);
  const finishedAt = job.finishedOn !== undefined && job.finishedOn !== null ? { finished_at: new Date(job.finishedOn).toISOString() } : {};
  if (bullState === 'completed') {
    const result = job.returnvalue as JobResult | null | undefined;
    return {
      ...common,
      state: result?.outcome === 'cancelled' ? 'cancelled' : 'completed',
      ...(result?.started_at !== undefined ? { started_at: result.started_at } : {}),
      ...finishedAt,
      progress: result?.progress ?? stored ?? NO_PROGRESS,
      ...(result?.worker !== undefined ? { worker: result.worker } : {}),
    };
  }
  const started = stored !== undefined ? { started_at: stored.started_at, worker: stored.worker } : {};
  const progress = stored !== undefined ? stripRunner(stored) : NO_PROGRESS;
  if (bullState === 'failed') {
    return { ...common, state: 'failed', ...started, ...finishedAt, progress, error: parseFailure(job.failedReason) };
  }
  return {
    ...common,
    state: bullState === 'active' ? 'running' : 'queued',
    ...started,
    progress,
    ...(cancelRequested ? { cancel_requested: true } : {}),
  };
}

function storedProgress(p: unknown): StoredProgress | undefined {
  if (typeof p !== 'object' || p === null || typeof (p as StoredProgress).done !== 'number') return undefined;
  return p as StoredProgress;
}

function stripRunner(p: StoredProgress): JobProgressView {
  const { worker: _w, started_at: _s, ...rest } = p;
  return rest;
}

export class JobFinishedError extends GatewayError {
  constructor(
    id: string,
    readonly state: JobState,
  ) {
    super('FAILED_PRECONDITION', `job ${id} has already finished (${state}); only queued and running jobs can be cancelled`);
  }
}
