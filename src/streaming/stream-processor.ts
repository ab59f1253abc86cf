import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis, type RedisOptions } from 'ioredis';
import type { StreamProcessorConfig } from '../config/stream-schema.js';
import { GatewayError, invalidArgument, toGatewayError, type ErrorCode } from '../core/errors.js';
import { histogramQuantile, LATENCY_BUCKETS, latencyBucket } from '../experiments/results-histogram.js';
import type { Logger } from '../observability/logger.js';
import type { InputRecord, RecordOutcome, RecordPredictor } from '../routing/record-predictor.js';

/**
 * A stream processor: events from a Redis Stream, read through a consumer
 * group, each event's record predicted, the answer written to an output
 * stream. Delivery is at least once:
 *
 * - an input event is acknowledged (XACK) only together with the event written
 *   for it (output or dead letter): one Lua script does XADD then XACK, and a
 *   failed XADD stops it before the XACK. A crash between the two cannot lose
 *   an event; it can repeat an output, always with the same input_id.
 * - a record that can never succeed (not a JSON object, or refused with a
 *   non-retryable code) goes to the dead-letter stream at once; a retryable
 *   failure stays pending and is taken again (XAUTOCLAIM, by any consumer of the
 *   group) once idle for claim_idle_ms, until its delivery count reaches
 *   max_deliveries, when it too goes to the dead letter with its last error.
 * - events of consumers that stopped or crashed are taken over the same way.
 *
 * Backpressure: at most max_in_flight events are taken (read or claimed) and
 * not finished; reads and claims ask only for the free slots.
 *
 * One connection blocks in XREADGROUP; another writes, acknowledges and
 * claims. Both reconnect by themselves (ioredis, capped backoff); an outage is
 * logged once and the loop backs off, so a missing Redis never crashes the
 * process nor spins.
 */

/**
 * Codes that no retry can fix: the event goes to the dead letter at once. Not
 * NOT_FOUND: an unknown model is the config's problem (a reload may bring it
 * back), so its events are retried like any outage until max_deliveries.
 */
export const NON_RETRYABLE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'INVALID_ARGUMENT',
  'FAILED_PRECONDITION',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
]);

/** Which connection a client is for: `reader` blocks in XREADGROUP, `writer` does everything else. */
export type RedisRole = 'reader' | 'writer';
/** Builds a connection (tests pass their own); the default is `new Redis(url, options)`. */
export type RedisFactory = (url: string, options: RedisOptions, role: RedisRole) => Redis;

export interface LatencySnapshot {
  readonly count: number;
  /** Milliseconds. */
  readonly sum: number;
  /** Milliseconds, read from a log-bucketed histogram (within ~5%); null before the first event. */
  readonly p50: number | null;
  readonly p99: number | null;
}

/**
 * One processor's counters. Every event taken is, at any time, in exactly one
 * place: events_in = events_out + events_failed + events_dead_lettered +
 * events_left_pending + in_flight.
 */
export interface StreamProcessorMetrics {
  readonly name: string;
  readonly input: string;
  readonly group: string;
  readonly consumer: string;
  /** The last Redis command worked. */
  readonly connected: boolean;
  /** Events taken: read as new, or claimed (a redelivery counts again). */
  readonly events_in: number;
  /** Of events_in, those claimed from the group's pending entries (XAUTOCLAIM). */
  readonly events_claimed: number;
  /** Output events written (and their inputs acknowledged). */
  readonly events_out: number;
  /** Retryable failures: the event was left pending, to be taken again. */
  readonly events_failed: number;
  /** Events written to the dead-letter stream (and their inputs acknowledged). */
  readonly events_dead_lettered: number;
  /** Events left pending with no failure of their own: their write failed, or the processor stopped first. */
  readonly events_left_pending: number;
  /** Events taken and not finished now. */
  readonly in_flight: number;
  readonly max_in_flight: number;
  /** The group's lag (XINFO GROUPS, Redis 7): entries not yet delivered to it; null when unknown. */
  readonly lag: number | null;
  /** The group's pending entries (delivered, not acknowledged), all consumers; null when unknown. */
  readonly pending: number | null;
  /** Redis commands that failed. */
  readonly redis_errors: number;
  /** From an event taken to its output written. */
  readonly latency_ms: LatencySnapshot;
}

