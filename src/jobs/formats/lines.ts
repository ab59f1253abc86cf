import { open, type FileHandle } from 'node:fs/promises';
import { fileError } from './file-errors.js';

/** Bytes read from a file at a time. */
export const CHUNK_BYTES = 512 * 1024;

const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const TAB = 0x09;

/** Opens a file, a failure as a GatewayError naming it (a missing file is NOT_FOUND). */
export async function openFile(path: string, flags: string, doing: string): Promise<FileHandle> {
  try {
    return await open(path, flags);
  } catch (err) {
    throw fileError(err, path, doing);
  }
}

/**
 * The file's bytes from `start`, a chunk at a time, read only as the consumer
 * pulls. With `dropBom`, a UTF-8 byte order mark at the start of the file is dropped.
 */
export async function* readChunks(fh: FileHandle, path: string, opts: { readonly start?: number; readonly dropBom?: boolean } = {}): AsyncGenerator<Buffer, void, undefined> {
  let position = opts.start ?? 0;
  for (;;) {
    const buf = Buffer.allocUnsafe(CHUNK_BYTES);
    let bytesRead: number;
    try {
      ({ bytesRead } = await fh.read(buf, 0, CHUNK_BYTES, position));
    } catch (err) {
      throw fileError(err, path, 'read');
    }
    if (bytesRead === 0) return;
    let chunk = buf.subarray(0, bytesRead);
    if (opts.dropBom === true && position === 0 && bytesRead >= 3 && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) chunk = chunk.subarray(3);
    position += bytesRead;
    yield chunk;
  }
}

/** Whether bytes [start, end) hold only spaces, tabs and CRs. */
export function isBlank(buf: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const b = buf[i];
    if (b !== SPACE && b !== TAB && b !== CR) return false;
  }
  return true;
}

/** Complete lines found in a chunk: `buf` (starting at byte `base` of the stream) and [start, end) pairs into it, '\n' excluded. */
export interface LineBatch {
  readonly buf: Buffer;
  readonly base: number;
  readonly bounds: readonly number[];
}

/**
 * Splits a byte stream into '\n'-terminated lines, chunk by chunk; a line
 * spanning chunks is joined once, when its end arrives.
 */
export class LineSplitter {
  readonly #pending: Buffer[] = [];
  /** Stream offset of the first byte not yet returned in a line. */
  #lineStart: number;

  constructor(base = 0) {
    this.#lineStart = base;
  }

  /** Stream offset just past the last complete line ('\n' included). */
  get completeBytes(): number {
    return this.#lineStart;
  }

  push(chunk: Buffer): LineBatch {
    const first = chunk.indexOf(LF);
    if (first === -1) {
      this.#pending.push(chunk);
      return { buf: chunk, base: 0, bounds: [] };
    }
    let buf = chunk;
    let pendingBytes = 0;
    if (this.#pending.length > 0) {
      for (const p of this.#pending) pendingBytes += p.length;
      buf = Buffer.concat([...this.#pending, chunk]);
      this.#pending.length = 0;
    }
    const base = this.#lineStart;
    const bounds: number[] = [];
    let start = 0;
    let nl = first + pendingBytes;
    while (nl !== -1) {
      bounds.push(start, nl);
      start = nl + 1;
      nl = buf.indexOf(LF, start);
    }
    if (start < buf.length) this.#pending.push(buf.subarray(start));
    this.#lineStart = base + start;
    return { buf, base, bounds };
  }

  /** The bytes after the last '\n' (a last line with no terminator), if any. */
  rest(): Buffer | undefined {
    if (this.#pending.length === 0) return undefined;
    const rest = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending);
    return rest.length > 0 ? rest : undefined;
  }
}
