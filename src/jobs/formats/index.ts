/**
 * Record files for batch jobs (JSONL, CSV, Parquet): streaming input rows with
 * stable row numbers, and resumable result files.
 */
export { formatOf, RECORD_FORMATS, type RecordFormat } from './record-format.js';
export { countRecords, readRecords, type SourceRow } from './records.js';
export { RowSet } from './row-set.js';
export { RecordSink, type OutputRow } from './sink.js';
export { writeRecordsFile, type WriteRecordsOptions } from './write-records.js';
