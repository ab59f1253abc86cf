import { rename, rm, type FileHandle } from 'node:fs/promises';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, type AsyncBuffer, type FileMetaData } from 'hyparquet';
import { ByteWriter, ParquetWriter, type ColumnSource, type SchemaElement } from 'hyparquet-writer';
import { GatewayError, invalidArgument } from '../../core/errors.js';
import type { InputRecord } from '../../routing/record-predictor.js';
import { fileError } from './file-errors.js';
import { forEachMember, stringLiteralValue, unreadableLine } from './jsonl.js';
import { isBlank, LineSplitter, openFile, readChunks } from './lines.js';
import { readFully, writeAll } from './file-io.js';
import type { SourceRow } from './records.js';
import { RowSet } from './row-set.js';
import type { OutputRow } from './sink.js';

/**
 * Parquet: reading input rows a row group at a time, and writing a result
 * file from a RecordSink's staging JSONL file.
 */

/** Key-value metadata naming the result columns that hold JSON text (lists, objects, mixed values). */
export const JSON_COLUMNS_KEY = 'infergate.json_columns';

interface OpenParquet {
  readonly file: AsyncBuffer;
  readonly metadata: FileMetaData;
}

async function openParquet(path: string): Promise<OpenParquet> {
  let file: AsyncBuffer;
  try {
    file = await asyncBufferFromFile(path);
  } catch (err) {
    throw fileError(err, path, 'read');
  }
  try {
    return { file, metadata: await parquetMetadataAsync(file) };
  } catch (err) {
    throw invalidArgument(`${path} is not a readable Parquet file: ${(err as Error).message}`, err);
  }
}

/** The rows of [start, end) as objects (values as hyparquet decodes them), a failure naming the file. */
async function readGroup(path: string, pq: OpenParquet, rowStart: number, rowEnd: number): Promise<Record<string, unknown>[]> {
  try {
    // utf8: false keeps BYTE_ARRAY columns not annotated as text as bytes (STRING columns are still strings).
    return await parquetReadObjects({ file: pq.file, metadata: pq.metadata, rowStart, rowEnd, utf8: false });
  } catch (err) {
    if (err instanceof GatewayError) throw err;
    throw invalidArgument(`cannot read rows ${rowStart}-${rowEnd - 1} of ${path}: ${(err as Error).message}`, err);
  }
}

/** Each row group's [start, end) rows. */
function* rowGroups(metadata: FileMetaData): Generator<readonly [number, number]> {
  let start = 0;
  for (const group of metadata.row_groups) {
    const end = start + Number(group.num_rows);
    yield [start, end];
    start = end;
  }
}

export async function* readParquet(path: string, skip: RowSet | undefined): AsyncGenerator<SourceRow, void, undefined> {
  const pq = await openParquet(path);
  for (const [start, end] of rowGroups(pq.metadata)) {
    if (start === end || skip?.hasAll(start, end) === true) continue;
    const rows = await readGroup(path, pq, start, end);
    for (let i = 0; i < rows.length; i++) {
      const row = start + i;
      if (skip?.has(row) === true) continue;
      yield { row, record: plainRecord(rows[i]!) };
    }
  }
}

export async function countParquet(path: string): Promise<number> {
  return Number((await openParquet(path)).metadata.num_rows);
}

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** A Parquet row as a record: nulls left out, safe-integer BigInts as numbers, Dates as ISO strings, bytes as they are. */
function plainRecord(row: Record<string, unknown>): InputRecord {
  const rec: Record<string, unknown> = {};
  for (const key of Object.keys(row)) {
    const v = row[key];
    if (v === null || v === undefined) continue;
    setOwn(rec, key, plainValue(v));
  }
  return rec;
}

function setOwn(rec: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(rec, key, { value, enumerable: true, writable: true, configurable: true });
  else rec[key] = value;
}

function plainValue(v: unknown): unknown {
  if (typeof v === 'bigint') return v >= MIN_SAFE && v <= MAX_SAFE ? Number(v) : v;
  if (typeof v !== 'object' || v === null || ArrayBuffer.isView(v)) return v;
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? null : v.toISOString();
  if (Array.isArray(v)) return v.some(needsConversion) ? v.map(plainValue) : v;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(v)) setOwn(out, key, plainValue((v as Record<string, unknown>)[key]));
  return out;
}

