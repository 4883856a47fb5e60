/**
 * Per-call overhead of the shared server path: an empty unary RPC (raw bytes, no codec) answered by
 * a bare grpc-js server and by `createService` with and without auth (real EdDSA tokens through
 * `createTokenVerifier`) and telemetry (`initTelemetry`: SDK tracer and meter, nothing exported).
 *
 * Each server runs in a child process of its own, so its CPU time is measured apart from the
 * client's (`process.cpuUsage()` read over IPC before and after the timed calls). Calls are made
 * one at a time; latency is timed at the client. The machine is shared: CPU time is the figure
 * that other processes' load does not decide.
 *
 *   npm run bench:rpc-overhead -w @quanta/bench \
 *     [-- --calls 5000 --rounds 3 --mode 'service-kit + auth' --cpu-prof /tmp/prof]
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { createMemorySigningKeyStore, createTokenIssuer, createTokenVerifier } from '@quanta/auth';
import type { ServiceOptions } from '@quanta/service-kit';
import { createService, unary } from '@quanta/service-kit';
import { initTelemetry } from '@quanta/telemetry';
import { pino } from 'pino';
import { markdownTable } from './measure.js';

const MODES = [
  'bare grpc-js',
  'service-kit',
  'service-kit + auth',
  'service-kit + telemetry',
  'service-kit + auth + telemetry',
] as const;
type Mode = (typeof MODES)[number];

const PATH = '/quanta.bench.v1.Overhead/Empty';
const identity = (b: Buffer): Buffer => b;
// Raw bytes both ways: what is measured is the call path, not a codec.
const definition: grpc.ServiceDefinition = {
  Empty: {
    path: PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};
const EMPTY = Buffer.alloc(0);

function textArg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

// --cpu-prof <dir>: each server process writes a V8 CPU profile there (for `node --cpu-prof` analysis).
const profileDir = textArg('cpu-prof');

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`);
  return v;
}

type ToChild = { type: 'cpu' } | { type: 'exit' };
type FromChild = { type: 'ready'; port: number; token: string } | { type: 'cpu'; micros: number };

function cpuMicros(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

/** The child: one server of the given mode, answering the parent's CPU questions. */
async function serve(mode: Mode): Promise<void> {
  const send = (message: FromChild): void => void process.send?.(message);
  const auth = mode.includes('auth');
  const issuer = await createTokenIssuer({ store: createMemorySigningKeyStore() });
  const token = auth
    ? await issuer.issue({ tenant: 'acme', subject: 'bench', scopes: ['infer'], ttlSeconds: 3600 })
    : '';
  let stop: () => Promise<void>;
  let port: number;
  if (mode === 'bare grpc-js') {
    const server = new grpc.Server();
    server.addService(definition, {
      Empty: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) =>
        callback(null, EMPTY),
    });
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    stop = () => new Promise((resolve) => server.tryShutdown(() => resolve()));
  } else {
    const logger = pino({ level: 'silent' });
    const options: ServiceOptions = {
      name: 'overhead',
      port: 0,
      logger,
      ...(auth ? { authenticator: createTokenVerifier({ fetchJwks: () => issuer.jwks() }) } : {}),
      ...(mode.includes('telemetry')
        ? { telemetry: initTelemetry({ serviceName: 'overhead', logLevel: 'silent' }) }
        : {}),
    };
    const service = createService(options);
    service.addService(definition, {
      Empty: unary<Buffer, Buffer>({ scope: auth ? 'infer' : 'public' }, () => Promise.resolve(EMPTY)),
    });
    port = (await service.start()).port;
    stop = () => service.stop({ graceMs: 100 });
  }
  process.on('message', (message: ToChild) => {
    if (message.type === 'cpu') send({ type: 'cpu', micros: cpuMicros() });
    else void stop().then(() => process.exit(0));
  });
  send({ type: 'ready', port, token });
}

interface Result {
  serverUs: number;
  clientUs: number;
  p50: number;
  p99: number;
}

