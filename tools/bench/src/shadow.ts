/**
 * What a shadow costs the caller: Quanta's unary ModelInfer at concurrency 1 and 64, without a
 * shadow and with a 100% shadow (every request copied to another version of the same model after
 * the primary answered), side by side in one run against one server process. Prints p50/p99 latency
 * and items/s for each (the median of BENCH_ROUNDS alternating rounds, default 3), and the ratio
 * with/without.
 *
 *   npm run bench:shadow -w tools/bench          (BENCH_SECONDS per cell, default 5; BENCH_MODEL cnn)
 *
 * The server (this file forked with `server`) is Quanta's inference service (startInferenceServer,
 * real EdDSA tokens from an in-memory issuer) with two versions of the model loaded straight into
 * its core, dynamically batched (BENCH_MAX_BATCH, default 64, BENCH_DELAY_US default 500); the parent
 * switches the shadow on and off between cells through the manager's traffic table, as the registry
 * sync does.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { inference } from '@quanta/contracts';
import { buildCnn } from '@quanta/onnx';
import {
  BENCH_THREADS,
  benchItem,
  benchModel,
  encodeInferRequest,
  startBenchInferenceServer,
} from './bench-inference-models.js';
import { formatRate, markdownTable } from './measure.js';

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? '5');
/** Rounds of off/on per concurrency; each cell reports its median round (a shared machine drifts). */
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? '3');
const MODEL = process.env['BENCH_MODEL'] ?? 'cnn';
const TENANT = 'bench';

type ToParent = { kind: 'ready'; port: number; token: string } | { kind: 'switched' };
type ToChild = { kind: 'shadow'; on: boolean } | { kind: 'stop' };

/** The two versions: the bench model, and for the CNN another seed (the same shape, other weights). */
async function versions(): Promise<[Uint8Array, Uint8Array]> {
  if (MODEL === 'cnn') return [buildCnn({ seed: 1 }), buildCnn({ seed: 2 })];
  const bytes = await benchModel(MODEL).bytes();
  return [bytes, bytes];
}

async function server(): Promise<void> {
  const model = benchModel(MODEL);
  const { server: running, issuer } = await startBenchInferenceServer();
  const { manager } = running;
  const [primary, shadow] = await versions();
  const config = {
    maxBatchSize: Number(process.env['BENCH_MAX_BATCH'] ?? '64'),
    maxQueueDelayUs: Number(process.env['BENCH_DELAY_US'] ?? '500'),
    instanceCount: 1,
    maxQueueSize: 0,
    sequenceState: [],
    sequenceIdleTimeoutMs: 0,
    threadsPerInstance: BENCH_THREADS,
  };
  await manager.load(TENANT, model.name, '1', primary, config);
  await manager.load(TENANT, model.name, '2', shadow, config);
  await manager.activate(TENANT, model.name, '1', { keepPrevious: true });
  const token = await issuer.issue({ tenant: TENANT, subject: 'bench', scopes: ['infer'], ttlSeconds: 3600 });
  process.on('message', (message: ToChild) => {
    if (message.kind === 'stop') void running.stop({ graceMs: 1000 }).then(() => process.exit(0));
    else {
      const traffic = message.on ? { traffic: { shadow: { version: '2', percent: 100 } } } : {};
      void manager
        .activate(TENANT, model.name, '1', { keepPrevious: true, ...traffic })
        .then(() => process.send?.({ kind: 'switched' } satisfies ToParent));
    }
  });
  process.send?.({ kind: 'ready', port: running.port, token } satisfies ToParent);
}

