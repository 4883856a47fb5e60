// `npm start` as a newcomer meets it: every service up, the demo deployed, and each command it
// prints under "Try:" working as printed; Ctrl-C, as a terminal sends it (SIGINT to the whole
// foreground process group), stops every service gracefully with calls in flight, a second Ctrl-C
// later stops it at once, and the services do not outlive a dev stack that was killed.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { inference, unaryCaller } from '@quanta/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, eventually, randomImage } from './clients.js';
import { freePort, REPO_ROOT } from './stack.js';

/** The dev stack's window in which a second signal is the same Ctrl-C (tools/dev-stack/src/main.ts). */
const REPEATED_SIGNAL_WINDOW_MS = 1000;
const SERVICES = ['crypto', 'model-registry', 'monitoring', 'inference'] as const;

let userDir: string;
let env: NodeJS.ProcessEnv;
/** Every dev stack and service process started, for the cleanup of a failed test. */
const started: number[] = [];

beforeAll(async () => {
  userDir = await mkdtemp(join(tmpdir(), 'quanta-newcomer-'));
  const ports = await Promise.all(Array.from({ length: 7 }, freePort));
  const [crypto, registry, monitoring, monitoringHttp, inferencePort, inferenceHttp, inferenceMetrics] =
    ports.map(String);
  // The user's shell: only the ports differ from a laptop's defaults (this machine runs other tests).
  env = {
    ...process.env,
    QUANTA_CRYPTO_PORT: crypto,
    QUANTA_REGISTRY_PORT: registry,
    QUANTA_MONITORING_PORT: monitoring,
    QUANTA_MONITORING_HTTP_PORT: monitoringHttp,
    QUANTA_INFERENCE_PORT: inferencePort,
    QUANTA_INFERENCE_HTTP_PORT: inferenceHttp,
    QUANTA_INFERENCE_METRICS_PORT: inferenceMetrics,
    QUANTA_CRYPTO_ADDR: `127.0.0.1:${crypto}`,
    QUANTA_REGISTRY_ADDR: `127.0.0.1:${registry}`,
    QUANTA_MONITORING_ADDR: `127.0.0.1:${monitoring}`,
    QUANTA_INFERENCE_ADDR: `127.0.0.1:${inferencePort}`,
    INIT_CWD: userDir,
    OTEL_TRACES_EXPORTER: 'none',
    OTEL_METRICS_EXPORTER: 'none',
  };
  for (const key of [
    'QUANTA_HOME',
    'QUANTA_TOKEN',
    'QUANTA_DATABASE_URL',
    'QUANTA_SERVICE_TOKEN',
    'QUANTA_DEMO',
    'QUANTA_DEV_TLS',
    'QUANTA_DEV_JSON_LOGS',
  ])
    delete env[key];
});

afterAll(async () => {
  for (const pid of started) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  await Promise.all(started.map((pid) => eventually(`process ${pid} gone`, async () => !(await alive(pid)), 30_000)));
  await rm(userDir, { recursive: true, force: true });
}, 60_000);

interface DevStack {
  readonly child: ChildProcess;
  readonly pid: number;
  /** What it printed, stdout and stderr, line by line. */
  readonly lines: string[];
  readonly exited: Promise<[number | null, NodeJS.Signals | null]>;
  /** The first line that `test` accepts, now or once printed. */
  line(test: (line: string) => boolean): Promise<string>;
  /** The services' pids, in start order. */
  servicePids(): Promise<number[]>;
}

/**
 * What `npm start` runs (npm run serve -w @quanta/dev-stack), from the user's folder, as the leader of
 * a process group of its own, as a terminal runs its foreground job; resolves once "Quanta is up".
 */
async function startDevStack(extraEnv: NodeJS.ProcessEnv = {}): Promise<DevStack> {
  const child = spawn(
    process.execPath,
    ['--conditions=@quanta/source', '--import', 'tsx', join(REPO_ROOT, 'tools', 'dev-stack', 'src', 'main.ts')],
    {
      cwd: join(REPO_ROOT, 'tools', 'dev-stack'),
      env: { ...env, ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    },
  );
  const pid = child.pid;
  if (pid === undefined) throw new Error('the dev stack did not start');
  started.push(pid);
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const lines: string[] = [];
  const waiting = new Set<() => void>();
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on('line', (l) => {
      lines.push(l);
      for (const check of waiting) check();
    });
  }
  const line = (test: (l: string) => boolean): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const found = lines.find(test);
        if (found === undefined) return;
        waiting.delete(check);
        resolve(found);
      };
      waiting.add(check);
      check();
      void exited.then(([code, signal]) => {
        if (!waiting.has(check)) return;
        waiting.delete(check);
        reject(new Error(`the dev stack exited (${signal ?? code}) first:\n${lines.slice(-30).join('\n')}`));
      });
    });
  const servicePids = async (): Promise<number[]> => {
    const { stdout } = await promisify(execFile)('ps', ['-A', '-o', 'pid=,ppid=']);
    const pids = stdout
      .trim()
      .split('\n')
      .map((row) => row.trim().split(/\s+/).map(Number))
      .filter(([, ppid]) => ppid === pid)
      .map(([child]) => child ?? 0);
    started.push(...pids);
    return pids;
  };
  await line((l) => l.startsWith('Ctrl-C stops everything'));
  return { child, pid, lines, exited, line, servicePids };
}

