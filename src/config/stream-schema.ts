import { z } from 'zod';
import { MODEL_NAME_PATTERN } from '../core/names.js';
import { zodIssueMessage } from './route-schema.js';

/**
 * Stream processors: each reads events from a Redis Stream through a consumer
 * group, predicts each event's record and writes the answer to an output
 * stream (config key `streams:`, a list):
 *
 *   streams:
 *     - name: fraud-events                 # names the processor in logs and metrics; unique
 *       redis: redis://127.0.0.1:6379
 *       input: events                      # the stream read (XREADGROUP)
 *       group: infergate                   # the consumer group, created (MKSTREAM) when missing
 *       output: events:scored              # one event per input event: input_id, model, outputs
 *       model: fraud
 *
 * Delivery is at least once: an input event is acknowledged only once its
 * output (or dead letter) is written, so a crash may repeat an output, always
 * with the same input_id.
 */

const streamKey = z.string().min(1, 'must be a stream key').max(1024);

const redisUrl = z
  .string()
  .regex(/^rediss?:\/\/\S+$/, 'must be a redis:// or rediss:// URL')
  .refine((s) => URL.canParse(s), 'is not a valid URL');

/** A stream entry id to create the group at: `$` (new events only), `0` (the whole stream) or an id. */
const startId = z.string().regex(/^(\$|\d+(-\d+)?)$/, "must be '$', '0' or a stream id such as 1700000000000-0");

export const streamProcessorSchema = z
  .strictObject({
    /** The processor's id in logs and metrics; unique among the list. */
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'stream processor names use letters, digits, _ . -'),
    redis: redisUrl,
    input: streamKey,
    group: z.string().min(1, 'must name the consumer group').max(256),
    /** Where a missing group starts: `$` reads events added from then on. */
    start_id: startId.default('$'),
    /** This process's consumer name in the group (default: `<hostname>-<pid>`, set when the processor starts). */
    consumer: z.string().min(1).max(256).optional(),
    output: streamKey,
    /** Events that cannot be predicted (default `<input>:dead`). */
    dead_letter: streamKey.optional(),
    model: z.string().regex(MODEL_NAME_PATTERN, 'is not a valid model name'),
    /** '' for the server's choice (or the route's pinned version). */
    version: z.string().default(''),
    /** The event field holding the record, as JSON object text. */
    field: z.string().min(1).default('data'),
    /** Events taken (read or claimed) and not yet finished: the backpressure. Reads ask only for the free slots. */
    max_in_flight: z.number().int().min(1).max(100_000).default(64),
    /** Events asked for in one read (at most the free slots) and predicted together. */
    read_count: z.number().int().min(1).max(10_000).default(32),
    /** How long one XREADGROUP waits for new events. */
    block_ms: z.number().int().min(1).max(60_000).default(1_000),
    /** Pending events of any consumer idle this long are taken over (XAUTOCLAIM): crashed consumers' and failed ones. */
    claim_idle_ms: z.number().int().min(1).max(24 * 3_600_000).default(30_000),
    /** How often pending events are looked for (and the group's lag refreshed). */
    claim_interval_ms: z.number().int().min(10).max(3_600_000).default(5_000),
    /** An event delivered this many times that still fails goes to the dead-letter stream. */
    max_deliveries: z.number().int().min(1).max(1_000).default(5),
    /** Trims the output stream to about this many events (XADD MAXLEN ~). */
    output_maxlen: z.number().int().min(1).optional(),
  })
  .superRefine((s, ctx) => {
    const deadLetter = s.dead_letter ?? `${s.input}:dead`;
    // Writing into the stream read would feed every answer back in as a new event.
    if (s.output === s.input) ctx.addIssue({ code: 'custom', path: ['output'], message: `must differ from input ('${s.input}')` });
    if (deadLetter === s.input) ctx.addIssue({ code: 'custom', path: ['dead_letter'], message: `must differ from input ('${s.input}')` });
    if (deadLetter === s.output) ctx.addIssue({ code: 'custom', path: ['dead_letter'], message: `must differ from output ('${s.output}')` });
  })
  .transform((s) => ({ ...s, dead_letter: s.dead_letter ?? `${s.input}:dead` }));

export const streamsSchema = z
  .array(streamProcessorSchema)
  .superRefine(
    (list, ctx) => {
      const first = new Map<string, number>();
      // Runs even when some entries are invalid (`when`), so a duplicate is reported with their problems.
      (list as readonly unknown[]).forEach((s, i) => {
        const name = typeof s === 'object' && s !== null ? (s as { name?: unknown }).name : undefined;
        if (typeof name !== 'string') return;
        const at = first.get(name);
        if (at !== undefined) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate stream processor name '${name}' (first at streams.${at})` });
        else first.set(name, i);
      });
    },
    { when: (payload) => Array.isArray(payload.value) },
  )
  .default([]);

/** What a processor entry is written as. */
export type StreamProcessorInput = z.input<typeof streamProcessorSchema>;
/** A validated processor: defaults applied, `dead_letter` resolved; `consumer` is resolved when it starts. */
export type StreamProcessorConfig = z.output<typeof streamProcessorSchema>;
export type StreamsConfig = z.output<typeof streamsSchema>;

/** The `streams` section parsed, or its problems, each as "streams.0.redis: must be a redis:// or rediss:// URL". */
export type StreamsSectionResult = { ok: true; streams: StreamsConfig } | { ok: false; problems: string[] };

/**
 * Validates the `streams` key of a raw config value (the parsed YAML, before
 * the main schema). Until the config schema has `streams: streamsSchema`, the
 * CLI reads the section with this and removes it before the rest is validated.
 */
export function parseStreamsSection(raw: unknown): StreamsSectionResult {
  const value = typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? (raw as Record<string, unknown>).streams : undefined;
  const parsed = streamsSchema.safeParse(value ?? undefined);
  if (parsed.success) return { ok: true, streams: parsed.data };
  return {
    ok: false,
    problems: parsed.error.issues.map((issue) => `${['streams', ...issue.path.map(String)].join('.')}: ${zodIssueMessage(issue)}`),
  };
}

/** Processors whose model is not among the config's models, one line each. */
export function streamModelProblems(streams: readonly StreamProcessorConfig[], models: readonly string[]): string[] {
  const known = new Set(models);
  return streams
    .filter((s) => !known.has(s.model))
    .map((s) => `stream processor '${s.name}': model '${s.model}' is not in the config (its models: ${models.join(', ') || 'none'})`);
}
