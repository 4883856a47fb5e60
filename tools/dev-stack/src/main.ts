// `npm start`: runs every Quanta service of this checkout as its own process with embedded
// defaults under $QUANTA_HOME, waits until each is healthy, prints where everything is, and
// stops them all cleanly on Ctrl-C.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deployDemo } from './demo.js';
import { availableServices } from './services.js';
import { devChannelCredentials, devTlsEnvironment, ensureDevCertificates } from './tls.js';
import { waitHealthy } from './wait-healthy.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
// `npm start` runs this script from tools/dev-stack; relative paths mean the folder the user ran npm in.
const userDir = process.env['INIT_CWD'] ?? process.cwd();
const home = resolve(userDir, process.env['QUANTA_HOME'] ?? '.quanta');
mkdirSync(home, { recursive: true, mode: 0o700 });

const services = availableServices(root);
// `npm start -- --no-demo` (or QUANTA_DEMO=0): start the services only.
// Through `npm start -- --no-demo` the flag arrives as npm_config_demo ('' or 'false'), not in argv.
const demo =
  !process.argv.includes('--no-demo') &&
  !['', 'false'].includes(process.env['npm_config_demo'] ?? 'true') &&
  process.env['QUANTA_DEMO'] !== '0';
const env: NodeJS.ProcessEnv = { ...process.env, QUANTA_HOME: home };
for (const s of services) env[s.addrEnv] ??= `127.0.0.1:${env[s.portEnv] ?? s.port}`;
// The dashboard listens on loopback only; in development it shows every tenant without a token.
env['QUANTA_MONITORING_DASHBOARD_PUBLIC'] ??= '1';
// Inference's Prometheus metrics (Triton's) listen on loopback too: every tenant's, without a token.
env['QUANTA_INFERENCE_METRICS_PUBLIC'] ??= '1';
// Inference serves what the registry's deployments ask for.
env['QUANTA_INFERENCE_WATCH'] ??= 'true';

// `npm start -- --tls` (or QUANTA_DEV_TLS=1): TLS on every listener and mTLS between the services,
// on the certificates of `quanta certs dev` in $QUANTA_HOME/certs (made on first use).
// `npm start -- --tls` reaches this script as npm_config_tls (the inner `npm run` takes the flag), `--tls` directly.
const tls =
  process.argv.includes('--tls') ||
  process.env['npm_config_tls'] === 'true' ||
  ['1', 'true', 'yes'].includes(process.env['QUANTA_DEV_TLS'] ?? '');
const certFiles = tls ? await ensureDevCertificates(root, join(home, 'certs')) : undefined;
const tlsEnv = certFiles === undefined ? {} : devTlsEnvironment(certFiles);
Object.assign(env, tlsEnv);
const credentials = certFiles === undefined ? undefined : devChannelCredentials(certFiles);

const children: { name: string; child: ChildProcess }[] = [];
let stopping = false;
let stopped: Promise<never> | undefined;
// A second Ctrl-C, later than REPEATED_SIGNAL_WINDOW_MS after the first, killed what was left.
let forced = false;

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/**
 * Services log JSON lines (pino) for machines; on a terminal a person reads the message, the level
 * when it is not info, and the trace id when there is one. Set QUANTA_DEV_JSON_LOGS=1 for raw lines.
 */
function readable(line: string): string {
  if (process.env['QUANTA_DEV_JSON_LOGS'] === '1' || !line.startsWith('{')) return line;
  try {
    const entry = JSON.parse(line) as { level?: number; msg?: string; trace_id?: string; err?: { message?: string } };
    if (typeof entry.msg !== 'string') return line;
    const level = entry.level !== undefined ? LEVELS[entry.level] : undefined;
    const error = entry.err?.message ? `: ${entry.err.message}` : '';
    const trace = entry.trace_id ? ` (trace ${entry.trace_id})` : '';
    return `${level ? `${level} ` : ''}${entry.msg}${error}${trace}`;
  } catch {
    return line;
  }
}

function prefixLines(name: string, stream: NodeJS.ReadableStream, out: NodeJS.WritableStream): void {
  let rest = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines) out.write(`[${name}] ${readable(line)}\n`);
  });
}

/** A process group's id is its leader's pid; each service leads its own (spawned detached). */
function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // gone already
  }
}

/**
 * Stops the services one by one with SIGTERM, each draining its calls, then exits with `code` (1 if
 * a service did not stop cleanly). Every later call waits for the same stop.
 */
function stopAll(code: number): Promise<never> {
  stopped ??= (async () => {
    stopping = true;
    process.stderr.write('\nstopping Quanta (Ctrl-C again to stop at once)...\n');
    let exitCode = code;
    // Reverse start order: nothing loses the crypto service while it still serves calls.
    for (const { name, child } of [...children].reverse()) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
      child.kill('SIGTERM');
      const [exit, signal] = await exited;
      // Killed by this SIGTERM: it was still starting, before its handler was in place.
      if (exit !== 0 && signal !== 'SIGTERM' && !forced) {
        process.stderr.write(`${name} did not stop cleanly (${signal ?? `code ${exit}`})\n`);
        exitCode = 1;
      }
    }
    process.exit(forced ? 130 : exitCode);
  })();
  return stopped;
}

