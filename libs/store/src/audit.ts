import type { Queryable } from './types.js';

/**
 * One audited change, or one attempt at one: who (subject, tenant), what (action, resource), when,
 * the trace id and the outcome. Only identifiers: never a payload, a token or key material.
 */
export interface AuditRecord {
  readonly tenant: string;
  readonly subject: string;
  /** The RPC or operation, e.g. `SetAlias`. */
  readonly action: string;
  /** What it acted on, e.g. `cifar:3`; '' when the request named nothing. */
  readonly resource: string;
  readonly outcome: 'ok' | 'error';
  /** The gRPC status name of a failure, e.g. `NOT_FOUND`. */
  readonly errorCode?: string | undefined;
  readonly traceId?: string | undefined;
  readonly time: Date;
}

export interface StoredAuditRecord extends AuditRecord {
  /** Increasing in insertion order within one table. */
  readonly id: string;
}

export interface AuditFilter {
  /** Only this tenant's events; undefined for every tenant (an `admin` caller). */
  readonly tenant?: string | undefined;
  readonly since?: Date | undefined;
  readonly subject?: string | undefined;
  readonly action?: string | undefined;
  /** 1-1000; 0 or undefined means 100. */
  readonly pageSize?: number | undefined;
  /** The `nextPageToken` of the previous page. */
  readonly pageToken?: string | undefined;
}

/** Thrown for a page token this module did not make; services map it to INVALID_ARGUMENT. */
export class AuditPageTokenError extends Error {
  override readonly name = 'AuditPageTokenError';
}

const TABLE = /^[a-z][a-z0-9_]{0,62}$/;

function checkTable(table: string): string {
  if (!TABLE.test(table)) throw new Error(`audit table name "${table}" is not a plain lowercase SQL identifier`);
  return table;
}

/**
 * The DDL of an audit table, for a service's migration. One shape for every service, so that the
 * writer and the query below serve them all; `(tenant, id)` serves the tenant-scoped newest-first
 * listing, `(id)` the all-tenants one.
 */
export function auditTableSql(table: string): string {
  const t = checkTable(table);
  return `
CREATE TABLE ${t} (
  id bigserial PRIMARY KEY,
  tenant text NOT NULL,
  subject text NOT NULL,
  action text NOT NULL,
  resource text NOT NULL,
  outcome text NOT NULL CHECK (outcome IN ('ok', 'error')),
  error_code text,
  trace_id text,
  time timestamptz NOT NULL
);
CREATE INDEX ${t}_by_tenant ON ${t} (tenant, id);
`;
}

/** Appends one event. */
export async function recordAuditEvent(db: Queryable, table: string, event: AuditRecord): Promise<void> {
  await db.query(
    `INSERT INTO ${checkTable(table)} (tenant, subject, action, resource, outcome, error_code, trace_id, time)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
    [
      event.tenant,
      event.subject,
      event.action,
      event.resource,
      event.outcome,
      event.errorCode ?? null,
      event.traceId ?? null,
      event.time,
    ],
  );
}

interface AuditRow {
  id: bigint | number | string;
  tenant: string;
  subject: string;
  action: string;
  resource: string;
  outcome: 'ok' | 'error';
  error_code: string | null;
  trace_id: string | null;
  time: Date;
}

const PAGE_PREFIX = 'audit:';

function decodeCursor(token: string | undefined): bigint | null {
  if (token === undefined || token === '') return null;
  const text = Buffer.from(token, 'base64url').toString('utf8');
  const id = text.startsWith(PAGE_PREFIX) ? text.slice(PAGE_PREFIX.length) : '';
  if (!/^[0-9]{1,19}$/.test(id))
    throw new AuditPageTokenError('page_token is invalid: pass the next_page_token of a previous page unchanged');
  return BigInt(id);
}

/** Newest first, filtered; the page token is the last id seen. */
export async function listAuditEvents(
  db: Queryable,
  table: string,
  filter: AuditFilter,
): Promise<{ events: StoredAuditRecord[]; nextPageToken: string }> {
  const requested = filter.pageSize ?? 0;
  const size = requested <= 0 ? 100 : Math.min(requested, 1000);
  const before = decodeCursor(filter.pageToken);
  const rows = await db.query<AuditRow>(
    `SELECT * FROM ${checkTable(table)}
     WHERE ($1::text IS NULL OR tenant = $1) AND ($2::timestamptz IS NULL OR time >= $2)
       AND ($3::text IS NULL OR subject = $3)
       AND ($4::text IS NULL OR action = $4) AND ($5::bigint IS NULL OR id < $5)
     ORDER BY id DESC LIMIT $6`,
    [filter.tenant ?? null, filter.since ?? null, filter.subject || null, filter.action || null, before, size + 1],
  );
  const page = rows.slice(0, size);
  const events = page.map((r): StoredAuditRecord => ({
    id: String(r.id),
    tenant: r.tenant,
    subject: r.subject,
    action: r.action,
    resource: r.resource,
    outcome: r.outcome,
    ...(r.error_code === null ? {} : { errorCode: r.error_code }),
    ...(r.trace_id === null ? {} : { traceId: r.trace_id }),
    time: r.time,
  }));
  const last = page[page.length - 1];
  return {
    events,
    nextPageToken:
      rows.length > size && last !== undefined
        ? Buffer.from(`${PAGE_PREFIX}${String(last.id)}`).toString('base64url')
        : '',
  };
}
