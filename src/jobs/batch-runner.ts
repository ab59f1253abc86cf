import { stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { invalidArgument, notFound } from '../core/errors.js';
import type { InputRecord, RecordOutcome, RecordPredictor } from '../routing/record-predictor.js';
import { countRecords, formatOf, readRecords, RecordSink, type OutputRow, type RecordFormat, type RowSet, type SourceRow } from './formats/index.js';

/** One batch job's files and pace. Paths are checked (and confined) by the caller. */
export interface BatchSpec {
  readonly input: string;
  /** Default: from the input's extension (.jsonl/.ndjson, .csv, .parquet). */
  readonly inputFormat?: RecordFormat;
  readonly output: string;
  readonly outputFormat?: RecordFormat;
  /** JSONL file of the rows that failed ({row, id?, error: {code, message}}). */
  readonly errors: string;
  /** Rows sent to the backend in one request. */
  readonly batchSize: number;
  /** Requests in flight at once. */
  readonly concurrency: number;
  /** An input field copied to output and error rows (not sent to the model). Default: `id` when a record has it. */
  readonly idField?: string;
}

export interface BatchProgress {
  /** Rows in the input (known once counted). */
  readonly total: number | undefined;
  /** Rows finished, this run and earlier runs of the same job (succeeded + failed). */
  readonly done: number;
  readonly succeeded: number;
  readonly failed: number;
  /** Rows found finished when this run started (a resumed job). */
  readonly resumed: number;
  /** Rows per second this run. */
  readonly rowsPerSecond: number;
  /** Seconds left at the current rate, when the total is known. */
  readonly etaSeconds: number | undefined;
}

export interface BatchRunOptions {
  /** Stops the run: rows in flight are not written, the files stay resumable, and the summary says 'cancelled'. */
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: BatchProgress) => void;
  /** How often onProgress hears (default 1 s); it also hears once at the end. */
  readonly progressIntervalMs?: number;
  /** Hears the rows this run finishes as they are written: succeeded (output file) and failed (error file). */
  readonly onRows?: (succeeded: number, failed: number) => void;
}

export interface BatchSummary extends BatchProgress {
  readonly state: 'completed' | 'cancelled';
}


/** Rows failing with these codes are tried again (the backend may come back) before they go to the error file. */
const TRANSIENT_CODES: ReadonlySet<string> = new Set(['UNAVAILABLE', 'DEADLINE_EXCEEDED', 'RESOURCE_EXHAUSTED']);
const MAX_TRIES = 4;
const RETRY_BASE_MS = 250;

/**
 * Runs one batch job: every input row not yet in the output or error file is
 * predicted (batchSize rows a request, `concurrency` requests in flight) and
 * appended to one of them. Resumable by construction: the files are the
 * checkpoint. A run killed at any point and started again skips the rows its
 * files already hold, so each row ends up in them exactly once; only the rows
 * in flight at the kill are predicted again.
 */
