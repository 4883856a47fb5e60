// Builds the publishable @quanta/sdk into dist/: tsc compiles the SDK with the sources of
// @quanta/contracts and @quanta/tensor/core (tsconfig.build.json), then every import of those two
// in the emitted JavaScript and declarations is rewritten to the relative path of its compiled
// copy. The build fails when an emitted file imports a package that package.json does not list in
// `dependencies`, so a partner's `npm install` never needs a workspace package.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
/** Workspace entry points compiled into dist, by the specifier the sources import them with. */
const BUNDLED = {
  '@quanta/contracts': join(dist, 'contracts', 'src', 'index.js'),
  '@quanta/tensor/core': join(dist, 'tensor', 'src', 'core.js'),
};

rmSync(dist, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });

const files = readdirSync(dist, { recursive: true, encoding: 'utf8' })
  .filter((f) => f.endsWith('.js') || f.endsWith('.d.ts'))
  .map((f) => join(dist, f));
// Module specifiers as tsc writes them: `from '…'`, `import '…'`, `import("…")` (inline types in declarations).
const SPECIFIER = /(\bfrom\s*|\bimport\s*\(?\s*)(['"])([^'"\n]+)\2/g;
const { dependencies = {} } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const packageOf = (specifier) =>
  specifier
    .split('/')
    .slice(0, specifier.startsWith('@') ? 2 : 1)
    .join('/');
const problems = [];
for (const file of files) {
  const text = readFileSync(file, 'utf8');
  const rewritten = text.replace(SPECIFIER, (whole, lead, quote, specifier) => {
    const target = BUNDLED[specifier];
    if (target !== undefined) {
      const path = relative(dirname(file), target).split(sep).join('/');
      return `${lead}${quote}${path.startsWith('.') ? path : `./${path}`}${quote}`;
    }
    const bare = !specifier.startsWith('.') && !specifier.startsWith('node:') && !builtinModules.includes(specifier);
    if (bare && !(packageOf(specifier) in dependencies))
      problems.push(`${relative(root, file)} imports "${specifier}", which is not in dependencies`);
    return whole;
  });
  if (rewritten !== text) writeFileSync(file, rewritten);
}
if (problems.length > 0) {
  console.error(`@quanta/sdk build: the package would not install on its own:\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