function needsConversion(v: unknown): boolean {
  return typeof v === 'bigint' || (typeof v === 'object' && v !== null && !ArrayBuffer.isView(v));
}

// ---- writing ----------------------------------------------------------------

/** hyparquet-writer's ByteWriter flushing to a file after each row group, asynchronously. */
class FileByteWriter extends ByteWriter {
  readonly #fh: FileHandle;
  readonly #path: string;

  constructor(fh: FileHandle, path: string) {
    super(1 << 20);
    this.#fh = fh;
    this.#path = path;
  }

  flush(): Promise<void> {
    return this.#drain();
  }

  override finish(): Promise<void> {
    return this.#drain();
  }

  async #drain(): Promise<void> {
    if (this.index === 0) return;
    await writeAll(this.#fh, this.getBytes(), this.#path);
    this.index = 0;
  }
}

export interface ParquetWriteSpec {
  readonly schema: SchemaElement[];
  readonly kvMetadata?: { key: string; value?: string }[];
  /** Row groups in order; each is written (and flushed to the file) before the next is asked for. */
  readonly groups: AsyncIterable<ColumnSource[]> | Iterable<ColumnSource[]>;
}

/** Writes a Parquet file to a temporary file beside `path`, synced, then renamed over `path`. */
export async function writeParquetFile(path: string, spec: ParquetWriteSpec): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await openFile(tmp, 'w', 'create');
  try {
    const writer = new FileByteWriter(fh, tmp);
    const pq = new ParquetWriter({ writer, schema: spec.schema, kvMetadata: spec.kvMetadata, createdBy: 'infergate' });
    for await (const columnData of spec.groups) {
      const rows = columnData[0]?.data.length ?? 0;
      if (rows > 0) await pq.write({ columnData, rowGroupSize: rows });
    }
    await pq.finish();
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true }).catch(() => {});
    throw err instanceof GatewayError ? err : new GatewayError('INTERNAL', `cannot write ${path}: ${(err as Error).message}`, { cause: err });
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    throw fileError(err, path, 'replace');
  }
}

// ---- a result file from its staging JSONL -------------------------------------

/** Rows a result row group holds at most, and the bytes of staged lines read for one. */
const GROUP_ROWS = 100_000;
const GROUP_BYTES = 32 * 1024 * 1024;
/** Staged lines closer than this are read together. */
const READ_GAP_BYTES = 32 * 1024;
const READ_MAX_BYTES = 16 * 1024 * 1024;

type Kind = 'none' | 'int' | 'double' | 'string' | 'boolean' | 'json';

const INTEGER_LITERAL = /^-?\d+$/;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** The kind of the JSON text in [start, end), from its first character ('null' for null). */
function kindOf(text: string, start: number, end: number): Kind | 'null' {
  const c = text.charCodeAt(start);
  if (c === 0x22) return 'string';
  if (c === 0x74 || c === 0x66) return 'boolean';
  if (c === 0x6e) return 'null';
  if (c === 0x5b || c === 0x7b) return 'json';
  const literal = text.slice(start, end);
  if (!INTEGER_LITERAL.test(literal)) return 'double';
  if (end - start <= 18) return 'int';
  const n = BigInt(literal);
  return n >= INT64_MIN && n <= INT64_MAX ? 'int' : 'double';
}

function widen(kind: Kind, seen: Kind | 'null'): Kind {
  if (seen === 'null' || seen === kind) return kind;
  if (kind === 'none') return seen;
  if ((kind === 'int' && seen === 'double') || (kind === 'double' && seen === 'int')) return 'double';
  return 'json';
}

function schemaElement(name: string, kind: Kind): SchemaElement {
  const repetition_type = 'OPTIONAL';
  switch (kind) {
    case 'int':
      return { name, type: 'INT64', repetition_type };
    case 'double':
      return { name, type: 'DOUBLE', repetition_type };
    case 'boolean':
      return { name, type: 'BOOLEAN', repetition_type };
    default:
      return { name, type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type };
  }
}

