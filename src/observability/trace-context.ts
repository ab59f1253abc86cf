import { randomFillSync } from 'node:crypto';

/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/): a request's trace
 * id travels from the client through the gateway to every backend call, so a
 * backend's traces and logs join the client's.
 *
 *   traceparent: 00-<trace-id: 32 hex>-<parent-id: 16 hex>-<trace-flags: 2 hex>
 */
export const TRACEPARENT_HEADER = 'traceparent';

/** A request's trace: continued from the client's traceparent, or started by the gateway. */
export interface TraceContext {
  /** 32 lower-case hex digits, not all zero. */
  readonly traceId: string;
  /** 2 lower-case hex digits; 01 is "sampled". */
  readonly flags: string;
}

/** Flags of a trace the gateway starts: sampled, so backends that follow their parent's choice record it. */
const NEW_TRACE_FLAGS = '01';
const VERSION_00_LENGTH = 55;
const DASH = 0x2d;
const ZERO = 0x30;

/**
 * The trace of a traceparent value, or undefined when it is absent or not a
 * valid one (the caller then starts a new trace). Version 00 must be exactly
 * 55 characters; a later version (01-fe) is read by version 00's rules from
 * its first 55 characters, as the specification asks; ff is invalid. Ids are
 * lower-case hex, neither all zero. One pass over the characters, no regex.
 */
export function parseTraceparent(value: string | undefined): TraceContext | undefined {
  if (value === undefined || value.length < VERSION_00_LENGTH) return undefined;
  const v0 = value.charCodeAt(0);
  const v1 = value.charCodeAt(1);
  if (hexValue(v0) < 0 || hexValue(v1) < 0 || (v0 === 0x66 && v1 === 0x66)) return undefined;
  const version00 = v0 === ZERO && v1 === ZERO;
  if (version00 ? value.length !== VERSION_00_LENGTH : value.length > VERSION_00_LENGTH && value.charCodeAt(VERSION_00_LENGTH) !== DASH) {
    return undefined;
  }
  if (value.charCodeAt(2) !== DASH || value.charCodeAt(35) !== DASH || value.charCodeAt(52) !== DASH) return undefined;
  if (!isHexRun(value, 3, 35, true) || !isHexRun(value, 36, 52, true) || !isHexRun(value, 53, 55, false)) return undefined;
  return { traceId: value.slice(3, 35), flags: value.slice(53, 55) };
}

/** The client's trace when its traceparent is valid, else a new one. */
export function traceFrom(traceparent: string | undefined): TraceContext {
  return parseTraceparent(traceparent) ?? startTrace();
}

/** A new trace with a random id. */
export function startTrace(): TraceContext {
  return { traceId: randomHex(16), flags: NEW_TRACE_FLAGS };
}

/**
 * The traceparent of one backend call: the request's trace id and flags, and
 * a new span id for the call (each attempt is a span of its own).
 */
export function childTraceparent(trace: TraceContext): string {
  return `00-${trace.traceId}-${randomHex(8)}-${trace.flags}`;
}

/** Characters [from, to) are lower-case hex digits (and, with `nonZero`, not all '0'). */
function isHexRun(value: string, from: number, to: number, nonZero: boolean): boolean {
  let any = !nonZero;
  for (let i = from; i < to; i++) {
    const c = value.charCodeAt(i);
    if (hexValue(c) < 0) return false;
    if (c !== ZERO) any = true;
  }
  return any;
}

/** A lower-case hex digit's value, or -1 (upper case is not allowed in traceparent). */
function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1;
}

/** Random bytes are drawn this many at a time (one randomFillSync per ~170 requests), then handed out in slices. */
const POOL_BYTES = 4_096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let poolOffset = POOL_BYTES;

/** `bytes` random bytes as lower-case hex, never all zero (an all-zero id is invalid). */
function randomHex(bytes: number): string {
  for (;;) {
    if (poolOffset + bytes > POOL_BYTES) {
      randomFillSync(pool);
      poolOffset = 0;
    }
    const at = poolOffset;
    poolOffset += bytes;
    for (let i = at; i < at + bytes; i++) if (pool[i] !== 0) return pool.toString('hex', at, at + bytes);
  }
}
