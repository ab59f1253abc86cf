import { GatewayError, invalidArgument } from '../../core/errors.js';
import type { InputRecord } from '../../routing/record-predictor.js';
import { isBlank, LineSplitter, openFile, readChunks } from './lines.js';
import type { SourceRow } from './records.js';
import type { RowSet } from './row-set.js';
import type { OutputRow } from './sink.js';

/**
 * JSONL (one JSON object a line): reading input rows, counting them, and the
 * lines of result files. Every non-blank line is one row.
 */

export async function* readJsonl(path: string, skip: RowSet | undefined): AsyncGenerator<SourceRow, void, undefined> {
  const fh = await openFile(path, 'r', 'read');
  try {
    const splitter = new LineSplitter();
    let row = 0;
    let line = 0;
    for await (const chunk of readChunks(fh, path, { dropBom: true })) {
      const { buf, bounds } = splitter.push(chunk);
      for (let i = 0; i < bounds.length; i += 2) {
        line++;
        const start = bounds[i]!;
        const end = bounds[i + 1]!;
        if (isBlank(buf, start, end)) continue;
        const r = row++;
        if (skip?.has(r) === true) continue;
        yield parseLine(buf, start, end, r, line);
      }
    }
    const rest = splitter.rest();
    if (rest !== undefined && !isBlank(rest, 0, rest.length)) {
      const r = row++;
      if (skip?.has(r) !== true) yield parseLine(rest, 0, rest.length, r, line + 1);
    }
  } finally {
    await fh.close();
  }
}

function parseLine(buf: Buffer, start: number, end: number, row: number, line: number): SourceRow {
  let value: unknown;
  try {
    value = JSON.parse(buf.toString('utf8', start, end));
  } catch (err) {
    return { row, error: `line ${line} is not valid JSON: ${(err as Error).message}` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { row, error: `line ${line} is not a JSON object` };
  }
  return { row, record: value as InputRecord };
}

/** Non-blank lines in the file, counted from its bytes (nothing is parsed). */
export async function countJsonl(path: string): Promise<number> {
  const fh = await openFile(path, 'r', 'read');
  try {
    let count = 0;
    let content = false; // the current line has a non-blank byte
    for await (const buf of readChunks(fh, path, { dropBom: true })) {
      let pos = 0;
      while (pos < buf.length) {
        const nl = buf.indexOf(0x0a, pos);
        const end = nl === -1 ? buf.length : nl;
        if (!content) content = !isBlank(buf, pos, end);
        if (nl === -1) break;
        if (content) count++;
        content = false;
        pos = nl + 1;
      }
    }
    return content ? count + 1 : count;
  } finally {
    await fh.close();
  }
}

// ---- result lines ----------------------------------------------------------

const KEY_CACHE_LIMIT = 4096;
const keyCache = new Map<string, string>();

/** `,"name":` for a field name, cached (a job writes the same few names on every row). */
function memberPrefix(name: string): string {
  let prefix = keyCache.get(name);
  if (prefix === undefined) {
    prefix = `,${JSON.stringify(name)}:`;
    if (keyCache.size < KEY_CACHE_LIMIT) keyCache.set(name, prefix);
  }
  return prefix;
}

/** Checks what every format needs of a result row: a row number, no field named `row`, JSON texts on one line. */
export function checkOutputRow(row: OutputRow, path: string): void {
  if (!Number.isSafeInteger(row.row) || row.row < 0) throw invalidArgument(`${path}: a row number must be a non-negative integer, got ${row.row}`);
  for (const [name, json] of row.fields) {
    if (name === 'row') throw invalidArgument(`${path}: row ${row.row} has a field named 'row', which would hide the row number`);
    if (json.length === 0 || json.includes('\n')) {
      throw invalidArgument(`${path}: row ${row.row}, field '${name}': the value must be JSON text on one line`);
    }
  }
}

/** The lines `{"row":N,<name>:<json>,...}\n` for rows, the field values' JSON texts used as they are. */
export function jsonlLines(rows: readonly OutputRow[], path: string): string {
  let text = '';
  for (const row of rows) {
    checkOutputRow(row, path);
    text += '{"row":' + row.row;
    for (const [name, json] of row.fields) text += memberPrefix(name) + json;
    text += '}\n';
  }
  return text;
}

const ROW_PREFIX = Buffer.from('{"row":');

/**
 * The row number of a result line: read straight from the bytes when the line
 * starts `{"row":<digits>` (as lines this module writes do), else by parsing it.
 * Undefined when the line has no row number.
 */
export function rowOfLine(buf: Buffer, start: number, end: number): number | undefined {
  const digits = start + ROW_PREFIX.length;
  if (end > digits && buf.compare(ROW_PREFIX, 0, ROW_PREFIX.length, start, digits) === 0) {
    let n = 0;
    let i = digits;
    for (; i < end && i - digits < 16; i++) {
      const b = buf[i]!;
      if (b < 0x30 || b > 0x39) break;
      n = n * 10 + (b - 0x30);
    }
    const stop = buf[i];
    if (i > digits && (stop === 0x2c || stop === 0x7d) && Number.isSafeInteger(n)) return n;
  }
  try {
    const value: unknown = JSON.parse(buf.toString('utf8', start, end));
    const row = (value as { row?: unknown } | null)?.row;
    return typeof row === 'number' && Number.isSafeInteger(row) && row >= 0 ? row : undefined;
  } catch {
    return undefined;
  }
}

/** A result file's line that cannot be read: the file was not written by a RecordSink, or was damaged. */
export function unreadableLine(path: string, line: number): GatewayError {
  return new GatewayError('DATA_LOSS', `${path}, line ${line}: not a result line with a row number; cannot tell which rows are done`);
}

// ---- scanning a JSON object's members without parsing their values ---------

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;

function skipSpace(text: string, i: number): number {
  for (;;) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return i;
    i++;
  }
}

