// TF Serving's JSON dialect. It is not strict JSON: bare NaN, Infinity and -Infinity are read and written
// (rapidjson's kParseNanAndInfFlag / kWriteNanAndInfFlag), and 64-bit integers must round-trip exactly, which
// JSON.parse and a double cannot do (2^53 + 1 would silently become 2^53). The parser and writer are shared
// (common/json.ts); TF's wording of errors and its signed zero are set here.
import * as json from '../common/json.js';

export type { JsonObject, JsonValue } from '../common/json.js';

// rapidjson's messages, so errors read like TF's: "JSON Parse error: <what> at offset: <n>".
const TF_SERVING: json.JsonDialect = {
  nonFinite: true,
  messages: {
    unexpectedToken: 'Invalid value.',
    trailingData: 'The document root must not be followed by other values.',
    missingName: 'Missing a name for object member.',
    missingColon: 'Missing a colon after a name of object member.',
    objectSeparator: 'Missing a comma or \'}\' after an object member.',
    arraySeparator: 'Missing a comma or \']\' after an array element.',
    unterminatedString: 'Missing a closing quotation mark in string.',
    invalidString: 'Invalid string.',
    malformedNumber: 'Invalid value.',
  },
  format: (message, pos) => `JSON Parse error: ${message} at offset: ${pos}`,
  native: (message) => `JSON Parse error: ${message}`,
};

/** Parses TF Serving's JSON; integer literals beyond Number.MAX_SAFE_INTEGER become bigints. */
export function parseJson(text: string): json.JsonValue {
  return json.parseJson(text, TF_SERVING);
}

export type StringifyOptions = Pick<json.StringifyOptions, 'indent' | 'singleLineArrays'>;

/**
 * Writes TF Serving's JSON: bigints as exact integer literals, non-finite numbers as bare NaN/Infinity/-Infinity,
 * -0 with its sign (as TF does), undefined object members left out.
 */
export function stringifyJson(value: unknown, options: StringifyOptions = {}): string {
  return json.stringifyJson(value, { ...options, nonFinite: true, signedZero: true });
}
