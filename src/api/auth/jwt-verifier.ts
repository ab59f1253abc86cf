import { readFileSync } from 'node:fs';
import { createLocalJWKSet, createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { LRUCache } from 'lru-cache';
import type { JwtConfig } from '../../config/auth-schema.js';
import { GatewayError } from '../../core/errors.js';
import { ModelScope } from './model-scope.js';
import type { Principal } from './principal.js';

/** A verified token is trusted again for at most this long (or until it expires, if sooner). */
const TOKEN_CACHE_MS = 60_000;
const TOKEN_CACHE_ENTRIES = 10_000;
/** A remote JWKS: an unknown key id refetches it at most this often. */
const JWKS_COOLDOWN_MS = 30_000;
const JWKS_TIMEOUT_MS = 5_000;

/** The key set of a config: remote ones are kept across config changes that keep the URL (with their cache). */
export interface JwksSource {
  readonly url?: string;
  readonly keys: JWTVerifyGetKey;
}

/** The keys `config` names: a remote set (jose caches it and rate-limits refetches), or the file read now. */
export function jwksSourceOf(config: JwtConfig, previous?: JwksSource): JwksSource {
  if (config.jwks_url !== undefined) {
    if (previous?.url === config.jwks_url) return previous;
    const keys = createRemoteJWKSet(new URL(config.jwks_url), { cooldownDuration: JWKS_COOLDOWN_MS, timeoutDuration: JWKS_TIMEOUT_MS });
    return { url: config.jwks_url, keys };
  }
  const file = config.jwks_file!;
  let jwks: unknown;
  try {
    jwks = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`auth.jwt.jwks_file: cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    return { keys: createLocalJWKSet(jwks as Parameters<typeof createLocalJWKSet>[0]) };
  } catch (err) {
    throw new Error(`auth.jwt.jwks_file: ${file} is not a JSON Web Key Set: ${(err as Error).message}`);
  }
}

/**
 * Verifies JWTs (signature against the JWKS, exp / nbf with the clock
 * tolerance, issuer and audience when configured) and turns their claims
 * into principals. Verified tokens are kept in a bounded LRU until they
 * expire or for 60 s, whichever is first, so the hot path does one map lookup.
 */
export class JwtVerifier {
  private readonly cache = new LRUCache<string, { principal: Principal; until: number }>({ max: TOKEN_CACHE_ENTRIES });

  constructor(
    private readonly config: JwtConfig,
    readonly source: JwksSource,
  ) {}

  async verify(token: string): Promise<Principal> {
    const now = Date.now();
    const hit = this.cache.get(token);
    if (hit !== undefined) {
      if (hit.until > now) return hit.principal;
      this.cache.delete(token);
    }
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.source.keys, {
        ...(this.config.issuer !== undefined ? { issuer: this.config.issuer } : {}),
        ...(this.config.audience !== undefined ? { audience: this.config.audience } : {}),
        ...(this.config.algorithms !== undefined ? { algorithms: this.config.algorithms } : {}),
        clockTolerance: this.config.clock_tolerance_s,
      }));
    } catch (err) {
      throw tokenError(err);
    }
    const principal = this.principalOf(payload);
    const expires = typeof payload.exp === 'number' ? payload.exp * 1000 : Infinity;
    this.cache.set(token, { principal, until: Math.min(now + TOKEN_CACHE_MS, expires) });
    return principal;
  }

  /** Scopes from `models_claim`: 'model:<pattern>' name models, admin_scope and metrics_scope what they say. */
  private principalOf(payload: JWTPayload): Principal {
    const c = this.config;
    const claim = payload[c.models_claim];
    const scopes = typeof claim === 'string' ? claim.split(' ') : Array.isArray(claim) ? claim.filter((s): s is string => typeof s === 'string') : [];
    const models = scopes.filter((s) => s.startsWith(c.model_scope_prefix)).map((s) => s.slice(c.model_scope_prefix.length));
    const name = typeof payload.sub === 'string' && payload.sub !== '' ? payload.sub : 'jwt';
    const admin = scopes.includes(c.admin_scope);
    return { name, kind: 'jwt', models: ModelScope.compile(models), admin, metrics: admin || scopes.includes(c.metrics_scope) };
  }
}

/** Why a token was refused, for the client (401), or UNAVAILABLE when the key set could not be fetched. */
function tokenError(err: unknown): GatewayError {
  if (err instanceof joseErrors.JWTExpired) return new GatewayError('UNAUTHENTICATED', 'invalid token: expired', { cause: err });
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    return new GatewayError('UNAUTHENTICATED', `invalid token: ${err.message} (claim '${err.claim}')`, { cause: err });
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return new GatewayError('UNAUTHENTICATED', 'invalid token: bad signature', { cause: err });
  if (err instanceof joseErrors.JWKSNoMatchingKey) return new GatewayError('UNAUTHENTICATED', 'invalid token: signed by an unknown key', { cause: err });
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return new GatewayError('UNAUTHENTICATED', `invalid token: ${err.message}`, { cause: err });
  if (err instanceof joseErrors.JWKSTimeout || !(err instanceof joseErrors.JOSEError) || /JSON Web Key Set/.test(err.message)) {
    const reason = err instanceof Error ? err.message : String(err);
    return new GatewayError('UNAVAILABLE', `cannot verify the token: the key set (JWKS) is unavailable: ${reason}`, { cause: err, retryAfterMs: 1_000 });
  }
  return new GatewayError('UNAUTHENTICATED', `invalid token: ${err.message}`, { cause: err });
}
