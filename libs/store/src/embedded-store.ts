import { mkdirSync } from 'node:fs';
import { PGlite, types } from '@electric-sql/pglite';
import { discardTemplate, freshDatabaseTemplate } from './pglite-template.js';
import { applyMigrations, MIGRATIONS_TABLE_SQL, validateMigrations } from './migrate.js';
import { OID, parseInt8 } from './type-parsers.js';
import { qualifiedChannel } from './notify.js';
import type { ChannelListener, Listening, Migration, Queryable, Store } from './types.js';

interface PgliteLike {
  query<R>(sql: string, params?: unknown[]): Promise<{ rows: R[] }>;
  exec(sql: string): Promise<unknown>;
}

function queryable(db: PgliteLike): Queryable & { exec(sql: string): Promise<void> } {
  return {
    async query<R>(sql: string, params?: readonly unknown[]): Promise<R[]> {
      const result = await db.query<R>(sql, params ? [...params] : undefined);
      return result.rows;
    },
    async exec(sql: string): Promise<void> {
      await db.exec(sql);
    },
  };
}

const parsers = {
  [OID.INT8]: parseInt8,
  // PGlite hands out Uint8Array; Buffer is what pg gives and what callers expect.
  [OID.BYTEA]: (value: string) => {
    const bytes = types.parsers[OID.BYTEA]?.(value, OID.BYTEA) as Uint8Array;
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  },
};

/**
 * PGlite is one connection: its own mutex already serialises queries and transactions, so a
 * transaction never sees another caller's statements. Calling the store (not `tx`) from inside a
 * transaction would wait for that transaction: a deadlock, so always use `tx`.
 */
export async function openEmbeddedStore(dataDir: string | undefined, schema: string): Promise<Store> {
  if (dataDir) mkdirSync(dataDir, { recursive: true });
  const template = await freshDatabaseTemplate(dataDir);
  const open = (from: Blob | undefined) =>
    PGlite.create({ ...(dataDir ? { dataDir } : {}), ...(from ? { loadDataDir: from } : {}), parsers });
  let db: PGlite;
  try {
    db = await open(template);
  } catch (error: unknown) {
    if (template === undefined) throw error;
    await discardTemplate();
    db = await open(undefined);
  }
  if (schema !== 'public') await db.exec(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
  await db.exec(`SET search_path TO "${schema}"`);
  const top = queryable(db);
  let closed = false;

  return {
    kind: 'embedded',
    query: <R>(sql: string, params?: readonly unknown[]) => top.query<R>(sql, params),
    transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      return db.transaction((tx) => fn(queryable(tx)));
    },
    async migrate(component: string, migrations: readonly Migration[]): Promise<void> {
      const sorted = validateMigrations(component, migrations);
      await db.exec(MIGRATIONS_TABLE_SQL);
      await applyMigrations({ inTransaction: (fn) => db.transaction((tx) => fn(queryable(tx))) }, component, sorted);
    },
    async listen(channel: string, listener: ChannelListener): Promise<Listening> {
      // One connection: it notifies itself at each commit, and never has to reconnect.
      // Quoted, since the name has a dot; PGlite's own unlisten function would drop the quotes.
      const quoted = `"${qualifiedChannel(schema, channel)}"`;
      const onNotify = (payload: string): void => {
        if (!closed) listener.notify(payload);
      };
      await db.listen(quoted, onNotify);
      listener.connected?.();
      let stopped = false;
      return {
        async close() {
          if (stopped || closed) return;
          stopped = true;
          await db.unlisten(quoted, onNotify);
        },
      };
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await db.close();
    },
  };
}
