// Quanta services as their own processes (`services/<name>/src/main.ts`, as `npm start` runs
// them) for the benchmarks that measure a real service, and the bearer metadata their calls carry.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export interface ServiceProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly address: string;
  stop(): Promise<void>;
}

export interface ServiceOptions {
  /** Extra node flags for the service process, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`. */
  readonly nodeArgs?: readonly string[];
  /** A folder to keep the service's stdout in, as `<logDir>/<name>.log`. */
  readonly logDir?: string;
}

/** The address a service's "listening" log line names: the text form or a JSON log entry. */
function listeningAddress(line: string): string | undefined {
  const match = /listening on (127\.0\.0\.1:\d+)/.exec(line);
  if (match?.[1] !== undefined) return match[1];
  try {
    const entry = JSON.parse(line) as { address?: unknown; msg?: unknown };
    if (typeof entry.address === 'string' && typeof entry.msg === 'string' && entry.msg.includes('listening'))
      return entry.address;
  } catch {
    // not a JSON log line
  }
  return undefined;
}

/**
 * Starts service `name` with `env` over the embedded store (QUANTA_DATABASE_URL unset, as
 * `npm start`) and resolves once it logs the address it listens on; rejects with its output if it
 * exits first.
 */
export async function startService(
  name: string,
  env: NodeJS.ProcessEnv,
  options: ServiceOptions = {},
): Promise<ServiceProcess> {
  const merged: NodeJS.ProcessEnv = { ...process.env, QUANTA_LOG_LEVEL: 'info', OTEL_TRACES_EXPORTER: 'none', ...env };
  delete merged['QUANTA_DATABASE_URL'];
  const child = spawn(
    process.execPath,
    [
      ...(options.nodeArgs ?? []),
      '--conditions=@quanta/source',
      '--import',
      'tsx',
      join(REPO_ROOT, 'services', name, 'src', 'main.ts'),
    ],
    { cwd: REPO_ROOT, env: merged, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const output: string[] = [];
  if (options.logDir !== undefined) child.stdout.pipe(createWriteStream(join(options.logDir, `${name}.log`)));
  child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString('utf8')));
  const address = await new Promise<string>((resolveAddress, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      output.push(line);
      const found = listeningAddress(line);
      if (found !== undefined) resolveAddress(found);
    });
    child.once('exit', (code, signal) =>
      reject(new Error(`${name} exited (${signal ?? code}) before listening:\n${output.join('\n')}`)),
    );
  });
  const exited = once(child, 'exit');
  return {
    name,
    child,
    address,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}

/** Call metadata carrying `token` as the bearer credential. */
export function metadata(token: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  return md;
}