async function alive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // An orphan that exited stays a zombie until the process that adopted it reaps it.
  const { stdout } = await promisify(execFile)('ps', ['-o', 'stat=', '-p', String(pid)]).catch(() => ({ stdout: '' }));
  return stdout.trim() !== '' && !stdout.trim().startsWith('Z');
}

/** A terminal's Ctrl-C: SIGINT to every process of the foreground group. */
function ctrlC(stack: DevStack): void {
  process.kill(-stack.pid, 'SIGINT');
}

function runCommand(
  line: string,
  cwd: string,
  commandEnv: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  // `npx quanta …` as printed; run through the CLI's launcher (npx would resolve the same bin).
  const args = line.trim().split(/\s+/);
  expect(args.slice(0, 2)).toEqual(['npx', 'quanta']);
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [join(REPO_ROOT, 'tools', 'cli', 'bin', 'quanta.mjs'), ...args.slice(2)], {
      cwd,
      env: commandEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (b: Buffer) => (stdout += b.toString('utf8')));
    c.stderr.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
    c.once('error', reject);
    c.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A ModelInfer request for the demo CNN: `rows` images. */
function cifarRequest(seed: number, rows: number): inference.ModelInferRequest {
  const data = randomImage(seed, rows);
  return {
    modelName: 'cifar',
    modelVersion: '',
    id: `r${seed}`,
    parameters: {},
    inputs: [
      { name: 'input', datatype: 'FP32', shape: [BigInt(rows), 3n, 32n, 32n], parameters: {}, contents: undefined },
    ],
    outputs: [],
    rawInputContents: [Buffer.from(data.buffer, data.byteOffset, data.byteLength)],
  };
}

/** A ModelStreamInfer call whose answers a test awaits one by one. */
function openStream(client: inference.GRPCInferenceServiceClient, token: string) {
  const call = client.modelStreamInfer(bearer(token));
  const answers: inference.ModelStreamInferResponse[] = [];
  const waiting = new Set<() => void>();
  let failure: Error | undefined;
  call.on('data', (answer: inference.ModelStreamInferResponse) => {
    answers.push(answer);
    for (const check of waiting) check();
  });
  const ended = new Promise<void>((resolve, reject) => {
    call.on('error', (error: Error) => {
      failure = error;
      for (const check of waiting) check();
      reject(error);
    });
    call.on('end', resolve);
  });
  ended.catch(() => undefined);
  return {
    call,
    answers,
    ended,
    /** Resolves once `count` answers have come. */
    answered: (count: number): Promise<void> =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          if (answers.length >= count) {
            waiting.delete(check);
            resolve();
          } else if (failure !== undefined) {
            waiting.delete(check);
            reject(failure);
          }
        };
        waiting.add(check);
        check();
      }),
  };
}

