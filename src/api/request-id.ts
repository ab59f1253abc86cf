import { randomUUID } from 'node:crypto';

/** Request ids travel in this header (REST) and metadata key (gRPC), both ways. */
export const REQUEST_ID_HEADER = 'x-request-id';
/** Request ids longer than this, or with odd characters, are replaced rather than echoed into logs and headers. */
const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/** The client's request id when it is a sane one, else a new one. */
export function requestIdFrom(given: string | undefined): string {
  return given !== undefined && REQUEST_ID_PATTERN.test(given) ? given : randomUUID();
}
