import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openStore } from '../open-store.js';
import type { Store } from '../types.js';

/** The PostgreSQL that store tests use: QUANTA_TEST_DATABASE_URL, else the local `test` database. */
export const TEST_DATABASE_URL = process.env['QUANTA_TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

/** One backend a test runs against. */
export interface TestBackend {
  name: 'embedded' | 'postgres';
  /** A fresh store (in-memory PGlite, or a new random schema on PostgreSQL). */
  open(): Promise<Store>;
  /** Closes the stores this backend opened and drops their schemas. */
  cleanup(): Promise<void>;
}

function pgBackend(schemaPrefix: string): TestBackend {
  const opened: { store: Store; schema: string }[] = [];
  return {
    name: 'postgres',
    async open() {
      const schema = `${schemaPrefix}_${randomBytes(6).toString('hex')}`;
      const store = await openStore({ url: TEST_DATABASE_URL, schema });
      opened.push({ store, schema });
      return store;
    },
    async cleanup() {
      for (const { store, schema } of opened.splice(0)) {
        await store.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        await store.close();
      }
    },
  };
}

function embeddedBackend(): TestBackend {
  const opened: Store[] = [];
  return {
    name: 'embedded',
    async open() {
      const store = await openStore({});
      opened.push(store);
      return store;
    },
    async cleanup() {
      for (const store of opened.splice(0)) await store.close();
    },
  };
}

/**
 * The embedded store (PGlite in memory) and PostgreSQL at TEST_DATABASE_URL, for running the same
 * tests against both; each PostgreSQL store gets a schema of its own named `<schemaPrefix>_<random>`.
 */
export const testBackends = (schemaPrefix: string): TestBackend[] => [embeddedBackend(), pgBackend(schemaPrefix)];

/** A database of its own on the test server, for processes that open the default schema. */
export interface TestDatabase {
  /** TEST_DATABASE_URL with the database name replaced. */
  readonly url: string;
  readonly name: string;
  /** Drops it, ending the connections still open to it. */
  drop(): Promise<void>;
}

async function onServer<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * Creates `<prefix>_<random>` on the server of TEST_DATABASE_URL: services started as processes
 * take a bare QUANTA_DATABASE_URL (schema `public`), so a test of several such processes gets a
 * database instead of a schema. Made from template0, which no session ever holds open.
 */
export async function createTestDatabase(prefix: string): Promise<TestDatabase> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name))
    throw new Error(`test database name "${name}" is not a plain lower-case identifier`);
  await onServer((client) => client.query(`CREATE DATABASE "${name}" TEMPLATE template0`));
  const url = new URL(TEST_DATABASE_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: () => onServer(async (client) => void (await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`))),
  };
}