/** A value of a column of `kind` from its JSON text. */
function columnValue(kind: Kind, text: string, start: number, end: number): unknown {
  if (text.charCodeAt(start) === 0x6e) return null; // null
  switch (kind) {
    case 'int':
      return BigInt(text.slice(start, end));
    case 'double':
      return Number(text.slice(start, end));
    case 'boolean':
      return text.charCodeAt(start) === 0x74;
    case 'string':
      return stringLiteralValue(text.slice(start, end));
    default:
      return text.slice(start, end);
  }
}

/** Where each staged line is: its row, byte offset and length, in growable typed arrays. */
class LineIndex {
  rows = new Float64Array(1024);
  offsets = new Float64Array(1024);
  lengths = new Uint32Array(1024);
  length = 0;

  push(row: number, offset: number, length: number): void {
    if (this.length === this.rows.length) {
      const grow = <T extends Float64Array | Uint32Array>(a: T, make: (n: number) => T): T => {
        const next = make(a.length * 2);
        next.set(a);
        return next;
      };
      this.rows = grow(this.rows, (n) => new Float64Array(n));
      this.offsets = grow(this.offsets, (n) => new Float64Array(n));
      this.lengths = grow(this.lengths, (n) => new Uint32Array(n));
    }
    this.rows[this.length] = row;
    this.offsets[this.length] = offset;
    this.lengths[this.length] = length;
    this.length++;
  }

  /** Entry numbers in row order. */
  byRow(): Uint32Array {
    const order = new Uint32Array(this.length);
    let sorted = true;
    for (let i = 0; i < this.length; i++) {
      order[i] = i;
      if (i > 0 && this.rows[i]! < this.rows[i - 1]!) sorted = false;
    }
    if (!sorted) order.sort((a, b) => this.rows[a]! - this.rows[b]!);
    return order;
  }
}

/**
 * Writes the Parquet result file `path` from the staging JSONL file: rows sorted
 * by row number (a row staged twice is written once), column `row` INT64 and a
 * column for each other field, typed from its values. Two passes over the
 * staged lines, so memory holds one row group, not the file.
 */
export async function writeParquetFromStaging(staging: string, path: string): Promise<void> {
  const fh = await openFile(staging, 'r', 'read');
  try {
    // Pass 1: where each row's line is, and each column's kind.
    const index = new LineIndex();
    const seen = new RowSet();
    const kinds = new Map<string, Kind>();
    const splitter = new LineSplitter();
    const members: [string, Kind | 'null'][] = [];
    let line = 0;
    for await (const chunk of readChunks(fh, staging)) {
      const { buf, base, bounds } = splitter.push(chunk);
      for (let i = 0; i < bounds.length; i += 2) {
        line++;
        const start = bounds[i]!;
        const end = bounds[i + 1]!;
        if (isBlank(buf, start, end)) continue;
        const text = buf.toString('utf8', start, end);
        let row = -1;
        members.length = 0;
        const ok = forEachMember(text, (name, s, e) => {
          if (name === 'row') row = Number(text.slice(s, e));
          else members.push([name, kindOf(text, s, e)]);
        });
        if (!ok || !Number.isSafeInteger(row) || row < 0) throw unreadableLine(staging, line);
        if (seen.has(row)) continue;
        seen.add(row);
        index.push(row, base + start, end - start);
        for (const [name, kind] of members) kinds.set(name, widen(kinds.get(name) ?? 'none', kind));
      }
    }
    const columns = [...kinds.entries()];
    const columnOf = new Map(columns.map(([name], i) => [name, i]));
    const schema: SchemaElement[] = [
      { name: 'root', num_children: 1 + columns.length },
      { name: 'row', type: 'INT64', repetition_type: 'REQUIRED' },
      ...columns.map(([name, kind]) => schemaElement(name, kind)),
    ];
    const jsonColumns = columns.filter(([, kind]) => kind === 'json').map(([name]) => name);

    // Pass 2: a row group at a time, in row order.
    const order = index.byRow();
    async function* groups(): AsyncGenerator<ColumnSource[]> {
      for (let first = 0; first < order.length; ) {
        let end = first;
        let bytes = 0;
        while (end < order.length && end - first < GROUP_ROWS && (bytes < GROUP_BYTES || end === first)) bytes += index.lengths[order[end++]!]!;
        const entries = order.subarray(first, end);
        const texts = await readLines(fh, staging, index, entries);
        const rowData = new BigInt64Array(entries.length);
        const data = columns.map(() => new Array<unknown>(entries.length).fill(null));
        for (let j = 0; j < entries.length; j++) {
          const text = texts[j]!;
          rowData[j] = BigInt(index.rows[entries[j]!]!);
          forEachMember(text, (name, s, e) => {
            const c = columnOf.get(name);
            if (c !== undefined) data[c]![j] = columnValue(columns[c]![1], text, s, e);
          });
        }
        yield [{ name: 'row', data: rowData }, ...columns.map(([name], c) => ({ name, data: data[c]! }))];
        first = end;
      }
    }
    await writeParquetFile(path, { schema, kvMetadata: [{ key: JSON_COLUMNS_KEY, value: JSON.stringify(jsonColumns) }], groups: groups() });
  } finally {
    await fh.close();
  }
}

