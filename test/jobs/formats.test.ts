import { appendFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync } from 'hyparquet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/core/errors.js';
import type { InputRecord } from '../../src/routing/record-predictor.js';
import {
  countRecords,
  formatOf,
  readRecords,
  RECORD_FORMATS,
  RecordSink,
  RowSet,
  writeRecordsFile,
  type OutputRow,
  type RecordFormat,
  type SourceRow,
} from '../../src/jobs/formats/index.js';

let dir: string;
let seq = 0;
const file = (ext: string): string => join(dir, `f${++seq}.${ext}`);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'infergate-formats-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function readAll(path: string, format: RecordFormat, skip?: RowSet): Promise<SourceRow[]> {
  const rows: SourceRow[] = [];
  for await (const r of readRecords(path, format, skip !== undefined ? { skip } : {})) rows.push(r);
  return rows;
}

function records(rows: readonly SourceRow[]): InputRecord[] {
  return rows.map((r) => {
    if ('error' in r) throw new Error(`row ${r.row}: ${r.error}`);
    return r.record;
  });
}

async function gatewayError(p: Promise<unknown> | (() => unknown)): Promise<GatewayError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError);
    return err as GatewayError;
  }
  throw new Error('expected a GatewayError');
}

const out = (row: number, fields: Record<string, unknown>): OutputRow => ({
  row,
  fields: Object.entries(fields).map(([k, v]) => [k, JSON.stringify(v)] as const),
});

/** Records every format carries exactly (CSV turns '' and null into a missing field). */
const SAMPLE: InputRecord[] = [
  { id: 1, name: 'plain', score: 0.25, ok: true, x: [1, 2, 3], big: 2 ** 40 },
  { id: 2, name: 'comma, "quote"\nand newline', score: -1.5e-3, ok: false, x: [0.5, -2], big: 7 },
  { id: 3, name: 'ünïcødé ✓', score: 3, ok: true, x: [], big: -(2 ** 35) },
  { id: 4, score: 10, x: [4] },
];

describe('formatOf', () => {
  it('tells the format from the extension, case-insensitively', () => {
    expect(formatOf('/a/b.jsonl')).toBe('jsonl');
    expect(formatOf('b.NDJSON')).toBe('jsonl');
    expect(formatOf('b.csv')).toBe('csv');
    expect(formatOf('x.y.Parquet')).toBe('parquet');
    expect(RECORD_FORMATS).toEqual(['jsonl', 'csv', 'parquet']);
  });

  it('takes an explicit format over the extension, and validates it', async () => {
    expect(formatOf('data.txt', 'csv')).toBe('csv');
    const err = await gatewayError(() => formatOf('data.csv', 'xlsx'));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toContain('xlsx');
  });

  it('names the path and the accepted extensions when it cannot tell', async () => {
    const err = await gatewayError(() => formatOf('/data/input.json'));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toContain('/data/input.json');
    for (const ext of ['.jsonl', '.ndjson', '.csv', '.parquet']) expect(err.message).toContain(ext);
  });
});

