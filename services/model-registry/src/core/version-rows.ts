// How version rows become the API's ModelVersion: with their tags, lineage and aliases.
import { registry as pb } from '@quanta/contracts';
import type { Queryable } from '@quanta/store';
import { loadTags } from './tags.js';

export interface VersionRow {
  model: string;
  version: number;
  description: string;
  status: string;
  status_reason: string;
  sha256: string;
  size_bytes: bigint;
  signature: string | null;
  compression: string | null;
  created_by: string;
  created_at: Date;
  updated_at: Date;
}

interface LineageRow {
  version: number;
  source_uri: string | null;
  parent_model: string | null;
  parent_version: number | null;
  transform: string | null;
  transform_params: string | null;
}

export const COLUMNS =
  'model, version, description, status, status_reason, sha256, size_bytes, signature, compression, created_by, ' +
  'created_at, updated_at';

export const STATUS: Record<string, pb.VersionStatus> = {
  PENDING: pb.VersionStatus.VERSION_STATUS_PENDING,
  READY: pb.VersionStatus.VERSION_STATUS_READY,
  FAILED: pb.VersionStatus.VERSION_STATUS_FAILED,
};

function toLineage(row: LineageRow | undefined): pb.Lineage | undefined {
  if (row === undefined) return undefined;
  if (row.source_uri !== null) return { origin: { $case: 'sourceUri', value: row.source_uri } };
  if (row.parent_model !== null && row.parent_version !== null) {
    return {
      origin: {
        $case: 'parent',
        value: {
          model: row.parent_model,
          version: row.parent_version,
          transform: row.transform ?? '',
          transformParams:
            row.transform_params === null ? {} : (JSON.parse(row.transform_params) as Record<string, string>),
        },
      },
    };
  }
  return undefined;
}

/** Versions of one model as the API shows them, with tags, lineage and aliases. */
export async function toVersions(
  q: Queryable,
  tenant: string,
  model: string,
  rows: readonly VersionRow[],
): Promise<pb.ModelVersion[]> {
  const numbers = rows.map((r) => r.version);
  const tags = await loadTags(q, tenant, model, numbers);
  const lineage =
    numbers.length === 0
      ? []
      : await q.query<LineageRow>(
          `SELECT version, source_uri, parent_model, parent_version, transform, transform_params
           FROM registry_lineage WHERE tenant = $1 AND model = $2 AND version = ANY($3::int[])`,
          [tenant, model, numbers],
        );
  const aliases =
    numbers.length === 0
      ? []
      : await q.query<{ alias: string; version: number }>(
          `SELECT alias, version FROM registry_aliases
           WHERE tenant = $1 AND model = $2 AND version = ANY($3::int[]) ORDER BY alias`,
          [tenant, model, numbers],
        );
  return rows.map((row) => ({
    model: row.model,
    version: row.version,
    description: row.description,
    tags: tags.get(row.version) ?? {},
    status: STATUS[row.status] ?? pb.VersionStatus.VERSION_STATUS_UNSPECIFIED,
    statusReason: row.status_reason,
    sha256: row.sha256,
    sizeBytes: BigInt(row.size_bytes),
    signature: row.signature === null ? undefined : pb.OnnxSignature.fromJSON(JSON.parse(row.signature)),
    lineage: toLineage(lineage.find((l) => l.version === row.version)),
    aliases: aliases.filter((a) => a.version === row.version).map((a) => a.alias),
    createdBy: row.created_by,
    createTime: row.created_at,
    updateTime: row.updated_at,
    compression: row.compression === null ? undefined : pb.CompressionReport.fromJSON(JSON.parse(row.compression)),
  }));
}
