import { createHash } from 'node:crypto';
import type { GatewayConfig } from '../../config/schema.js';
import { GatewayError } from '../../core/errors.js';
import { looksLikeJwt, type Credential } from './credentials.js';
import { JwtVerifier, jwksSourceOf } from './jwt-verifier.js';
import { ModelScope } from './model-scope.js';
import type { Principal } from './principal.js';

/** The name of keys from the `admin:` section (they have no name of their own). */
export const ADMIN_SECTION_NAME = 'admin';
/** Matched credentials remembered at most (many more distinct keys than this in use just means hashing again). */
const MATCHED_MAX = 1_024;

/**
 * Turns a credential into a principal: an API key by the SHA-256 of what was
 * sent (a Map from digest to principal, built when the config is applied; the
 * digest is of a secret, so the lookup reveals nothing useful), else a JWT
 * through the JwtVerifier. Keys of the `admin:` section are admin keys with no
 * model unless the same key is also listed in `auth.api_keys`.
 */
export class Authenticator {
  /**
   * Credentials already matched to a key, so a client's key is hashed once rather than per request. Only matches go
   * in (a guessed key never does) and it is bounded; it lives as long as this config's Authenticator.
   */
  private readonly matched = new Map<string, Principal>();

  private constructor(
    private readonly keys: ReadonlyMap<string, Principal>,
    readonly jwt: JwtVerifier | undefined,
  ) {}

  /**
   * Reads `key_env` variables from `env` and a `jwks_file` now; throws (the
   * config is refused) when a variable is unset or empty, or the file
   * unreadable. `previous` lends its remote JWKS when the URL is the same.
   */
  static build(config: Pick<GatewayConfig, 'auth' | 'admin'>, env: NodeJS.ProcessEnv, previous?: Authenticator): Authenticator {
    const keys = new Map<string, Principal>();
    for (const key of config.auth.api_keys) {
      const digest = key.key_sha256 ?? sha256Hex(envKey(env, key.key_env!, `auth.api_keys '${key.name}'`));
      keys.set(digest, {
        name: key.name,
        kind: 'api_key',
        models: ModelScope.compile(key.models),
        admin: key.admin,
        metrics: key.admin || key.metrics,
      });
    }
    const adminDigests = [...config.admin.api_key_sha256];
    const adminEnv = env[config.admin.api_key_env];
    if (adminEnv !== undefined && adminEnv !== '') adminDigests.push(sha256Hex(adminEnv));
    for (const digest of adminDigests) {
      const listed = keys.get(digest);
      keys.set(digest, listed !== undefined ? { ...listed, admin: true, metrics: true } : adminPrincipal());
    }
    const jwt = config.auth.jwt !== undefined ? new JwtVerifier(config.auth.jwt, jwksSourceOf(config.auth.jwt, previous?.jwt?.source)) : undefined;
    return new Authenticator(keys, jwt);
  }

  /** Some credential could be an admin's: without one the admin API is closed (403), not open. */
  get adminPossible(): boolean {
    if (this.jwt !== undefined) return true;
    for (const p of this.keys.values()) if (p.admin) return true;
    return false;
  }

  /** Some credential could call a model: a key with a model scope, or tokens. */
  get modelsPossible(): boolean {
    if (this.jwt !== undefined) return true;
    for (const p of this.keys.values()) if (!p.models.empty) return true;
    return false;
  }

  /**
   * The credential's principal, or UNAUTHENTICATED ("invalid <keyLabel>");
   * UNAVAILABLE when a token's keys cannot be fetched.
   */
  authenticate(credential: Credential, keyLabel = 'API key'): Principal | Promise<Principal> {
    const known = this.matched.get(credential);
    if (known !== undefined) return known;
    const byKey = this.keys.get(sha256Hex(credential));
    if (byKey !== undefined) {
      if (this.matched.size >= MATCHED_MAX) this.matched.clear();
      this.matched.set(credential, byKey);
      return byKey;
    }
    if (this.jwt !== undefined && looksLikeJwt(credential)) return this.jwt.verify(credential);
    throw new GatewayError('UNAUTHENTICATED', looksLikeJwt(credential) ? 'invalid credentials: JWTs are not accepted (no auth.jwt)' : `invalid ${keyLabel}`);
  }
}

function adminPrincipal(): Principal {
  return { name: ADMIN_SECTION_NAME, kind: 'api_key', models: ModelScope.NONE, admin: true, metrics: true };
}

function envKey(env: NodeJS.ProcessEnv, name: string, what: string): string {
  const value = env[name];
  if (value === undefined || value === '') throw new Error(`${what}: environment variable ${name} is not set (key_env)`);
  return value;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}
