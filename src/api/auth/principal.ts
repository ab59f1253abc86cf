import { ModelScope } from './model-scope.js';

/** Who a request comes from, as its credentials say, and what it may do. */
export interface Principal {
  /** The API key's configured name, the token's subject, or 'admin' (a key of the `admin:` section); never the secret. */
  readonly name: string;
  readonly kind: 'api_key' | 'jwt' | 'anonymous';
  readonly models: ModelScope;
  /** /admin/* (and /metrics). */
  readonly admin: boolean;
  /** /metrics. */
  readonly metrics: boolean;
}

/** Every caller while access control is off (`auth.enabled: false`): any model, not the admin API. */
export const ANONYMOUS: Principal = { name: 'anonymous', kind: 'anonymous', models: ModelScope.ALL, admin: false, metrics: true };

/** How a principal is named in errors: "API key 'ranker'", "token of 'svc-7'". */
export function describePrincipal(p: Principal): string {
  if (p.kind === 'jwt') return `token of '${p.name}'`;
  if (p.kind === 'anonymous') return 'an anonymous caller';
  return p.name === 'admin' ? 'the admin key' : `API key '${p.name}'`;
}
