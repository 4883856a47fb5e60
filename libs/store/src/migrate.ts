import type { Migration, Queryable } from './types.js';

export const MIGRATIONS_TABLE_SQL = `CREATE TABLE IF NOT EXISTS schema_migrations (
  component text NOT NULL,
  version integer NOT NULL,
  name text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (component, version)
)`;

/** Checks the list before anything runs, so a bad list never half-applies. */
export function validateMigrations(component: string, migrations: readonly Migration[]): Migration[] {
  if (!/^[a-z][a-z0-9_.-]*$/.test(component))
    throw new Error(`migration component "${component}" must be a lower-case name`);
  const seen = new Set<number>();
  for (const m of migrations) {
    if (!Number.isInteger(m.version) || m.version < 1)
      throw new Error(`${component} migration "${m.name}" has version ${m.version}; versions are positive integers`);
    if (seen.has(m.version)) throw new Error(`${component} has two migrations with version ${m.version}`);
    seen.add(m.version);
  }
  return [...migrations].sort((a, b) => a.version - b.version);
}

export interface MigrationRunner {
  /** Runs `fn` in one transaction; `exec` takes several statements without parameters. */
  inTransaction<T>(fn: (tx: Queryable & { exec(sql: string): Promise<void> }) => Promise<T>): Promise<T>;
}

/**
 * Applies what is missing, each migration in its own transaction with its schema_migrations row,
 * so a failing migration leaves neither its changes nor its row. The caller holds the lock.
 */
export async function applyMigrations(
  runner: MigrationRunner,
  component: string,
  sorted: readonly Migration[],
): Promise<void> {
  for (const m of sorted) {
    await runner.inTransaction(async (tx) => {
      const done = await tx.query('SELECT 1 FROM schema_migrations WHERE component = $1 AND version = $2', [
        component,
        m.version,
      ]);
      if (done.length > 0) return;
      try {
        await tx.exec(m.sql);
      } catch (err: unknown) {
        const reason = err instanceof Error ? err.message : String(err);
        throw new Error(`${component} migration ${m.version} (${m.name}) failed: ${reason}`, { cause: err });
      }
      await tx.query('INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)', [
        component,
        m.version,
        m.name,
      ]);
    });
  }
}
