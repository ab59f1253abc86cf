import { parseDataType, type DataType } from '../../core/datatypes.js';
import { GatewayError } from '../../core/errors.js';
import { joinBytesElements, type Tensor } from '../../core/tensor.js';
import { encodeElements } from '../../core/tensor-values.js';
import { parseJsonExact } from '../v2/json-exact.js';

/**
 * A TorchServe answer read as JSON and typed into tensors. TorchServe has no
 * tensor metadata, so the types come from the JSON itself:
 *
 * - an object gives one tensor per key; anything else (a list, a scalar) one
 *   tensor named `outputName`;
 * - a rectangular array (or a scalar) of numbers is typed by how its numbers are
 *   written: INT64 when every one is an integer literal, FP32 as soon as one has
 *   a fraction or an exponent (so Python's [1.0, 2.0] stays float); all booleans
 *   give BOOL; all strings give BYTES; its nesting gives the shape;
 * - `outputTypes[name]` overrides the datatype (FP64 for doubles, INT32 ...);
 * - anything else (nested objects, null, ragged or mixed lists) becomes one
 *   BYTES element holding that value's JSON text exactly as it was written,
 *   with parameter content_type application/json.
 */

export interface AnswerTyping {
  readonly outputName: string;
  /** Output name -> datatype name (validated by the config schema). */
  readonly outputTypes: Readonly<Record<string, string>>;
}

/** JSON text inside a BYTES tensor is marked so, so it can be embedded back as JSON. */
export const JSON_TEXT_PARAMETERS = { content_type: 'application/json' } as const;

/** Deeper than this, a list is kept as JSON text rather than walked. */
const MAX_DEPTH = 64;
/** The first non-space byte of any JSON text, including Python's bare NaN / Infinity / -Infinity. */
const JSON_START = new Set([...'{["-0123456789tfnNI'].map((c) => c.charCodeAt(0)));
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** The tensors of a JSON answer, or undefined when the body is not JSON (an image, plain text ...). */
export function jsonAnswerTensors(body: Buffer, typing: AnswerTyping): Tensor[] | undefined {
  const text = jsonText(body);
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    // Exact 64-bit integers, and the bare NaN / Infinity Python's json.dumps writes.
    value = parseJsonExact(text, { nonFinite: true }).value;
  } catch {
    return undefined;
  }
  if (!isPlainObject(value)) return [valueTensor(typing.outputName, value, text, typing)];
  const sources = topLevelValueTexts(text);
  return Object.keys(value).map((key) => valueTensor(key, value[key], sources.get(key) ?? '', typing));
}