/** The index after the string literal starting at `i` (its opening quote), or -1 when unterminated. */
function endOfString(text: string, i: number): number {
  for (let j = i + 1; j < text.length; j++) {
    const c = text.charCodeAt(j);
    if (c === BACKSLASH) j++;
    else if (c === QUOTE) return j + 1;
  }
  return -1;
}

/** The index after the JSON value starting at `i`, or -1. Containers are matched by depth, not validated. */
function endOfValue(text: string, i: number): number {
  const first = text.charCodeAt(i);
  if (first === QUOTE) return endOfString(text, i);
  if (first === LBRACE || first === LBRACKET) {
    let depth = 0;
    for (let j = i; j < text.length; j++) {
      const c = text.charCodeAt(j);
      if (c === QUOTE) {
        const end = endOfString(text, j);
        if (end < 0) return -1;
        j = end - 1;
      } else if (c === LBRACE || c === LBRACKET) depth++;
      else if (c === RBRACE || c === RBRACKET) {
        if (--depth === 0) return j + 1;
      }
    }
    return -1;
  }
  let j = i;
  for (; j < text.length; j++) {
    const c = text.charCodeAt(j);
    if (c === COMMA || c === RBRACE || c === RBRACKET || c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) break;
  }
  return j > i ? j : -1;
}

/** A JSON string literal's value: the text between the quotes when it has no escapes, else parsed. */
export function stringLiteralValue(literal: string): string {
  return literal.indexOf('\\') === -1 ? literal.slice(1, -1) : (JSON.parse(literal) as string);
}

/**
 * Calls `visit` with each member of the JSON object `text`: its name and the
 * [start, end) span of its value's JSON text, which is not parsed. False when
 * `text` is not an object.
 */
export function forEachMember(text: string, visit: (name: string, start: number, end: number) => void): boolean {
  let i = skipSpace(text, 0);
  if (text.charCodeAt(i) !== LBRACE) return false;
  i = skipSpace(text, i + 1);
  if (text.charCodeAt(i) === RBRACE) return skipSpace(text, i + 1) === text.length;
  for (;;) {
    if (text.charCodeAt(i) !== QUOTE) return false;
    const keyEnd = endOfString(text, i);
    if (keyEnd < 0) return false;
    const name = stringLiteralValue(text.slice(i, keyEnd));
    i = skipSpace(text, keyEnd);
    if (text.charCodeAt(i) !== COLON) return false;
    const start = skipSpace(text, i + 1);
    const end = endOfValue(text, start);
    if (end < 0) return false;
    visit(name, start, end);
    i = skipSpace(text, end);
    const c = text.charCodeAt(i);
    if (c === COMMA) i = skipSpace(text, i + 1);
    else return c === RBRACE && skipSpace(text, i + 1) === text.length;
  }
}
