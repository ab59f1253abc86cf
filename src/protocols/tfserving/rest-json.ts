import { isUtf8 } from 'node:buffer';
import type { DataType } from '../../core/datatypes.js';
import { invalidArgument } from '../../core/errors.js';
import { decodeElements, encodeElements } from '../../core/tensor-values.js';
import { elementCount, splitBytesElements, type Tensor } from '../../core/tensor.js';
import { parseJsonExact } from '../v2/json-exact.js';

/**
 * Tensor values in TF Serving's JSON (util/json_tensor.cc): nested lists
 * whose nesting is the shape, no datatypes (the signature has them), binary
 * strings as {"b64": "..."}, and non-strict numbers: bare NaN, Infinity and
 * -Infinity both ways, 64-bit integers as exact literals.
 *
 * Floats are written as TF writes them: float32 (and FP16/BF16, which TF
 * widens to float32) in the shortest decimal that reads back as the same
 * float32, float64 in the shortest one for the double. Either way the value
 * reads back bit-exact.
 */

export type JsonValue = unknown;

/** TF's JSON: 64-bit integers beyond 2^53 come back as bigints, NaN/Infinity as numbers. */
export function parseTfJson(body: Buffer, what: string): JsonValue {
  try {
    return parseJsonExact(body.toString('utf8'), { nonFinite: true }).value;
  } catch (err) {
    throw invalidArgument(`${what} is not valid JSON: ${(err as Error).message}`, err);
  }
}

export function isJsonObject(v: unknown): v is Readonly<Record<string, unknown>> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** {"b64": "..."}: a binary string, not an object of named tensors. */
export function isB64(v: unknown): v is { readonly b64: string } {
  return isJsonObject(v) && typeof v.b64 === 'string' && Object.keys(v).length === 1;
}

// ---- writing ------------------------------------------------------------------

/** The tensor's values as JSON nested per its shape (a bare value for a scalar). `b64` writes every BYTES element as {"b64"}. */
export function tensorJson(t: Tensor, b64: boolean): string {
  return nest(elementTexts(t, b64), t.shape, 0, 0);
}

/** The tensor split along dimension 0: one JSON text per row. The caller checks the rank is at least 1. */
export function tensorRowsJson(t: Tensor, b64: boolean): string[] {
  const texts = elementTexts(t, b64);
  const [rows = 0, ...rowShape] = t.shape;
  const stride = elementCount(rowShape);
  return Array.from({ length: rows }, (_, r) => nest(texts, rowShape, 0, r * stride));
}

function nest(texts: readonly string[], shape: readonly number[], dim: number, offset: number): string {
  if (dim === shape.length) return texts[offset] ?? 'null';
  const size = shape[dim]!;
  const stride = elementCount(shape.slice(dim + 1));
  let s = '[';
  for (let i = 0; i < size; i++) {
    if (i > 0) s += ',';
    s += nest(texts, shape, dim + 1, offset + i * stride);
  }
  return s + ']';
}

function elementTexts(t: Tensor, b64: boolean): string[] {
  switch (t.datatype) {
    case 'BYTES':
      // JSON strings hold text: bytes that are not UTF-8 would be mangled, so they go as b64 too.
      return splitBytesElements(t.data).map((e) =>
        b64 || !isUtf8(e) ? `{"b64":"${e.toString('base64')}"}` : JSON.stringify(e.toString('utf8')),
      );
    case 'FP16':
    case 'BF16':
    case 'FP32':
      return (decodeElements(t.datatype, t.data) as number[]).map(float32Text);
    case 'FP64':
      return (decodeElements(t.datatype, t.data) as number[]).map(float64Text);
    default:
      // Booleans, and integers (bigints for 64 bits): String() is exact.
      return decodeElements(t.datatype, t.data).map(String);
  }
}

function nonFiniteText(v: number): string | undefined {
  if (v !== v) return 'NaN';
  if (v === Number.POSITIVE_INFINITY) return 'Infinity';
  if (v === Number.NEGATIVE_INFINITY) return '-Infinity';
  if (v === 0) return 1 / v < 0 ? '-0' : '0';
  return undefined;
}

