import { parse, type CsvError } from 'csv-parse';
import { GatewayError, invalidArgument } from '../../core/errors.js';
import type { InputRecord } from '../../routing/record-predictor.js';
import { fileError } from './file-errors.js';
import { checkOutputRow, stringLiteralValue } from './jsonl.js';
import { openFile } from './lines.js';
import type { SourceRow } from './records.js';
import type { RowSet } from './row-set.js';
import type { OutputRow } from './sink.js';

/**
 * CSV (RFC 4180, a header line naming the fields): reading input rows with
 * their cells converted to values, counting them, and the records of result
 * files.
 */

/** csv-parse options shared by reading and counting, so both see the same records. */
const PARSE_OPTIONS = { bom: true, relax_column_count: true, skip_empty_lines: true } as const;

/** The records of a CSV file as string arrays (the header first), streamed with backpressure. */
async function* csvRecords(path: string): AsyncGenerator<string[], void, undefined> {
  const fh = await openFile(path, 'r', 'read');
  const source = fh.createReadStream(); // closes the handle when it ends or is destroyed
  const parser = parse(PARSE_OPTIONS);
  source.on('error', (err) => parser.destroy(fileError(err, path, 'read')));
  source.pipe(parser);
  try {
    yield* parser as AsyncIterable<string[]>;
  } catch (err) {
    if (err instanceof GatewayError) throw err;
    const code = (err as CsvError).code;
    throw invalidArgument(`${path} is not valid CSV: ${(err as Error).message}${code !== undefined ? ` (${code})` : ''}`, err);
  } finally {
    source.destroy();
    parser.destroy();
  }
}

export async function* readCsv(path: string, skip: RowSet | undefined): AsyncGenerator<SourceRow, void, undefined> {
  let header: readonly string[] | undefined;
  let setters: ((rec: Record<string, unknown>, value: unknown) => void)[] = [];
  let row = 0;
  for await (const record of csvRecords(path)) {
    if (header === undefined) {
      header = record;
      setters = record.map((name) => fieldSetter(name));
      continue;
    }
    const r = row++;
    if (skip?.has(r) === true) continue;
    if (record.length !== header.length) {
      yield { row: r, error: `record ${r + 1} after the header has ${record.length} fields where the header has ${header.length}` };
      continue;
    }
    const rec: Record<string, unknown> = {};
    for (let i = 0; i < record.length; i++) {
      const cell = record[i]!;
      if (cell !== '') setters[i]!(rec, cellValue(cell));
    }
    yield { row: r, record: rec as InputRecord };
  }
}

/** Sets one field; a field named `__proto__` becomes an own property, as JSON.parse makes it, not the prototype. */
function fieldSetter(name: string): (rec: Record<string, unknown>, value: unknown) => void {
  if (name === '__proto__') {
    return (rec, value) => Object.defineProperty(rec, name, { value, enumerable: true, writable: true, configurable: true });
  }
  return (rec, value) => {
    rec[name] = value;
  };
}

/** Records after the header. */
export async function countCsv(path: string): Promise<number> {
  let records = 0;
  for await (const _ of csvRecords(path)) records++;
  return Math.max(0, records - 1);
}

const NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;
const INTEGER = /^-?\d+$/;

/**
 * A cell's value: a number literal -> number (an integer beyond 2^53 stays a
 * string, so 64-bit ids keep every digit), 'true'/'false' -> boolean, JSON
 * text starting with '[' or '{' -> its value, anything else -> the string.
 */
export function cellValue(cell: string): unknown {
  const c = cell.charCodeAt(0);
  if ((c >= 0x30 && c <= 0x39) || c === 0x2d) {
    if (NUMBER.test(cell)) {
      const n = Number(cell);
      if (Number.isFinite(n) && (Number.isSafeInteger(n) || !INTEGER.test(cell))) return n;
    }
    return cell;
  }
  if (c === 0x74 && cell === 'true') return true;
  if (c === 0x66 && cell === 'false') return false;
  if (c === 0x5b || c === 0x7b) {
    try {
      return JSON.parse(cell) as unknown;
    } catch {
      return cell;
    }
  }
  return cell;
}

// ---- result records -----------------------------------------------------------

