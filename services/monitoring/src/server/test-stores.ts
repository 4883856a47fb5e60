import { randomBytes } from 'node:crypto';
import { openStore } from '@quanta/store';
import type { Store } from '@quanta/store';

export const PG_URL = process.env['QUANTA_TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface TestBackend {
  name: 'embedded' | 'postgres';
  /** A fresh store (in-memory PGlite, or a new random schema on PostgreSQL). */
  open(): Promise<Store>;
  /** Closes the stores this backend opened and drops their schemas. */
  cleanup(): Promise<void>;
}

function pgBackend(): TestBackend {
  const opened: { store: Store; schema: string }[] = [];
  return {
    name: 'postgres',
    async open() {
      const schema = `test_monitoring_${randomBytes(6).toString('hex')}`;
      const store = await openStore({ url: PG_URL, schema });
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

/** The embedded store (PGlite in memory) and PostgreSQL at QUANTA_TEST_DATABASE_URL, as the crypto and registry tests use them. */
export const testBackends = (): TestBackend[] => [embeddedBackend(), pgBackend()];