const percentile = (sorted: readonly number[], q: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;

async function measure(mode: Mode, calls: number): Promise<Result> {
  const child = fork(fileURLToPath(import.meta.url), ['--serve', mode], {
    execArgv: [
      '--conditions=@quanta/source',
      '--import',
      'tsx',
      ...(profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`]),
    ],
    env: {
      ...process.env,
      OTEL_EXPORTER_OTLP_ENDPOINT: '',
      OTEL_TRACES_EXPORTER: 'none',
      OTEL_METRICS_EXPORTER: 'none',
    },
  });
  const next = async (): Promise<FromChild> => (await once(child, 'message'))[0] as FromChild;
  const ready = await next();
  if (ready.type !== 'ready') throw new Error(`${mode}: the server did not start`);
  const serverCpu = async (): Promise<number> => {
    child.send({ type: 'cpu' } satisfies ToChild);
    const reply = await next();
    if (reply.type !== 'cpu') throw new Error('expected a cpu reply');
    return reply.micros;
  };
  const client = new grpc.Client(`127.0.0.1:${ready.port}`, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  if (ready.token !== '') metadata.set('authorization', `Bearer ${ready.token}`);
  const call = (): Promise<void> =>
    new Promise((resolve, reject) => {
      client.makeUnaryRequest(PATH, identity, identity, EMPTY, metadata, (error) =>
        error ? reject(error) : resolve(),
      );
    });
  try {
    for (let i = 0; i < Math.min(2000, calls); i++) await call();
    const times: number[] = [];
    const s0 = await serverCpu();
    const c0 = cpuMicros();
    for (let i = 0; i < calls; i++) {
      const t0 = performance.now();
      await call();
      times.push((performance.now() - t0) * 1000);
    }
    const clientUs = (cpuMicros() - c0) / calls;
    const serverUs = ((await serverCpu()) - s0) / calls;
    times.sort((a, b) => a - b);
    return { serverUs, clientUs, p50: percentile(times, 0.5), p99: percentile(times, 0.99) };
  } finally {
    client.close();
    child.send({ type: 'exit' } satisfies ToChild);
    await once(child, 'exit');
  }
}

async function main(): Promise<void> {
  const calls = arg('calls', 5000);
  const rounds = arg('rounds', 3);
  // --mode <name>: only that server (with bare grpc-js as the reference).
  const only = textArg('mode');
  const modes = MODES.filter((m) => only === undefined || m === only || m === 'bare grpc-js');
  const results = new Map<Mode, Result[]>(modes.map((m) => [m, []]));
  // Rounds interleave the modes, so a burst of load from other processes does not land on one mode only.
  for (let r = 0; r < rounds; r++) {
    for (const mode of modes) results.get(mode)?.push(await measure(mode, calls));
  }
  const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
  const bare = median((results.get('bare grpc-js') ?? []).map((r) => r.serverUs));
  const rows = modes.map((mode) => {
    const rs = results.get(mode) ?? [];
    const server = median(rs.map((r) => r.serverUs));
    return [
      mode,
      server.toFixed(1),
      mode === 'bare grpc-js' ? '' : `+${(server - bare).toFixed(1)}`,
      median(rs.map((r) => r.clientUs)).toFixed(1),
      median(rs.map((r) => r.p50)).toFixed(0),
      median(rs.map((r) => r.p99)).toFixed(0),
    ];
  });
  console.log(`${calls} sequential empty unary calls per mode, ${rounds} rounds (medians of the rounds)\n`);
  console.log(
    markdownTable(['server', 'server CPU µs/call', 'over bare', 'client CPU µs/call', 'p50 µs', 'p99 µs'], rows),
  );
}

const serveAt = process.argv.indexOf('--serve');
if (serveAt >= 0) {
  const mode = MODES.find((m) => m === process.argv[serveAt + 1]);
  if (mode === undefined) throw new Error(`--serve: one of ${MODES.join(', ')}`);
  await serve(mode);
} else {
  await main();
}
