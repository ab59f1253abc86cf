import type { RateLimitConfig } from '../../config/auth-schema.js';
import type { PreparedSwap, RuntimeApplier } from '../../config/live-config.js';
import type { GatewayConfig } from '../../config/schema.js';
import { GatewayError } from '../../core/errors.js';
import type { Logger } from '../../observability/logger.js';
import { MemoryTokenBuckets, RedisTokenBuckets, type BucketClaim, type TokenBuckets } from '../../resilience/rate-limit.js';
import { Authenticator } from './authenticator.js';
import { credentialOf, MISSING_CREDENTIALS } from './credentials.js';
import { ANONYMOUS, describePrincipal, type Principal } from './principal.js';

/**
 * What a request needs, decided from its path (REST) or rpc (gRPC) before
 * anything else is read:
 * - open: health and server metadata, never checked;
 * - authenticated: any valid credential (the model index, job views, unknown paths);
 * - model: a credential whose scope holds the model; `infer` requests also
 *   take a token from the rate limits (per key and per model);
 * - experiment: the scope of the experiment's model, or an admin credential (any credential for an unknown one);
 * - all_models: a '*' scope (listing every job, gRPC methods without a rule);
 * - admin: an admin credential, even with auth disabled;
 * - metrics: an admin or metrics credential, unless auth is off or metrics_public.
 */
export type AccessRule =
  | { readonly kind: 'open' }
  | { readonly kind: 'authenticated' }
  | { readonly kind: 'model'; readonly model: string; readonly infer: boolean }
  | { readonly kind: 'experiment'; readonly name: string }
  | { readonly kind: 'all_models'; readonly what: string }
  | { readonly kind: 'admin' }
  | { readonly kind: 'metrics' };

export const OPEN: AccessRule = { kind: 'open' };
export const AUTHENTICATED: AccessRule = { kind: 'authenticated' };
export const ADMIN: AccessRule = { kind: 'admin' };
export const METRICS: AccessRule = { kind: 'metrics' };

export const ADMIN_DISABLED = 'admin API disabled: configure admin.api_key_sha256, set INFERGATE_ADMIN_KEY, or give an auth.api_keys entry admin: true';

/** One config's access decisions: credentials, scopes and limits, swapped whole on a config change. */
interface AccessPolicy {
  readonly enabled: boolean;
  readonly metricsPublic: boolean;
  readonly authenticator: Authenticator;
  readonly perKey: ReadonlyMap<string, RateLimitConfig>;
  readonly perKeyDefault: RateLimitConfig | undefined;
  readonly perModel: ReadonlyMap<string, RateLimitConfig>;
  /** Experiment name -> its public model. */
  readonly experimentModels: ReadonlyMap<string, string>;
}

export interface AccessControlOptions {
  /** Where `key_env` and `admin.api_key_env` are read (the gateway's environment). */
  readonly env: NodeJS.ProcessEnv;
  readonly logger: Logger;
}

/**
 * Access control and rate limits of the running config: every surface asks
 * admit() with the rule of what was called and the request's headers (or
 * metadata). A config change builds the next policy in prepare() (a key_env
 * that is not set refuses the change) and swaps it in at commit, so keys,
 * scopes and limits follow reloads. The token buckets outlive changes (in
 * Redis when `rate_limits.redis` is set at startup, else in memory).
 */
export class AccessControl implements RuntimeApplier {
  private policy: AccessPolicy;
  private readonly buckets: TokenBuckets;
  private readonly logger: Logger;

  constructor(config: GatewayConfig, private readonly opts: AccessControlOptions) {
    this.logger = opts.logger;
    this.policy = buildPolicy(config, opts.env, undefined);
    const limits = config.rate_limits;
    const memory = new MemoryTokenBuckets();
    this.buckets =
      limits.redis !== undefined
        ? new RedisTokenBuckets({ url: limits.redis, keyPrefix: limits.key_prefix, commandTimeoutMs: limits.command_timeout_ms, logger: opts.logger, fallback: memory })
        : memory;
    this.warnIfOpen(undefined);
  }

  prepare(next: GatewayConfig): PreparedSwap {
    const policy = buildPolicy(next, this.opts.env, this.policy);
    return {
      commit: () => {
        const before = this.policy;
        this.policy = policy;
        this.warnIfOpen(before);
      },
      discard: () => undefined,
    };
  }

  /**
   * The principal a request runs as (undefined for open rules), or a
   * GatewayError: UNAUTHENTICATED (no or a bad credential), PERMISSION_DENIED
   * (outside its scope), RESOURCE_EXHAUSTED with retryAfterMs (over a rate
   * limit), UNAVAILABLE (a JWKS that cannot be fetched).
   */
  async admit(rule: AccessRule, header: (name: string) => string | undefined): Promise<Principal | undefined> {
    if (rule.kind === 'open') return undefined;
    const policy = this.policy;
    let principal: Principal;
    if (rule.kind === 'metrics' && (!policy.enabled || policy.metricsPublic)) return ANONYMOUS;
    if (rule.kind !== 'admin' && !policy.enabled) {
      principal = ANONYMOUS;
    } else {
      if (rule.kind === 'admin' && !policy.authenticator.adminPossible) throw new GatewayError('PERMISSION_DENIED', ADMIN_DISABLED);
      const credential = credentialOf(header);
      if (credential === undefined) throw new GatewayError('UNAUTHENTICATED', MISSING_CREDENTIALS);
      principal = await policy.authenticator.authenticate(credential, rule.kind === 'admin' ? 'admin API key' : 'API key');
    }
    authorize(policy, principal, rule);
    if (rule.kind === 'model' && rule.infer) await this.takeTokens(policy, principal, rule.model);
    return principal;
  }

