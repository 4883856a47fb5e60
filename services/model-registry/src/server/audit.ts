import { registry as pb } from '@quanta/contracts';
import { createAuditor, hasScope, invalidArgument, unary } from '@quanta/service-kit';
import type { Auditor, CallContext } from '@quanta/service-kit';
import { AuditPageTokenError, listAuditEvents, recordAuditEvent } from '@quanta/store';
import type { Store } from '@quanta/store';
import { tenantOf } from './context.js';

/** The registry's audit table (created by REGISTRY_MIGRATIONS with `auditTableSql`). */
export const REGISTRY_AUDIT_TABLE = 'registry_audit';

export type RegistryAudit = Auditor;

export function createRegistryAudit(store: Store): RegistryAudit {
  return createAuditor((entry) => recordAuditEvent(store, REGISTRY_AUDIT_TABLE, entry));
}

const OUTCOME = { ok: pb.AuditOutcome.AUDIT_OUTCOME_OK, error: pb.AuditOutcome.AUDIT_OUTCOME_ERROR } as const;

/** ListAuditEvents: the caller's tenant, or every tenant for an `admin` token. */
export function createAuditHandlers(store: Store): Pick<pb.RegistryServiceServer, 'listAuditEvents'> {
  return {
    listAuditEvents: unary<pb.ListAuditEventsRequest, pb.ListAuditEventsResponse>(async (req, ctx: CallContext) => {
      const all = ctx.principal !== undefined && hasScope(ctx.principal, 'admin');
      try {
        const page = await listAuditEvents(store, REGISTRY_AUDIT_TABLE, {
          tenant: all ? undefined : tenantOf(ctx),
          since: req.since,
          subject: req.subject,
          action: req.action,
          pageSize: req.pageSize,
          pageToken: req.pageToken,
        });
        return {
          events: page.events.map((e) => ({
            ...e,
            outcome: OUTCOME[e.outcome],
            errorCode: e.errorCode ?? '',
            traceId: e.traceId ?? '',
          })),
          nextPageToken: page.nextPageToken,
        };
      } catch (error: unknown) {
        if (error instanceof AuditPageTokenError) throw invalidArgument(error.message);
        throw error;
      }
    }),
  };
}
