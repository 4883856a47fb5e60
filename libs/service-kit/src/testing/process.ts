// A service's main.ts as its own process, for tests that need a real process: a crash, a restart, a signal.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The repository root (this file sits four folders below it, in src/ and in dist/ alike). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');

export interface ServiceProcess {
  readonly address: string;
  readonly child: ChildProcess;
  /** SIGTERM and wait for exit. */
  stop(): Promise<void>;
  /** SIGKILL: the process dies at once, as in a crash. */
  kill(): Promise<void>;
}

/**
 * Runs `services/<name>/src/main.ts` as its own process (as `npm start` does) on port 0 and
 * resolves with the address from its "listening" log line.
 */
export async function startServiceProcess(name: string, env: NodeJS.ProcessEnv): Promise<ServiceProcess> {
  const merged: NodeJS.ProcessEnv = { ...process.env, QUANTA_LOG_LEVEL: 'info', OTEL_TRACES_EXPORTER: 'none', ...env };
  // An undefined value removes a variable the test process happens to have.
  for (const [key, value] of Object.entries(merged)) if (value === undefined) delete merged[key];
  const child = spawn(
    process.execPath,
    ['--conditions=@quanta/source', '--import', 'tsx', join(REPO_ROOT, 'services', name, 'src', 'main.ts')],
    {
      cwd: REPO_ROOT,
      env: merged,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const output: string[] = [];
  child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString('utf8')));
  const address = await new Promise<string>((resolvePromise, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      output.push(line);
      try {
        const entry = JSON.parse(line) as { address?: unknown; msg?: unknown };
        if (typeof entry.address === 'string' && typeof entry.msg === 'string' && entry.msg.includes('listening'))
          resolvePromise(entry.address);
      } catch {
        // not a log line
      }
    });
    child.once('exit', (code, signal) =>
      reject(new Error(`${name} exited (${signal ?? code}) before listening:\n${output.join('\n')}`)),
    );
  });
  const exited = once(child, 'exit');
  return {
    address,
    child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}
