// The whole platform for one test file: crypto, model-registry, monitoring and inference as
// separate processes (as `npm start` runs them) on free ports, with a fresh QUANTA_HOME, each
// started from its sources and stopped (or killed) one by one.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export type ServiceName = 'crypto' | 'model-registry' | 'monitoring' | 'inference';

export interface ServiceProcess {
  readonly name: ServiceName;
  readonly child: ChildProcess;
  /** Every line it wrote (JSON log lines and anything else), for failure messages. */
  readonly output: string[];
  /** SIGTERM, and wait for the exit; resolves with the exit code. */
  stop(): Promise<number | null>;
  kill(): Promise<void>;
}

export interface Stack {
  readonly home: string;
  readonly adminToken: string;
  readonly env: NodeJS.ProcessEnv;
  readonly addr: { crypto: string; registry: string; monitoring: string; inference: string };
  /**
   * `inferenceMetrics` is Triton's /metrics of the inference replica (a token with monitoring:read,
   * or the admin token).
   */
  readonly http: { inference: string; inferenceMetrics: string; monitoring: string };
  readonly processes: Map<ServiceName, ServiceProcess>;
  /** (Re)starts one service with the stack's settings, waiting for its "listening" line. */
  start(name: ServiceName): Promise<ServiceProcess>;
  close(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  server.close();
  await once(server, 'close');
  return port;
}

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the `quanta` CLI from the repository root with `env` (a stack's `env` plus a token, say). */
export function runCli(args: readonly string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(REPO_ROOT, 'tools', 'cli', 'bin', 'quanta.mjs'), ...args], {
      cwd: REPO_ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** How a service process is started: its program and arguments (default: node running its sources with tsx). */
export interface ServiceCommand {
  readonly file: string;
  readonly args: readonly string[];
}

/**
 * Starts one service with `env`, from its sources unless `command` says otherwise; resolves once its
 * gRPC listener logs "listening".
 */
export function spawnService(
  name: ServiceName,
  env: NodeJS.ProcessEnv,
  command?: ServiceCommand,
): Promise<ServiceProcess> {
  const { file, args } = command ?? {
    file: process.execPath,
    args: ['--conditions=@quanta/source', '--import', 'tsx', join(REPO_ROOT, 'services', name, 'src', 'main.ts')],
  };
  const child = spawn(file, args, {
    cwd: REPO_ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  createInterface({ input: child.stderr }).on('line', (line) => output.push(line));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  const proc: ServiceProcess = {
    name,
    child,
    output,
    async stop() {
      if (alive()) child.kill('SIGTERM');
      const [code] = await exited;
      return code;
    },
    async kill() {
      if (alive()) child.kill('SIGKILL');
      await exited;
    },
  };
  return new Promise((resolvePromise, reject) => {
    const lines = createInterface({ input: child.stdout });
    let listening = false;
    lines.on('line', (line) => {
      output.push(line);
      if (listening) return;
      try {
        const entry = JSON.parse(line) as { msg?: unknown };
        // The gRPC listener's line comes last: each service binds its other listeners first.
        if (typeof entry.msg === 'string' && /listening/.test(entry.msg) && !/http|dashboard|REST/i.test(entry.msg)) {
          listening = true;
          resolvePromise(proc);
        }
      } catch {
        // not a log line
      }
    });
    child.once('exit', (code, signal) => {
      if (!listening)
        reject(new Error(`${name} exited (${signal ?? code}) before listening:\n${output.slice(-40).join('\n')}`));
    });
  });
}

export interface StackOptions {
  /** Extra environment for every service (OTEL_EXPORTER_OTLP_ENDPOINT, say). */
  readonly env?: NodeJS.ProcessEnv;
  /** Services to start; default all four. */
  readonly services?: readonly ServiceName[];
  /** Starts one service (a container of the image, say); default: spawnService from its sources. */
  readonly launch?: (name: ServiceName, env: NodeJS.ProcessEnv) => Promise<ServiceProcess>;
  /** The registry's QUANTA_BLOB_URL (`s3://…`, with its credentials in `env`); default: the folder in QUANTA_HOME. */
  readonly blobUrl?: string;
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const home = await mkdtemp(join(tmpdir(), 'quanta-e2e-'));
  const [crypto, registry, monitoring, monitoringHttp, inference, inferenceHttp, inferenceMetrics] = await Promise.all(
    Array.from({ length: 7 }, freePort),
  );
  const addr = {
    crypto: `127.0.0.1:${crypto}`,
    registry: `127.0.0.1:${registry}`,
    monitoring: `127.0.0.1:${monitoring}`,
    inference: `127.0.0.1:${inference}`,
  };
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    QUANTA_HOME: home,
    QUANTA_LOG_LEVEL: 'info',
    OTEL_TRACES_EXPORTER: 'none',
    OTEL_METRICS_EXPORTER: 'none',
    QUANTA_CRYPTO_PORT: String(crypto),
    QUANTA_REGISTRY_PORT: String(registry),
    QUANTA_MONITORING_PORT: String(monitoring),
    QUANTA_MONITORING_HTTP_PORT: String(monitoringHttp),
    QUANTA_MONITORING_DASHBOARD_PUBLIC: '1',
    QUANTA_INFERENCE_PORT: String(inference),
    QUANTA_INFERENCE_HTTP_PORT: String(inferenceHttp),
    QUANTA_INFERENCE_METRICS_PORT: String(inferenceMetrics),
    QUANTA_INFERENCE_WATCH: 'true',
    QUANTA_CRYPTO_ADDR: addr.crypto,
    QUANTA_REGISTRY_ADDR: addr.registry,
    QUANTA_MONITORING_ADDR: addr.monitoring,
    QUANTA_INFERENCE_ADDR: addr.inference,
    QUANTA_MONITORING_TARGETS: `crypto=${addr.crypto},registry=${addr.registry},inference=${addr.inference}`,
    QUANTA_MONITORING_HEALTH_INTERVAL: '500ms',
    ...options.env,
  };
  for (const key of [
    'QUANTA_BLOB_URL',
    'QUANTA_DATABASE_URL',
    'QUANTA_TOKEN',
    'QUANTA_SERVICE_TOKEN',
    'QUANTA_INFERENCE_SERVICE_TOKEN',
  ]) {
    if (options.env?.[key] === undefined) delete env[key];
  }
  if (options.blobUrl !== undefined) env['QUANTA_BLOB_URL'] = options.blobUrl;
  const processes = new Map<ServiceName, ServiceProcess>();
  const start = async (name: ServiceName): Promise<ServiceProcess> => {
    const proc = await (options.launch ?? spawnService)(name, env);
    processes.set(name, proc);
    return proc;
  };
  const wanted = options.services ?? ['crypto', 'model-registry', 'monitoring', 'inference'];
  try {
    // Crypto first: it writes the admin token and the others check tokens against its keys.
    if (wanted.includes('crypto')) await start('crypto');
    await Promise.all(wanted.filter((s) => s !== 'crypto').map(start));
  } catch (error: unknown) {
    await Promise.all([...processes.values()].map((p) => p.kill()));
    await rm(home, { recursive: true, force: true });
    throw error;
  }
  const adminToken = (await readFile(join(home, 'admin.token'), 'utf8')).trim();
  return {
    home,
    adminToken,
    env,
    addr,
    http: {
      inference: `http://127.0.0.1:${inferenceHttp}`,
      inferenceMetrics: `http://127.0.0.1:${inferenceMetrics}/metrics`,
      monitoring: `http://127.0.0.1:${monitoringHttp}`,
    },
    processes,
    start,
    async close() {
      // Reverse start order, so nothing loses crypto while it still serves calls.
      for (const name of ['inference', 'monitoring', 'model-registry', 'crypto'] as const)
        await processes.get(name)?.stop();
      await rm(home, { recursive: true, force: true });
    },
  };
}
