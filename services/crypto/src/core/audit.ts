import type { Queryable } from '@quanta/store';
import { invalidArgument } from '@quanta/service-kit';
import { decodePageToken, encodePageToken, pageSize } from './page-token.js';
import type { AuditEvent } from './types.js';

export interface AuditRecord {
  tenant: string;
  subject: string;
  keyName: string;
  version: number;
  operation: string;
  outcome: 'ok' | 'error';
  errorCode?: string;
  traceId?: string;
  time: Date;
}

/** Writes only identifiers and outcomes: never plaintext, ciphertext or key material. */
export async function recordAudit(db: Queryable, event: AuditRecord): Promise<void> {
  await db.query(
    `INSERT INTO crypto_audit (tenant, subject, key_name, version, operation, outcome, error_code, trace_id, time)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
    [
      event.tenant,
      event.subject,
      event.keyName,
      event.version,
      event.operation,
      event.outcome,
      event.errorCode ?? null,
      event.traceId ?? null,
      event.time,
    ],
  );
}

interface AuditRow {
  id: bigint;
  tenant: string;
  subject: string;
  key_name: string;
  version: number;
  operation: string;
  outcome: 'ok' | 'error';
  error_code: string | null;
  trace_id: string | null;
  time: Date;
}

/** Newest first; the page token is the last id seen. `tenant` undefined: every tenant's. */
export async function listAudit(
  db: Queryable,
  tenant: string | undefined,
  filter: { keyName?: string; pageSize: number; pageToken?: string },
): Promise<{ events: AuditEvent[]; nextPageToken: string }> {
  const size = pageSize(filter.pageSize);
  const cursor = decodePageToken('audit', filter.pageToken);
  if (cursor !== undefined && !/^[0-9]{1,19}$/.test(cursor))
    throw invalidArgument('page_token is invalid: pass the next_page_token of a previous page unchanged');
  const before = cursor === undefined ? null : BigInt(cursor);
  const rows = await db.query<AuditRow>(
    `SELECT * FROM crypto_audit
     WHERE ($1::text IS NULL OR tenant = $1) AND ($2::text IS NULL OR key_name = $2) AND ($3::bigint IS NULL OR id < $3)
     ORDER BY id DESC LIMIT $4`,
    [tenant ?? null, filter.keyName ?? null, before, size + 1],
  );
  const page = rows.slice(0, size);
  const events = page.map((r): AuditEvent => ({
    id: r.id.toString(),
    tenant: r.tenant,
    subject: r.subject,
    keyName: r.key_name,
    version: r.version,
    operation: r.operation,
    outcome: r.outcome,
    ...(r.error_code === null ? {} : { errorCode: r.error_code }),
    ...(r.trace_id === null ? {} : { traceId: r.trace_id }),
    time: r.time,
  }));
  const last = page[page.length - 1];
  return { events, nextPageToken: rows.length > size && last ? encodePageToken('audit', last.id.toString()) : '' };
}