function next(child: ChildProcess, kind: ToParent['kind']): Promise<ToParent> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null): void => reject(new Error(`the server exited with ${code}`));
    const onMessage = (m: ToParent): void => {
      if (m.kind !== kind) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(m);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

const quantile = (sorted: readonly number[], q: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;

interface Cell {
  readonly p50: number;
  readonly p99: number;
  readonly itemsPerSecond: number;
}

/** `concurrency` callers in a closed loop for SECONDS after a warm-up: latencies in ms and items/s. */
async function drive(concurrency: number, call: () => Promise<unknown>): Promise<Cell> {
  const warmUntil = performance.now() + Math.min(1000, SECONDS * 250);
  const end = warmUntil + SECONDS * 1000;
  const latencies: number[] = [];
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (;;) {
        const started = performance.now();
        if (started >= end) return;
        await call();
        const done = performance.now();
        if (started >= warmUntil && done <= end) latencies.push(done - started);
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  return { p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), itemsPerSecond: latencies.length / SECONDS };
}

async function main(): Promise<void> {
  const model = benchModel(MODEL);
  const child = fork(fileURLToPath(import.meta.url), ['server'], {
    execArgv: process.execArgv,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ready = (await next(child, 'ready')) as Extract<ToParent, { kind: 'ready' }>;
  const client = new grpc.Client(`127.0.0.1:${ready.port}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': 64 << 20,
  });
  const item = benchItem(model);
  const body = encodeInferRequest(model, item);
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${ready.token}`);
  const identity = (b: Buffer): Buffer => b;
  const call = (): Promise<Buffer> =>
    new Promise((resolve, reject) =>
      client.makeUnaryRequest(
        inference.GRPCInferenceServiceService.modelInfer.path,
        identity,
        identity,
        body,
        metadata,
        (error, response) => (error ? reject(error) : resolve(response!)),
      ),
    );
  const rounds = new Map<string, Cell[]>();
  try {
    // Without, then with the shadow, ROUNDS times per concurrency: the two sides of a row alternate,
    // so load from elsewhere on the machine falls on both.
    for (const concurrency of [1, 64]) {
      for (let round = 0; round < ROUNDS; round++) {
        for (const shadow of [false, true]) {
          const switched = next(child, 'switched');
          child.send({ kind: 'shadow', on: shadow } satisfies ToChild);
          await switched;
          const key = `${concurrency}/${shadow}`;
          rounds.set(key, [...(rounds.get(key) ?? []), await drive(concurrency, call)]);
        }
      }
    }
  } finally {
    client.close();
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.send({ kind: 'stop' } satisfies ToChild);
    await exited;
  }
  const cells = new Map<string, Cell>();
  const median = (values: number[]): number => values.sort((a, b) => a - b)[values.length >> 1] ?? NaN;
  for (const [key, runs] of rounds)
    cells.set(key, {
      p50: median(runs.map((r) => r.p50)),
      p99: median(runs.map((r) => r.p99)),
      itemsPerSecond: median(runs.map((r) => r.itemsPerSecond)),
    });
  const ms = (v: number): string => v.toFixed(2);
  const rows = [1, 64].map((concurrency) => {
    const off = cells.get(`${concurrency}/false`)!;
    const on = cells.get(`${concurrency}/true`)!;
    return [
      String(concurrency),
      ms(off.p50),
      ms(off.p99),
      formatRate(off.itemsPerSecond),
      ms(on.p50),
      ms(on.p99),
      formatRate(on.itemsPerSecond),
      `${(on.p50 / off.p50).toFixed(2)}×`,
      `${(on.itemsPerSecond / off.itemsPerSecond).toFixed(2)}×`,
    ];
  });
  console.log(
    `${model.name}, unary ModelInfer, one item per request, median of ${ROUNDS} rounds of ${SECONDS} s per cell ` +
      `(shadow: every request copied to version 2 after version 1 answered)\n`,
  );
  console.log(
    markdownTable(
      [
        'concurrency',
        'p50 ms',
        'p99 ms',
        'items/s',
        'p50 ms, shadow',
        'p99 ms, shadow',
        'items/s, shadow',
        'p50 ratio',
        'items/s ratio',
      ],
      rows,
    ),
  );
}

if (process.argv[2] === 'server') await server();
else await main();
