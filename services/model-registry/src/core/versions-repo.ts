import { registry as pb } from '@quanta/contracts';
import { invalidArgument, notFound } from '@quanta/service-kit';
import type { Queryable } from '@quanta/store';
import type { ModelKey } from './models-repo.js';
import { requireModelRow, touchModel } from './models-repo.js';
import type { ModelRef } from './names.js';
import { decodePageToken, encodePageToken } from './page-token.js';
import { changeTags, tagFilter } from './tags.js';
import { COLUMNS, STATUS, toVersions } from './version-rows.js';
import type { VersionRow } from './version-rows.js';

/** The version number a reference points to now; NOT_FOUND with what exists when it points nowhere. */
export async function resolveVersion(q: Queryable, tenant: string, ref: ModelRef): Promise<number> {
  const model = await requireModelRow(q, { tenant, name: ref.model });
  switch (ref.kind) {
    case 'version': {
      const rows = await q.query('SELECT 1 FROM registry_versions WHERE tenant = $1 AND model = $2 AND version = $3', [
        tenant,
        ref.model,
        ref.version,
      ]);
      if (rows.length === 0) {
        throw notFound(
          `model "${ref.model}" has no version ${ref.version}; ` +
            (model.latest_version === 0 ? 'it has no versions yet' : `latest is ${model.latest_version}`),
        );
      }
      return ref.version;
    }
    case 'alias': {
      const [row] = await q.query<{ version: number }>(
        'SELECT version FROM registry_aliases WHERE tenant = $1 AND model = $2 AND alias = $3',
        [tenant, ref.model, ref.alias],
      );
      if (row === undefined) throw notFound(`model "${ref.model}" has no alias "${ref.alias}"`);
      return row.version;
    }
    case 'latest': {
      const [row] = await q.query<{ version: number }>(
        "SELECT max(version) AS version FROM registry_versions WHERE tenant = $1 AND model = $2 AND status = 'READY'",
        [tenant, ref.model],
      );
      if (row?.version === undefined || row.version === null)
        throw notFound(`model "${ref.model}" has no READY version yet`);
      return row.version;
    }
  }
}

export async function getVersion(
  q: Queryable,
  tenant: string,
  model: string,
  version: number,
): Promise<pb.ModelVersion> {
  const rows = await q.query<VersionRow>(
    `SELECT ${COLUMNS} FROM registry_versions WHERE tenant = $1 AND model = $2 AND version = $3`,
    [tenant, model, version],
  );
  const [found] = await toVersions(q, tenant, model, rows);
  if (found === undefined) throw notFound(`model "${model}" has no version ${version}`);
  return found;
}

export async function listVersions(
  q: Queryable,
  key: ModelKey,
  filter: { status: pb.VersionStatus; tags: Readonly<Record<string, string>> },
  page: { size: number; token: string },
): Promise<{ versions: pb.ModelVersion[]; nextPageToken: string }> {
  await requireModelRow(q, key);
  const statusName = Object.entries(STATUS).find(([, s]) => s === filter.status)?.[0] ?? '';
  const scope = `versions|${key.name}|${statusName}|${JSON.stringify(Object.entries(filter.tags).sort())}`;
  const cursor = decodePageToken(scope, page.token);
  const before = cursor === undefined ? 2 ** 31 - 1 : Number(cursor);
  const tags = tagFilter(filter.tags, 6, 'v.model', 'v.version');
  const rows = await q.query<VersionRow>(
    `SELECT ${COLUMNS} FROM registry_versions v
     WHERE v.tenant = $1 AND v.model = $2 AND v.version < $3 AND ($4 = '' OR v.status = $4)${tags.sql}
     ORDER BY v.version DESC LIMIT $5`,
    [key.tenant, key.name, before, statusName, page.size + 1, ...tags.params],
  );
  const more = rows.length > page.size;
  const pageRows = rows.slice(0, page.size);
  const last = pageRows[pageRows.length - 1];
  return {
    versions: await toVersions(q, key.tenant, key.name, pageRows),
    nextPageToken: more && last !== undefined ? encodePageToken(scope, String(last.version)) : '',
  };
}