export function float64Text(v: number): string {
  return nonFiniteText(v) ?? '' + v;
}

/**
 * The shortest decimal that reads back as float32 `v`: 0.1 rather than
 * 0.10000000149011612. Nine significant digits always suffice; the fewest
 * is found by bisection (four toPrecision calls rather than up to nine).
 */
export function float32Text(v: number): string {
  const special = nonFiniteText(v);
  if (special !== undefined) return special;
  let lo = 1;
  let hi = 9;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (Math.fround(Number(v.toPrecision(mid))) === v) hi = mid;
    else lo = mid + 1;
  }
  return '' + Number(v.toPrecision(lo));
}

// ---- reading ------------------------------------------------------------------

/** Deeper nesting is refused rather than walked. */
const MAX_DEPTH = 64;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** A tensor from nested JSON lists: the nesting is the shape and must be rectangular. `what` names it in errors. */
export function tensorFromJson(name: string, value: JsonValue, datatype: DataType, what: string): Tensor {
  const shape = shapeOf(value);
  const leaves: unknown[] = [];
  collect(value, shape, 0, leaves, what);
  return { name, datatype, shape, data: encodeElements(datatype, leaves.map((v, i) => leafValue(v, datatype, i, what)), what) };
}

/** The shape the first element at each depth suggests; collect() checks every other element against it. */
function shapeOf(value: JsonValue): number[] {
  const shape: number[] = [];
  let v = value;
  while (Array.isArray(v)) {
    shape.push(v.length);
    if (shape.length > MAX_DEPTH) break;
    v = v[0];
  }
  return shape;
}

function collect(v: JsonValue, shape: readonly number[], depth: number, out: unknown[], what: string): void {
  if (depth > MAX_DEPTH) throw invalidArgument(`${what}: the lists are nested more than ${MAX_DEPTH} deep`);
  if (depth === shape.length) {
    if (Array.isArray(v)) throw notRectangular(shape, what);
    out.push(v);
    return;
  }
  if (!Array.isArray(v) || v.length !== shape[depth]) throw notRectangular(shape, what);
  for (const x of v) collect(x, shape, depth + 1, out, what);
}

function notRectangular(shape: readonly number[], what: string) {
  return invalidArgument(
    `${what}: the nested lists are not rectangular (the first elements suggest shape [${shape.join(',')}]); ` +
      'every list at one depth must have the same length',
  );
}

/** JSON leaves to what encodeElements takes: b64 and strings as bytes for BYTES, big integer literals as numbers for floats. */
function leafValue(v: unknown, datatype: DataType, i: number, what: string): unknown {
  if (datatype === 'BYTES') {
    if (typeof v === 'string') return v;
    if (isB64(v)) {
      if (v.b64.length % 4 !== 0 || !BASE64.test(v.b64)) throw invalidArgument(`${what}: element ${i} is not valid base64`);
      return Buffer.from(v.b64, 'base64');
    }
    throw invalidArgument(`${what}: element ${i} is ${shown(v)}, expected a string or {"b64": "..."}`);
  }
  if (isJsonObject(v)) throw invalidArgument(`${what}: element ${i} is ${shown(v)}, expected ${expected(datatype)}`);
  if (typeof v === 'bigint' && (datatype === 'FP16' || datatype === 'BF16' || datatype === 'FP32' || datatype === 'FP64')) {
    return Number(v);
  }
  // TF reads strings only for DT_STRING; a quoted "NaN" is no number here (encodeElements would take it).
  if (typeof v === 'string') throw invalidArgument(`${what}: element ${i} is ${shown(v)}, expected ${expected(datatype)}`);
  return v;
}

function expected(datatype: DataType): string {
  if (datatype === 'BOOL') return 'true or false';
  return `a number (${datatype})`;
}

function shown(v: unknown): string {
  if (isJsonObject(v)) return 'an object';
  if (v === null) return 'null';
  const text = typeof v === 'string' ? JSON.stringify(v) : String(v);
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}
