import { invalidArgument } from '../../core/errors.js';
import type { Tensor } from '../../core/tensor.js';
import { decodeElements, type ElementValue } from '../../core/tensor-values.js';

/**
 * JSON text of tensors as a TorchServe handler (Python) reads and writes it:
 * values nested by the tensor's shape (a scalar, shape [], is the bare value).
 *
 * Wire choices:
 * - Floats are the shortest decimal of their exact double (bit-exact back), and
 *   NaN / Infinity / -Infinity are the bare words Python's json module writes
 *   and reads (json.loads accepts them; JSON.parse would not).
 * - 64-bit integers are exact integer literals, never rounded through a double
 *   (Python's ints are exact).
 * - BYTES elements are UTF-8 strings. A BYTES tensor whose `content_type`
 *   parameter is application/json holds JSON text and is embedded as that JSON
 *   value, not as a string (that is how a nested JSON answer travels back);
 *   with one element it is the bare value, whatever its shape.
 */

/** What to do with a BYTES element that is not valid UTF-8 (JSON strings can only hold text). */
export type BinaryElementPolicy = 'reject' | 'base64';

const UTF8 = new TextDecoder('utf-8', { fatal: true });

export function isJsonText(t: Tensor): boolean {
  const type = t.parameters?.content_type;
  return t.datatype === 'BYTES' && typeof type === 'string' && isJsonContentType(type);
}

/** application/json, and the +json family (application/problem+json ...), with or without parameters. */
export function isJsonContentType(contentType: string): boolean {
  const mime = contentType.split(';', 1)[0]!.trim().toLowerCase();
  return mime === 'application/json' || mime.endsWith('+json');
}

/**
 * The tensor's values as JSON text nested by shape. `binary` decides what a
 * non-UTF-8 BYTES element becomes: an INVALID_ARGUMENT error (a request cannot
 * carry it as JSON) or `{"b64": "..."}` (TF Serving's convention, for answers).
 */
export function tensorJson(t: Tensor, what: string, binary: BinaryElementPolicy): string {
  const values = decodeElements(t.datatype, t.data);
  const texts = new Array<string>(values.length);
  const embedJson = isJsonText(t);
  for (let i = 0; i < values.length; i++) texts[i] = elementJson(values[i]!, embedJson, binary, what, i);
  // One JSON document is the value itself: its shape ([1]) is only the tensor's container.
  if (embedJson && texts.length === 1) return texts[0]!;
  return nest(t.shape, texts);
}

function elementJson(v: ElementValue, embedJson: boolean, binary: BinaryElementPolicy, what: string, i: number): string {
  switch (typeof v) {
    case 'boolean':
      return v ? 'true' : 'false';
    case 'bigint':
      return '' + v;
    case 'number':
      return numberJson(v);
    default:
      return bytesJson(v as Uint8Array, embedJson, binary, what, i);
  }
}

/** Integers print as integers (an FP32 2.0 stays "2"); -0, NaN and infinities as Python spells them. */
export function numberJson(v: number): string {
  if (v - v === 0) return v === 0 && 1 / v < 0 ? '-0.0' : '' + v; // finite: v - v is NaN for NaN and ±Infinity
  if (v !== v) return 'NaN';
  return v > 0 ? 'Infinity' : '-Infinity';
}

function bytesJson(bytes: Uint8Array, embedJson: boolean, binary: BinaryElementPolicy, what: string, i: number): string {
  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch {
    if (binary === 'base64') return `{"b64":"${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')}"}`;
    throw invalidArgument(
      `${what}: BYTES element ${i} is not UTF-8 text, so it cannot travel in a JSON body; ` +
        'send binary data as the only input (it then goes as the raw body)',
    );
  }
  return embedJson && text.trim() !== '' ? text : JSON.stringify(text);
}

/** `items` (row-major element texts) nested as arrays by `shape`. */
function nest(shape: readonly number[], items: readonly string[]): string {
  if (shape.length === 0) return items[0] ?? 'null';
  let pos = 0;
  const build = (depth: number): string => {
    if (depth === shape.length) return items[pos++]!;
    const n = shape[depth]!;
    if (n === 0) return '[]';
    const parts = new Array<string>(n);
    for (let i = 0; i < n; i++) parts[i] = build(depth + 1);
    return '[' + parts.join(',') + ']';
  };
  return build(0);
}
