import type { CallContext } from '@quanta/service-kit';
import { hasScope, permissionDenied, unauthenticated } from '@quanta/service-kit';

/** The caller's tenant: every row and blob the call touches is scoped to it. */
export function tenantOf(ctx: CallContext): string {
  if (ctx.principal === undefined) throw unauthenticated(`${ctx.method} needs an access token`);
  return ctx.principal.tenant;
}

/** The tenant a request names, or the caller's; another tenant needs the `admin` scope. */
export function tenantFor(ctx: CallContext, requested: string): string {
  const own = tenantOf(ctx);
  if (requested === '' || requested === own) return own;
  if (ctx.principal !== undefined && hasScope(ctx.principal, 'admin')) return requested;
  throw permissionDenied(`${ctx.method}: acting on tenant "${requested}" needs the admin scope`);
}
