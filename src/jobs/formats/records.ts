import type { InputRecord } from '../../routing/record-predictor.js';
import { countCsv, readCsv } from './csv.js';
import { countJsonl, readJsonl } from './jsonl.js';
import { countParquet, readParquet } from './parquet.js';
import type { RecordFormat } from './record-format.js';
import type { RowSet } from './row-set.js';

/** A row of the input: its 0-based row number and its record, or why it could not be read. */
export type SourceRow = { readonly row: number; readonly record: InputRecord } | { readonly row: number; readonly error: string };

/**
 * The records of a file, streamed (the file is read only as the consumer
 * pulls; Parquet a row group at a time). Row numbers are stable across runs:
 * JSONL counts non-blank lines, CSV the records after the header, Parquet the
 * rows. Rows in `skip` are not yielded (and, where the format allows, not
 * parsed). A missing file is NOT_FOUND, when iteration starts.
 */
export function readRecords(path: string, format: RecordFormat, opts: { readonly skip?: RowSet } = {}): AsyncIterable<SourceRow> {
  switch (format) {
    case 'jsonl':
      return readJsonl(path, opts.skip);
    case 'csv':
      return readCsv(path, opts.skip);
    case 'parquet':
      return readParquet(path, opts.skip);
  }
}

/** Rows in the file, as readRecords numbers them (Parquet: from the footer; JSONL and CSV: by one streaming pass). */
export function countRecords(path: string, format: RecordFormat): Promise<number> {
  switch (format) {
    case 'jsonl':
      return countJsonl(path);
    case 'csv':
      return countCsv(path);
    case 'parquet':
      return countParquet(path);
  }
}
