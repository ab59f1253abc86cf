import { GatewayError } from '../../core/errors.js';

/** What a client presents: the secret (an API key or a JWT), never logged. */
export type Credential = string;

/** How a 401 says what was missing; also in the docs and tests. */
export const MISSING_CREDENTIALS = 'missing credentials: send Authorization: Bearer <API key or token>, or x-api-key: <API key>';

const BEARER = /^Bearer[ \t]+(\S*)[ \t]*$/i;

/**
 * The credential of a request from its headers (REST) or metadata (gRPC), by
 * lower-cased name: `authorization: Bearer <key or JWT>`, else
 * `x-api-key: <key>`. Undefined when there is none (an empty one is none).
 * Another Authorization scheme (Basic...) with no x-api-key is refused.
 */
export function credentialOf(header: (name: string) => string | undefined): Credential | undefined {
  const authorization = header('authorization')?.trim();
  if (authorization !== undefined && authorization !== '') {
    const bearer = BEARER.exec(authorization);
    if (bearer !== null) return bearer[1] === '' ? undefined : bearer[1];
  }
  const apiKey = header('x-api-key')?.trim();
  if (apiKey !== undefined && apiKey !== '') return apiKey;
  if (authorization !== undefined && authorization !== '' && !/^Bearer$/i.test(authorization)) {
    const scheme = authorization.split(/[ \t]/, 1)[0]!.slice(0, 32);
    throw new GatewayError('UNAUTHENTICATED', `unsupported authorization scheme '${scheme}': use Authorization: Bearer <API key or token>`);
  }
  return undefined;
}

/** Three base64url segments: a JWS in compact form (a JWT), rather than an API key. */
export function looksLikeJwt(credential: Credential): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(credential);
}