describe('readRecords and countRecords', () => {
  for (const format of ['jsonl', 'csv', 'parquet'] as const) {
    it(`${format}: round trip of values and row numbers`, async () => {
      const path = file(format);
      await writeRecordsFile(path, format, SAMPLE);
      const rows = await readAll(path, format);
      expect(rows.map((r) => r.row)).toEqual([0, 1, 2, 3]);
      expect(records(rows)).toEqual(SAMPLE);
      expect(await countRecords(path, format)).toBe(4);
    });

    it(`${format}: rows in the skip set are not yielded`, async () => {
      const path = file(format);
      await writeRecordsFile(
        path,
        format,
        Array.from({ length: 30 }, (_, i) => ({ i })),
        { rowGroupRows: 10 },
      );
      const skip = new RowSet();
      for (let i = 0; i < 30; i++) if (i < 10 || i % 3 === 0) skip.add(i); // the whole first Parquet row group, and more
      const rows = await readAll(path, format, skip);
      const want = Array.from({ length: 30 }, (_, i) => i).filter((i) => !skip.has(i));
      expect(rows.map((r) => r.row)).toEqual(want);
      expect(records(rows)).toEqual(want.map((i) => ({ i })));
    });

    it(`${format}: a missing file is NOT_FOUND naming it`, async () => {
      const path = join(dir, `missing.${format}`);
      const err = await gatewayError(readAll(path, format));
      expect(err.code).toBe('NOT_FOUND');
      expect(err.message).toContain(path);
      expect((await gatewayError(countRecords(path, format))).code).toBe('NOT_FOUND');
    });
  }

  it('jsonl: a line that is not a JSON object is an error row with its row number; blank lines are not rows', async () => {
    const path = file('jsonl');
    await writeFile(path, '{"a":1}\n\n   \n{"a":2\n[1,2]\n\r\n{"a":3}\n{"a":4}');
    const rows = await readAll(path, 'jsonl');
    expect(rows.map((r) => r.row)).toEqual([0, 1, 2, 3, 4]);
    expect(rows[0]).toEqual({ row: 0, record: { a: 1 } });
    expect(rows[1]).toMatchObject({ row: 1, error: expect.stringContaining('line 4') });
    expect(rows[2]).toMatchObject({ row: 2, error: expect.stringContaining('not a JSON object') });
    expect(rows[3]).toEqual({ row: 3, record: { a: 3 } });
    expect(rows[4]).toEqual({ row: 4, record: { a: 4 } }); // the last line has no '\n'
    expect(await countRecords(path, 'jsonl')).toBe(5);
  });

  it('jsonl: a skipped line is not parsed, so a bad skipped line yields nothing', async () => {
    const path = file('jsonl');
    await writeFile(path, '{"a":1}\nnot json\n{"a":3}\n');
    const skip = new RowSet();
    skip.add(1);
    expect(await readAll(path, 'jsonl', skip)).toEqual([
      { row: 0, record: { a: 1 } },
      { row: 2, record: { a: 3 } },
    ]);
  });

  it('jsonl: counts lines across read chunks and a line longer than a chunk', async () => {
    const path = file('jsonl');
    const long = 'x'.repeat(1_300_000);
    const lines = [JSON.stringify({ s: long }), '', JSON.stringify({ n: 1 }), JSON.stringify({ s: long.slice(0, 700_000) })];
    await writeFile(path, lines.join('\n') + '\n');
    expect(await countRecords(path, 'jsonl')).toBe(3);
    const rows = records(await readAll(path, 'jsonl'));
    expect(rows.map((r) => (typeof r['s'] === 'string' ? r['s'].length : r['n']))).toEqual([1_300_000, 1, 700_000]);
  });

  it('csv: converts cells to values', async () => {
    const path = file('csv');
    const header = 'empty,int,neg,exp,zip,yes,no,list,obj,badjson,huge,text,dash';
    const line = ',42,-7,-1.5e3,007,true,false,"[1,2.5]","{""k"":[1]}",[oops,12345678901234567890,hello world,-';
    await writeFile(path, `${header}\n${line}\n`);
    const [row] = records(await readAll(path, 'csv'));
    expect(row).toEqual({
      int: 42,
      neg: -7,
      exp: -1500,
      zip: '007',
      yes: true,
      no: false,
      list: [1, 2.5],
      obj: { k: [1] },
      badjson: '[oops',
      huge: '12345678901234567890',
      text: 'hello world',
      dash: '-',
    });
    expect(Object.hasOwn(row!, 'empty')).toBe(false);
  });

  it('csv: quoted fields keep commas, quotes and newlines; CRLF records; a wrong column count is an error row', async () => {
    const path = file('csv');
    await writeFile(path, 'a,b\r\n"x, y","say ""hi"""\r\n1,2,3\r\n"multi\nline",\r\n\r\nlast,1\r\n');
    const rows = await readAll(path, 'csv');
    expect(rows.map((r) => r.row)).toEqual([0, 1, 2, 3]);
    expect(rows[0]).toEqual({ row: 0, record: { a: 'x, y', b: 'say "hi"' } });
    expect(rows[1]).toMatchObject({ row: 1, error: expect.stringContaining('3 fields') });
    expect(rows[2]).toEqual({ row: 2, record: { a: 'multi\nline' } });
    expect(rows[3]).toEqual({ row: 3, record: { a: 'last', b: 1 } });
    expect(await countRecords(path, 'csv')).toBe(4);
  });

  it('csv: writeRecordsFile quotes per RFC 4180', async () => {
    const path = file('csv');
    await writeRecordsFile(path, 'csv', [{ 'a,b': 'x"y', c: 'line\nbreak', d: 'plain' }]);
    expect(await readFile(path, 'utf8')).toBe('"a,b",c,d\n"x""y","line\nbreak",plain\n');
  });

  it('parquet: Dates become ISO strings, unsafe BigInts stay BigInts, bytes stay bytes, nulls are left out', async () => {
    const path = file('parquet');
    const when = new Date('2024-05-06T07:08:09.010Z');
    await writeRecordsFile(path, 'parquet', [
      { when, n: 2n ** 62n, b: new Uint8Array([1, 2, 255]), s: 'a' },
      { when, n: 5n, b: new Uint8Array([]), s: null },
    ]);
    const rows = records(await readAll(path, 'parquet'));
    expect(rows[0]).toEqual({ when: when.toISOString(), n: 2n ** 62n, b: new Uint8Array([1, 2, 255]), s: 'a' });
    expect(rows[1]).toEqual({ when: when.toISOString(), n: 5, b: new Uint8Array([]) });
    expect(typeof rows[1]!['n']).toBe('number');
  });

  it('parquet: 50,000 rows stream a row group at a time, and reading stops when the consumer does', async () => {
    const path = file('parquet');
    const n = 50_000;
    await writeRecordsFile(
      path,
      'parquet',
      Array.from({ length: n }, (_, i) => ({ i, half: i / 2, label: `r${i}`, v: [i, i + 1] })),
      { rowGroupRows: 8_192 },
    );
    expect(await countRecords(path, 'parquet')).toBe(n);
    const meta = await parquetMetadataAsync(await asyncBufferFromFile(path));
    expect(meta.row_groups.length).toBe(Math.ceil(n / 8_192));

    let count = 0;
    let sum = 0;
    let last: SourceRow | undefined;
    for await (const r of readRecords(path, 'parquet')) {
      if ('error' in r) throw new Error(r.error);
      expect(r.record['i']).toBe(r.row);
      sum += r.record['i'] as number;
      count++;
      last = r;
    }
    expect(count).toBe(n);
    expect(sum).toBe((n * (n - 1)) / 2);
    expect(last).toEqual({ row: n - 1, record: { i: n - 1, half: (n - 1) / 2, label: `r${n - 1}`, v: [n - 1, n] } });

    const first: SourceRow[] = [];
    for await (const r of readRecords(path, 'parquet')) {
      first.push(r);
      if (first.length === 3) break;
    }
    expect(first.map((r) => r.row)).toEqual([0, 1, 2]);
  });

  for (const format of ['jsonl', 'csv'] as const) {
    it(`${format}: reading advances only as the consumer pulls`, async () => {
      // 40,000 rows of ~110 bytes (4.4 MB). After the first row is pulled the file is rewritten in place with
      // other values: rows the reader had not read yet must show the new values.
      const path = file(format);
      const n = 40_000;
      const make = (tag: string) => Array.from({ length: n }, (_, i) => ({ i, tag: tag.repeat(100) }));
      await writeRecordsFile(path, format, make('a'));
      const it = readRecords(path, format)[Symbol.asyncIterator]();
      const first = await it.next();
      expect(first.value).toEqual({ row: 0, record: { i: 0, tag: 'a'.repeat(100) } });
      await writeRecordsFile(path, format, make('b')); // same length, truncated and rewritten under the open reader
      let old = 1;
      let rows = 1;
      for (let r = await it.next(); r.done !== true; r = await it.next()) {
        rows++;
        if ('record' in r.value && r.value.record['tag'] === 'a'.repeat(100)) old++;
      }
      expect(rows).toBe(n);
      expect(old).toBeLessThan(n / 4); // at most about a megabyte was read ahead
    });
  }
});

