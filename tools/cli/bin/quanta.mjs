#!/usr/bin/env node
// Launcher for the `quanta` command. In a checkout (sources + tsx present) it runs the
// TypeScript sources directly, resolving sibling libs through the `@quanta/source` export
// condition, so `npx quanta` works right after `npm install`; an installed package runs dist/.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const source = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const built = new URL('../dist/main.js', import.meta.url);

function tsxAvailable() {
  try {
    createRequire(import.meta.url).resolve('tsx');
    return true;
  } catch {
    return false;
  }
}

if (existsSync(source) && tsxAvailable() && process.env.QUANTA_CLI_BUILT !== '1') {
  // tsx by its resolved URL: a bare `--import tsx` is looked up from the current folder, which
  // fails when quanta runs outside the repository.
  const child = spawn(
    process.execPath,
    ['--conditions=@quanta/source', '--import', import.meta.resolve('tsx'), source, ...process.argv.slice(2)],
    {
      stdio: 'inherit',
    },
  );
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => {
    if (signal) process.kill(process.pid, signal);
    else process.exit(code ?? 1);
  });
} else {
  await import(built.href);
}
