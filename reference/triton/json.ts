// Triton's JSON: strict JSON, but INT64/UINT64 numbers read and written exactly (see common/json.ts).
// Non-finite numbers are written as null, as JSON.stringify does.
import * as json from '../common/json.js';

export type { JsonObject, JsonValue } from '../common/json.js';

const TRITON: json.JsonDialect = {
  nonFinite: false,
  messages: {
    unexpectedToken: 'unexpected token',
    trailingData: 'unexpected data after JSON value',
    missingName: 'expected a property name',
    missingColon: "expected ':'",
    objectSeparator: "expected ',' or '}'",
    arraySeparator: "expected ',' or ']'",
    unterminatedString: 'unterminated string',
    invalidString: 'invalid string', // unused: without `native`, JSON.parse's own error for a bad escape is thrown
    malformedNumber: 'malformed number',
  },
  format: (message, pos) => `${message} at position ${pos}`,
};

/** Parses JSON; integer literals beyond Number.MAX_SAFE_INTEGER become bigints. */
export function parseJson(text: string): json.JsonValue {
  return json.parseJson(text, TRITON);
}

/** JSON.stringify that writes bigints as exact integer literals; non-finite numbers become null. */
export function stringifyJson(value: unknown): string {
  return json.stringifyJson(value);
}