  /** PERMISSION_DENIED unless `principal` may call `model` (a job's model, a stream message's). */
  checkModel(principal: Principal | undefined, model: string): void {
    requireModel(principal, model);
  }

  /** The rate limits of one inference of `model` (a message of a stream): RESOURCE_EXHAUSTED over them. */
  limit(principal: Principal | undefined, model: string): Promise<void> {
    return this.takeTokens(this.policy, principal ?? ANONYMOUS, model);
  }

  close(): Promise<void> {
    return this.buckets.close();
  }

  private async takeTokens(policy: AccessPolicy, principal: Principal, model: string): Promise<void> {
    const claims: BucketClaim[] = [];
    // Anonymous callers (auth off) share no key: only the model's limit applies to them.
    const keyLimit = principal.kind === 'anonymous' ? undefined : (policy.perKey.get(principal.name) ?? policy.perKeyDefault);
    if (keyLimit !== undefined) claims.push({ id: `key:${principal.name}`, limit: keyLimit });
    const modelLimit = policy.perModel.get(model);
    if (modelLimit !== undefined) claims.push({ id: `model:${model}`, limit: modelLimit });
    if (claims.length === 0) return;
    const decision = await this.buckets.take(claims);
    if (decision.allowed) return;
    const which = decision.bucket.startsWith('key:') ? describePrincipal(principal) : `model '${model}'`;
    const limit = decision.bucket.startsWith('key:') ? keyLimit! : modelLimit!;
    throw new GatewayError(
      'RESOURCE_EXHAUSTED',
      `rate limit exceeded for ${which} (${limit.rps} requests/s, burst ${limit.burst}); retry in ${decision.retryAfterMs} ms`,
      { retryAfterMs: decision.retryAfterMs },
    );
  }

  private warnIfOpen(before: AccessPolicy | undefined): void {
    const now = this.policy;
    if (!now.enabled && (before === undefined || before.enabled)) {
      this.logger.warn(
        'auth is disabled (auth.enabled: false): inference, jobs, experiments and metrics are open to anyone who can reach the gateway; the admin API still needs an admin key',
      );
    } else if (now.enabled && !now.authenticator.modelsPossible && (before === undefined || !before.enabled || before.authenticator.modelsPossible)) {
      this.logger.warn('auth is enabled but no credential may call a model (auth.api_keys with models, or auth.jwt): every inference request is refused');
    }
  }
}

function buildPolicy(config: GatewayConfig, env: NodeJS.ProcessEnv, previous: AccessPolicy | undefined): AccessPolicy {
  const { default: perKeyDefault, ...perKey } = config.rate_limits.per_key;
  return {
    enabled: config.auth.enabled,
    metricsPublic: config.auth.metrics_public,
    authenticator: Authenticator.build(config, env, previous?.authenticator),
    perKey: new Map(Object.entries(perKey)),
    perKeyDefault,
    perModel: new Map(Object.entries(config.rate_limits.per_model)),
    experimentModels: new Map(Object.entries(config.experiments).map(([name, e]) => [name, e.model])),
  };
}

function authorize(policy: AccessPolicy, principal: Principal, rule: AccessRule): void {
  switch (rule.kind) {
    case 'open':
    case 'authenticated':
      return;
    case 'model':
      if (!principal.models.allows(rule.model)) throw modelDenied(principal, rule.model);
      return;
    case 'experiment': {
      const model = policy.experimentModels.get(rule.name);
      // Admins read every experiment's results (the status page shows them).
      if (model !== undefined && !principal.admin && !principal.models.allows(model)) throw modelDenied(principal, model, ` (experiment '${rule.name}')`);
      return;
    }
    case 'all_models':
      if (!principal.models.all) throw new GatewayError('PERMISSION_DENIED', `${describePrincipal(principal)} needs access to every model ('*') to ${rule.what}`);
      return;
    case 'admin':
      if (!principal.admin) throw new GatewayError('PERMISSION_DENIED', `${describePrincipal(principal)} lacks the admin scope`);
      return;
    case 'metrics':
      if (!principal.metrics) throw new GatewayError('PERMISSION_DENIED', `${describePrincipal(principal)} lacks the metrics scope (an admin or metrics key)`);
      return;
  }
}

/** PERMISSION_DENIED unless `principal` may call `model`; undefined (no access control on the surface) may. */
export function requireModel(principal: Principal | undefined, model: string): void {
  if (principal !== undefined && !principal.models.allows(model)) throw modelDenied(principal, model);
}

function modelDenied(principal: Principal, model: string, suffix = ''): GatewayError {
  return new GatewayError('PERMISSION_DENIED', `${describePrincipal(principal)} has no access to model '${model}'${suffix}`);
}
