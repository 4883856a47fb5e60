import type * as grpc from '@grpc/grpc-js';
import type { HandlerScope } from './auth.js';

/**
 * Whose data a method touches, as the README's access matrix states it:
 * - `none`: no tenant's data (health, reflection, public metadata, the JWKS); no token needed when
 *   the scope is `public`.
 * - `own`: the caller's tenant only. A resource of another tenant behaves like one that does not
 *   exist (NOT_FOUND); lists and streams show the caller's tenant alone.
 * - `any`: a platform call that names the tenant itself (IssueToken, RevokeToken, Ingest of records
 *   that carry their tenant); only platform scopes (`admin`, `monitoring:write`) are given it.
 */
export type TenantRule = 'none' | 'own' | 'any';

/** What one RPC needs: the scope its caller's token must grant (`admin` grants all) and its tenant rule. */
export interface AccessRule {
  readonly scope: HandlerScope;
  readonly tenant: TenantRule;
}

/**
 * A service's access matrix: every method of every service it serves, keyed by full method path
 * (`/quanta.crypto.v1.CryptoService/Encrypt`). `addService` takes it, enforces each rule before the
 * handler runs, and refuses a service with a method the table does not declare.
 */
export type AccessTable = Readonly<Record<string, AccessRule>>;

/**
 * The rules of the services the kit adds itself to every server: health and reflection are open
 * (load balancers and `buf curl` call them without a token) and hold no tenant's data.
 */
export const KIT_ACCESS: AccessTable = {
  '/grpc.health.v1.Health/Check': { scope: 'public', tenant: 'none' },
  '/grpc.health.v1.Health/Watch': { scope: 'public', tenant: 'none' },
  '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo': { scope: 'public', tenant: 'none' },
  '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo': { scope: 'public', tenant: 'none' },
};

/**
 * What is wrong with `table` for `definition`: methods it does not declare, rules that cannot hold.
 * Entries for other services are ignored (one table may cover several). Empty when all is well.
 */
export function accessTableProblems(definition: grpc.ServiceDefinition, table: AccessTable): string[] {
  const problems: string[] = [];
  for (const method of Object.values(definition)) {
    const rule = table[method.path];
    if (rule === undefined) {
      problems.push(
        `${method.path} has no access rule: declare { scope, tenant } for it in the service's access table`,
      );
    } else if (rule.scope === 'public' && rule.tenant !== 'none') {
      problems.push(`${method.path} is public, so its tenant rule must be 'none', not '${rule.tenant}'`);
    }
  }
  return problems;
}