describe('npm start', () => {
  it(
    'comes up with the demo deployed, its printed commands work, ' +
      'and one Ctrl-C with calls in flight stops every service gracefully',
    async () => {
      const stack = await startDevStack();
      const banner = stack.lines.join('\n');
      expect(banner).toContain('Quanta is up.');
      expect(banner).toMatch(/demo: cifar is ready on inference/);
      expect(banner).toMatch(/demo: lstm is ready on inference/);
      expect(banner).toContain(join(userDir, '.quanta'));

      const tries = stack.lines.slice(stack.lines.indexOf('Try:') + 1).filter((l) => l.trim().startsWith('npx quanta'));
      expect(tries.length).toBeGreaterThanOrEqual(3);
      const cliEnv = { ...env };
      delete cliEnv['INIT_CWD'];
      for (const command of tries) {
        const result = await runCommand(command, userDir, cliEnv);
        expect(result.code, `${command}\n${result.stderr}`).toBe(0);
        expect(result.stdout.length, command).toBeGreaterThan(0);
      }

      // Calls in flight when Ctrl-C comes: unary ModelInfers, and a stream that goes on after it.
      const token = (await readFile(join(userDir, '.quanta', 'admin.token'), 'utf8')).trim();
      const client = new inference.GRPCInferenceServiceClient(
        env['QUANTA_INFERENCE_ADDR'] ?? '',
        grpc.credentials.createInsecure(),
      );
      try {
        const rpc = unaryCaller(client, inference.GRPCInferenceServiceService);
        // Connected first, so that each call below starts its HTTP/2 stream at once, in order.
        expect((await rpc('modelReady', { name: 'cifar', version: '' }, { metadata: bearer(token) })).ready).toBe(true);
        let signalledAt = Number.POSITIVE_INFINITY;
        const unary = Array.from({ length: 32 }, (_, i) =>
          rpc('modelInfer', cifarRequest(i + 1, 16), { metadata: bearer(token), deadline: Date.now() + 60_000 }).then(
            (reply) => ({ reply, at: Date.now() }),
          ),
        );
        const stream = openStream(client, token);
        stream.call.write(cifarRequest(100, 1));
        // The stream's first answer: the server has taken every call started before it.
        await stream.answered(1);

        ctrlC(stack);
        signalledAt = Date.now();
        // The same Ctrl-C again, as npm forwards it where the shell execs the script.
        await stack.line((l) => l.startsWith('stopping Quanta'));
        stack.child.kill('SIGINT');
        // Inference drains: the open stream is still served.
        await stack.line((l) => l === '[inference] shutting down');
        for (let i = 0; i < 5; i++) stream.call.write(cifarRequest(200 + i, 4));
        await stream.answered(6);
        stream.call.end();
        await stream.ended;
        expect(stream.answers.map((a) => a.errorMessage)).toEqual(Array.from({ length: 6 }, () => ''));
        expect(stream.answers.slice(1).map((a) => a.inferResponse?.outputs[0]?.shape)).toEqual(
          Array.from({ length: 5 }, () => [4n, 10n]),
        );

        const answered = await Promise.all(unary);
        for (const { reply } of answered) expect(reply.outputs[0]?.shape).toEqual([16n, 10n]);
        // How many of them Ctrl-C found running (the stream's alone makes the test), for the log.
        console.info(
          `unary ModelInfer answered after Ctrl-C: ` +
            `${answered.filter((a) => a.at >= signalledAt).length} of ${answered.length}`,
        );
      } finally {
        client.close();
      }

      const [code] = await stack.exited;
      const log = stack.lines.join('\n');
      expect(code, log).toBe(0);
      expect(log).not.toMatch(/second signal|at once: killing|did not stop cleanly/);
      for (const name of SERVICES) {
        for (const step of ['signal received', 'shutting down', 'stopped'])
          expect(stack.lines, `${name}: ${step}`).toContain(`[${name}] ${step}`);
      }
      // Inference stopped first, crypto last: nothing lost the key service while still serving.
      const stoppedAt = SERVICES.map((name) => stack.lines.indexOf(`[${name}] stopped`));
      expect(stoppedAt).toEqual([...stoppedAt].sort((a, b) => b - a));
    },
    300_000,
  );

  it(
    `a second Ctrl-C later than ${REPEATED_SIGNAL_WINDOW_MS} ms after the first ` + 'stops everything at once',
    async () => {
      // A long grace, so that only the second Ctrl-C can end inference's drain within the test.
      const stack = await startDevStack({ QUANTA_INFERENCE_SHUTDOWN_GRACE: '120s' });
      const pids = await stack.servicePids();
      expect(pids).toHaveLength(SERVICES.length);
      const token = (await readFile(join(userDir, '.quanta', 'admin.token'), 'utf8')).trim();
      const client = new inference.GRPCInferenceServiceClient(
        env['QUANTA_INFERENCE_ADDR'] ?? '',
        grpc.credentials.createInsecure(),
      );
      try {
        // An open stream holds inference's graceful stop until the grace runs out.
        const stream = openStream(client, token);
        stream.call.write(cifarRequest(1, 1));
        await stream.answered(1);
        ctrlC(stack);
        const first = Date.now();
        await stack.line((l) => l === '[inference] shutting down');
        // The window is a span of time: only waiting it out shows what comes after it.
        await delay(REPEATED_SIGNAL_WINDOW_MS + 200 - (Date.now() - first));
        ctrlC(stack);
        const [code] = await stack.exited;
        expect(code, stack.lines.join('\n')).toBe(130);
        expect(Date.now() - first).toBeLessThan(30_000);
        await expect(stream.ended).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
      } finally {
        client.close();
      }
      expect(stack.lines).toContain('stopping Quanta at once: killing inference, monitoring, model-registry, crypto');
      for (const pid of pids) expect(await alive(pid), `service ${pid}`).toBe(false);
    },
    300_000,
  );

  it('does not leave the services running when the dev stack is killed', async () => {
    const stack = await startDevStack();
    const pids = await stack.servicePids();
    expect(pids).toHaveLength(SERVICES.length);
    process.kill(stack.pid, 'SIGKILL');
    await stack.exited;
    // Their IPC channel closed: each stops as on SIGTERM.
    await eventually(
      'every service stopped',
      async () => (await Promise.all(pids.map(alive))).every((a) => !a),
      60_000,
    );
  }, 300_000);
});
