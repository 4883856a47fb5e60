// `npm start` as a newcomer meets it: every service up, the demo deployed, and each command it
// prints under "Try:" working as printed; Ctrl-C stops everything cleanly.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, REPO_ROOT } from './stack.js';

let child: ChildProcess | undefined;
let userDir: string | undefined;

afterAll(async () => {
  if (child !== undefined && child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await once(child, 'exit');
  }
  if (userDir !== undefined) await rm(userDir, { recursive: true, force: true });
}, 60_000);

function runCommand(line: string, cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  // `npx quanta …` as printed; run through the CLI's launcher (npx would resolve the same bin).
  const args = line.trim().split(/\s+/);
  expect(args.slice(0, 2)).toEqual(['npx', 'quanta']);
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [join(REPO_ROOT, 'tools', 'cli', 'bin', 'quanta.mjs'), ...args.slice(2)], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (b: Buffer) => (stdout += b.toString('utf8')));
    c.stderr.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
    c.once('error', reject);
    c.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('npm start', () => {
  it('comes up with the demo deployed, its printed commands work, and Ctrl-C stops it', async () => {
    userDir = await mkdtemp(join(tmpdir(), 'quanta-newcomer-'));
    const ports = await Promise.all(Array.from({ length: 6 }, freePort));
    const [crypto, registry, monitoring, monitoringHttp, inference, inferenceHttp] = ports.map(String);
    // The user's shell: only the ports differ from a laptop's defaults (this machine runs other tests).
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      QUANTA_CRYPTO_PORT: crypto,
      QUANTA_REGISTRY_PORT: registry,
      QUANTA_MONITORING_PORT: monitoring,
      QUANTA_MONITORING_HTTP_PORT: monitoringHttp,
      QUANTA_INFERENCE_PORT: inference,
      QUANTA_INFERENCE_HTTP_PORT: inferenceHttp,
      QUANTA_CRYPTO_ADDR: `127.0.0.1:${crypto}`,
      QUANTA_REGISTRY_ADDR: `127.0.0.1:${registry}`,
      QUANTA_MONITORING_ADDR: `127.0.0.1:${monitoring}`,
      QUANTA_INFERENCE_ADDR: `127.0.0.1:${inference}`,
      INIT_CWD: userDir,
      OTEL_TRACES_EXPORTER: 'none',
      OTEL_METRICS_EXPORTER: 'none',
    };
    for (const key of ['QUANTA_HOME', 'QUANTA_TOKEN', 'QUANTA_DATABASE_URL', 'QUANTA_SERVICE_TOKEN', 'QUANTA_DEMO', 'QUANTA_DEV_TLS']) delete env[key];
    // What `npm start` runs (npm run serve -w @quanta/dev-stack), from the user's folder.
    const started = spawn(process.execPath, ['--conditions=@quanta/source', '--import', 'tsx', join(REPO_ROOT, 'tools', 'dev-stack', 'src', 'main.ts')], {
      cwd: join(REPO_ROOT, 'tools', 'dev-stack'),
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = started;
    const lines: string[] = [];
    createInterface({ input: started.stderr }).on('line', (line) => lines.push(line));
    const up = await new Promise<boolean>((resolve) => {
      createInterface({ input: started.stdout }).on('line', (line) => {
        lines.push(line);
        if (line.startsWith('Ctrl-C stops everything')) resolve(true);
      });
      started.once('exit', () => resolve(false));
    });
    expect(up, lines.slice(-30).join('\n')).toBe(true);
    const banner = lines.join('\n');
    expect(banner).toContain('Quanta is up.');
    expect(banner).toMatch(/demo: cifar is ready on inference/);
    expect(banner).toMatch(/demo: lstm is ready on inference/);
    expect(banner).toContain(join(userDir, '.quanta'));

    const tries = lines.slice(lines.indexOf('Try:') + 1).filter((l) => l.trim().startsWith('npx quanta'));
    expect(tries.length).toBeGreaterThanOrEqual(3);
    const cliEnv = { ...env };
    delete cliEnv['INIT_CWD'];
    for (const command of tries) {
      const result = await runCommand(command, userDir, cliEnv);
      expect(result.code, `${command}\n${result.stderr}`).toBe(0);
      expect(result.stdout.length, command).toBeGreaterThan(0);
    }

    started.kill('SIGINT');
    const [code] = (await once(started, 'exit')) as [number | null];
    expect(code).toBe(0);
    expect(lines.join('\n')).toContain('stopping Quanta');
  }, 300_000);
});
