import type { ColumnSource, SchemaElement } from 'hyparquet-writer';
import type { InputRecord } from '../../routing/record-predictor.js';
import { quoteCell } from './csv.js';
import { writeAll } from './file-io.js';
import { openFile } from './lines.js';
import { writeParquetFile } from './parquet.js';
import type { RecordFormat } from './record-format.js';

export interface WriteRecordsOptions {
  /** Parquet: rows in each row group (default 10,000). */
  readonly rowGroupRows?: number;
}

/** Text is written to the file in pieces of about this many characters. */
const WRITE_CHARS = 1 << 20;

/**
 * Writes records as an input file (for tests and benchmarks). JSONL: one
 * object a line. CSV: a header of every field seen, values as readRecords
 * converts them back (lists and objects as JSON text). Parquet: a column per
 * field, typed from its values: integers -> INT32 (INT64 beyond 32 bits or for
 * BigInts), other numbers -> DOUBLE, strings -> STRING, booleans -> BOOLEAN,
 * bytes -> BYTE_ARRAY, Dates -> TIMESTAMP, flat lists of numbers -> LIST of
 * INT32 or DOUBLE, anything else (nested lists, objects, mixed) -> JSON.
 */
export async function writeRecordsFile(path: string, format: RecordFormat, records: readonly InputRecord[], opts: WriteRecordsOptions = {}): Promise<void> {
  switch (format) {
    case 'jsonl':
      return writeText(path, jsonlText(records));
    case 'csv':
      return writeText(path, csvText(records));
    case 'parquet':
      return writeParquetRecords(path, records, opts.rowGroupRows ?? 10_000);
  }
}

async function writeText(path: string, pieces: Iterable<string>): Promise<void> {
  const fh = await openFile(path, 'w', 'create');
  try {
    for (const piece of pieces) await writeAll(fh, Buffer.from(piece, 'utf8'), path);
  } finally {
    await fh.close();
  }
}

function jsonReplacer(_key: string, v: unknown): unknown {
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  return v;
}

function* jsonlText(records: readonly InputRecord[]): Generator<string> {
  let text = '';
  for (const record of records) {
    text += JSON.stringify(record, jsonReplacer) + '\n';
    if (text.length >= WRITE_CHARS) {
      yield text;
      text = '';
    }
  }
  if (text.length > 0) yield text;
}

/** Every field name, in the order first seen. */
function fieldNames(records: readonly InputRecord[]): string[] {
  const names = new Set<string>();
  for (const record of records) for (const name of Object.keys(record)) names.add(name);
  return [...names];
}

function csvCell(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  if (v instanceof Date) return v.toISOString();
  return JSON.stringify(v, jsonReplacer);
}

function* csvText(records: readonly InputRecord[]): Generator<string> {
  const names = fieldNames(records);
  let text = names.map(quoteCell).join(',') + '\n';
  for (const record of records) {
    text += names.map((name) => quoteCell(csvCell(record[name]))).join(',') + '\n';
    if (text.length >= WRITE_CHARS) {
      yield text;
      text = '';
    }
  }
  if (text.length > 0) yield text;
}

// ---- Parquet -----------------------------------------------------------------

type ValueKind = 'int32' | 'int64' | 'double' | 'string' | 'boolean' | 'bytes' | 'date' | 'list-int32' | 'list-double' | 'list' | 'json';
type ColumnKind = ValueKind | 'none';

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

function isInt32(n: number): boolean {
  return Number.isInteger(n) && n >= INT32_MIN && n <= INT32_MAX;
}

function kindOfValue(v: unknown): ValueKind {
  switch (typeof v) {
    case 'number':
      return isInt32(v) ? 'int32' : Number.isSafeInteger(v) ? 'int64' : 'double';
    case 'bigint':
      return 'int64';
    case 'string':
      return 'string';
    case 'boolean':
      return 'boolean';
  }
  if (v instanceof Uint8Array) return 'bytes';
  if (v instanceof Date) return 'date';
  if (Array.isArray(v)) {
    if (v.length === 0) return 'list';
    let ints = true;
    for (const x of v) {
      if (typeof x !== 'number' || !Number.isFinite(x)) return 'json';
      if (ints && !isInt32(x)) ints = false;
    }
    return ints ? 'list-int32' : 'list-double';
  }
  return 'json';
}

const NUMBER_KINDS: readonly ColumnKind[] = ['int32', 'int64', 'double'];
const LIST_KINDS: readonly ColumnKind[] = ['list', 'list-int32', 'list-double'];

function widen(kind: ColumnKind, seen: ValueKind): ColumnKind {
  if (kind === 'none' || kind === seen) return seen;
  for (const family of [NUMBER_KINDS, LIST_KINDS]) {
    const a = family.indexOf(kind);
    const b = family.indexOf(seen);
    if (a >= 0 && b >= 0) return family[Math.max(a, b)]!;
  }
  return 'json';
}

function listElement(name: string, type: 'INT32' | 'DOUBLE'): SchemaElement[] {
  return [
    { name, repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
    { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
    { name: 'element', type, repetition_type: 'REQUIRED' },
  ];
}

function schemaOf(name: string, kind: ColumnKind): SchemaElement[] {
  const repetition_type = 'OPTIONAL';
  switch (kind) {
    case 'int32':
      return [{ name, type: 'INT32', repetition_type }];
    case 'int64':
      return [{ name, type: 'INT64', repetition_type }];
    case 'double':
      return [{ name, type: 'DOUBLE', repetition_type }];
    case 'boolean':
      return [{ name, type: 'BOOLEAN', repetition_type }];
    case 'bytes':
      return [{ name, type: 'BYTE_ARRAY', repetition_type }];
    case 'date':
      return [{ name, type: 'INT64', converted_type: 'TIMESTAMP_MILLIS', repetition_type }];
    case 'list-int32':
      return listElement(name, 'INT32');
    case 'list':
    case 'list-double':
      return listElement(name, 'DOUBLE');
    case 'json':
      return [{ name, type: 'BYTE_ARRAY', converted_type: 'JSON', repetition_type }];
    default:
      return [{ name, type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type }];
  }
}

function columnValue(kind: ColumnKind, v: unknown): unknown {
  if (v === null || v === undefined) return null;
  if (kind === 'int64') return typeof v === 'bigint' ? v : BigInt(v as number);
  return v;
}

async function writeParquetRecords(path: string, records: readonly InputRecord[], rowGroupRows: number): Promise<void> {
  if (!Number.isSafeInteger(rowGroupRows) || rowGroupRows < 1) throw new RangeError(`rowGroupRows must be a positive integer, got ${rowGroupRows}`);
  const names = fieldNames(records);
  const kinds = names.map((name) => {
    let kind: ColumnKind = 'none';
    for (const record of records) {
      const v = record[name];
      if (v !== null && v !== undefined) kind = widen(kind, kindOfValue(v));
    }
    return kind;
  });
  const schema: SchemaElement[] = [{ name: 'root', num_children: names.length }, ...names.flatMap((name, c) => schemaOf(name, kinds[c]!))];
  function* groups(): Generator<ColumnSource[]> {
    for (let first = 0; first < records.length; first += rowGroupRows) {
      const group = records.slice(first, first + rowGroupRows);
      yield names.map((name, c) => ({ name, data: group.map((record) => columnValue(kinds[c]!, record[name])) }));
    }
  }
  await writeParquetFile(path, { schema, groups: groups() });
}