describe('RowSet', () => {
  it('holds 100k rows exactly, growing as needed', () => {
    const set = new RowSet();
    for (let i = 0; i < 100_000; i += 3) set.add(i);
    set.add(99_998);
    set.add(99_998); // twice: counted once
    set.add(99_999); // already there
    expect(set.size).toBe(Math.ceil(100_000 / 3) + 1);
    const wrong = Array.from({ length: 100_000 }, (_, i) => i).filter((i) => set.has(i) !== (i % 3 === 0 || i === 99_998));
    expect(wrong).toEqual([]);
    expect(set.has(100_000)).toBe(false);
    expect(set.has(5_000_000)).toBe(false);
    set.add(5_000_000);
    expect(set.has(5_000_000)).toBe(true);
    expect(set.has(-1)).toBe(false);
    expect(set.has(1.5)).toBe(false);
    expect(() => set.add(-1)).toThrow(RangeError);
    expect(() => set.add(0.5)).toThrow(RangeError);
  });
});

describe('RecordSink', () => {
  it('jsonl: appends lines built from the JSON texts; reopening finds the rows done', async () => {
    const path = file('jsonl');
    const sink = await RecordSink.open(path, 'jsonl');
    expect(sink.done.size).toBe(0);
    await sink.append([
      { row: 3, fields: [['y', '[1,2]'], ['label', '"a\\"b"']] },
      { row: 0, fields: [] },
    ]);
    expect(sink.done.has(3) && sink.done.has(0)).toBe(true);
    await sink.finish();
    expect(await readFile(path, 'utf8')).toBe('{"row":3,"y":[1,2],"label":"a\\"b"}\n{"row":0}\n');

    const again = await RecordSink.open(path, 'jsonl');
    expect([again.done.size, again.done.has(0), again.done.has(3), again.done.has(1)]).toEqual([2, true, true, false]);
    await again.close();
  });

  it('jsonl: a torn last line is cut off at reopen and its row is not done', async () => {
    const path = file('jsonl');
    const sink = await RecordSink.open(path, 'jsonl');
    await sink.append([out(0, { y: 1 }), out(1, { y: 2 })]);
    await sink.close();
    await appendFile(path, '{"row":2,"y":[1,2,');
    const again = await RecordSink.open(path, 'jsonl');
    expect([again.done.has(0), again.done.has(1), again.done.has(2)]).toEqual([true, true, false]);
    await again.append([out(2, { y: 3 })]);
    await again.finish();
    expect(await readFile(path, 'utf8')).toBe('{"row":0,"y":1}\n{"row":1,"y":2}\n{"row":2,"y":3}\n');
  });

  it('jsonl: a file holding only a torn line is emptied', async () => {
    const path = file('jsonl');
    await writeFile(path, '{"row":7,"y"');
    const sink = await RecordSink.open(path, 'jsonl');
    expect(sink.done.size).toBe(0);
    await sink.close();
    expect(await readFile(path, 'utf8')).toBe('');
  });

  it('jsonl: a damaged line in the middle is DATA_LOSS, not silently redone', async () => {
    const path = file('jsonl');
    await writeFile(path, '{"row":0}\ngarbage\n{"row":2}\n');
    expect((await gatewayError(RecordSink.open(path, 'jsonl'))).code).toBe('DATA_LOSS');
  });

  it('concurrent appends never interleave', async () => {
    const path = file('jsonl');
    const sink = await RecordSink.open(path, 'jsonl');
    const pad = JSON.stringify('z'.repeat(5_000));
    await Promise.all(
      Array.from({ length: 40 }, (_, b) => sink.append(Array.from({ length: 25 }, (_, k) => ({ row: b * 25 + k, fields: [['pad', pad]] as const })))),
    );
    await sink.finish();
    const lines = (await readFile(path, 'utf8')).split('\n');
    expect(lines.pop()).toBe('');
    const rows = lines.map((l) => (JSON.parse(l) as { row: number }).row);
    expect(rows.length).toBe(1000);
    // each append's rows are contiguous
    for (let i = 0; i < rows.length; i += 25) {
      const batch = rows.slice(i, i + 25);
      expect(batch).toEqual(Array.from({ length: 25 }, (_, k) => batch[0]! + k));
    }
    expect(new Set(rows).size).toBe(1000);
  });

  it('refuses a field named row, a value that is not one-line JSON, and appends after close', async () => {
    const path = file('jsonl');
    const sink = await RecordSink.open(path, 'jsonl');
    expect((await gatewayError(sink.append([{ row: 1, fields: [['row', '5']] }]))).code).toBe('INVALID_ARGUMENT');
    expect((await gatewayError(sink.append([{ row: 1, fields: [['y', '{\n}']] }]))).code).toBe('INVALID_ARGUMENT');
    expect((await gatewayError(sink.append([{ row: -1, fields: [] }]))).code).toBe('INVALID_ARGUMENT');
    expect(sink.done.size).toBe(0);
    await sink.close();
    expect((await gatewayError(sink.append([out(1, {})]))).code).toBe('FAILED_PRECONDITION');
    expect(await readFile(path, 'utf8')).toBe('');
  });

  it('a missing directory is NOT_FOUND (no directories are created)', async () => {
    for (const format of RECORD_FORMATS) {
      const path = join(dir, 'no-such-dir', `out.${format}`);
      const err = await gatewayError(RecordSink.open(path, format));
      expect(err.code).toBe('NOT_FOUND');
      expect(err.message).toContain(join(dir, 'no-such-dir'));
    }
  });

  it('csv: header from the first row; cells from JSON texts, quoted per RFC 4180; header kept on reopen', async () => {
    const path = file('csv');
    const sink = await RecordSink.open(path, 'csv');
    await sink.append([
      out(1, { id: 'a,1', label: 'say "hi"', scores: [0.5, 1], ok: true, note: null }),
      out(0, { id: 'b', label: 'two\nlines', scores: { k: 'v, w' } }),
    ]);
    await sink.close();
    expect(await readFile(path, 'utf8')).toBe(
      'row,id,label,scores,ok,note\n' + '1,"a,1","say ""hi""","[0.5,1]",true,\n' + '0,b,"two\nlines","{""k"":""v, w""}",,\n',
    );

    const again = await RecordSink.open(path, 'csv');
    expect([again.done.size, again.done.has(0), again.done.has(1)]).toEqual([2, true, true]);
    await again.append([out(2, { note: 'late', id: 'c' })]); // another order, fewer fields
    const err = await gatewayError(again.append([out(3, { id: 'd', extra: 1 })]));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toContain('extra');
    expect(again.done.has(3)).toBe(false);
    await again.finish();

    const rows = await readAll(path, 'csv');
    expect(records(rows)).toEqual([
      { row: 1, id: 'a,1', label: 'say "hi"', scores: [0.5, 1], ok: true },
      { row: 0, id: 'b', label: 'two\nlines', scores: { k: 'v, w' } },
      { row: 2, id: 'c', note: 'late' },
    ]);
  });

  it('csv: a record torn inside a quoted field with a newline is cut off at reopen', async () => {
    const path = file('csv');
    const sink = await RecordSink.open(path, 'csv');
    await sink.append([out(0, { text: 'a' })]);
    await sink.close();
    await appendFile(path, '1,"first line\nsecond'); // ends in '\n'-free text, but has a newline inside the quotes
    const again = await RecordSink.open(path, 'csv');
    expect([again.done.has(0), again.done.has(1)]).toEqual([true, false]);
    await again.append([out(1, { text: 'b' })]);
    await again.close();
    expect(await readFile(path, 'utf8')).toBe('row,text\n0,a\n1,b\n');
  });

  it('csv: field names needing quotes are quoted in the header and found again at reopen', async () => {
    const path = file('csv');
    const sink = await RecordSink.open(path, 'csv');
    await sink.append([out(0, { 'a,b': 1, 'say "x"': 'y' })]);
    await sink.close();
    expect(await readFile(path, 'utf8')).toBe('row,"a,b","say ""x"""\n0,1,y\n');
    const again = await RecordSink.open(path, 'csv');
    await again.append([out(1, { 'say "x"': 'z', 'a,b': 2 })]);
    await again.finish();
    expect(records(await readAll(path, 'csv'))).toEqual([
      { row: 0, 'a,b': 1, 'say "x"': 'y' },
      { row: 1, 'a,b': 2, 'say "x"': 'z' },
    ]);
  });

  it('csv: a torn header is cut off and written again by the first append', async () => {
    const path = file('csv');
    await writeFile(path, 'row,te');
    const sink = await RecordSink.open(path, 'csv');
    expect(sink.done.size).toBe(0);
    await sink.append([out(4, { text: 'x' })]);
    await sink.close();
    expect(await readFile(path, 'utf8')).toBe('row,text\n4,x\n');
  });

  it('parquet: rows staged as JSONL, then finish() writes a typed Parquet file sorted by row', async () => {
    const path = file('parquet');
    const staging = `${path}.partial.jsonl`;
    const sink = await RecordSink.open(path, 'parquet');
    await sink.append([
      out(5, { n: 5, d: 0.5, s: 'five', b: true, list: [1, 2], mixed: 1 }),
      out(2, { n: 2, d: 2, s: 'two', b: false, list: [], mixed: 'x' }),
    ]);
    await sink.close(); // a kill: the staging file stays
    await appendFile(staging, '{"row":9,"n":');
    const again = await RecordSink.open(path, 'parquet');
    expect([again.done.has(2), again.done.has(5), again.done.has(9)]).toEqual([true, true, false]);
    await again.append([out(0, { n: 2 ** 40, s: 'zero', id: 'only-here' }), out(9, { n: -1, d: 1e300, mixed: null })]);
    await again.finish();

    expect((await readdir(dir)).filter((f) => f.startsWith(path.slice(dir.length + 1)))).toEqual([path.slice(dir.length + 1)]);
    const meta = await parquetMetadataAsync(await asyncBufferFromFile(path));
    const types = Object.fromEntries(meta.schema.slice(1).map((e) => [e.name, e.type]));
    expect(types).toEqual({ row: 'INT64', n: 'INT64', d: 'DOUBLE', s: 'BYTE_ARRAY', b: 'BOOLEAN', list: 'BYTE_ARRAY', mixed: 'BYTE_ARRAY', id: 'BYTE_ARRAY' });

    const rows = await readAll(path, 'parquet');
    expect(rows.map((r) => r.row)).toEqual([0, 1, 2, 3]);
    expect(records(rows)).toEqual([
      { row: 0, n: 2 ** 40, s: 'zero', id: 'only-here' },
      { row: 2, n: 2, d: 2, s: 'two', b: false, list: '[]', mixed: '"x"' },
      { row: 5, n: 5, d: 0.5, s: 'five', b: true, list: '[1,2]', mixed: '1' },
      { row: 9, n: -1, d: 1e300 },
    ]);
  });

  it('parquet: a finished result opened again counts its rows as done, and finishing again keeps them', async () => {
    const path = file('parquet');
    const sink = await RecordSink.open(path, 'parquet');
    await sink.append([out(1, { y: [1, 2] }), out(0, { y: 'a' })]);
    await sink.finish();
    const again = await RecordSink.open(path, 'parquet');
    expect([again.done.size, again.done.has(0), again.done.has(1)]).toEqual([2, true, true]);
    await again.append([out(2, { y: 3 })]);
    await again.finish();
    expect(records(await readAll(path, 'parquet'))).toEqual([
      { row: 0, y: '"a"' },
      { row: 1, y: '[1,2]' },
      { row: 2, y: '3' },
    ]);
  });

  it('parquet: finishing with no rows writes an empty file', async () => {
    const path = file('parquet');
    const sink = await RecordSink.open(path, 'parquet');
    await sink.finish();
    expect(await countRecords(path, 'parquet')).toBe(0);
    expect(await readAll(path, 'parquet')).toEqual([]);
  });

  it('parquet: many rows out of order are sorted across row groups', async () => {
    const path = file('parquet');
    const sink = await RecordSink.open(path, 'parquet');
    const n = 30_000;
    const order = Array.from({ length: n }, (_, i) => (i * 7_919) % n); // a permutation
    for (let i = 0; i < n; i += 1_000) await sink.append(order.slice(i, i + 1_000).map((r) => out(r, { v: r * 2, t: `t${r}` })));
    await sink.finish();
    let expected = 0;
    for await (const r of readRecords(path, 'parquet')) {
      expect(r).toEqual({ row: expected, record: { row: expected, v: expected * 2, t: `t${expected}` } });
      expected++;
    }
    expect(expected).toBe(n);
  });
});
