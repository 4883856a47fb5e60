// Aliases: names that point at a READY version of a model, moved under the model row's lock.
import { failedPrecondition, notFound } from '@quanta/service-kit';
import type { Queryable } from '@quanta/store';
import type { ModelKey } from './models-repo.js';
import { requireModelRow, touchModel } from './models-repo.js';

/** Points an alias at a READY version; returns the version it pointed to before (0: new). */
export async function setAlias(
  q: Queryable,
  key: ModelKey,
  alias: string,
  version: number,
  now: Date,
): Promise<number> {
  await requireModelRow(q, key, true);
  const [target] = await q.query<{ status: string }>(
    'SELECT status FROM registry_versions WHERE tenant = $1 AND model = $2 AND version = $3',
    [key.tenant, key.name, version],
  );
  if (target === undefined) throw notFound(`model "${key.name}" has no version ${version}`);
  if (target.status !== 'READY')
    throw failedPrecondition(`model "${key.name}" version ${version} is ${target.status}, not READY`);
  const [before] = await q.query<{ version: number }>(
    'SELECT version FROM registry_aliases WHERE tenant = $1 AND model = $2 AND alias = $3',
    [key.tenant, key.name, alias],
  );
  await q.query(
    `INSERT INTO registry_aliases (tenant, model, alias, version, updated_at) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (tenant, model, alias) DO UPDATE SET version = EXCLUDED.version, updated_at = EXCLUDED.updated_at`,
    [key.tenant, key.name, alias, version, now],
  );
  await touchModel(q, key, now);
  return before?.version ?? 0;
}

export async function deleteAlias(q: Queryable, key: ModelKey, alias: string, now: Date): Promise<void> {
  await requireModelRow(q, key, true);
  const users = await q.query<{ name: string }>(
    `SELECT name FROM registry_deployments WHERE tenant = $1 AND (model_ref = $2
       OR spec::jsonb #>> '{canary,modelRef}' = $2 OR spec::jsonb #>> '{shadow,modelRef}' = $2) ORDER BY name`,
    [key.tenant, `${key.name}@${alias}`],
  );
  if (users.length > 0) {
    throw failedPrecondition(
      `alias "${key.name}@${alias}" is used by deployment ${users.map((u) => `"${u.name}"`).join(', ')}`,
    );
  }
  const deleted = await q.query(
    'DELETE FROM registry_aliases WHERE tenant = $1 AND model = $2 AND alias = $3 RETURNING alias',
    [key.tenant, key.name, alias],
  );
  if (deleted.length === 0) throw notFound(`model "${key.name}" has no alias "${alias}"`);
  await touchModel(q, key, now);
}
