/**
 * Where a ModelInfer's server CPU goes: starts one server process of the inference benchmark
 * (bench-inference-servers.ts: `quanta`, `bare` or `empty`), drives it at one concurrency, and reports the
 * server's CPU per request split into user and system time and by thread (Linux /proc), the client's,
 * and the latency percentiles. `--cpu-prof DIR` makes the server write a V8 CPU profile there;
 * `--node-flags "--trace-gc"` passes further node flags to the server.
 *   tsx --conditions=@quanta/source src/profile-infer-path.ts \
 *     --server quanta --model cnn --deployment worker:1:1000 --concurrency 1 --seconds 3
 */
import { fork } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { inference } from '@quanta/contracts';
import { EMPTY_METHOD, benchItem, benchModel, encodeInferRequest, type ToParent } from './bench-inference-models.js';

const { values } = parseArgs({
  options: {
    server: { type: 'string', default: 'quanta' },
    model: { type: 'string', default: 'cnn' },
    /** Quanta's deployment, execution:instances:delayUs (bench-inference-models.ts parseDeployment). */
    deployment: { type: 'string', default: 'worker:1:1000' },
    concurrency: { type: 'string', default: '1' },
    seconds: { type: 'string', default: '3' },
    /** With `--server empty`: the request's size in bytes (echoed back by nothing: the answer stays empty). */
    'empty-bytes': { type: 'string', default: '0' },
    'cpu-prof': { type: 'string' },
    /** Further node flags for the server, space-separated (e.g. "--trace-gc"). */
    'node-flags': { type: 'string', default: '' },
  },
});
const kind = values.server;
const model = benchModel(values.model);
const concurrency = Number(values.concurrency);
const seconds = Number(values.seconds);

/** Clock ticks per second of /proc's utime/stime (USER_HZ; 100 on Linux). */
const HZ = 100;

/** utime and stime (s) of each thread of `pid`, by "tid name". */
function threadTimes(pid: number): Map<string, { user: number; system: number }> {
  const out = new Map<string, { user: number; system: number }>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    out.set(`${tid} ${name}`, { user: Number(fields[11]) / HZ, system: Number(fields[12]) / HZ });
  }
  return out;
}

const serversFile = fileURLToPath(
  new URL(`./bench-inference-servers${extname(fileURLToPath(import.meta.url))}`, import.meta.url),
);
const profile = values['cpu-prof'];
const nodeFlags = values['node-flags'].split(' ').filter((f) => f !== '');
const child = fork(serversFile, [kind, model.name, values.deployment], {
  execArgv: [
    ...process.execArgv,
    ...nodeFlags,
    ...(profile === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profile}`]),
  ],
  stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
});
const ready = await new Promise<Extract<ToParent, { kind: 'ready' }>>((resolve, reject) => {
  child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  child.on('message', (m: ToParent) => {
    if (m.kind === 'ready') resolve(m);
  });
});
const pid = child.pid!;

const client = new grpc.Client(`127.0.0.1:${ready.port}`, grpc.credentials.createInsecure(), {
  'grpc.max_receive_message_length': 64 << 20,
});
const item = benchItem(model);
const identity = (b: Buffer): Buffer => b;
let method: string;
let body: Buffer;
if (kind === 'empty') {
  method = EMPTY_METHOD;
  body = Buffer.alloc(Number(values['empty-bytes']), 1);
} else {
  method = inference.GRPCInferenceServiceService.modelInfer.path;
  body = encodeInferRequest(model, item);
}
const metadata = new grpc.Metadata();
if (ready.token !== '') metadata.set('authorization', `Bearer ${ready.token}`);
const call = (): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    client.makeUnaryRequest(method, identity, identity, body, metadata, (error, response) =>
      error ? reject(error) : resolve(response!),
    );
  });

async function drive(until: number, latencies?: number[]): Promise<void> {
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        const t0 = performance.now();
        await call();
        latencies?.push(performance.now() - t0);
      }
    }),
  );
}

await drive(performance.now() + 1000);
const latencies: number[] = [];
const before = threadTimes(pid);
const client0 = process.cpuUsage();
const start = performance.now();
await drive(start + seconds * 1000, latencies);
const wall = (performance.now() - start) / 1000;
const clientCpu = process.cpuUsage(client0);
const after = threadTimes(pid);
const n = latencies.length;
latencies.sort((a, b) => a - b);
const us = (s: number): string => ((s / n) * 1e6).toFixed(1);
let user = 0;
let system = 0;
const rows: string[] = [];
for (const [thread, t] of after) {
  const b = before.get(thread) ?? { user: 0, system: 0 };
  const du = t.user - b.user;
  const ds = t.system - b.system;
  user += du;
  system += ds;
  if (du + ds > 0)
    rows.push(`  ${thread.padEnd(24)} user ${us(du).padStart(7)}  system ${us(ds).padStart(7)} µs/request`);
}
console.log(
  `${kind} ${kind === 'empty' ? `${body.length} B` : `${model.name} ${values.deployment}`} ` +
    `concurrency ${concurrency}: ` +
    `${n} requests in ${wall.toFixed(2)} s (${(n / wall).toFixed(0)}/s), ` +
    `p50 ${latencies[Math.floor(n * 0.5)]!.toFixed(3)} ms, p99 ${latencies[Math.floor(n * 0.99)]!.toFixed(3)} ms`,
);
console.log(
  `server CPU µs/request: user ${us(user)} + system ${us(system)} = ${us(user + system)} (/proc, 10 ms ticks)`,
);
console.log(rows.join('\n'));
console.log(`client CPU µs/request: user ${us(clientCpu.user / 1e6)} + system ${us(clientCpu.system / 1e6)}`);
client.close();
child.send('stop');
await new Promise((resolve) => child.once('exit', resolve));
