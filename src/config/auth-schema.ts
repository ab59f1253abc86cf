import { z } from 'zod';
import { MODEL_NAME_PATTERN } from '../core/names.js';

/**
 * Who may call the gateway (`auth:`) and how often (`rate_limits:`).
 *
 *   auth:
 *     enabled: true                        # the default: only `enabled: false` opens the API
 *     api_keys:
 *       - { name: ranker-svc, key_env: RANKER_KEY, models: ["rank*", linear] }
 *       - { name: ops, key_sha256: "<64 hex>", admin: true }
 *     jwt: { jwks_url: https://idp.example/jwks.json, issuer: https://idp.example/, audience: infergate }
 *   rate_limits:
 *     per_key: { default: { rps: 50, burst: 100 }, ranker-svc: { rps: 500, burst: 1000 } }
 *     per_model: { linear: { rps: 2000, burst: 4000 } }
 *
 * Everything here applies live, except `rate_limits.redis`, `key_prefix` and
 * `command_timeout_ms` (a connection made at startup).
 */

const MODEL_PATTERN = /^(\*|(?!.*\.\.)[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\*?)$/;

/** A model scope: '*' (every model), an exact public name, or a prefix ending in '*' ('rank*'). */
export const modelPatternSchema = z
  .string()
  .regex(MODEL_PATTERN, "must be '*', a model name, or a name prefix ending in '*' (e.g. 'rank*')");

/** Names of API keys (and of JWT subjects in `rate_limits.per_key`): they appear in logs and rate-limit keys. */
const principalName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$/, 'names use letters, digits, _ . @ : - (at most 128)');

const envVarName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name');

const apiKeySchema = z
  .strictObject({
    /** Names the key in logs, errors and `rate_limits.per_key`; never the key itself. */
    name: principalName,
    /** SHA-256 (hex) of the key: printf %s "$KEY" | sha256sum. */
    key_sha256: z
      .string()
      .regex(/^[0-9a-fA-F]{64}$/, 'must be a hex SHA-256 digest (64 hex digits)')
      .transform((d) => d.toLowerCase())
      .optional(),
    /** An environment variable holding the key itself (read when the config is applied). */
    key_env: envVarName.optional(),
    /** The models the key may call: '*', exact public names, or prefixes ending in '*'. */
    models: z.array(modelPatternSchema).default([]),
    /** The key may use /admin/* (and /metrics). */
    admin: z.boolean().default(false),
    /** The key may read /metrics (for a Prometheus scraper); admin keys may too. */
    metrics: z.boolean().default(false),
  })
  .refine((k) => (k.key_sha256 === undefined) !== (k.key_env === undefined), {
    message: 'needs exactly one of key_sha256 (the digest of the key) or key_env (a variable holding the key)',
  });

const jwtSchema = z
  .strictObject({
    /** Where the issuer publishes its keys (fetched, cached, refetched at most every 30 s on an unknown key id). */
    jwks_url: z
      .string()
      .refine((u) => URL.canParse(u) && /^https?:$/.test(new URL(u).protocol), 'must be an http:// or https:// URL')
      .optional(),
    /** A JWKS file (read when the config is applied). */
    jwks_file: z.string().min(1).optional(),
    /** Expected `iss`; tokens from any other issuer are refused. */
    issuer: z.string().min(1).optional(),
    /** Expected `aud` (one of them). */
    audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
    /** Accepted signing algorithms (default: whatever the JWKS key is for). */
    algorithms: z.array(z.string().regex(/^(RS|PS|ES|HS)(256|384|512)$|^EdDSA$|^Ed25519$/, 'is not a JWS algorithm')).min(1).optional(),
    /** The claim holding the scopes: a space-separated string ('scope') or a list of strings. */
    models_claim: z.string().min(1).default('scope'),
    /** Scopes starting with this name models: 'model:linear', 'model:rank*', 'model:*'. */
    model_scope_prefix: z.string().min(1).default('model:'),
    admin_scope: z.string().min(1).default('infergate:admin'),
    metrics_scope: z.string().min(1).default('infergate:metrics'),
    /** Leeway for `exp` and `nbf`, for clocks that drift. */
    clock_tolerance_s: z.number().int().min(0).max(600).default(30),
  })
  .refine((j) => (j.jwks_url === undefined) !== (j.jwks_file === undefined), {
    message: 'needs exactly one of jwks_url or jwks_file',
  });

