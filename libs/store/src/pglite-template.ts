import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';

/**
 * A fresh PGlite database runs initdb inside WebAssembly: seconds of CPU, tens of seconds on a
 * busy machine, paid by every test and every first start. Every fresh database is the same
 * bytes, so the first one made on a machine is dumped once as a template (cached in the temp
 * folder per PGlite version, written atomically) and later ones load it instead of running
 * initdb again.
 */
let template: Promise<Blob | undefined> | undefined;

function templateFile(): string | undefined {
  try {
    // The package exports no package.json: find it above the resolved entry point.
    let dir = dirname(fileURLToPath(import.meta.resolve('@electric-sql/pglite')));
    for (;;) {
      const manifest = join(dir, 'package.json');
      if (existsSync(manifest)) {
        const { name, version } = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string; version?: string };
        if (name === '@electric-sql/pglite' && version) return join(tmpdir(), `quanta-pglite-${version}-template.tar`);
      }
      const parent = dirname(dir);
      if (parent === dir) return undefined;
      dir = parent;
    }
  } catch {
    return undefined;
  }
}

async function loadOrMake(): Promise<Blob | undefined> {
  const file = templateFile();
  if (file !== undefined) {
    try {
      return new Blob([await readFile(file)]);
    } catch {
      // not made yet on this machine
    }
  }
  const db = await PGlite.create();
  const dump = await db.dumpDataDir('none');
  await db.close();
  const bytes = Buffer.from(await dump.arrayBuffer());
  if (file !== undefined) {
    const partial = `${file}.${process.pid}.${randomUUID()}`;
    try {
      await writeFile(partial, bytes);
      await rename(partial, file);
    } catch {
      await rm(partial, { force: true });
    }
  }
  return new Blob([bytes]);
}

/** The template for a new database, or undefined when `dataDir` already holds one. */
export async function freshDatabaseTemplate(dataDir: string | undefined): Promise<Blob | undefined> {
  if (dataDir !== undefined && existsSync(join(dataDir, 'PG_VERSION'))) return undefined;
  template ??= loadOrMake().catch(() => undefined);
  return template;
}

/** Drops a cached template that failed to load, so the next process makes a new one. */
export async function discardTemplate(): Promise<void> {
  template = undefined;
  const file = templateFile();
  if (file !== undefined) await rm(file, { force: true });
}
