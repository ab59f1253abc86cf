import { extname } from 'node:path';
import { invalidArgument } from '../../core/errors.js';

/** The file formats batch jobs read records from and write results to. */
export type RecordFormat = 'jsonl' | 'csv' | 'parquet';

export const RECORD_FORMATS: readonly RecordFormat[] = ['jsonl', 'csv', 'parquet'];

const BY_EXTENSION: ReadonlyMap<string, RecordFormat> = new Map([
  ['.jsonl', 'jsonl'],
  ['.ndjson', 'jsonl'],
  ['.csv', 'csv'],
  ['.parquet', 'parquet'],
]);

/**
 * The format named explicitly (validated) or by the file's extension:
 * .jsonl/.ndjson -> jsonl, .csv -> csv, .parquet -> parquet (case-insensitive).
 */
export function formatOf(path: string, explicit?: string): RecordFormat {
  if (explicit !== undefined) {
    if ((RECORD_FORMATS as readonly string[]).includes(explicit)) return explicit as RecordFormat;
    throw invalidArgument(`unknown record format '${explicit}' for ${path}: expected one of ${RECORD_FORMATS.join(', ')}`);
  }
  const format = BY_EXTENSION.get(extname(path).toLowerCase());
  if (format !== undefined) return format;
  throw invalidArgument(
    `cannot tell the record format of ${path} from its extension: expected ${[...BY_EXTENSION.keys()].join(', ')} (or name the format)`,
  );
}