/** Pages of XAUTOCLAIM per claim tick at most, so one tick stays short with a long pending list. */
const MAX_CLAIM_PAGES = 10;
/** Retryable errors remembered per event for its dead letter (the oldest go first). */
const MAX_REMEMBERED_ERRORS = 10_000;
/** Longest a write (a pipeline of scripts) or a claim may take before it counts as failed. */
const WRITE_TIMEOUT_MS = 10_000;
/** start() waits this long for the first connection before leaving it to the loop. */
const START_WAIT_MS = 5_000;
/** After the drain time, how long batches get to settle once their predictions are aborted. */
const STOP_GRACE_MS = 1_000;
const DEFAULT_DRAIN_MS = 10_000;
/** Longest pause of new reads while every batch fails with retryable errors (a backend outage). */
const MAX_READ_PAUSE_MS = 5_000;
/** Batches in a row failing retryably after which the pause is logged as a warning. */
const FAILING_BATCHES_WARN = 5;

/**
 * XADD then XACK, atomically: a failed XADD raises and the XACK never runs.
 * KEYS[1] the stream written, KEYS[2] the input stream; ARGV[1] the group,
 * ARGV[2] the input event id, ARGV[3] MAXLEN ('' for none), ARGV[4..] field, value...
 */
const WRITE_AND_ACK = `
local args = { KEYS[1] }
if ARGV[3] ~= '' then
  args[#args + 1] = 'MAXLEN'
  args[#args + 1] = '~'
  args[#args + 1] = ARGV[3]
end
args[#args + 1] = '*'
for i = 4, #ARGV do args[#args + 1] = ARGV[i] end
local id = redis.call('XADD', unpack(args))
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
return id
`;

interface StreamEntry {
  readonly id: string;
  /** field, value, field, value...; null for an entry deleted from the stream but still pending (Redis 6.2). */
  readonly fields: readonly string[] | null;
}

interface TakenEvent {
  readonly id: string;
  readonly fields: readonly string[];
  /** Deliveries so far, this one included. */
  readonly deliveries: number;
  readonly takenAt: number;
}

type Conclusion =
  | { readonly kind: 'output'; readonly outputs: string }
  | { readonly kind: 'dead'; readonly code: ErrorCode; readonly message: string }
  | { readonly kind: 'retry'; readonly error: GatewayError }
  | { readonly kind: 'leave' };

export class StreamProcessor {
  readonly name: string;
  readonly consumer: string;
  private readonly settings: StreamProcessorConfig;
  private readonly predictor: RecordPredictor;
  private readonly logger: Logger;
  private readonly reader: Redis;
  private readonly writer: Redis;

  private state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  private loop: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  /** Fires when stop() begins: no more reads or claims. */
  private readonly stopReading = new AbortController();
  /** Fires when the drain time is over: predictions are aborted and nothing more is written. */
  private readonly hardStop = new AbortController();
  private readonly tasks = new Set<Promise<void>>();
  /**
   * Ids being processed here now (a claim may return one of them: it is not taken twice), with when their
   * idle time in the group was last reset (Date.now()).
   */
  private readonly active = new Map<string, number>();
  private slotWaiter: (() => void) | undefined;
  private groupReady = false;
  private nextClaimAt = 0;
  private claimCursor = '0-0';
  private readonly lastErrors = new Map<string, { code: ErrorCode; message: string }>();
  /** undefined until the first command worked or failed. */
  private up: boolean | undefined;
  /**
   * Batches in a row whose records all failed with retryable errors. While it is above 0, new events are
   * read only after a growing pause: in a backend outage they stay in the stream, undelivered, instead of
   * each using up its deliveries on the way to the dead letter.
   */
  private failingBatches = 0;
  private readPauseUntil = 0;

