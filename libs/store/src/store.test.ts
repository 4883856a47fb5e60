import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from './index.js';
import type { Store, StoreOptions } from './index.js';

const PG_URL = process.env.QUANTA_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

interface Backend {
  name: 'embedded' | 'postgres';
  options(): StoreOptions;
}

// One fresh schema per run on PostgreSQL, dropped at the end; the embedded store is in memory.
const pgSchema = `test_store_${randomBytes(6).toString('hex')}`;
const backends: Backend[] = [
  { name: 'embedded', options: () => ({}) },
  { name: 'postgres', options: () => ({ url: PG_URL, schema: pgSchema }) },
];

afterAll(async () => {
  const admin = await openStore({ url: PG_URL });
  await admin.query(`DROP SCHEMA IF EXISTS "${pgSchema}" CASCADE`);
  await admin.close();
});

describe.each(backends)('store on $name', (backend) => {
  let store: Store;
  beforeAll(async () => {
    store = await openStore(backend.options());
  });
  afterAll(async () => {
    await store.close();
  });

  it('reports its kind', () => {
    expect(store.kind).toBe(backend.name);
  });

  it('applies migrations once, in order, and records them', async () => {
    const migrations = [
      { version: 2, name: 'add-note', sql: 'ALTER TABLE widgets ADD COLUMN note text' },
      {
        version: 1,
        name: 'widgets',
        sql: `CREATE TABLE widgets (id integer PRIMARY KEY, name text NOT NULL);
              INSERT INTO widgets VALUES (1, 'first')`,
      },
    ];
    await store.migrate('widgets', migrations);
    await store.migrate('widgets', migrations); // second run: nothing to do (CREATE TABLE would fail if rerun)
    const rows = await store.query<{ id: number; name: string; note: string | null }>(
      'SELECT id, name, note FROM widgets',
    );
    expect(rows).toEqual([{ id: 1, name: 'first', note: null }]);
    const applied = await store.query<{ version: number; name: string; applied_at: Date }>(
      'SELECT version, name, applied_at FROM schema_migrations WHERE component = $1 ORDER BY version',
      ['widgets'],
    );
    expect(applied.map((r) => [r.version, r.name])).toEqual([
      [1, 'widgets'],
      [2, 'add-note'],
    ]);
    expect(applied[0]!.applied_at).toBeInstanceOf(Date);

    // A later release adds version 3: only it runs.
    await store.migrate('widgets', [
      ...migrations,
      { version: 3, name: 'second-row', sql: "INSERT INTO widgets VALUES (2, 'second', 'n')" },
    ]);
    expect(await store.query('SELECT id FROM widgets ORDER BY id')).toEqual([{ id: 1 }, { id: 2 }]);
  });

  it('keeps components apart', async () => {
    await store.migrate('other', [{ version: 1, name: 'gadgets', sql: 'CREATE TABLE gadgets (id integer)' }]);
    const rows = await store.query<{ component: string; version: number }>(
      'SELECT component, version FROM schema_migrations WHERE component = $1',
      ['other'],
    );
    expect(rows).toEqual([{ component: 'other', version: 1 }]);
  });

  it('rolls back a failing migration entirely, and names it', async () => {
    const bad = [{ version: 1, name: 'half', sql: 'CREATE TABLE half_done (id integer); SELECT * FROM no_such_table' }];
    await expect(store.migrate('broken', bad)).rejects.toThrow(/broken migration 1 \(half\) failed: .*no_such_table/);
    expect(await store.query("SELECT 1 FROM schema_migrations WHERE component = 'broken'")).toEqual([]);
    expect(await store.query("SELECT 1 FROM information_schema.tables WHERE table_name = 'half_done'")).toEqual([]);
  });

  it('rejects a bad migration list before running any of it', async () => {
    await expect(
      store.migrate('dup', [
        { version: 1, name: 'a', sql: 'CREATE TABLE dup_a (id integer)' },
        { version: 1, name: 'b', sql: 'CREATE TABLE dup_b (id integer)' },
      ]),
    ).rejects.toThrow(/two migrations with version 1/);
    await expect(store.migrate('zero', [{ version: 0, name: 'z', sql: 'SELECT 1' }])).rejects.toThrow(
      /positive integers/,
    );
    expect(await store.query("SELECT 1 FROM information_schema.tables WHERE table_name = 'dup_a'")).toEqual([]);
  });

  it('commits a transaction and rolls one back on error', async () => {
    await store.query('CREATE TABLE IF NOT EXISTS ledger (id text PRIMARY KEY, amount integer NOT NULL)');
    const result = await store.transaction(async (tx) => {
      await tx.query('INSERT INTO ledger VALUES ($1, $2)', ['a', 10]);
      await tx.query('INSERT INTO ledger VALUES ($1, $2)', ['b', 20]);
      return 'done';
    });
    expect(result).toBe('done');
    await expect(
      store.transaction(async (tx) => {
        await tx.query('INSERT INTO ledger VALUES ($1, $2)', ['c', 30]);
        await tx.query('UPDATE ledger SET amount = amount + 1 WHERE id = $1', ['a']);
        throw new Error('changed my mind');
      }),
    ).rejects.toThrow('changed my mind');
    await expect(
      store.transaction(async (tx) => {
        await tx.query('INSERT INTO ledger VALUES ($1, $2)', ['d', 40]);
        await tx.query('INSERT INTO ledger VALUES ($1, $2)', ['a', 50]); // duplicate key from the database
      }),
    ).rejects.toThrow(/duplicate key/);
    expect(await store.query('SELECT id, amount FROM ledger ORDER BY id')).toEqual([
      { id: 'a', amount: 10 },
      { id: 'b', amount: 20 },
    ]);
  });

  it('keeps concurrent transactions from seeing each other half done', async () => {
    await store.query('CREATE TABLE IF NOT EXISTS counter (id integer PRIMARY KEY, n integer NOT NULL)');
    await store.query('INSERT INTO counter VALUES (1, 0)');
    // Read-modify-write in each transaction: correct only if the backend isolates them (row lock / serialised).
    await Promise.all(
      Array.from({ length: 8 }, () =>
        store.transaction(async (tx) => {
          const [row] = await tx.query<{ n: number }>('SELECT n FROM counter WHERE id = 1 FOR UPDATE');
          await tx.query('UPDATE counter SET n = $1 WHERE id = 1', [row!.n + 1]);
        }),
      ),
    );
    expect(await store.query('SELECT n FROM counter WHERE id = 1')).toEqual([{ n: 8 }]);
  });

  it('maps parameter and column types the same way', async () => {
    await store.query(
      'CREATE TABLE typed (b bytea, big bigint, ts timestamptz, doc jsonb, flag boolean, i integer, t text)',
    );
    const bytes = Buffer.from([0, 1, 2, 254, 255, 0x5c, 0x27]);
    const big = 9_007_199_254_740_993n; // 2^53 + 1: not representable as a Number
    const ts = new Date('2026-01-02T03:04:05.678Z');
    const doc = { a: [1, 'two', { three: null }], unicode: 'é€😀' };
    await store.query('INSERT INTO typed VALUES ($1, $2, $3, $4, $5, $6, $7)', [
      bytes,
      big,
      ts,
      JSON.stringify(doc),
      true,
      42,
      "it's",
    ]);
    const [row] = await store.query('SELECT * FROM typed');
    expect(Buffer.isBuffer(row!.b)).toBe(true);
    expect((row!.b as Buffer).equals(bytes)).toBe(true);
    expect(row!.big).toBe(big);
    expect(row!.ts).toBeInstanceOf(Date);
    expect((row!.ts as Date).toISOString()).toBe(ts.toISOString());
    expect(row!.doc).toEqual(doc);
    expect(row!.flag).toBe(true);
    expect(row!.i).toBe(42);
    expect(row!.t).toBe("it's");
    const [agg] = await store.query('SELECT count(*) AS c, octet_length($1::bytea) AS len FROM typed', [bytes]);
    expect(agg).toEqual({ c: 1n, len: 7 });
    const [more] = await store.query(
      `SELECT ARRAY[1, 9007199254740993]::bigint[] AS bigs, ARRAY['a', 'b'] AS texts,
              1.50::numeric AS num, '1 day 02:00:00'::interval AS iv`,
    );
    expect(more).toEqual({ bigs: [1n, big], texts: ['a', 'b'], num: '1.50', iv: '1 day 02:00:00' });
    const [nul] = await store.query('SELECT NULL::bytea AS b, NULL::bigint AS big');
    expect(nul).toEqual({ b: null, big: null });
  });

  it('reports SQL errors with the database message', async () => {
    await expect(store.query('SELECT * FROM missing_table_xyz')).rejects.toThrow(/missing_table_xyz/);
  });
});

