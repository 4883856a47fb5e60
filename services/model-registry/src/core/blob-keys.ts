import type { Queryable } from '@quanta/store';
import type { BlobReadHandle } from './blob-store.js';
import { SealedFormatError, openSealedBlob } from './sealed-format.js';
import type { SealedHeader } from './sealed-format.js';

/** A stored file's data key as currently wrapped (the database's copy, which wins over the file header's). */
export interface BlobDataKey {
  readonly keyName: string;
  readonly keyVersion: number;
  readonly wrappedKey: Buffer;
}

export interface BlobKeyRow {
  readonly tenant: string;
  readonly sha256: string;
  /** Undefined for a file stored before the database kept its key: its header's key is current. */
  readonly key: BlobDataKey | undefined;
}

interface Row {
  tenant: string;
  sha256: string;
  key_name: string | null;
  key_version: number | null;
  wrapped_key: Uint8Array | null;
}

const keyOf = (r: Row): BlobDataKey | undefined =>
  r.key_name === null || r.key_version === null || r.wrapped_key === null
    ? undefined
    : { keyName: r.key_name, keyVersion: r.key_version, wrappedKey: Buffer.from(r.wrapped_key) };

/** Every stored file of every tenant with its key, in a stable order. */
export async function listBlobKeys(q: Queryable): Promise<BlobKeyRow[]> {
  const rows = await q.query<Row>(
    'SELECT tenant, sha256, key_name, key_version, wrapped_key FROM registry_blobs ORDER BY tenant, sha256',
  );
  return rows.map((r) => ({ tenant: r.tenant, sha256: r.sha256, key: keyOf(r) }));
}

/** The database's copy of a file's data key; undefined when the file header's is current. */
export async function blobDataKey(q: Queryable, tenant: string, sha256: string): Promise<BlobDataKey | undefined> {
  const rows = await q.query<Row>(
    'SELECT tenant, sha256, key_name, key_version, wrapped_key FROM registry_blobs WHERE tenant = $1 AND sha256 = $2',
    [tenant, sha256],
  );
  return rows[0] === undefined ? undefined : keyOf(rows[0]);
}

/**
 * Replaces a file's data key when it is still `expected` (undefined: never recorded): a compare and
 * set, so that two rewraps (two replicas) never overwrite each other's newer key with an older one.
 * Returns whether it replaced it.
 */
export async function replaceBlobDataKey(
  q: Queryable,
  tenant: string,
  sha256: string,
  expected: BlobDataKey | undefined,
  next: BlobDataKey,
): Promise<boolean> {
  const rows = await q.query(
    `UPDATE registry_blobs SET key_name = $3, key_version = $4, wrapped_key = $5
     WHERE tenant = $1 AND sha256 = $2 AND wrapped_key IS NOT DISTINCT FROM $6 RETURNING sha256`,
    [tenant, sha256, next.keyName, next.keyVersion, next.wrappedKey, expected?.wrappedKey ?? null],
  );
  return rows.length === 1;
}

export interface KeyVersionCount {
  readonly keyName: string;
  readonly keyVersion: number;
  readonly versions: number;
  readonly files: number;
}

/** Versions and files per key version (files whose key is not recorded yet are left out). */
export async function countByKeyVersion(q: Queryable): Promise<KeyVersionCount[]> {
  const rows = await q.query<{
    key_name: string;
    key_version: number;
    versions: bigint | number | string;
    files: bigint | number | string;
  }>(
    `SELECT b.key_name, b.key_version, count(v.version) AS versions, count(DISTINCT (b.tenant, b.sha256)) AS files
     FROM registry_blobs b LEFT JOIN registry_versions v ON v.tenant = b.tenant AND v.sha256 = b.sha256
     WHERE b.key_name IS NOT NULL GROUP BY b.key_name, b.key_version ORDER BY b.key_name, b.key_version`,
  );
  return rows.map((r) => ({
    keyName: r.key_name,
    keyVersion: r.key_version,
    versions: Number(r.versions),
    files: Number(r.files),
  }));
}

/** Reads only the header of a sealed file (the key as first wrapped); the segments stay unread. */
export async function readSealedHeader(file: BlobReadHandle): Promise<SealedHeader> {
  let found: SealedHeader | undefined;
  const stop = new Error('header read');
  try {
    for await (const segment of openSealedBlob(file, (header) => {
      found = header;
      return Promise.reject(stop);
    })) {
      segment.fill(0);
    }
  } catch (error: unknown) {
    if (error !== stop) throw error;
  }
  if (found === undefined) throw new SealedFormatError('sealed blob has no header');
  return found;
}