/** The body as text when it may be JSON: cheap refusal for binary bodies, and never a lossy UTF-8 decode. */
function jsonText(body: Buffer): string | undefined {
  let i = 0;
  while (i < body.length && (body[i] === 0x20 || body[i] === 0x0a || body[i] === 0x0d || body[i] === 0x09)) i++;
  if (i === body.length || !JSON_START.has(body[i]!)) return undefined;
  try {
    return UTF8.decode(body);
  } catch {
    return undefined;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

type Leaf = number | bigint | boolean | string;

/** One JSON value as a tensor; `source` is the value's own JSON text (for float literals and JSON-text outputs). */
function valueTensor(name: string, value: unknown, source: string, typing: AnswerTyping): Tensor {
  const forced = forcedType(name, typing);
  const grid = Array.isArray(value) ? rectangular(value) : isLeaf(value) ? { shape: [], leaves: [value] } : undefined;
  const kind = grid === undefined ? 'mixed' : leafKind(grid.leaves, source);
  if (grid === undefined || kind === 'mixed') {
    if (forced !== undefined && forced !== 'BYTES') {
      throw answerError(name, `is ${describe(value)}, which cannot be read as ${forced} (output_types)`);
    }
    const json = Buffer.from(source.trim(), 'utf8');
    return { name, datatype: 'BYTES', shape: [1], data: joinBytesElements([json]), parameters: JSON_TEXT_PARAMETERS };
  }
  const datatype = forced ?? DEFAULT_TYPE[kind];
  const values = datatype === 'BYTES' ? grid.leaves.map(leafText) : grid.leaves.map((v) => numericLeaf(v, datatype));
  try {
    return { name, datatype, shape: grid.shape, data: encodeElements(datatype, values, `output '${name}'`) };
  } catch (err) {
    throw answerError(name, `cannot be read as ${datatype}: ${(err as Error).message}`, err);
  }
}

type LeafKind = 'int' | 'float' | 'bool' | 'string' | 'empty' | 'mixed';

/** Out-of-range integer literals (beyond int64) are read as floats. */
const DEFAULT_TYPE: Readonly<Record<Exclude<LeafKind, 'mixed'>, DataType>> = {
  int: 'INT64',
  float: 'FP32',
  bool: 'BOOL',
  string: 'BYTES',
  empty: 'FP32',
};

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function leafKind(leaves: readonly Leaf[], source: string): LeafKind {
  if (leaves.length === 0) return 'empty';
  const first = typeof leaves[0];
  if (first === 'boolean' || first === 'string') {
    return leaves.every((v) => typeof v === first) ? (first === 'boolean' ? 'bool' : 'string') : 'mixed';
  }
  let integral = true;
  for (const v of leaves) {
    if (typeof v === 'number') integral &&= Number.isSafeInteger(v);
    else if (typeof v === 'bigint') integral &&= v >= INT64_MIN && v <= INT64_MAX;
    else return 'mixed';
  }
  // A value of numbers only: its text holds nothing but digits, signs, brackets,
  // commas and the words NaN / Infinity, so '.', 'e' or 'E' can only come from
  // a float literal.
  return integral && !/[.eE]/.test(source) ? 'int' : 'float';
}

function forcedType(name: string, typing: AnswerTyping): DataType | undefined {
  const given = typing.outputTypes[name];
  if (given === undefined) return undefined;
  const type = parseDataType(given);
  if (type === undefined) throw answerError(name, `has an unknown datatype '${given}' in output_types`);
  return type;
}

/** Leaves as encodeElements takes them for `datatype`: floats from bigints, small integers from bigints. */
function numericLeaf(v: Leaf, datatype: DataType): unknown {
  if (typeof v !== 'bigint') return v;
  return datatype === 'INT64' || datatype === 'UINT64' ? v : Number(v);
}

/** A BYTES element of a leaf: a string as its text, anything else as its JSON. */
function leafText(v: Leaf): string {
  return typeof v === 'string' ? v : '' + v;
}

function isLeaf(v: unknown): v is Leaf {
  const t = typeof v;
  return t === 'number' || t === 'bigint' || t === 'boolean' || t === 'string';
}

/** Shape and row-major leaves of a rectangular nested array; undefined when ragged or holding objects/null. */
function rectangular(value: unknown[]): { shape: number[]; leaves: Leaf[] } | undefined {
  const shape: number[] = [];
  for (let v: unknown = value; Array.isArray(v); v = v[0]) {
    shape.push(v.length);
    if (shape.length > MAX_DEPTH) return undefined;
  }
  const leaves: Leaf[] = [];
  const walk = (v: unknown, depth: number): boolean => {
    if (depth === shape.length) {
      if (!isLeaf(v)) return false;
      leaves.push(v);
      return true;
    }
    if (!Array.isArray(v) || v.length !== shape[depth]) return false;
    for (const x of v) if (!walk(x, depth + 1)) return false;
    return true;
  };
  return walk(value, 0) ? { shape, leaves } : undefined;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a ragged or mixed list';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/** The answer does not fit the configured typing: the backend's (or the config's) fault, not the client's. */
function answerError(name: string, problem: string, cause?: unknown): GatewayError {
  return new GatewayError('INTERNAL', `TorchServe answer: output '${name}' ${problem}`, { cause });
}

/**
 * The JSON text of each value of a (valid) top-level JSON object, by key; the
 * last one wins for a repeated key, as in JSON.parse.
 */
export function topLevelValueTexts(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = skipSpace(text, text.indexOf('{') + 1);
  while (i < text.length && text[i] !== '}') {
    const keyEnd = skipString(text, i);
    const key = JSON.parse(text.slice(i, keyEnd)) as string;
    const start = skipSpace(text, skipSpace(text, keyEnd) + 1); // past ':'
    const end = skipValue(text, start);
    out.set(key, text.slice(start, end));
    i = skipSpace(text, end);
    if (text[i] === ',') i = skipSpace(text, i + 1);
  }
  return out;
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && (text[i] === ' ' || text[i] === '\n' || text[i] === '\r' || text[i] === '\t')) i++;
  return i;
}

/** Index just past the string starting at `i` (a '"'). */
function skipString(text: string, i: number): number {
  for (let j = i + 1; j < text.length; j++) {
    if (text[j] === '\\') j++;
    else if (text[j] === '"') return j + 1;
  }
  return text.length;
}

/** Index just past the value starting at `i`. */
function skipValue(text: string, i: number): number {
  const c = text[i];
  if (c === '"') return skipString(text, i);
  if (c !== '[' && c !== '{') {
    let j = i;
    while (j < text.length && !',}] \n\r\t'.includes(text[j]!)) j++;
    return j;
  }
  let depth = 0;
  for (let j = i; j < text.length; j++) {
    const d = text[j];
    if (d === '"') j = skipString(text, j) - 1;
    else if (d === '[' || d === '{') depth++;
    else if ((d === ']' || d === '}') && --depth === 0) return j + 1;
  }
  return text.length;
}