  private inFlight = 0;
  private readonly counts = {
    events_in: 0,
    events_claimed: 0,
    events_out: 0,
    events_failed: 0,
    events_dead_lettered: 0,
    events_left_pending: 0,
    redis_errors: 0,
  };
  private lag: number | null = null;
  private pending: number | null = null;
  private readonly latencyCounts = new Float64Array(LATENCY_BUCKETS);
  private latencyCount = 0;
  private latencySum = 0;

  constructor(settings: StreamProcessorConfig, predictor: RecordPredictor, logger: Logger, redisFactory?: RedisFactory) {
    this.settings = settings;
    this.name = settings.name;
    this.consumer = settings.consumer ?? `${hostname()}-${process.pid}`;
    this.predictor = predictor;
    this.logger = logger.child({ stream_processor: settings.name });
    const make = redisFactory ?? ((url: string, options: RedisOptions) => new Redis(url, options));
    const common: RedisOptions = {
      // Commands fail at once while disconnected (the loop backs off) instead of queueing, and a command
      // caught by a dropped connection fails rather than being sent again: the event stays pending.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      connectTimeout: 5_000,
      retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times - 1, 5), 2_000),
    };
    this.reader = make(
      settings.redis,
      { ...common, commandTimeout: settings.block_ms + WRITE_TIMEOUT_MS, connectionName: `infergate-stream-read:${this.consumer}` },
      'reader',
    );
    this.writer = make(settings.redis, { ...common, commandTimeout: WRITE_TIMEOUT_MS, connectionName: `infergate-stream:${this.consumer}` }, 'writer');
    // Every failed reconnect attempt errors; the outage itself is logged once, by the loop.
    this.reader.on('error', (err: Error) => this.logger.debug({ err: err.message }, 'stream redis (reader) error'));
    this.writer.on('error', (err: Error) => this.logger.debug({ err: err.message }, 'stream redis error'));
  }

  /**
   * Starts reading. Resolves once the consumer group exists (created from
   * start_id when missing), or after START_WAIT_MS when Redis cannot be
   * reached: the processor keeps trying in the background. Never rejects for
   * Redis being down.
   */
  async start(): Promise<void> {
    if (this.state !== 'new') return;
    this.state = 'running';
    if (await whenReady(this.writer, START_WAIT_MS, this.stopReading.signal)) {
      try {
        await this.ensureGroup();
      } catch (err) {
        this.redisFailed(err);
      }
    }
    if (this.state !== 'running') return;
    if (this.settings.claim_interval_ms > this.settings.claim_idle_ms / 2) {
      this.logger.warn(
        { claim_interval_ms: this.settings.claim_interval_ms, claim_idle_ms: this.settings.claim_idle_ms },
        'claim_interval_ms is more than half of claim_idle_ms: events still in flight here may be taken over by other consumers',
      );
    }
    this.logger.info(
      { input: this.settings.input, group: this.settings.group, consumer: this.consumer, output: this.settings.output, model: this.settings.model },
      'stream processor started',
    );
    this.loop = this.run();
  }

  /**
   * Stops reading and claiming, waits up to drainMs for the events in flight
   * to finish, then aborts their predictions; what is unfinished stays pending
   * in the group (never acknowledged), for another consumer to claim.
   */
  stop(drainMs = DEFAULT_DRAIN_MS): Promise<void> {
    this.stopping ??= this.shutdown(drainMs);
    return this.stopping;
  }

  metrics(): StreamProcessorMetrics {
    return {
      name: this.name,
      input: this.settings.input,
      group: this.settings.group,
      consumer: this.consumer,
      connected: this.up === true,
      ...this.counts,
      in_flight: this.inFlight,
      max_in_flight: this.settings.max_in_flight,
      lag: this.lag,
      pending: this.pending,
      latency_ms: {
        count: this.latencyCount,
        sum: this.latencySum,
        p50: histogramQuantile(this.latencyCounts, 0.5) ?? null,
        p99: histogramQuantile(this.latencyCounts, 0.99) ?? null,
      },
    };
  }

  private async shutdown(drainMs: number): Promise<void> {
    const wasRunning = this.state === 'running';
    this.state = 'stopping';
    this.stopReading.abort();
    this.slotWaiter?.();
    // A read blocked in XREADGROUP ends now; events it was being sent stay pending for the group.
    this.reader.disconnect();
    await this.loop?.catch(() => undefined);
    if (this.tasks.size > 0) {
      await settledWithin(this.tasks, drainMs);
      this.hardStop.abort(new GatewayError('UNAVAILABLE', 'the stream processor is stopping'));
      await settledWithin(this.tasks, STOP_GRACE_MS);
    } else {
      this.hardStop.abort(new GatewayError('UNAVAILABLE', 'the stream processor is stopping'));
    }
    this.state = 'stopped';
    await Promise.all([closeClient(this.reader), closeClient(this.writer)]);
    if (wasRunning) this.logger.info({ ...this.counts, in_flight: this.inFlight }, 'stream processor stopped');
  }

  private async run(): Promise<void> {
    const s = this.settings;
    let failures = 0;
    while (this.state === 'running') {
      try {
        if (!this.groupReady) await this.ensureGroup();
        if (Date.now() >= this.nextClaimAt) {
          // Scheduled before it runs: a tick that fails waits for the next interval, and reads go on meanwhile.
          this.nextClaimAt = Date.now() + s.claim_interval_ms;
          await this.claimTick();
        }
        const untilClaim = Math.max(1, this.nextClaimAt - Date.now());
        const paused = this.readPauseUntil - Date.now();
        if (paused > 0) {
          await sleep(Math.min(paused, untilClaim), undefined, { signal: this.stopReading.signal }).catch(() => undefined);
          continue;
        }
        const free = s.max_in_flight - this.inFlight;
        if (free <= 0) {
          await this.slotFreed(untilClaim);
          continue;
        }
        const reply = await this.reader.call(
          'XREADGROUP', 'GROUP', s.group, this.consumer,
          'COUNT', Math.min(free, s.read_count),
          'BLOCK', Math.min(s.block_ms, untilClaim),
          'STREAMS', s.input, '>',
        );
        this.redisWorked();
        failures = 0;
        // Stopped while the read was on its way: what it brought stays pending for the group.
        if (this.state !== 'running') break;
        const now = performance.now();
        const events: TakenEvent[] = [];
        for (const entry of parseReadReply(reply)) {
          if (entry.fields !== null) events.push({ id: entry.id, fields: entry.fields, deliveries: 1, takenAt: now });
        }
        if (events.length > 0) this.dispatch(events);
      } catch (err) {
        if (this.state !== 'running') break;
        failures++;
        if (/NOGROUP|no such key/i.test(errorMessage(err))) {
          // Redis answered: the stream or the group is gone (a restart without persistence, a deleted key).
          if (this.groupReady) this.logger.warn({ reason: errorMessage(err) }, 'stream consumer group missing; creating it again');
          this.groupReady = false;
          this.counts.redis_errors++;
        } else {
          this.redisFailed(err);
        }
        await sleep(Math.min(100 * 2 ** Math.min(failures - 1, 5), 2_000), undefined, { signal: this.stopReading.signal }).catch(() => undefined);
      }
    }
  }

  /** XGROUP CREATE ... MKSTREAM; a group that exists already is fine. */
  private async ensureGroup(): Promise<void> {
    const s = this.settings;
    try {
      await this.writer.call('XGROUP', 'CREATE', s.input, s.group, s.start_id, 'MKSTREAM');
      this.logger.info({ input: s.input, group: s.group, start_id: s.start_id }, 'stream consumer group created');
    } catch (err) {
      if (!/BUSYGROUP/.test(errorMessage(err))) throw err;
    }
    this.redisWorked();
    this.groupReady = true;
  }

  /**
   * The group's lag, then pending events idle for claim_idle_ms taken over
   * (XAUTOCLAIM, from where the last tick stopped, a bounded number of pages,
   * only as many as there are free slots). Entries deleted from the stream
   * are acknowledged away.
   */
  private async claimTick(): Promise<void> {
    const s = this.settings;
    await this.refreshGroupInfo();
    await this.keepActiveClaimed();
    for (let page = 0; page < MAX_CLAIM_PAGES; page++) {
      const free = s.max_in_flight - this.inFlight;
      if (free <= 0 || this.state !== 'running') return;
      const reply = await this.writer.call('XAUTOCLAIM', s.input, s.group, this.consumer, s.claim_idle_ms, this.claimCursor, 'COUNT', Math.min(free, s.read_count));
      const { cursor, claimed, deleted } = parseAutoclaimReply(reply);
      this.claimCursor = cursor;
      const gone = [...deleted, ...claimed.filter((e) => e.fields === null).map((e) => e.id)];
      if (gone.length > 0) {
        await this.writer.call('XACK', s.input, s.group, ...gone);
        this.logger.warn({ ids: gone.slice(0, 10), count: gone.length }, 'pending stream entries were deleted from the stream; acknowledged without processing');
      }
      const candidates = claimed.filter((e): e is StreamEntry & { fields: readonly string[] } => e.fields !== null && !this.active.has(e.id));
      if (candidates.length > 0) {
        const deliveries = await this.deliveryCounts(candidates.map((e) => e.id));
        if (this.state !== 'running') return;
        const now = performance.now();
        const events: TakenEvent[] = [];
        for (const e of candidates) {
          const n = deliveries.get(e.id);
          // Not pending for this consumer any more: acknowledged meanwhile, or claimed by another.
          if (n !== undefined && !this.active.has(e.id)) events.push({ id: e.id, fields: e.fields, deliveries: n, takenAt: now });
        }
        if (events.length > 0) {
          this.counts.events_claimed += events.length;
          this.logger.debug({ count: events.length }, 'claimed pending stream events');
          this.dispatch(events);
        }
      }
      if (cursor === '0-0') return;
    }
  }

  /**
   * Resets the idle time of the events processed here for a while (XCLAIM ... JUSTID, which leaves their
   * delivery counts alone), so that a slow prediction is not taken over by another consumer while this one
   * is alive, and its delivery count does not grow meanwhile.
   */
  private async keepActiveClaimed(): Promise<void> {
    const s = this.settings;
    const now = Date.now();
    const due = [...this.active].filter(([, touched]) => now - touched >= s.claim_idle_ms / 2).map(([id]) => id);
    for (let i = 0; i < due.length; i += 500) {
      const ids = due.slice(i, i + 500);
      await this.writer.call('XCLAIM', s.input, s.group, this.consumer, 0, ...ids, 'JUSTID');
      for (const id of ids) if (this.active.has(id)) this.active.set(id, now);
    }
  }

  /**
   * The delivery count of each id pending for this consumer: one
   * `XPENDING input group id id 1 consumer` per id, in one pipeline (at most
   * read_count ids). Ids no longer pending for this consumer are absent.
   */
  private async deliveryCounts(ids: readonly string[]): Promise<Map<string, number>> {
    const s = this.settings;
    const pipeline = this.writer.pipeline();
    for (const id of ids) pipeline.xpending(s.input, s.group, id, id, 1, this.consumer);
    const results = (await pipeline.exec()) ?? [];
    const counts = new Map<string, number>();
    for (const [err, value] of results) {
      if (err) throw err;
      const row = Array.isArray(value) ? value[0] : undefined;
      if (Array.isArray(row) && typeof row[0] === 'string' && typeof row[3] === 'number') counts.set(row[0], row[3]);
    }
    return counts;
  }

  /** XINFO GROUPS: the group's lag (Redis 7) and pending count. */
  private async refreshGroupInfo(): Promise<void> {
    const groups = await this.writer.call('XINFO', 'GROUPS', this.settings.input);
    if (!Array.isArray(groups)) return;
    for (const g of groups) {
      const info = flatPairs(g);
      if (info.get('name') !== this.settings.group) continue;
      const lag = info.get('lag');
      const pending = info.get('pending');
      this.lag = typeof lag === 'number' ? lag : null;
      this.pending = typeof pending === 'number' ? pending : null;
    }
  }

  private dispatch(events: TakenEvent[]): void {
    this.inFlight += events.length;
    this.counts.events_in += events.length;
    const now = Date.now();
    for (const e of events) this.active.set(e.id, now);
    const task: Promise<void> = this.processBatch(events)
      .catch((err: unknown) => this.logger.error({ err: errorMessage(err) }, 'stream batch failed unexpectedly; its events stay pending'))
      .finally(() => {
        this.inFlight -= events.length;
        for (const e of events) this.active.delete(e.id);
        this.tasks.delete(task);
        this.slotWaiter?.();
      });
    this.tasks.add(task);
  }

  /** Predicts the events' records together, then writes each event's output or dead letter (acknowledging it). */
  private async processBatch(events: readonly TakenEvent[]): Promise<void> {
    const s = this.settings;
    const conclusions: Conclusion[] = new Array<Conclusion>(events.length);
    const records: InputRecord[] = [];
    const recordAt: number[] = [];
    events.forEach((e, i) => {
      if (e.deliveries > s.max_deliveries) {
        // Delivered this often without an outcome (its consumers stopped or crashed): it may be what kills them.
        const last = this.lastErrors.get(e.id);
        conclusions[i] = {
          kind: 'dead',
          code: last?.code ?? 'ABORTED',
          message: last?.message ?? `delivered ${e.deliveries} times without being processed (its consumers stopped or crashed)`,
        };
        return;
      }
      const parsed = recordOf(e.fields, s.field);
      if (parsed instanceof GatewayError) conclusions[i] = { kind: 'dead', code: parsed.code, message: parsed.message };
      else {
        records.push(parsed);
        recordAt.push(i);
      }
    });

    if (records.length > 0) {
      let outcomes: RecordOutcome[] | undefined;
      try {
        outcomes = await this.predictor.predict(records, { signal: this.hardStop.signal, requestId: `stream-${s.name}` });
      } catch (err) {
        const error = toGatewayError(err);
        for (const i of recordAt) conclusions[i] = this.hardStop.signal.aborted ? { kind: 'leave' } : { kind: 'retry', error };
      }
      if (outcomes !== undefined) {
        recordAt.forEach((i, k) => {
          const outcome = outcomes[k] ?? { ok: false, error: new GatewayError('INTERNAL', 'the predictor returned no outcome for this record') };
          conclusions[i] = conclusionOf(outcome);
        });
      }
    }

    // A retryable failure on the last allowed delivery ends in the dead letter, with its error.
    events.forEach((e, i) => {
      const c = conclusions[i]!;
      if (c.kind !== 'retry') return;
      if (e.deliveries >= s.max_deliveries) conclusions[i] = { kind: 'dead', code: c.error.code, message: c.error.message };
    });

    if (this.hardStop.signal.aborted) {
      // The drain time is over: nothing more is written; unfinished events stay pending for the group.
      events.forEach((_, i) => {
        if (conclusions[i]!.kind !== 'retry') conclusions[i] = { kind: 'leave' };
      });
    }
    await this.write(events, conclusions);
  }

  private async write(events: readonly TakenEvent[], conclusions: readonly Conclusion[]): Promise<void> {
    const s = this.settings;
    const pipeline = this.writer.pipeline();
    const written: number[] = [];
    events.forEach((e, i) => {
      const c = conclusions[i]!;
      if (c.kind === 'output') {
        pipeline.eval(WRITE_AND_ACK, 2, s.output, s.input, s.group, e.id, s.output_maxlen !== undefined ? String(s.output_maxlen) : '',
          'input_id', e.id, 'model', s.model, 'outputs', c.outputs);
        written.push(i);
      } else if (c.kind === 'dead') {
        pipeline.eval(WRITE_AND_ACK, 2, s.dead_letter, s.input, s.group, e.id, '',
          'input_id', e.id, 'stream', s.input, 'group', s.group, 'consumer', this.consumer, 'deliveries', String(e.deliveries),
          'error_code', c.code, 'error', c.message, 'data', fieldValue(e.fields, s.field) ?? '');
        written.push(i);
      }
    });

    let results: [Error | null, unknown][] = [];
    if (written.length > 0) {
      try {
        results = (await pipeline.exec()) ?? [];
      } catch (err) {
        results = written.map(() => [err instanceof Error ? err : new Error(String(err)), null]);
      }
    }
    let writeError: Error | undefined;
    written.forEach((i, k) => {
      const err = results[k]?.[0] ?? (results[k] === undefined ? new Error('no reply') : null);
      const e = events[i]!;
      const c = conclusions[i]!;
      if (err) {
        writeError ??= err;
        this.counts.events_left_pending++;
        return;
      }
      this.lastErrors.delete(e.id);
      if (c.kind === 'output') {
        this.counts.events_out++;
        const ms = performance.now() - e.takenAt;
        this.latencyCounts[latencyBucket(ms)]!++;
        this.latencyCount++;
        this.latencySum += ms;
      } else if (c.kind === 'dead') {
        this.counts.events_dead_lettered++;
        this.logger.warn({ input_id: e.id, error_code: c.code, error: c.message, deliveries: e.deliveries }, 'stream event sent to the dead letter');
      }
    });
    if (writeError !== undefined) this.redisFailed(writeError);
    else if (written.length > 0) this.redisWorked();

    this.notePredictionHealth(conclusions);
    events.forEach((e, i) => {
      const c = conclusions[i]!;
      if (c.kind === 'retry') {
        this.counts.events_failed++;
        this.remember(e.id, c.error);
        this.logger.debug({ input_id: e.id, error_code: c.error.code, error: c.error.message, deliveries: e.deliveries }, 'stream event failed; it stays pending and is retried');
      } else if (c.kind === 'leave') {
        this.counts.events_left_pending++;
      }
    });
  }

  /** A batch that only failed retryably lengthens the pause of new reads; one output ends it. */
  private notePredictionHealth(conclusions: readonly Conclusion[]): void {
    const outputs = conclusions.some((c) => c.kind === 'output');
    const retries = conclusions.filter((c): c is Extract<Conclusion, { kind: 'retry' }> => c.kind === 'retry');
    if (outputs) {
      if (this.failingBatches >= FAILING_BATCHES_WARN) this.logger.info('stream predictions succeed again; reading at full speed');
      this.failingBatches = 0;
      this.readPauseUntil = 0;
      return;
    }
    if (retries.length === 0) return;
    this.failingBatches++;
    const pause = Math.min(100 * 2 ** Math.min(this.failingBatches - 1, 10), MAX_READ_PAUSE_MS);
    this.readPauseUntil = Date.now() + pause;
    if (this.failingBatches === FAILING_BATCHES_WARN) {
      const first = retries[0]!.error;
      this.logger.warn(
        { batches: this.failingBatches, error_code: first.code, error: first.message },
        'stream predictions keep failing with retryable errors; reading new events slowly until one succeeds',
      );
    }
  }

  private remember(id: string, error: GatewayError): void {
    this.lastErrors.delete(id);
    this.lastErrors.set(id, { code: error.code, message: error.message });
    if (this.lastErrors.size > MAX_REMEMBERED_ERRORS) {
      const oldest = this.lastErrors.keys().next().value;
      if (oldest !== undefined) this.lastErrors.delete(oldest);
    }
  }

  /** Resolves when an event finishes, after `ms`, or when stop() begins. */
  private slotFreed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        if (this.slotWaiter === done) this.slotWaiter = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.slotWaiter = done;
    });
  }

  private redisWorked(): void {
    if (this.up === true) return;
    const before = this.up;
    this.up = true;
    if (before === false) this.logger.info('stream redis is back; processing resumes');
  }

  private redisFailed(err: unknown): void {
    this.counts.redis_errors++;
    const message = errorMessage(err);
    this.logger.debug({ err: message }, 'stream redis command failed');
    if (this.up === false) return;
    this.up = false;
    this.logger.warn({ reason: message }, 'stream redis unavailable; events wait in the stream until it works again');
  }
}

