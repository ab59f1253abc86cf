import type { FileHandle } from 'node:fs/promises';
import { GatewayError } from '../../core/errors.js';
import { fileError } from './file-errors.js';

/** Writes all of `bytes` at the handle's position (the end, for a file opened to append), in one call unless the OS writes less. */
export async function writeAll(fh: FileHandle, bytes: Uint8Array, path: string): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    let bytesWritten: number;
    try {
      ({ bytesWritten } = await fh.write(bytes, offset, bytes.length - offset));
    } catch (err) {
      throw fileError(err, path, 'write');
    }
    offset += bytesWritten;
  }
}

/** Fills `buf` from byte `position` of the file; a file shorter than that is DATA_LOSS. */
export async function readFully(fh: FileHandle, buf: Buffer, position: number, path: string): Promise<void> {
  let offset = 0;
  while (offset < buf.length) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await fh.read(buf, offset, buf.length - offset, position + offset));
    } catch (err) {
      throw fileError(err, path, 'read');
    }
    if (bytesRead === 0) throw new GatewayError('DATA_LOSS', `${path} ended before byte ${position + buf.length}; was it changed while being read?`);
    offset += bytesRead;
  }
}