export async function runBatch(spec: BatchSpec, predictor: RecordPredictor, opts: BatchRunOptions = {}): Promise<BatchSummary> {
  const inputFormat = formatOf(spec.input, spec.inputFormat);
  const outputFormat = formatOf(spec.output, spec.outputFormat);
  if (!Number.isSafeInteger(spec.batchSize) || spec.batchSize < 1) throw invalidArgument('the batch size must be a positive integer');
  if (!Number.isSafeInteger(spec.concurrency) || spec.concurrency < 1) throw invalidArgument('the concurrency must be a positive integer');
  await stat(spec.input).catch((err: unknown) => {
    throw notFound(`cannot read the input file ${spec.input}: ${(err as Error).message}`);
  });
  // A failure of the run itself (a file that cannot be written) stops every worker through `stop`.
  const stop = new AbortController();
  const signal = opts.signal !== undefined ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
  let fatal: unknown;
  const output = await RecordSink.open(spec.output, outputFormat);
  let errors: RecordSink;
  try {
    errors = await RecordSink.open(spec.errors, 'jsonl');
  } catch (err) {
    await output.close();
    throw err;
  }
  const resumed = output.done.size + errors.done.size;
  const started = performance.now();
  let total: number | undefined;
  let succeeded = 0;
  let failed = 0;
  const progress = (): BatchProgress => {
    const seconds = (performance.now() - started) / 1000;
    const thisRun = succeeded + failed;
    const rate = seconds > 0 ? thisRun / seconds : 0;
    const done = resumed + thisRun;
    return {
      total,
      done,
      succeeded: output.done.size,
      failed: errors.done.size,
      resumed,
      rowsPerSecond: rate,
      etaSeconds: total !== undefined && rate > 0 ? Math.max(0, total - done) / rate : undefined,
    };
  };
  const counting = countRecords(spec.input, inputFormat).then(
    (n) => {
      total = n;
    },
    () => {},
  );
  const ticker = opts.onProgress !== undefined ? setInterval(() => opts.onProgress!(progress()), opts.progressIntervalMs ?? 1_000) : undefined;
  ticker?.unref();

  const idField = spec.idField ?? 'id';
  // Every output row has the same fields (CSV's header is fixed by the first row): the id column is in when
  // asked for or when the first record has one, and null in rows without it.
  let withId: boolean | undefined = spec.idField !== undefined ? true : undefined;
  const idOf = (record: InputRecord): (readonly [string, string])[] => {
    const id = record[idField];
    withId ??= id !== undefined;
    return withId ? [[idField, id === undefined ? 'null' : jsonText(id)]] : [];
  };

  const chunks = pendingChunks(readRecords(spec.input, inputFormat, { skip: output.done }), errors.done, spec.batchSize);
  const worker = async (): Promise<void> => {
    try {
      await work();
    } catch (err) {
      fatal ??= err;
      stop.abort();
    }
  };
  const work = async (): Promise<void> => {
    for (;;) {
      if (signal.aborted) return;
      const next = await chunks.next();
      if (next.done === true) return;
      const { rows, unreadable } = next.value;
      if (unreadable.length > 0) {
        await errors.append(unreadable.map((u) => ({ row: u.row, fields: [['error', errorJson('INVALID_ARGUMENT', u.error)]] })));
        failed += unreadable.length;
        opts.onRows?.(0, unreadable.length);
      }
      if (rows.length === 0) continue;
      const outcomes = await predictWithRetries(predictor, rows.map((r) => r.record), signal);
      if (outcomes === undefined) return; // cancelled: these rows stay for the next run
      const ok: OutputRow[] = [];
      const bad: OutputRow[] = [];
      outcomes.forEach((o, i) => {
        const { row, record } = rows[i]!;
        if (o.ok) ok.push({ row, fields: [...idOf(record), ...Object.entries(o.outputs)] });
        else bad.push({ row, fields: [...idOf(record), ['error', errorJson(o.error.code, o.error.message)]] });
      });
      if (ok.length > 0) await output.append(ok);
      if (bad.length > 0) await errors.append(bad);
      succeeded += ok.length;
      failed += bad.length;
      opts.onRows?.(ok.length, bad.length);
    }
  };

  await Promise.all(Array.from({ length: spec.concurrency }, worker));
  await counting;
  clearInterval(ticker);
  if (fatal !== undefined) {
    await chunks.return(undefined).catch(() => {});
    await Promise.allSettled([output.close(), errors.close()]);
    throw fatal;
  }
  const cancelled = opts.signal?.aborted === true;
  if (cancelled) {
    await chunks.return(undefined);
    await Promise.all([output.close(), errors.close()]);
  } else {
    await Promise.all([output.finish(), errors.finish()]);
  }
  const summary: BatchSummary = { ...progress(), state: cancelled ? 'cancelled' : 'completed' };
  opts.onProgress?.(summary);
  return summary;
}

interface PendingRow {
  readonly row: number;
  readonly record: InputRecord;
}

interface Chunk {
  readonly rows: readonly PendingRow[];
  readonly unreadable: readonly { readonly row: number; readonly error: string }[];
}

/** The input's rows not yet done, in chunks of `size` (the reader already skips rows in the output file). */
async function* pendingChunks(source: AsyncIterable<SourceRow>, alsoDone: RowSet, size: number): AsyncGenerator<Chunk, void, undefined> {
  let rows: PendingRow[] = [];
  let unreadable: { row: number; error: string }[] = [];
  for await (const item of source) {
    if (alsoDone.has(item.row)) continue;
    if ('error' in item) unreadable.push(item);
    else rows.push(item);
    if (rows.length + unreadable.length >= size) {
      yield { rows, unreadable };
      rows = [];
      unreadable = [];
    }
  }
  if (rows.length + unreadable.length > 0) yield { rows, unreadable };
}

/**
 * Outcomes of one chunk, with rows that failed transiently (backend away,
 * overloaded, too slow) tried again with backoff. Undefined when cancelled.
 */
async function predictWithRetries(
  predictor: RecordPredictor,
  records: readonly InputRecord[],
  signal: AbortSignal | undefined,
): Promise<RecordOutcome[] | undefined> {
  const outcomes: RecordOutcome[] = new Array(records.length);
  let todo = records.map((_, i) => i);
  for (let attempt = 1; todo.length > 0; attempt++) {
    let answers: RecordOutcome[];
    try {
      answers = await predictor.predict(todo.map((i) => records[i]!), signal !== undefined ? { signal } : {});
    } catch (err) {
      if (signal?.aborted === true) return undefined;
      throw err;
    }
    const again: number[] = [];
    answers.forEach((o, k) => {
      const i = todo[k]!;
      outcomes[i] = o;
      if (!o.ok && TRANSIENT_CODES.has(o.error.code) && attempt < MAX_TRIES) again.push(i);
    });
    todo = again;
    if (todo.length > 0) {
      try {
        await sleep(RETRY_BASE_MS * 2 ** (attempt - 1) * (0.5 + Math.random() / 2), undefined, signal !== undefined ? { signal } : {});
      } catch {
        return undefined;
      }
    }
  }
  return outcomes;
}

function errorJson(code: string, message: string): string {
  return JSON.stringify({ code, message });
}

/** A field value as JSON text; BigInt (Parquet INT64) as a number literal, bytes as base64. */
function jsonText(v: unknown): string {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array) return JSON.stringify(Buffer.from(v).toString('base64'));
  return JSON.stringify(v) ?? 'null';
}