export async function updateVersion(
  q: Queryable,
  tenant: string,
  model: string,
  version: number,
  change: { description: string | undefined; setTags: Readonly<Record<string, string>>; removeTags: readonly string[] },
  now: Date,
): Promise<void> {
  if (change.description !== undefined) {
    await q.query('UPDATE registry_versions SET description = $4 WHERE tenant = $1 AND model = $2 AND version = $3', [
      tenant,
      model,
      version,
      change.description,
    ]);
  }
  await changeTags(q, tenant, model, version, change.setTags, change.removeTags);
  await q.query('UPDATE registry_versions SET updated_at = $4 WHERE tenant = $1 AND model = $2 AND version = $3', [
    tenant,
    model,
    version,
    now,
  ]);
  await touchModel(q, { tenant, name: model }, now);
}

export interface NewVersion {
  readonly description: string;
  readonly tags: Readonly<Record<string, string>>;
  readonly sha256: string;
  readonly sizeBytes: number;
  readonly storedBytes: number;
  readonly signature: pb.OnnxSignature;
  readonly lineage: pb.Lineage | undefined;
  readonly createdBy: string;
  /** What CompressVersion measured, for a version it made. */
  readonly compression?: pb.CompressionReport | undefined;
}

/** Checks a parent lineage points at an existing version of the tenant. */
export async function checkLineage(q: Queryable, tenant: string, lineage: pb.Lineage | undefined): Promise<void> {
  if (lineage?.origin?.$case !== 'parent') return;
  const parent = lineage.origin.value;
  if (parent.model === '' || parent.version === 0) throw invalidArgument('lineage.parent needs model and version');
  if (parent.transform === '')
    throw invalidArgument('lineage.parent.transform is required: the name of what made this version from the parent');
  const rows = await q.query('SELECT 1 FROM registry_versions WHERE tenant = $1 AND model = $2 AND version = $3', [
    tenant,
    parent.model,
    parent.version,
  ]);
  if (rows.length === 0) throw notFound(`lineage.parent: model "${parent.model}" has no version ${parent.version}`);
}

/** Numbers and inserts a READY version (the blob row must exist). Locks the model row. */
export async function insertVersion(q: Queryable, key: ModelKey, v: NewVersion, now: Date): Promise<number> {
  const model = await requireModelRow(q, key, true);
  const version = model.latest_version + 1;
  await q.query(
    `INSERT INTO registry_versions (tenant, model, version, description, status, status_reason, sha256, size_bytes,
       signature, compression, created_by, created_at, updated_at)
     VALUES ($1, $2, $3, $4, 'READY', '', $5, $6, $7, $8, $9, $10, $10)`,
    [
      key.tenant,
      key.name,
      version,
      v.description,
      v.sha256,
      v.sizeBytes,
      JSON.stringify(pb.OnnxSignature.toJSON(v.signature)),
      v.compression === undefined ? null : JSON.stringify(pb.CompressionReport.toJSON(v.compression)),
      v.createdBy,
      now,
    ],
  );
  await q.query('UPDATE registry_models SET latest_version = $3, updated_at = $4 WHERE tenant = $1 AND name = $2', [
    key.tenant,
    key.name,
    version,
    now,
  ]);
  await changeTags(q, key.tenant, key.name, version, v.tags, []);
  const origin = v.lineage?.origin;
  if (origin !== undefined) {
    const parent = origin.$case === 'parent' ? origin.value : undefined;
    await q.query(
      `INSERT INTO registry_lineage (tenant, model, version, source_uri, parent_model, parent_version, transform,
         transform_params)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [
        key.tenant,
        key.name,
        version,
        origin.$case === 'sourceUri' ? origin.value : null,
        parent?.model ?? null,
        parent?.version ?? null,
        parent?.transform ?? null,
        parent === undefined ? null : JSON.stringify(parent.transformParams),
      ],
    );
  }
  return version;
}
