import type { Queryable } from '@quanta/store';
import { decodePageToken, encodePageToken, pageSize } from './page-token.js';
import type { KeyConfig, KeyInfo, KeyType } from './types.js';

export interface KeyRow {
  tenant: string;
  name: string;
  type: KeyType;
  latest_version: number;
  min_decryption_version: number;
  min_encryption_version: number;
  deletion_allowed: boolean;
  exportable: boolean;
  auto_rotate_period_seconds: number;
  created_at: Date;
  updated_at: Date;
}

export interface VersionRow {
  version: number;
  wrapped_material: Buffer;
  public_key: Buffer | null;
  created_at: Date;
}

export function configOf(row: KeyRow): KeyConfig {
  return {
    minDecryptionVersion: row.min_decryption_version,
    minEncryptionVersion: row.min_encryption_version,
    deletionAllowed: row.deletion_allowed,
    exportable: row.exportable,
    autoRotatePeriodSeconds: row.auto_rotate_period_seconds,
  };
}

export function toKeyInfo(
  row: KeyRow,
  versions: readonly Pick<VersionRow, 'version' | 'created_at' | 'public_key'>[],
): KeyInfo {
  return {
    tenant: row.tenant,
    name: row.name,
    type: row.type,
    latestVersion: row.latest_version,
    ...configOf(row),
    versions: [...versions]
      .sort((a, b) => a.version - b.version)
      .map((v) => ({
        version: v.version,
        createdAt: v.created_at,
        ...(v.public_key ? { publicKey: v.public_key } : {}),
      })),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export async function loadKey(
  db: Queryable,
  tenant: string,
  name: string,
  forUpdate = false,
): Promise<KeyRow | undefined> {
  const rows = await db.query<KeyRow>(
    `SELECT * FROM crypto_keys WHERE tenant = $1 AND name = $2${forUpdate ? ' FOR UPDATE' : ''}`,
    [tenant, name],
  );
  return rows[0];
}

/** The key with its latest version in one round trip (the encrypt/sign path). */
export async function loadKeyWithLatest(
  db: Queryable,
  tenant: string,
  name: string,
): Promise<{ row: KeyRow; latest: VersionRow } | undefined> {
  const rows = await db.query<KeyRow & { v_wrapped: Buffer; v_public_key: Buffer | null; v_created_at: Date }>(
    `SELECT k.*, v.wrapped_material AS v_wrapped, v.public_key AS v_public_key, v.created_at AS v_created_at
       FROM crypto_keys k
       JOIN crypto_key_versions v ON v.tenant = k.tenant AND v.name = k.name AND v.version = k.latest_version
      WHERE k.tenant = $1 AND k.name = $2`,
    [tenant, name],
  );
  const r = rows[0];
  if (!r) return undefined;
  const { v_wrapped, v_public_key, v_created_at, ...row } = r;
  return {
    row,
    latest: {
      version: row.latest_version,
      wrapped_material: v_wrapped,
      public_key: v_public_key,
      created_at: v_created_at,
    },
  };
}

/** Metadata of every version (no material). */
export async function loadVersionInfo(
  db: Queryable,
  tenant: string,
  name: string,
): Promise<Pick<VersionRow, 'version' | 'created_at' | 'public_key'>[]> {
  return db.query(
    'SELECT version, created_at, public_key FROM crypto_key_versions WHERE tenant = $1 AND name = $2 ORDER BY version',
    [tenant, name],
  );
}

export async function loadVersion(
  db: Queryable,
  tenant: string,
  name: string,
  version: number,
): Promise<VersionRow | undefined> {
  const rows = await db.query<VersionRow>(
    `SELECT version, wrapped_material, public_key, created_at FROM crypto_key_versions
     WHERE tenant = $1 AND name = $2 AND version = $3`,
    [tenant, name, version],
  );
  return rows[0];
}

/** Versions in [from, to], newest first (MultiFernet order: primary first). */
export async function loadVersionRange(
  db: Queryable,
  tenant: string,
  name: string,
  from: number,
  to: number,
): Promise<VersionRow[]> {
  return db.query<VersionRow>(
    `SELECT version, wrapped_material, public_key, created_at FROM crypto_key_versions
     WHERE tenant = $1 AND name = $2 AND version >= $3 AND version <= $4 ORDER BY version DESC`,
    [tenant, name, from, to],
  );
}

/** false when the name is taken in this tenant. */
export async function insertKey(db: Queryable, row: KeyRow): Promise<boolean> {
  const inserted = await db.query(
    `INSERT INTO crypto_keys (tenant, name, type, latest_version, min_decryption_version, min_encryption_version,
       deletion_allowed, exportable, auto_rotate_period_seconds, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (tenant, name) DO NOTHING RETURNING name`,
    [
      row.tenant,
      row.name,
      row.type,
      row.latest_version,
      row.min_decryption_version,
      row.min_encryption_version,
      row.deletion_allowed,
      row.exportable,
      row.auto_rotate_period_seconds,
      row.created_at,
      row.updated_at,
    ],
  );
  return inserted.length === 1;
}

export async function insertVersion(db: Queryable, tenant: string, name: string, v: VersionRow): Promise<void> {
  await db.query(
    `INSERT INTO crypto_key_versions (tenant, name, version, wrapped_material, public_key, created_at)
     VALUES ($1, $2, $3, $4, $5, $6)`,
    [tenant, name, v.version, v.wrapped_material, v.public_key, v.created_at],
  );
}

export async function updateKey(db: Queryable, row: KeyRow): Promise<void> {
  await db.query(
    `UPDATE crypto_keys SET latest_version = $3, min_decryption_version = $4, min_encryption_version = $5,
       deletion_allowed = $6, exportable = $7, auto_rotate_period_seconds = $8, updated_at = $9
     WHERE tenant = $1 AND name = $2`,
    [
      row.tenant,
      row.name,
      row.latest_version,
      row.min_decryption_version,
      row.min_encryption_version,
      row.deletion_allowed,
      row.exportable,
      row.auto_rotate_period_seconds,
      row.updated_at,
    ],
  );
}

export async function deleteKeyRows(db: Queryable, tenant: string, name: string): Promise<void> {
  await db.query('DELETE FROM crypto_keys WHERE tenant = $1 AND name = $2', [tenant, name]);
}

/** By name; the page token carries the last name seen. */
export async function listKeyPage(
  db: Queryable,
  tenant: string,
  page: { pageSize: number; pageToken?: string },
): Promise<{ keys: KeyInfo[]; nextPageToken: string }> {
  const size = pageSize(page.pageSize);
  const after = decodePageToken('keys', page.pageToken) ?? null;
  const rows = await db.query<KeyRow>(
    'SELECT * FROM crypto_keys WHERE tenant = $1 AND ($2::text IS NULL OR name > $2) ORDER BY name LIMIT $3',
    [tenant, after, size + 1],
  );
  const keys = rows.slice(0, size);
  const versions =
    keys.length === 0
      ? []
      : await db.query<Pick<VersionRow, 'version' | 'created_at' | 'public_key'> & { name: string }>(
          `SELECT name, version, created_at, public_key FROM crypto_key_versions
           WHERE tenant = $1 AND name = ANY($2::text[])`,
          [tenant, keys.map((k) => k.name)],
        );
  const last = keys[keys.length - 1];
  return {
    keys: keys.map((k) =>
      toKeyInfo(
        k,
        versions.filter((v) => v.name === k.name),
      ),
    ),
    nextPageToken: rows.length > size && last ? encodePageToken('keys', last.name) : '',
  };
}