describe('embedded store on disk', () => {
  it('keeps data across reopen under dataDir', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'quanta-store-'));
    try {
      const first = await openStore({ dataDir: join(dir, 'db') });
      await first.migrate('notes', [{ version: 1, name: 'notes', sql: 'CREATE TABLE notes (body text)' }]);
      await first.query('INSERT INTO notes VALUES ($1)', ['kept']);
      await first.close();
      const second = await openStore({ dataDir: join(dir, 'db') });
      await second.migrate('notes', [{ version: 1, name: 'notes', sql: 'CREATE TABLE notes (body text)' }]);
      expect(await second.query('SELECT body FROM notes')).toEqual([{ body: 'kept' }]);
      await second.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000); // two PGlite starts on disk: slow on a busy machine
});

describe('postgres store, several processes starting at once', () => {
  it('applies each migration once when migrate runs concurrently', async () => {
    const schema = `test_store_race_${randomBytes(6).toString('hex')}`;
    const stores = await Promise.all(Array.from({ length: 4 }, () => openStore({ url: PG_URL, schema })));
    try {
      const migrations = [
        { version: 1, name: 'table', sql: 'CREATE TABLE raced (id serial PRIMARY KEY)' },
        { version: 2, name: 'row', sql: 'INSERT INTO raced DEFAULT VALUES' },
      ];
      await Promise.all(stores.map((s) => s.migrate('race', migrations)));
      expect(await stores[0]!.query('SELECT count(*)::int AS n FROM raced')).toEqual([{ n: 1 }]);
      expect(await stores[0]!.query('SELECT count(*)::int AS n FROM schema_migrations')).toEqual([{ n: 2 }]);
    } finally {
      await stores[0]!.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it('rejects a url that is not postgres and a schema that is not an identifier', async () => {
    await expect(openStore({ url: 'mysql://x' })).rejects.toThrow(/postgres:\/\//);
    await expect(openStore({ schema: 'a"; DROP' })).rejects.toThrow(/plain lower-case identifier/);
  });
});
