import type { Queryable } from '@quanta/store';

/** Version 0 holds a model's own tags. */
export const MODEL_TAGS = 0;

export async function loadTags(
  q: Queryable,
  tenant: string,
  model: string,
  versions: readonly number[],
): Promise<Map<number, Record<string, string>>> {
  const out = new Map<number, Record<string, string>>(versions.map((v) => [v, {}]));
  if (versions.length === 0) return out;
  const rows = await q.query<{ version: number; key: string; value: string }>(
    `SELECT version, key, value FROM registry_tags
     WHERE tenant = $1 AND model = $2 AND version = ANY($3::int[]) ORDER BY key`,
    [tenant, model, versions],
  );
  for (const row of rows) {
    const tags = out.get(row.version);
    if (tags !== undefined) tags[row.key] = row.value;
  }
  return out;
}

/** Removes `remove`, then sets `set`. */
export async function changeTags(
  q: Queryable,
  tenant: string,
  model: string,
  version: number,
  set: Readonly<Record<string, string>>,
  remove: readonly string[],
): Promise<void> {
  if (remove.length > 0) {
    await q.query(
      'DELETE FROM registry_tags WHERE tenant = $1 AND model = $2 AND version = $3 AND key = ANY($4::text[])',
      [tenant, model, version, remove],
    );
  }
  for (const [key, value] of Object.entries(set)) {
    await q.query(
      `INSERT INTO registry_tags (tenant, model, version, key, value) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (tenant, model, version, key) DO UPDATE SET value = EXCLUDED.value`,
      [tenant, model, version, key, value],
    );
  }
}

/**
 * SQL conditions for "has every one of these tags" (an empty value matches any value), with
 * parameters numbered from `firstParam`. `modelColumn`/`versionExpr` name the row being filtered.
 */
export function tagFilter(
  tags: Readonly<Record<string, string>>,
  firstParam: number,
  modelColumn: string,
  versionExpr: string,
): { sql: string; params: unknown[] } {
  const clauses: string[] = [];
  const params: unknown[] = [];
  let n = firstParam;
  for (const [key, value] of Object.entries(tags)) {
    clauses.push(
      `EXISTS (SELECT 1 FROM registry_tags t WHERE t.tenant = $1 AND t.model = ${modelColumn} ` +
        `AND t.version = ${versionExpr} AND t.key = $${n} AND ($${n + 1} = '' OR t.value = $${n + 1}))`,
    );
    params.push(key, value);
    n += 2;
  }
  return { sql: clauses.map((c) => ` AND ${c}`).join(''), params };
}