/** The texts of the staged lines `entries` (in that order), read in as few reads as their offsets allow. */
async function readLines(fh: FileHandle, path: string, index: LineIndex, entries: Uint32Array): Promise<string[]> {
  const { offsets, lengths } = index;
  const texts = new Array<string>(entries.length);
  const byOffset = Array.from(entries.keys()).sort((a, b) => offsets[entries[a]!]! - offsets[entries[b]!]!);
  for (let r = 0; r < byOffset.length; ) {
    const firstEntry = entries[byOffset[r]!]!;
    const start = offsets[firstEntry]!;
    let stop = start + lengths[firstEntry]!;
    let q = r + 1;
    for (; q < byOffset.length; q++) {
      const e = entries[byOffset[q]!]!;
      const lineEnd = offsets[e]! + lengths[e]!;
      if (offsets[e]! > stop + READ_GAP_BYTES || lineEnd - start > READ_MAX_BYTES) break;
      stop = Math.max(stop, lineEnd);
    }
    const buf = Buffer.allocUnsafe(stop - start);
    await readFully(fh, buf, start, path);
    for (let t = r; t < q; t++) {
      const j = byOffset[t]!;
      const e = entries[j]!;
      const at = offsets[e]! - start;
      texts[j] = buf.toString('utf8', at, at + lengths[e]!);
    }
    r = q;
  }
  return texts;
}

/**
 * The rows of a Parquet result file this module wrote, as result rows (values
 * back to JSON text), a row group at a time: how a finished result file is
 * staged again when its job is run again.
 */
export async function* parquetResultRows(path: string): AsyncGenerator<OutputRow[], void, undefined> {
  const pq = await openParquet(path);
  const names = pq.metadata.schema.slice(1).map((e) => e.name);
  if (!names.includes('row')) throw new GatewayError('DATA_LOSS', `${path} has no 'row' column; it is not a result file`);
  const json = pq.metadata.key_value_metadata?.find((kv) => kv.key === JSON_COLUMNS_KEY)?.value;
  const jsonColumns = new Set<string>(json !== undefined ? (JSON.parse(json) as string[]) : []);
  for (const [start, end] of rowGroups(pq.metadata)) {
    if (start === end) continue;
    const rows = await readGroup(path, pq, start, end);
    yield rows.map((r) => ({
      row: Number(r['row']),
      fields: Object.keys(r)
        .filter((k) => k !== 'row' && r[k] !== null && r[k] !== undefined)
        .map((k): [string, string] => [k, jsonColumns.has(k) ? String(r[k]) : jsonText(r[k])]),
    }));
  }
}

function jsonText(v: unknown): string {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Date) return JSON.stringify(v.toISOString());
  if (v instanceof Uint8Array) return JSON.stringify(Buffer.from(v).toString('base64'));
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x)) ?? 'null';
}
