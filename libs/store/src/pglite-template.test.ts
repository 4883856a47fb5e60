import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore } from './index.js';

describe('embedded stores made from the cached template', () => {
  const dir = mkdtempSync(join(tmpdir(), 'quanta-template-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('are independent databases: what one writes, another never sees', async () => {
    const a = await openStore({});
    const b = await openStore({});
    await a.query('CREATE TABLE only_in_a (x int)');
    await a.query('INSERT INTO only_in_a VALUES (1)');
    const seen = await b.query<{ n: bigint }>("SELECT count(*) AS n FROM pg_tables WHERE tablename = 'only_in_a'");
    expect(seen[0]?.n).toBe(0n);
    await Promise.all([a.close(), b.close()]);
    expect(readdirSync(tmpdir()).some((f) => /^quanta-pglite-.+-template\.tar$/.test(f))).toBe(true);
  }, 120_000);

  it('a new on-disk database keeps its data across a reopen, and a reopen does not reload the template', async () => {
    const dataDir = join(dir, 'db');
    const first = await openStore({ dataDir });
    await first.query('CREATE TABLE kept (v text)');
    await first.query("INSERT INTO kept VALUES ('still here')");
    await first.close();
    expect(existsSync(join(dataDir, 'PG_VERSION'))).toBe(true);
    const again = await openStore({ dataDir });
    expect(await again.query('SELECT v FROM kept')).toEqual([{ v: 'still here' }]);
    await again.close();
  }, 120_000);
});