/** What an outcome means for its event. */
function conclusionOf(outcome: RecordOutcome): Conclusion {
  if (outcome.ok) return { kind: 'output', outputs: outputsText(outcome.outputs) };
  if (NON_RETRYABLE_CODES.has(outcome.error.code)) return { kind: 'dead', code: outcome.error.code, message: outcome.error.message };
  return { kind: 'retry', error: outcome.error };
}

/** {name: value} from the outcome's JSON texts, without parsing them again. */
function outputsText(outputs: Readonly<Record<string, string>>): string {
  return `{${Object.entries(outputs)
    .map(([name, json]) => `${JSON.stringify(name)}:${json}`)
    .join(',')}}`;
}

/** The event's record, or why it has none. */
function recordOf(fields: readonly string[], field: string): InputRecord | GatewayError {
  const payload = fieldValue(fields, field);
  if (payload === undefined) {
    const names = fields.filter((_, i) => i % 2 === 0);
    return invalidArgument(`the event has no '${field}' field (its fields: ${names.join(', ') || 'none'})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch (err) {
    return invalidArgument(`the '${field}' field is not JSON: ${errorMessage(err)}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return invalidArgument(`the '${field}' field must be a JSON object (a record), not ${Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value}`);
  }
  return value as InputRecord;
}

function fieldValue(fields: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}

function parseEntries(value: unknown): StreamEntry[] {
  if (!Array.isArray(value)) return [];
  const entries: StreamEntry[] = [];
  for (const item of value) {
    if (!Array.isArray(item) || typeof item[0] !== 'string') continue;
    const fields = item[1];
    entries.push({ id: item[0], fields: Array.isArray(fields) ? fields.map(String) : null });
  }
  return entries;
}

/** XREADGROUP's reply for one stream: null (timeout) or [[key, entries]]. */
function parseReadReply(reply: unknown): StreamEntry[] {
  if (!Array.isArray(reply)) return [];
  const first: unknown = reply[0];
  return Array.isArray(first) ? parseEntries(first[1]) : [];
}

/** XAUTOCLAIM's reply: [next cursor, claimed entries, deleted ids (Redis 7)]. */
function parseAutoclaimReply(reply: unknown): { cursor: string; claimed: StreamEntry[]; deleted: string[] } {
  if (!Array.isArray(reply)) return { cursor: '0-0', claimed: [], deleted: [] };
  const deleted: unknown = reply[2];
  return {
    cursor: typeof reply[0] === 'string' ? reply[0] : '0-0',
    claimed: parseEntries(reply[1]),
    deleted: Array.isArray(deleted) ? deleted.filter((id): id is string => typeof id === 'string') : [],
  };
}

/** [k1, v1, k2, v2...] as a map. */
function flatPairs(value: unknown): Map<string, unknown> {
  const map = new Map<string, unknown>();
  if (!Array.isArray(value)) return map;
  for (let i = 0; i + 1 < value.length; i += 2) map.set(String(value[i]), value[i + 1]);
  return map;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Resolves true once the client is ready, false after `ms` or when `signal` fires. */
function whenReady(client: Redis, ms: number, signal: AbortSignal): Promise<boolean> {
  if (client.status === 'ready') return Promise.resolve(true);
  return new Promise((resolve) => {
    const finish = (ready: boolean): void => {
      clearTimeout(timer);
      client.off('ready', onReady);
      signal.removeEventListener('abort', onAbort);
      resolve(ready);
    };
    const onReady = (): void => finish(true);
    const onAbort = (): void => finish(false);
    const timer = setTimeout(() => finish(false), ms);
    client.on('ready', onReady);
    signal.addEventListener('abort', onAbort);
  });
}

/** Disconnects (no reconnect) and resolves once the connection has ended, or after STOP_GRACE_MS. */
async function closeClient(client: Redis): Promise<void> {
  if (client.status === 'end') return;
  const ended = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, STOP_GRACE_MS);
    client.once('end', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  client.disconnect();
  await ended;
}

/** Resolves when every task has settled or after `ms`, whichever is first. */
async function settledWithin(tasks: ReadonlySet<Promise<void>>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.allSettled([...tasks]),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}
