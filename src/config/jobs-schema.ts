import { isAbsolute } from 'node:path';
import { z } from 'zod';

/**
 * The optional `jobs:` section: durable batch jobs (POST /v1/jobs) queued in
 * Redis through BullMQ and run by the workers of every instance that has some.
 * Startup config: changing it needs a restart.
 */

const absoluteDir = z
  .string()
  .min(1)
  .refine((p) => isAbsolute(p), 'must be an absolute directory path')
  .refine((p) => !p.includes('\0'), 'must not contain NUL bytes');

export const jobsSchema = z
  .strictObject({
    /** The Redis that holds the queue, shared by every instance that takes or runs jobs. */
    redis: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL'),
    /** BullMQ queue name: instances with the same queue, prefix and Redis share their jobs. */
    queue: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'queue names use letters, digits, _ . -').default('infergate-batch'),
    /** BullMQ key prefix, so several deployments can share one Redis. */
    key_prefix: z.string().regex(/^[A-Za-z0-9_-]+$/, 'key prefixes use letters, digits, _ -').default('infergate'),
    /** Jobs this instance runs at once; 0: it only accepts jobs (others run them). */
    workers: z.number().int().min(0).max(64).default(1),
    /** Directories jobs may read their input from (absolute; realpaths compared, symlinks resolved). */
    input_dirs: z.array(absoluteDir).min(1, 'needs at least one directory'),
    /** Directories jobs may write their output and error files to. */
    output_dirs: z.array(absoluteDir).min(1, 'needs at least one directory'),
    /** Rows per backend request, for a job that sets none. */
    batch_size: z.number().int().min(1).max(100_000).default(32),
    /** Backend requests in flight per job, for a job that sets none. */
    concurrency: z.number().int().min(1).max(10_000).default(4),
    /** The largest batch_size a job may ask for. */
    max_batch_size: z.number().int().min(1).max(100_000).default(1_024),
    /** The largest concurrency a job may ask for. */
    max_concurrency: z.number().int().min(1).max(10_000).default(64),
    /** How long a worker's claim on a running job lasts without renewal (BullMQ lockDuration); renewed at half of it. */
    lock_ms: z.number().int().min(500).max(600_000).default(30_000),
    /** How often workers look for jobs whose worker died (BullMQ stalledInterval); such a job runs again after about lock_ms + this. */
    stalled_interval_ms: z.number().int().min(500).max(600_000).default(30_000),
    /** Times a job may be taken back from a dead worker before it fails (BullMQ maxStalledCount). */
    max_stalled: z.number().int().min(0).max(1_000).default(10),
    /** Finished jobs (completed, failed, cancelled) kept for GET; older ones are forgotten. */
    keep_completed: z.number().int().min(1).max(1_000_000).default(1_000),
  })
  .refine((j) => j.batch_size <= j.max_batch_size, { message: 'must be at most max_batch_size', path: ['batch_size'] })
  .refine((j) => j.concurrency <= j.max_concurrency, { message: 'must be at most max_concurrency', path: ['concurrency'] });

export type JobsConfig = z.infer<typeof jobsSchema>;