export const authSchema = z
  .strictObject({
    /** Only `false` turns access control off (logged as a warning at start). The admin API always needs an admin key. */
    enabled: z.boolean().default(true),
    api_keys: z.array(apiKeySchema).default([]),
    jwt: jwtSchema.optional(),
    /** /metrics without credentials (default false: admin or metrics keys only). */
    metrics_public: z.boolean().default(false),
  })
  .superRefine((auth, ctx) => {
    const names = new Map<string, number>();
    const digests = new Map<string, number>();
    const envs = new Map<string, number>();
    auth.api_keys.forEach((key, i) => {
      const seen = (map: Map<string, number>, value: string | undefined, field: string, what: string): void => {
        if (value === undefined) return;
        const first = map.get(value);
        if (first !== undefined) ctx.addIssue({ code: 'custom', path: ['api_keys', i, field], message: `${what} as api_keys.${first}` });
        else map.set(value, i);
      };
      seen(names, key.name, 'name', `duplicate name '${key.name}': the same`);
      seen(digests, key.key_sha256, 'key_sha256', 'the same key');
      seen(envs, key.key_env, 'key_env', 'the same variable');
    });
  });

/** A token bucket: `rps` tokens a second, up to `burst` saved (default: one second's worth). */
export const rateLimitSchema = z
  .strictObject({
    rps: z.number().positive('must be > 0').max(1_000_000),
    burst: z.number().int().min(1).max(10_000_000).optional(),
  })
  .transform((l) => ({ rps: l.rps, burst: l.burst ?? Math.max(1, Math.ceil(l.rps)) }));

export const rateLimitsSchema = z.strictObject({
  /** Buckets shared by every instance (one Lua script per check); without it each instance counts alone. */
  redis: z.string().regex(/^rediss?:\/\/\S+$/, 'must be a redis:// or rediss:// URL').optional(),
  key_prefix: z.string().regex(/^[A-Za-z0-9:_-]+$/).default('infergate'),
  /** A slow or unreachable Redis costs a check at most this; the instance's own buckets decide meanwhile. */
  command_timeout_ms: z.number().int().min(1).max(10_000).default(50),
  /** Per API key name (or JWT subject); `default` applies to every principal not listed. */
  per_key: z.record(principalName, rateLimitSchema).default({}),
  /** Per public model, whoever calls it. */
  per_model: z.record(z.string().regex(MODEL_NAME_PATTERN, 'is not a valid model name'), rateLimitSchema).default({}),
});

export type AuthConfig = z.output<typeof authSchema>;
export type ApiKeyConfig = AuthConfig['api_keys'][number];
export type JwtConfig = NonNullable<AuthConfig['jwt']>;
export type RateLimitConfig = z.output<typeof rateLimitSchema>;
export type RateLimitsConfig = z.output<typeof rateLimitsSchema>;

/** `rate_limits.per_model` entries naming no model of the config (checked on the raw value, like routes). */
export function rateLimitModelProblems(raw: unknown): { path: string[]; message: string }[] {
  if (!isRecord(raw) || !isRecord(raw.rate_limits) || !isRecord(raw.rate_limits.per_model)) return [];
  const models = isRecord(raw.models) ? Object.keys(raw.models) : [];
  const known = new Set(models);
  return Object.keys(raw.rate_limits.per_model)
    .filter((m) => !known.has(m))
    .map((m) => ({ path: ['rate_limits', 'per_model', m], message: `unknown model '${m}' (models: ${models.join(', ') || 'none'})` }));
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
