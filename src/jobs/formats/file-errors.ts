import { GatewayError, notFound } from '../../core/errors.js';

/** A file system failure as a GatewayError naming the file (ENOENT -> NOT_FOUND, and so on). */
export function fileError(err: unknown, path: string, doing: string): GatewayError {
  if (err instanceof GatewayError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const reason = err instanceof Error ? err.message : String(err);
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return notFound(`cannot ${doing} ${path}: no such file or directory`, err);
    case 'EACCES':
    case 'EPERM':
      return new GatewayError('PERMISSION_DENIED', `cannot ${doing} ${path}: permission denied`, { cause: err });
    case 'EISDIR':
      return new GatewayError('INVALID_ARGUMENT', `cannot ${doing} ${path}: it is a directory`, { cause: err });
    case 'ENOSPC':
    case 'EDQUOT':
      return new GatewayError('RESOURCE_EXHAUSTED', `cannot ${doing} ${path}: no space left`, { cause: err });
    default:
      return new GatewayError('INTERNAL', `cannot ${doing} ${path}: ${reason}`, { cause: err });
  }
}
