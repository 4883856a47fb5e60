// The rows of stored model files (registry_blobs): one per tenant and content.
import type { Queryable } from '@quanta/store';

/** Records the blob if new; returns whether it was already stored (then the caller drops its copy). */
export async function recordBlob(
  q: Queryable,
  tenant: string,
  blob: {
    sha256: string;
    sizeBytes: number;
    storedBytes: number;
    dataKey?: { keyName: string; keyVersion: number; wrappedKey: Buffer };
  },
  now: Date,
): Promise<boolean> {
  const inserted = await q.query(
    `INSERT INTO registry_blobs (tenant, sha256, size_bytes, stored_bytes, created_at, key_name, key_version,
       wrapped_key)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (tenant, sha256) DO NOTHING RETURNING sha256`,
    [
      tenant,
      blob.sha256,
      blob.sizeBytes,
      blob.storedBytes,
      now,
      blob.dataKey?.keyName ?? null,
      blob.dataKey?.keyVersion ?? null,
      blob.dataKey?.wrappedKey ?? null,
    ],
  );
  return inserted.length === 0;
}

export async function blobRecorded(q: Queryable, tenant: string, sha256: string): Promise<boolean> {
  return (await q.query('SELECT 1 FROM registry_blobs WHERE tenant = $1 AND sha256 = $2', [tenant, sha256])).length > 0;
}
