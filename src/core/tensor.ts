import { ELEMENT_SIZE, type DataType } from './datatypes.js';
import { invalidArgument } from './errors.js';
import type { Parameters } from './parameters.js';

/**
 * The one tensor representation inside the gateway.
 *
 * `data` holds the elements row-major, little-endian, with no padding: the
 * bytes of v2 `raw_input_contents` and of the binary tensor extension. BYTES
 * elements are each a 4-byte little-endian length followed by the data. So a
 * tensor that arrives raw leaves raw with no copy, and each codec converts to or
 * from this form once, at its edge.
 */
export interface Tensor {
  readonly name: string;
  readonly datatype: DataType;
  readonly shape: readonly number[];
  readonly data: Buffer;
  readonly parameters?: Parameters;
}

/** Number of elements a shape holds (1 for a scalar, []). */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Checks that a shape is a list of non-negative safe integers. `what` names the
 * tensor in the error ("input 'x'").
 */
export function checkShape(shape: readonly unknown[], what: string): asserts shape is number[] {
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw invalidArgument(`${what}: shape [${shape.join(',')}] must hold non-negative integers`);
    }
  }
}

/**
 * Checks that `data` holds exactly the elements `shape` asks for: the byte
 * length for fixed-size types, the element framing for BYTES.
 */
export function checkTensorData(datatype: DataType, shape: readonly number[], data: Buffer, what: string): void {
  const count = elementCount(shape);
  const size = ELEMENT_SIZE[datatype];
  if (size > 0) {
    const expected = count * size;
    if (data.length !== expected) {
      throw invalidArgument(
        `${what}: shape [${shape.join(',')}] of ${datatype} needs ${expected} bytes of data, got ${data.length}`,
      );
    }
    return;
  }
  const found = countBytesElements(data, what);
  if (found !== count) {
    throw invalidArgument(`${what}: shape [${shape.join(',')}] needs ${count} BYTES elements, got ${found}`);
  }
}

/** Counts the elements of BYTES framing, rejecting a truncated or overlong element. */
export function countBytesElements(data: Buffer, what: string): number {
  let off = 0;
  let n = 0;
  while (off < data.length) {
    if (off + 4 > data.length) {
      throw invalidArgument(`${what}: BYTES element ${n} has a truncated 4-byte length prefix`);
    }
    const len = data.readUInt32LE(off);
    off += 4 + len;
    if (off > data.length) {
      throw invalidArgument(`${what}: BYTES element ${n} declares ${len} bytes but the data ends first`);
    }
    n++;
  }
  return n;
}

/** The elements of BYTES framing as views into `data` (no copies). Assumes checked framing. */
export function splitBytesElements(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off < data.length) {
    const len = data.readUInt32LE(off);
    out.push(data.subarray(off + 4, off + 4 + len));
    off += 4 + len;
  }
  return out;
}

/** BYTES framing for a list of elements. */
export function joinBytesElements(elements: readonly Uint8Array[]): Buffer {
  let total = 0;
  for (const e of elements) total += 4 + e.length;
  const out = Buffer.allocUnsafe(total);
  let off = 0;
  for (const e of elements) {
    out.writeUInt32LE(e.length, off);
    out.set(e, off + 4);
    off += 4 + e.length;
  }
  return out;
}
