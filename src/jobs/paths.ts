import { lstat, realpath, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { GatewayError, invalidArgument, notFound } from '../core/errors.js';

/**
 * Confinement of the file paths a client gives a batch job. A path is
 * absolute, or relative to the first allowed directory; what it names after
 * every symbolic link is resolved must lie inside one of the allowed
 * directories (their own realpaths), compared by path components: /data2 is
 * not inside /data.
 *
 * Errors: INVALID_ARGUMENT (empty, NUL bytes, a directory where a file is
 * meant), NOT_FOUND (a missing input, a missing output directory),
 * PERMISSION_DENIED (outside the allowed directories, a symlink as output).
 */

/** The real path of an existing input file inside one of `allowedDirs`. */
export async function confineInput(given: string, allowedDirs: readonly string[]): Promise<string> {
  const lexical = lexicalPath(given, allowedDirs, 'input');
  let real: string;
  try {
    real = await realpath(lexical);
  } catch (err) {
    throw fsError(err, `input file '${given}'`);
  }
  const allowed = await realDirs(allowedDirs);
  if (!allowed.some((dir) => isInside(real, dir))) throw outside(given, real, 'input', allowedDirs);
  const info = await stat(real).catch((err: unknown) => {
    throw fsError(err, `input file '${given}'`);
  });
  if (!info.isFile()) throw invalidArgument(`input '${given}' is not a regular file`);
  return real;
}

/**
 * The path an output file will be written at: its directory's real path plus
 * its name, inside one of `allowedDirs`. The file need not exist; when it does
 * it must be a regular file, not a symbolic link (which could point anywhere
 * by the time it is opened).
 */
export async function confineOutput(given: string, allowedDirs: readonly string[], what = 'output'): Promise<string> {
  const lexical = lexicalPath(given, allowedDirs, what);
  const name = basename(lexical);
  if (name === '' || name === '.' || name === '..') throw invalidArgument(`${what} '${given}' names a directory, not a file`);
  let realDir: string;
  try {
    realDir = await realpath(dirname(lexical));
  } catch (err) {
    throw fsError(err, `the directory of ${what} '${given}'`);
  }
  const real = join(realDir, name);
  const allowed = await realDirs(allowedDirs);
  if (!allowed.some((dir) => isInside(real, dir))) throw outside(given, real, what, allowedDirs);
  let info;
  try {
    info = await lstat(real);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return real;
    throw fsError(err, `${what} '${given}'`);
  }
  if (info.isSymbolicLink()) {
    throw new GatewayError('PERMISSION_DENIED', `${what} '${given}' is a symbolic link; give the real file's path`);
  }
  if (!info.isFile()) throw invalidArgument(`${what} '${given}' exists and is not a regular file`);
  return real;
}

/** `child` is `dir` itself or below it (by components, after both are normalized). */
export function isInside(child: string, dir: string): boolean {
  const rel = relative(dir, child);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

function lexicalPath(given: string, allowedDirs: readonly string[], what: string): string {
  if (typeof given !== 'string' || given.length === 0) throw invalidArgument(`${what}: the path is empty`);
  if (given.includes('\0')) throw invalidArgument(`${what}: the path contains a NUL byte`);
  if (isAbsolute(given)) return resolve(given);
  const base = allowedDirs[0];
  if (base === undefined) throw new GatewayError('PERMISSION_DENIED', `${what} '${given}': no directories are allowed`);
  return resolve(base, given);
}

/** The allowed directories' real paths; one that does not exist (now) allows nothing. */
async function realDirs(dirs: readonly string[]): Promise<string[]> {
  const found = await Promise.all(dirs.map((d) => realpath(d).catch(() => undefined)));
  return found.filter((d): d is string => d !== undefined);
}

function outside(given: string, real: string, what: string, allowedDirs: readonly string[]): GatewayError {
  const resolvedNote = real !== given ? ` (resolves to '${real}')` : '';
  return new GatewayError(
    'PERMISSION_DENIED',
    `${what} '${given}'${resolvedNote} is outside the allowed directories: ${allowedDirs.join(', ')}`,
  );
}

function fsError(err: unknown, what: string): GatewayError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return notFound(`${what} does not exist`, err);
  if (code === 'EACCES' || code === 'EPERM') return new GatewayError('PERMISSION_DENIED', `${what} cannot be accessed (${code})`, { cause: err });
  if (code === 'ELOOP') return invalidArgument(`${what}: too many levels of symbolic links`, err);
  return new GatewayError('INTERNAL', `${what}: ${(err as Error).message}`, { cause: err });
}
