import type { Revocation } from '@quanta/auth';
import type { Migration, Store } from '@quanta/store';

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'token revocations',
    // The tenant and subject stay here for operators; the published list names neither.
    sql: `CREATE TABLE token_revocations (
      id bigserial PRIMARY KEY,
      jti text,
      tenant text,
      subject text,
      subject_digest text,
      issued_before timestamptz,
      expire_time timestamptz NOT NULL,
      revoke_time timestamptz NOT NULL
    );
    CREATE INDEX token_revocations_expire ON token_revocations (expire_time)`,
  },
];

/** A stored revocation: what services are told, with the id that orders them. */
export interface StoredRevocation extends Revocation {
  readonly id: bigint;
  readonly revokedAtMs: number;
}

export interface NewRevocation {
  readonly jti?: string;
  readonly tenant?: string;
  readonly subject?: string;
  readonly subjectDigest?: string;
  readonly issuedBeforeMs?: number;
  readonly expiresAtMs: number;
}

/** Revoked tokens in crypto's store, so that they stay revoked across restarts. */
export interface RevocationStore {
  add(revocation: NewRevocation, nowMs: number): Promise<StoredRevocation>;
  /** The version (grows with every revocation) and every entry not yet expired at `nowMs`. */
  list(nowMs: number): Promise<{ version: bigint; revocations: StoredRevocation[] }>;
  /** The version alone, for a caller that may hold the list already. */
  version(): Promise<bigint>;
  /** Deletes the entries whose tokens have all expired by `nowMs`; returns how many went. */
  prune(nowMs: number): Promise<number>;
}

interface Row {
  id: string | number | bigint;
  jti: string | null;
  subject_digest: string | null;
  issued_before: Date | string | null;
  expire_time: Date | string;
  revoke_time: Date | string;
}

function fromRow(row: Row): StoredRevocation {
  return {
    id: BigInt(row.id),
    ...(row.jti === null ? {} : { jti: row.jti }),
    ...(row.subject_digest === null ? {} : { subjectDigest: row.subject_digest }),
    ...(row.issued_before === null ? {} : { issuedBeforeMs: new Date(row.issued_before).getTime() }),
    expiresAtMs: new Date(row.expire_time).getTime(),
    revokedAtMs: new Date(row.revoke_time).getTime(),
  };
}

export async function createRevocationStore(store: Store): Promise<RevocationStore> {
  await store.migrate('crypto-revocations', MIGRATIONS);
  const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());
  const version = async (): Promise<bigint> => {
    const rows = await store.query<{ max: string | number | bigint | null }>(
      'SELECT max(id) AS max FROM token_revocations',
    );
    return BigInt(rows[0]?.max ?? 0);
  };
  return {
    async add(r, nowMs) {
      const rows = await store.query<Row>(
        `INSERT INTO token_revocations (jti, tenant, subject, subject_digest, issued_before, expire_time, revoke_time)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING id, jti, subject_digest, issued_before, expire_time, revoke_time`,
        [
          r.jti ?? null,
          r.tenant ?? null,
          r.subject ?? null,
          r.subjectDigest ?? null,
          iso(r.issuedBeforeMs),
          iso(r.expiresAtMs),
          iso(nowMs),
        ],
      );
      const row = rows[0];
      if (row === undefined) throw new Error('token_revocations: INSERT returned no row');
      return fromRow(row);
    },
    async list(nowMs) {
      const rows = await store.query<Row>(
        `SELECT id, jti, subject_digest, issued_before, expire_time, revoke_time FROM token_revocations
         WHERE expire_time > $1 ORDER BY id`,
        [iso(nowMs)],
      );
      return { version: await version(), revocations: rows.map(fromRow) };
    },
    version,
    async prune(nowMs) {
      const rows = await store.query<{ id: string }>(
        'DELETE FROM token_revocations WHERE expire_time <= $1 RETURNING id',
        [iso(nowMs)],
      );
      return rows.length;
    },
  };
}
