import type { registry as pb } from '@quanta/contracts';
import { alreadyExists, failedPrecondition, notFound } from '@quanta/service-kit';
import type { Queryable } from '@quanta/store';
import { decodePageToken, encodePageToken } from './page-token.js';
import { MODEL_TAGS, changeTags, loadTags, tagFilter } from './tags.js';

interface ModelRow {
  name: string;
  description: string;
  latest_version: number;
  created_at: Date;
  updated_at: Date;
}

export interface ModelKey {
  readonly tenant: string;
  readonly name: string;
}

const COLUMNS = 'name, description, latest_version, created_at, updated_at';

/**
 * The model row, locked for the transaction when `forUpdate`; NOT_FOUND when absent. The lock
 * serialises the writers of a model's versions and aliases (on every replica). It is FOR NO KEY
 * UPDATE: foreign-key checks of rows that point at the model (a deployment written meanwhile)
 * do not wait for it, so they cannot close a cycle with a writer waiting for their rows.
 */
export async function requireModelRow(q: Queryable, key: ModelKey, forUpdate = false): Promise<ModelRow> {
  const [row] = await q.query<ModelRow>(
    `SELECT ${COLUMNS} FROM registry_models WHERE tenant = $1 AND name = $2${forUpdate ? ' FOR NO KEY UPDATE' : ''}`,
    [key.tenant, key.name],
  );
  if (row === undefined) throw notFound(`model "${key.name}" not found`);
  return row;
}

export async function modelExists(q: Queryable, key: ModelKey): Promise<boolean> {
  const rows = await q.query('SELECT 1 FROM registry_models WHERE tenant = $1 AND name = $2', [key.tenant, key.name]);
  return rows.length > 0;
}

async function toModel(q: Queryable, tenant: string, row: ModelRow): Promise<pb.Model> {
  const tags = (await loadTags(q, tenant, row.name, [MODEL_TAGS])).get(MODEL_TAGS) ?? {};
  const aliasRows = await q.query<{ alias: string; version: number }>(
    'SELECT alias, version FROM registry_aliases WHERE tenant = $1 AND model = $2 ORDER BY alias',
    [tenant, row.name],
  );
  const [count] = await q.query<{ n: bigint }>(
    'SELECT count(*) AS n FROM registry_versions WHERE tenant = $1 AND model = $2',
    [tenant, row.name],
  );
  return {
    name: row.name,
    description: row.description,
    tags,
    latestVersion: row.latest_version,
    aliases: Object.fromEntries(aliasRows.map((a) => [a.alias, a.version])),
    versionCount: Number(count?.n ?? 0n),
    createTime: row.created_at,
    updateTime: row.updated_at,
  };
}

export async function getModel(q: Queryable, key: ModelKey): Promise<pb.Model> {
  return toModel(q, key.tenant, await requireModelRow(q, key));
}

export async function createModel(
  q: Queryable,
  key: ModelKey,
  fields: { description: string; tags: Readonly<Record<string, string>> },
  now: Date,
): Promise<void> {
  const inserted = await q.query(
    `INSERT INTO registry_models (tenant, name, description, latest_version, created_at, updated_at)
     VALUES ($1, $2, $3, 0, $4, $4) ON CONFLICT (tenant, name) DO NOTHING RETURNING name`,
    [key.tenant, key.name, fields.description, now],
  );
  if (inserted.length === 0) throw alreadyExists(`model "${key.name}" already exists`);
  await changeTags(q, key.tenant, key.name, MODEL_TAGS, fields.tags, []);
}

/** Marks the model changed (a version, alias or tag of it changed). */
export async function touchModel(q: Queryable, key: ModelKey, now: Date): Promise<void> {
  await q.query('UPDATE registry_models SET updated_at = $3 WHERE tenant = $1 AND name = $2', [
    key.tenant,
    key.name,
    now,
  ]);
}

export async function updateModel(
  q: Queryable,
  key: ModelKey,
  change: { description: string | undefined; setTags: Readonly<Record<string, string>>; removeTags: readonly string[] },
  now: Date,
): Promise<void> {
  await requireModelRow(q, key, true);
  if (change.description !== undefined) {
    await q.query('UPDATE registry_models SET description = $3 WHERE tenant = $1 AND name = $2', [
      key.tenant,
      key.name,
      change.description,
    ]);
  }
  await changeTags(q, key.tenant, key.name, MODEL_TAGS, change.setTags, change.removeTags);
  await touchModel(q, key, now);
}

export interface ModelFilter {
  readonly namePrefix: string;
  readonly tags: Readonly<Record<string, string>>;
}

function filterScope(filter: ModelFilter): string {
  return `models|${filter.namePrefix}|${JSON.stringify(Object.entries(filter.tags).sort())}`;
}

export async function listModels(
  q: Queryable,
  tenant: string,
  filter: ModelFilter,
  page: { size: number; token: string },
): Promise<{ models: pb.Model[]; nextPageToken: string }> {
  const scope = filterScope(filter);
  const after = decodePageToken(scope, page.token) ?? '';
  // LIKE needs its wildcards escaped for a literal prefix.
  const prefix = filter.namePrefix.replace(/[\\%_]/g, (c) => `\\${c}`);
  const tags = tagFilter(filter.tags, 5, 'm.name', String(MODEL_TAGS));
  const rows = await q.query<ModelRow>(
    `SELECT ${COLUMNS} FROM registry_models m
     WHERE m.tenant = $1 AND m.name > $2 AND m.name LIKE $3 ESCAPE '\\'${tags.sql}
     ORDER BY m.name LIMIT $4`,
    [tenant, after, `${prefix}%`, page.size + 1, ...tags.params],
  );
  const more = rows.length > page.size;
  const pageRows = rows.slice(0, page.size);
  const models: pb.Model[] = [];
  for (const row of pageRows) models.push(await toModel(q, tenant, row));
  const last = pageRows[pageRows.length - 1];
  return { models, nextPageToken: more && last !== undefined ? encodePageToken(scope, last.name) : '' };
}

/**
 * Deletes the model with its versions, aliases, tags and lineage; returns the blobs that no
 * version references any more (the caller removes their files after commit).
 */
export async function deleteModel(q: Queryable, key: ModelKey): Promise<string[]> {
  await requireModelRow(q, key, true);
  const deployments = await q.query<{ name: string }>(
    'SELECT name FROM registry_deployments WHERE tenant = $1 AND model = $2 ORDER BY name',
    [key.tenant, key.name],
  );
  if (deployments.length > 0) {
    const names = deployments.map((d) => `"${d.name}"`).join(', ');
    throw failedPrecondition(`model "${key.name}" is used by deployment ${names}: delete the deployment first`);
  }
  const blobs = await q.query<{ sha256: string }>(
    'SELECT DISTINCT sha256 FROM registry_versions WHERE tenant = $1 AND model = $2',
    [key.tenant, key.name],
  );
  await q.query('DELETE FROM registry_models WHERE tenant = $1 AND name = $2', [key.tenant, key.name]);
  const orphaned: string[] = [];
  for (const { sha256 } of blobs) {
    const still = await q.query('SELECT 1 FROM registry_versions WHERE tenant = $1 AND sha256 = $2 LIMIT 1', [
      key.tenant,
      sha256,
    ]);
    if (still.length === 0) {
      await q.query('DELETE FROM registry_blobs WHERE tenant = $1 AND sha256 = $2', [key.tenant, sha256]);
      orphaned.push(sha256);
    }
  }
  return orphaned;
}
