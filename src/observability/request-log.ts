import type { GatewayError } from '../core/errors.js';
import type { Logger } from './logger.js';

/**
 * How a failed request is logged, the same on every surface: client mistakes
 * at warn, server-side failures at error, and a stack only for INTERNAL and
 * UNKNOWN (a bug of ours or a broken backend reply); an unreachable or slow
 * backend is an operational event whose message says all there is.
 */
export function logRequestFailure(log: Logger, fields: Record<string, unknown>, error: GatewayError): void {
  const entry = { ...fields, code: error.code, status: error.httpStatus };
  if (error.httpStatus < 500) {
    log.warn(entry, error.message);
  } else if (error.code === 'INTERNAL' || error.code === 'UNKNOWN') {
    log.error({ ...entry, err: error.cause ?? error }, error.message);
  } else {
    log.error(entry, error.message);
  }
}