const NEEDS_QUOTES = /[",\r\n]/;

/** A cell as RFC 4180 writes it: quoted (quotes doubled) when it holds a comma, quote, CR or LF. */
export function quoteCell(cell: string): string {
  return NEEDS_QUOTES.test(cell) ? `"${cell.replaceAll('"', '""')}"` : cell;
}

/** A cell's text from a value's JSON text: a string's value, null -> empty, anything else the JSON text itself. */
export function cellOfJson(json: string): string {
  const c = json.charCodeAt(0);
  if (c === 0x22) return stringLiteralValue(json);
  if (c === 0x6e && json === 'null') return '';
  return json;
}

/**
 * Result records in a CSV file with a fixed header. The header is the file's
 * (read when it is opened) or, for an empty file, `row` and the first row's
 * field names, written before the first rows.
 */
export class CsvRecordWriter {
  #header: readonly string[] | undefined;
  #columns = new Map<string, number>();
  #rowColumn = 0;
  #pending: readonly string[] | undefined;

  constructor(
    private readonly path: string,
    header: readonly string[] | undefined,
  ) {
    if (header !== undefined) this.#setHeader(header);
  }

  get header(): readonly string[] | undefined {
    return this.#header;
  }

  /** The text for rows (with the header line first when the file has none yet). Call commit() once it is written. */
  encode(rows: readonly OutputRow[]): string {
    if (rows.length === 0) return '';
    let text = '';
    let header = this.#header;
    let columns = this.#columns;
    let rowColumn = this.#rowColumn;
    let newHeader: readonly string[] | undefined;
    if (header === undefined) {
      checkOutputRow(rows[0]!, this.path);
      header = newHeader = ['row', ...rows[0]!.fields.map(([name]) => name)];
      columns = new Map(header.map((name, i) => [name, i]));
      if (columns.size !== header.length) throw invalidArgument(`${this.path}: row ${rows[0]!.row} names a field twice`);
      rowColumn = 0;
      text = header.map(quoteCell).join(',') + '\n';
    }
    const width = header.length;
    const cells = new Array<string>(width);
    for (const row of rows) {
      checkOutputRow(row, this.path);
      cells.fill('');
      cells[rowColumn] = String(row.row);
      for (const [name, json] of row.fields) {
        const i = columns.get(name);
        if (i === undefined) {
          throw invalidArgument(`${this.path}: row ${row.row} has a field '${name}' that the CSV header (${header.join(',')}) lacks`);
        }
        cells[i] = quoteCell(cellOfJson(json));
      }
      text += cells.join(',') + '\n';
    }
    this.#pending = newHeader;
    return text;
  }

  /** The last encode()'s text is in the file: its header (if it wrote one) is the file's now. */
  commit(): void {
    if (this.#pending !== undefined) this.#setHeader(this.#pending);
    this.#pending = undefined;
  }

  #setHeader(header: readonly string[]): void {
    const rowColumn = header.indexOf('row');
    if (rowColumn < 0) throw new GatewayError('DATA_LOSS', `${this.path}: the CSV header (${header.join(',')}) has no 'row' column`);
    this.#header = header;
    this.#columns = new Map(header.map((name, i) => [name, i]));
    this.#rowColumn = rowColumn;
  }
}

// ---- scanning an existing result file ---------------------------------------

const QUOTE = 0x22;
const COMMA = 0x2c;
const LF = 0x0a;
const CR = 0x0d;

const ROW_NUMBER = /^\d{1,15}$/;

const FIELD_START = 0;
const UNQUOTED = 1;
const QUOTED = 2;
const QUOTED_QUOTE = 3; // a quote inside a quoted field: its end, or the first of a doubled quote

/**
 * Reads an existing CSV result file's bytes: its header, the `row` cell of each
 * record after it, and where the last complete record ends (a record cut off by
 * a kill, even inside a quoted field holding newlines, is not complete).
 */
export class CsvResultScanner {
  header: string[] | undefined;
  /** Byte offset just past the last complete record. */
  completeBytes = 0;

  #state = FIELD_START;
  #field = 0;
  #fields: string[] = [];
  #bytes: number[] = [];
  #rowColumn = -1;
  #offset = 0;
  #records = 0;

  constructor(
    private readonly path: string,
    private readonly onRow: (row: number) => void,
  ) {}

  push(chunk: Uint8Array): void {
    const n = chunk.length;
    for (let i = 0; i < n; i++) {
      const b = chunk[i]!;
      switch (this.#state) {
        case QUOTED:
          if (b === QUOTE) this.#state = QUOTED_QUOTE;
          else if (this.#collecting()) this.#bytes.push(b);
          else {
            const q = chunk.indexOf(QUOTE, i + 1);
            if (q === -1) i = n;
            else i = q - 1;
          }
          break;
        case QUOTED_QUOTE:
          if (b === QUOTE) {
            if (this.#collecting()) this.#bytes.push(b);
            this.#state = QUOTED;
          } else this.#unquoted(b, this.#offset + i);
          break;
        case FIELD_START:
          if (b === QUOTE) this.#state = QUOTED;
          else this.#unquoted(b, this.#offset + i);
          break;
        default:
          this.#unquoted(b, this.#offset + i);
      }
    }
    this.#offset += n;
  }

  #collecting(): boolean {
    return this.header === undefined || this.#field === this.#rowColumn;
  }

  #unquoted(b: number, at: number): void {
    if (b === COMMA) {
      this.#endField();
      this.#state = FIELD_START;
    } else if (b === LF) {
      const blank = this.#field === 0 && this.#state === FIELD_START;
      this.#endField();
      if (!blank) this.#endRecord(at);
      this.#field = 0;
      this.#fields = [];
      this.completeBytes = at + 1;
      this.#state = FIELD_START;
    } else if (b !== CR) {
      if (this.#collecting()) this.#bytes.push(b);
      this.#state = UNQUOTED;
    }
  }

  #endField(): void {
    if (this.#collecting()) {
      this.#fields[this.#field] = Buffer.from(this.#bytes).toString('utf8');
      this.#bytes.length = 0;
    }
    this.#field++;
  }

  #endRecord(at: number): void {
    this.#records++;
    if (this.header === undefined) {
      this.header = this.#fields;
      this.#rowColumn = this.header.indexOf('row');
      if (this.#rowColumn < 0) {
        throw new GatewayError('DATA_LOSS', `${this.path}: the CSV header (${this.header.join(',')}) has no 'row' column`);
      }
      return;
    }
    const cell = this.#fields[this.#rowColumn];
    const row = cell !== undefined && ROW_NUMBER.test(cell) ? Number(cell) : NaN;
    if (Number.isNaN(row)) {
      throw new GatewayError('DATA_LOSS', `${this.path}: record ${this.#records} (ending at byte ${at}) has no row number; cannot tell which rows are done`);
    }
    this.onRow(row);
  }
}