// The services run in process groups of their own (spawned detached), so a terminal's Ctrl-C, sent
// to its whole foreground group, reaches this process and not them; each gets one SIGTERM from
// stopAll. The same Ctrl-C can reach this process twice (a shell that execs the script leaves npm
// forwarding it here too): a signal within the window of the first is the same request, as in the
// services' own handler (REPEATED_SIGNAL_WINDOW_MS of @quanta/service-kit). A later one kills what is
// left. If this process dies without stopping them, they see their IPC channel close and stop.
const REPEATED_SIGNAL_WINDOW_MS = 1000;
let firstSignalAt: number | undefined;
function onSignal(): void {
  const now = performance.now();
  if (firstSignalAt === undefined) {
    firstSignalAt = now;
    void stopAll(0);
    return;
  }
  if (now - firstSignalAt < REPEATED_SIGNAL_WINDOW_MS || forced) return;
  forced = true;
  const left = [...children].reverse().filter(({ child }) => child.exitCode === null && child.signalCode === null);
  process.stderr.write(`stopping Quanta at once: killing ${left.map((c) => c.name).join(', ') || 'nothing'}\n`);
  for (const { child } of left) killGroup(child, 'SIGKILL');
}
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

if (services.length === 0) {
  process.stderr.write('no service has an entry point yet (services/*/src/main.ts)\n');
  process.exit(1);
}

function startService(s: (typeof services)[number]): Promise<void> {
  const child = spawn(
    process.execPath,
    ['--conditions=@quanta/source', '--import', 'tsx', join(root, 'services', s.name, 'src', 'main.ts')],
    {
      cwd: root,
      env,
      // A process group of its own; the IPC channel only tells it when this process is gone.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    },
  );
  children.push({ name: s.name, child });
  // Pipes, as asked above (with 'ipc' in stdio, spawn's types no longer say so).
  if (child.stdout !== null) prefixLines(s.name, child.stdout, process.stdout);
  if (child.stderr !== null) prefixLines(s.name, child.stderr, process.stderr);
  child.on('exit', (code, signal) => {
    if (stopping) return;
    process.stderr.write(`${s.name} exited (${signal ?? `code ${code}`}); stopping the rest\n`);
    void stopAll(1);
  });
  // A first start initialises each embedded database, which takes a while on a busy machine.
  return waitHealthy(env[s.addrEnv] ?? '', 180_000, undefined, credentials).catch(async (error: unknown) => {
    process.stderr.write(`${s.name}: ${error instanceof Error ? error.message : String(error)}\n`);
    await stopAll(1);
  });
}

// Crypto first: the others check tokens against its keys and ask it for data keys. The rest
// start side by side.
const [first, ...rest] = services;
if (first !== undefined) await startService(first);
await Promise.all(rest.map(startService));

const has = (name: string): boolean => services.some((s) => s.name === name);
let inputs: { cifar: string; lstm: string } | undefined;
if (demo && has('model-registry')) {
  try {
    inputs = await deployDemo({
      registryAddr: env['QUANTA_REGISTRY_ADDR'] ?? '127.0.0.1:9001',
      ...(has('inference') ? { inferenceAddr: env['QUANTA_INFERENCE_ADDR'] ?? '127.0.0.1:8001' } : {}),
      token: readFileSync(join(home, 'admin.token'), 'utf8').trim(),
      dir: join(home, 'demo'),
      log: (line) => process.stdout.write(`[dev-stack] ${line}\n`),
      ...(credentials === undefined ? {} : { credentials }),
    });
  } catch (error: unknown) {
    process.stderr.write(
      `[dev-stack] the demo could not be deployed: ${error instanceof Error ? error.message : String(error)}\n`,
    );
  }
}

// Paths the printed commands use, relative to where npm start ran, as the user types them.
const shown = (path: string): string => {
  const rel = relative(userDir, path);
  return rel.startsWith('..') ? path : rel;
};
const tries =
  inputs !== undefined && has('inference')
    ? [
        `  npx quanta infer cifar --input input=${shown(inputs.cifar)}`,
        `  npx quanta infer lstm --input x=${shown(inputs.lstm)} --sequence-id 7 --sequence-start`,
        '  npx quanta stats cifar',
      ]
    : [
        `  npx quanta ping ${services.map((s) => s.cli).join(' ')}`,
        '  npx quanta keys create demo --type aes256-gcm',
        '  echo hello | npx quanta encrypt --key demo | npx quanta decrypt --key demo',
      ];

const lines = [
  '',
  'Quanta is up.',
  ...services.map((s) => {
    // With TLS every HTTP listener (inference REST and metrics, the monitoring dashboard) serves
    // HTTPS on the gRPC certificate.
    const extra = (s.extra?.(env) ?? []).map((e) => (tls ? e.replace('http://', 'https://') : e));
    return `  ${s.name.padEnd(15)} grpc ${env[s.addrEnv]}${extra.length > 0 ? `   ${extra.join('   ')}` : ''}`;
  }),
  `  data            ${home}`,
  `  admin token     ${join(home, 'admin.token')} (mode 0600; the CLI reads it from there)`,
  ...(inputs !== undefined
    ? ['  demo models     cifar (CNN, batched, cifar@production) and lstm (stateful sequences)']
    : []),
  ...(tls
    ? [
        '  TLS             every listener, client certificates required (mTLS) except by the dashboard; ' +
          `certificates in ${join(home, 'certs')}`,
      ]
    : []),
  '',
  ...(tls
    ? [
        'The CLI needs the client certificate:',
        ...['QUANTA_CLIENT_TLS_CA', 'QUANTA_CLIENT_TLS_CERT', 'QUANTA_CLIENT_TLS_KEY'].map(
          (k) => `  export ${k}=${tlsEnv[k] ?? ''}`,
        ),
        '',
      ]
    : []),
  'Try:',
  ...tries,
  '',
  'Ctrl-C stops everything.',
  '',
];
process.stdout.write(lines.join('\n'));
