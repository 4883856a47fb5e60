import { openEmbeddedStore } from './embedded-store.js';
import { openPostgresStore } from './postgres-store.js';
import type { Store, StoreOptions } from './types.js';

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Opens PostgreSQL for a `postgres://` url, otherwise the embedded PGlite (on disk under dataDir, or in memory). */
export async function openStore(options: StoreOptions = {}): Promise<Store> {
  const schema = options.schema ?? 'public';
  // The schema is spliced into SQL (search_path, CREATE SCHEMA), so only plain identifiers pass.
  if (!SCHEMA_NAME.test(schema)) {
    throw new Error(
      `store schema "${schema}" is not a plain lower-case identifier ([a-z_][a-z0-9_]*, at most 63 characters)`,
    );
  }
  const url = options.url?.trim();
  if (url) {
    if (!/^postgres(ql)?:\/\//.test(url)) {
      throw new Error(
        `store url must start with postgres:// or postgresql:// (got "${url.replace(/\/\/[^@/]*@/, '//***@')}")`,
      );
    }
    return openPostgresStore(url, schema);
  }
  return openEmbeddedStore(options.dataDir, schema);
}
