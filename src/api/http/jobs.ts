import { Hono } from 'hono';
import { z } from 'zod';
import { GatewayError, invalidArgument } from '../../core/errors.js';
// Values from the light modules only: the job queue itself (BullMQ) loads when a `jobs:` section asks for it.
import { RECORD_FORMATS } from '../../jobs/formats/record-format.js';
import type { BatchJobs, JobRequest } from '../../jobs/job-queue.js';
import { JOB_STATES, JobFinishedError, type JobState } from '../../jobs/job-view.js';
import { parseJsonObjectBody, readBody } from './body.js';
import { errorResponse, type HttpEnv } from './context.js';
import { requireModel } from '../auth/access-control.js';

/** A job request is a few paths and numbers: bodies larger than this are refused whatever server.max_body_bytes says. */
const MAX_JOB_BODY_BYTES = 64 * 1024;
const NO_STORE = { 'cache-control': 'no-store' } as const;

const required = (kind: string) => (issue: { input?: unknown }) => (issue.input === undefined ? 'is required' : `must be ${kind}`);
const text = (what: string) => z.string({ error: required('a string') }).min(1, `must be a non-empty ${what}`);
const count = z.number({ error: required('a number') }).int('must be an integer').min(1, 'must be at least 1');

/** POST /v1/jobs: every key named; unknown keys are errors, so a typo never silently falls back to a default. */
const jobRequestSchema = z.strictObject({
  model: text('model name'),
  version: z.string({ error: required('a string') }).optional(),
  input: text('path'),
  output: text('path'),
  errors: text('path').optional(),
  input_format: z.enum(RECORD_FORMATS as [string, ...string[]], { error: `must be one of ${RECORD_FORMATS.join(', ')}` }).optional(),
  output_format: z.enum(RECORD_FORMATS as [string, ...string[]], { error: `must be one of ${RECORD_FORMATS.join(', ')}` }).optional(),
  batch_size: count.optional(),
  concurrency: count.optional(),
  id_field: text('field name').optional(),
});

/**
 * The batch jobs API, mounted at /v1/jobs (ahead of TF Serving's /v1/*):
 *   POST   /v1/jobs                     queue a job: 202 with its view and Location
 *   GET    /v1/jobs[?state=&limit=]     newest first (limit 1-1000, default 100), with queue counts
 *   GET    /v1/jobs/{id}                one job: state, progress, error
 *   DELETE /v1/jobs/{id}                cancel: 200 when done at once (a queued job), 202 when a running job
 *                                       was asked to stop (within about a second); 409 when it already finished
 * Without a `jobs` section every route answers 501 UNIMPLEMENTED. Errors are
 * `{"error": "..."}` through the app's error handler. Access (api/auth): the
 * list needs a '*' scope; a job's submission, view and cancel need its model's.
 */
export function createJobsApp(jobs: BatchJobs | undefined, opts: { readonly maxBodyBytes: number }): Hono<HttpEnv> {
  const app = new Hono<HttpEnv>();
  const bodyLimit = Math.min(opts.maxBodyBytes, MAX_JOB_BODY_BYTES);

  app.use('*', async (_c, next) => {
    if (jobs === undefined) {
      throw new GatewayError(
        'UNIMPLEMENTED',
        'batch jobs need a `jobs:` section with Redis in the gateway config; the `infergate batch` CLI runs jobs without Redis',
      );
    }
    await next();
  });

  app.post('/', async (c) => {
    const request = parseJobRequest(await readBody(c.env.incoming, bodyLimit));
    // The credential was checked before the body was read; the model it names must be in its scope.
    requireModel(c.get('principal'), request.model);
    const view = await jobs!.submit(request);
    return c.json(view, 202, { location: `/v1/jobs/${view.id}`, ...NO_STORE });
  });

  app.get('/', async (c) => {
    const state = c.req.query('state');
    if (state !== undefined && !(JOB_STATES as readonly string[]).includes(state)) {
      throw invalidArgument(`state must be one of ${JOB_STATES.join(', ')}, got '${state}'`);
    }
    const limitText = c.req.query('limit');
    let limit: number | undefined;
    if (limitText !== undefined) {
      limit = Number(limitText);
      if (!/^[0-9]{1,4}$/.test(limitText) || limit < 1 || limit > 1_000) throw invalidArgument(`limit must be a whole number from 1 to 1000, got '${limitText}'`);
    }
    const { jobs: list, counts } = await jobs!.list({ ...(state !== undefined ? { state: state as JobState } : {}), ...(limit !== undefined ? { limit } : {}) });
    return c.json({ jobs: list, counts }, 200, NO_STORE);
  });

  app.get('/:id', async (c) => {
    const view = await jobs!.get(c.req.param('id'));
    requireModel(c.get('principal'), view.model);
    return c.json(view, 200, NO_STORE);
  });

  app.delete('/:id', async (c) => {
    // Only a job of a model in the credential's scope may be cancelled.
    requireModel(c.get('principal'), (await jobs!.get(c.req.param('id'))).model);
    let cancelled;
    try {
      cancelled = await jobs!.cancel(c.req.param('id'));
    } catch (err) {
      // FAILED_PRECONDITION is 400 elsewhere; a cancel of a finished job conflicts with its state.
      if (err instanceof JobFinishedError) return errorResponse(err, 409);
      throw err;
    }
    return c.json(cancelled.view, cancelled.immediate ? 200 : 202, NO_STORE);
  });

  app.all('/', (c) =>
    errorResponse(new GatewayError('UNIMPLEMENTED', `method ${c.req.method} is not allowed on /v1/jobs; use GET or POST`), 405, { allow: 'GET, POST' }),
  );
  app.all('/:id', (c) =>
    errorResponse(new GatewayError('UNIMPLEMENTED', `method ${c.req.method} is not allowed on /v1/jobs/{id}; use GET or DELETE`), 405, {
      allow: 'GET, DELETE',
    }),
  );
  return app;
}

/** The body as a JobRequest, or INVALID_ARGUMENT naming every problem ("input: is required; batch_size: must be an integer"). */
export function parseJobRequest(body: Buffer): JobRequest {
  const parsed = parseJsonObjectBody(body, 'the body must be a JSON object: {"model", "input", "output", ...}');
  const result = jobRequestSchema.safeParse(parsed);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      if (issue.code === 'unrecognized_keys') return `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')}`;
      return `${issue.path.join('.') || 'body'}: ${issue.message}`;
    });
    throw invalidArgument(`invalid job request: ${problems.join('; ')}`);
  }
  return result.data as JobRequest;
}
