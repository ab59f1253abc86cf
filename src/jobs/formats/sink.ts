import { rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { GatewayError } from '../../core/errors.js';
import { CsvRecordWriter, CsvResultScanner } from './csv.js';
import { fileError } from './file-errors.js';
import { writeAll } from './file-io.js';
import { jsonlLines, rowOfLine, unreadableLine } from './jsonl.js';
import { isBlank, LineSplitter, openFile, readChunks } from './lines.js';
import { parquetResultRows, writeParquetFromStaging } from './parquet.js';
import type { RecordFormat } from './record-format.js';
import { RowSet } from './row-set.js';

/** One result row: its row number and its other fields, each value given as JSON text (already serialised). */
export interface OutputRow {
  readonly row: number;
  readonly fields: readonly (readonly [name: string, json: string])[];
}

/** Turns rows into the bytes appended to the file; commit() once they are written. */
interface RowEncoder {
  encode(rows: readonly OutputRow[]): string;
  commit(): void;
}

type SinkState = 'open' | 'broken' | 'closed' | 'finished';

/**
 * A result file opened for appending, resumable after a kill at any point.
 * Each append is one write of whole lines, so a kill leaves whole lines and at
 * most one torn line at the end, which the next open() cuts off; every row
 * number in the file is then in `done`. Appends are serialised.
 *
 * Parquet cannot be appended to: its rows are staged in `${path}.partial.jsonl`
 * and finish() writes the Parquet file from them, atomically, then removes the
 * staging file. Opening a Parquet result that exists with no staging file (a
 * finished job run again) stages its rows again, so they count as done.
 */
export class RecordSink {
  /** Rows in the file: found there at open, and appended since. */
  readonly done: RowSet;
  readonly #path: string;
  readonly #format: RecordFormat;
  /** The file appended to: `path`, or the staging file for Parquet. */
  readonly #file: string;
  readonly #fh: FileHandle;
  readonly #encoder: RowEncoder;
  /** Bytes of whole lines in the file. */
  #bytes: number;
  #queue: Promise<unknown> = Promise.resolve();
  #state: SinkState = 'open';
  #fileClosed = false;

  private constructor(path: string, format: RecordFormat, file: string, fh: FileHandle, done: RowSet, encoder: RowEncoder, bytes: number) {
    this.#path = path;
    this.#format = format;
    this.#file = file;
    this.#fh = fh;
    this.done = done;
    this.#encoder = encoder;
    this.#bytes = bytes;
  }

  /**
   * Opens (or creates) a result file; its directory must exist (else NOT_FOUND).
   * A torn last line is truncated away and the rows already there are `done`.
   */
  static async open(path: string, format: RecordFormat): Promise<RecordSink> {
    if (format !== 'parquet') return RecordSink.#openFile(path, format, path);
    const staging = `${path}.partial.jsonl`;
    if (!(await exists(staging)) && (await exists(path))) await stageResultFile(path, staging);
    return RecordSink.#openFile(path, format, staging);
  }

  static async #openFile(path: string, format: RecordFormat, file: string): Promise<RecordSink> {
    const fh = await openFile(file, 'a+', 'open');
    try {
      const done = new RowSet();
      let total = 0;
      let complete: number;
      let encoder: RowEncoder;
      if (format === 'csv') {
        const scanner = new CsvResultScanner(file, (row) => done.add(row));
        for await (const chunk of readChunks(fh, file)) {
          total += chunk.length;
          scanner.push(chunk);
        }
        complete = scanner.completeBytes;
        encoder = new CsvRecordWriter(file, scanner.header);
      } else {
        const splitter = new LineSplitter();
        let line = 0;
        for await (const chunk of readChunks(fh, file)) {
          total += chunk.length;
          const { buf, bounds } = splitter.push(chunk);
          for (let i = 0; i < bounds.length; i += 2) {
            line++;
            const start = bounds[i]!;
            const end = bounds[i + 1]!;
            if (isBlank(buf, start, end)) continue;
            const row = rowOfLine(buf, start, end);
            if (row === undefined) throw unreadableLine(file, line);
            done.add(row);
          }
        }
        complete = splitter.completeBytes;
        encoder = { encode: (rows) => jsonlLines(rows, file), commit: () => {} };
      }
      if (complete < total) {
        try {
          await fh.truncate(complete);
        } catch (err) {
          throw fileError(err, file, 'truncate the torn last line of');
        }
      }
      return new RecordSink(path, format, file, fh, done, encoder, complete);
    } catch (err) {
      await fh.close().catch(() => {});
      throw err;
    }
  }

  /**
   * Appends rows in one write and adds them to `done`. A row with a field the
   * CSV header lacks is INVALID_ARGUMENT, and nothing is written.
   */
  append(rows: readonly OutputRow[]): Promise<void> {
    return this.#serially(async () => {
      this.#checkOpen('append to');
      if (rows.length === 0) return;
      const bytes = Buffer.from(this.#encoder.encode(rows), 'utf8');
      try {
        await writeAll(this.#fh, bytes, this.#file);
      } catch (err) {
        // Part of the rows may be in the file: cut it back to its last whole line so later rows do not follow a torn one.
        await this.#fh.truncate(this.#bytes).catch(() => {
          this.#state = 'broken';
        });
        throw err;
      }
      this.#bytes += bytes.length;
      this.#encoder.commit();
      for (const row of rows) this.done.add(row.row);
    });
  }

  /** Flushes the file to disk (fsync) and closes it; for Parquet, writes the Parquet file and removes the staging file. */
  finish(): Promise<void> {
    return this.#serially(async () => {
      if (this.#state === 'finished') return;
      // A finish whose Parquet write failed (the staging file already closed) may be tried again.
      this.#checkOpen('finish', true);
      await this.#closeFile(true);
      if (this.#format === 'parquet') {
        await writeParquetFromStaging(this.#file, this.#path);
        await rm(this.#file, { force: true });
      }
      this.#state = 'finished';
    });
  }

  /** Closes the file without finishing it (a cancelled job): it stays resumable. */
  close(): Promise<void> {
    return this.#serially(async () => {
      if (this.#state === 'finished' || this.#state === 'closed') return;
      this.#state = 'closed';
      await this.#closeFile(false);
    });
  }

  #serially<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(work);
    this.#queue = run.catch(() => {});
    return run;
  }

  #checkOpen(doing: string, fileMayBeClosed = false): void {
    if (this.#state === 'open' && (fileMayBeClosed || !this.#fileClosed)) return;
    const why = this.#state === 'broken' ? 'a failed write could not be undone' : this.#fileClosed ? 'it is finishing or closed' : `it is ${this.#state}`;
    throw new GatewayError('FAILED_PRECONDITION', `cannot ${doing} ${this.#path}: ${why}`);
  }

  async #closeFile(sync: boolean): Promise<void> {
    if (this.#fileClosed) return;
    if (sync) {
      try {
        await this.#fh.sync();
      } catch (err) {
        throw fileError(err, this.#file, 'flush');
      }
    }
    this.#fileClosed = true;
    await this.#fh.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw fileError(err, path, 'look at');
  }
}

/** Stages the rows of an existing Parquet result file (whole, or not at all: written beside it, then renamed). */
async function stageResultFile(path: string, staging: string): Promise<void> {
  const tmp = `${staging}.tmp`;
  const fh = await openFile(tmp, 'w', 'create');
  try {
    for await (const rows of parquetResultRows(path)) await writeAll(fh, Buffer.from(jsonlLines(rows, staging), 'utf8'), tmp);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true }).catch(() => {});
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, staging);
  } catch (err) {
    throw fileError(err, staging, 'create');
  }
}
