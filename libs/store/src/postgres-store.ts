import pg from 'pg';
import { applyMigrations, MIGRATIONS_TABLE_SQL, validateMigrations } from './migrate.js';
import { qualifiedChannel } from './notify.js';
import { openPgListener } from './pg-listener.js';
import { int8Elements, OID, parseInt8 } from './type-parsers.js';
import type { ChannelListener, Listening, Migration, Queryable, Store } from './types.js';

/** pg's parsers, changed where PGlite differs so both backends give the same values. */
function typeParser(oid: number, format?: string): unknown {
  if (format !== 'binary') {
    if (oid === OID.INT8) return parseInt8;
    if (oid === OID.INT8_ARRAY) {
      // pg's typings list only scalar oids; its parser table has the array ones too.
      const strings = (pg.types.getTypeParser as (oid: number, format: 'text') => (value: string) => unknown)(
        OID.INT8_ARRAY,
        'text',
      );
      return (value: string) => int8Elements(strings(value));
    }
    // PGlite hands intervals out as their text ('1 day'); pg would build an object.
    if (oid === OID.INTERVAL) return (value: string) => value;
  }
  return format === undefined ? pg.types.getTypeParser(oid) : pg.types.getTypeParser(oid, format as 'text');
}

function clientQueryable(client: pg.PoolClient): Queryable & { exec(sql: string): Promise<void> } {
  return {
    async query<R>(sql: string, params?: readonly unknown[]): Promise<R[]> {
      const result = await client.query(sql, params ? [...params] : undefined);
      return result.rows as R[];
    },
    async exec(sql: string): Promise<void> {
      // No parameters: the simple query protocol, which takes several statements.
      await client.query(sql);
    },
  };
}

export async function openPostgresStore(url: string, schema: string): Promise<Store> {
  const pool = new pg.Pool({
    connectionString: url,
    // Every connection starts in the store's schema, so callers write unqualified table names.
    options: `-c search_path=${schema}`,
    types: { getTypeParser: typeParser },
  });
  // An idle client that loses its server must not crash the process; the next query reports it.
  pool.on('error', () => undefined);
  try {
    await pool.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
  } catch (err: unknown) {
    // Two processes creating the same schema at once race on the catalog; the loser finds it there.
    const exists = await pool
      .query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])
      .catch(() => ({ rowCount: 0 }));
    if (!exists.rowCount) {
      await pool.end();
      throw err;
    }
  }

  async function withClient<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await pool.connect();
    try {
      return await fn(client);
    } finally {
      client.release();
    }
  }

  async function inTransaction<T>(
    client: pg.PoolClient,
    fn: (tx: Queryable & { exec(sql: string): Promise<void> }) => Promise<T>,
  ): Promise<T> {
    await client.query('BEGIN');
    try {
      const result = await fn(clientQueryable(client));
      await client.query('COMMIT');
      return result;
    } catch (err: unknown) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  }

  const listeners = new Set<Listening>();

  return {
    kind: 'postgres',
    async query<R>(sql: string, params?: readonly unknown[]): Promise<R[]> {
      const result = await pool.query(sql, params ? [...params] : undefined);
      return result.rows as R[];
    },
    transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      return withClient((client) => inTransaction(client, fn));
    },
    async migrate(component: string, migrations: readonly Migration[]): Promise<void> {
      const sorted = validateMigrations(component, migrations);
      await withClient(async (client) => {
        // A session-level advisory lock per schema (schema_migrations is shared by components):
        // processes starting together apply each migration once; the others wait, then find it recorded.
        await client.query('SELECT pg_advisory_lock(hashtext($1))', [`quanta-migrate:${schema}`]);
        try {
          await client.query(MIGRATIONS_TABLE_SQL);
          await applyMigrations({ inTransaction: (fn) => inTransaction(client, fn) }, component, sorted);
        } finally {
          await client.query('SELECT pg_advisory_unlock(hashtext($1))', [`quanta-migrate:${schema}`]);
        }
      });
    },
    async listen(channel: string, listener: ChannelListener): Promise<Listening> {
      const listening = await openPgListener({ connectionString: url }, qualifiedChannel(schema, channel), listener);
      const handle: Listening = {
        async close() {
          listeners.delete(handle);
          await listening.close();
        },
      };
      listeners.add(handle);
      return handle;
    },
    async close(): Promise<void> {
      await Promise.all([...listeners].map((l) => l.close()));
      if (pool.ended) return;
      await pool.end();
    },
  };
}
