import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const root = dirname(fileURLToPath(import.meta.url));

// One config for every project (run from the project's folder). Sources are resolved through
// the `@quanta/source` export condition, so tests run the TypeScript of sibling libs, never a
// stale dist/. Each project's results also go to .test-results/ for the summary line of `npm test`.
export default defineConfig({
  resolve: { conditions: ['@quanta/source'] },
  ssr: { resolve: { conditions: ['@quanta/source'], externalConditions: ['@quanta/source'] } },
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default', 'json'],
    outputFile: { json: join(root, '.test-results', `${basename(process.cwd())}.json`) },
  },
});
