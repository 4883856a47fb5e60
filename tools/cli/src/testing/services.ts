import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

// Real service processes sharing one QUANTA_HOME, and the real `quanta` command run against them,
// for the CLI's tests.

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const cli = join(root, 'tools/cli/bin/quanta.mjs');

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export class ServiceProcesses {
  /** Addresses for `quanta` (QUANTA_CRYPTO_ADDR, QUANTA_REGISTRY_ADDR...), set as services start. */
  readonly env: NodeJS.ProcessEnv = {};
  private readonly servers: ChildProcess[] = [];

  constructor(private readonly home: string) {}

  /** A service as its own process (as `npm start` runs it) on a free port; resolves with its address. */
  start(name: string, extraEnv: NodeJS.ProcessEnv): Promise<string> {
    const child = spawn(process.execPath, ['--conditions=@quanta/source', '--import', 'tsx', 'src/main.ts'], {
      cwd: join(root, 'services', name),
      env: { ...process.env, QUANTA_HOME: this.home, QUANTA_DATABASE_URL: '', ...extraEnv },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.servers.push(child);
    return new Promise<string>((resolveAddress, reject) => {
      child.once('exit', (code) => reject(new Error(`${name} exited with ${code} before listening`)));
      createInterface({ input: child.stdout }).on('line', (line) => {
        const match = /listening on (127\.0\.0\.1:\d+)/.exec(line);
        if (match?.[1] !== undefined) resolveAddress(match[1]);
      });
    });
  }

  /** Stops the services, the last started first, each waited for. */
  async stop(): Promise<void> {
    for (const server of this.servers.reverse()) {
      if (server.exitCode === null && server.signalCode === null) {
        const exited = new Promise((r) => server.once('exit', r));
        server.kill('SIGTERM');
        await exited;
      }
    }
  }

  /** Runs the real `quanta` command with the admin token from the home folder. */
  quanta(args: string[]): Promise<Run> {
    const childEnv: NodeJS.ProcessEnv = { ...process.env, QUANTA_HOME: this.home, ...this.env };
    delete childEnv['QUANTA_TOKEN'];
    const child = spawn(process.execPath, [cli, ...args], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    return new Promise((resolveRun) =>
      child.on('close', (code) =>
        resolveRun({
          code: code ?? -1,
          stdout: Buffer.concat(out).toString('utf8'),
          stderr: Buffer.concat(err).toString('utf8'),
        }),
      ),
    );
  }
}
