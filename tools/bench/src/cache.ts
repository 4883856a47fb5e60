/**
 * What the response cache saves or costs: Quanta's unary ModelInfer at concurrency 1 and 64, without
 * a cache, and with one (a deployment's `response_cache_bytes`) at a 100% and a ~50% hit ratio, side
 * by side in one run against one server process. Prints p50/p99 latency and items/s for each (the
 * median of BENCH_ROUNDS alternating rounds, default 3), and the ratios to the run without a cache.
 *
 *   npm run bench:cache -w tools/bench          (BENCH_SECONDS per cell, default 5; BENCH_MODEL cnn)
 *
 * The server (this file forked with `server`) is Quanta's inference service (startInferenceServer,
 * real EdDSA tokens from an in-memory issuer) with the model loaded straight into its core twice,
 * dynamically batched (BENCH_MAX_BATCH, default 64, BENCH_DELAY_US default 500): as `NAME` without a
 * cache and as `NAME-cached` with 256 MiB of cache. Every request of the 100% cells carries the same
 * input; in the 50% cells every other request of each caller carries a fresh one (its last float
 * replaced by a counter), which misses and is inserted.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { inference } from '@quanta/contracts';
import {
  BENCH_THREADS,
  benchItem,
  benchModel,
  encodeInferRequest,
  startBenchInferenceServer,
} from './bench-inference-models.js';
import { formatRate, markdownTable } from './measure.js';

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? '5');
/** Rounds of the three cells per concurrency; each cell reports its median round (a shared machine drifts). */
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? '3');
const MODEL = process.env['BENCH_MODEL'] ?? 'cnn';
const TENANT = 'bench';
const CACHE_BYTES = 256 << 20;

type ToParent = { kind: 'ready'; port: number; token: string };
type ToChild = { kind: 'stop' };

async function server(): Promise<void> {
  const model = benchModel(MODEL);
  const { server: running, issuer } = await startBenchInferenceServer();
  const { manager } = running;
  const bytes = await model.bytes();
  const config = {
    maxBatchSize: Number(process.env['BENCH_MAX_BATCH'] ?? '64'),
    maxQueueDelayUs: Number(process.env['BENCH_DELAY_US'] ?? '500'),
    instanceCount: 1,
    maxQueueSize: 0,
    sequenceState: [],
    sequenceIdleTimeoutMs: 0,
    threadsPerInstance: BENCH_THREADS,
  };
  await manager.load(TENANT, model.name, '1', bytes, config);
  await manager.activate(TENANT, model.name, '1');
  await manager.load(TENANT, `${model.name}-cached`, '1', bytes, { ...config, responseCacheBytes: CACHE_BYTES });
  await manager.activate(TENANT, `${model.name}-cached`, '1');
  const token = await issuer.issue({ tenant: TENANT, subject: 'bench', scopes: ['infer'], ttlSeconds: 3600 });
  process.on('message', (message: ToChild) => {
    if (message.kind === 'stop') void running.stop({ graceMs: 1000 }).then(() => process.exit(0));
  });
  process.send?.({ kind: 'ready', port: running.port, token } satisfies ToParent);
}

function ready(child: ChildProcess): Promise<ToParent> {
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the server exited with ${code}`)));
    child.once('message', (m: ToParent) => resolve(m));
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
async function drive(concurrency: number, call: (caller: number, n: number) => Promise<unknown>): Promise<Cell> {
  const warmUntil = performance.now() + Math.min(1000, SECONDS * 250);
  const end = warmUntil + SECONDS * 1000;
  const latencies: number[] = [];
  await Promise.all(
    Array.from({ length: concurrency }, async (_, caller) => {
      for (let n = 0; ; n++) {
        const started = performance.now();
        if (started >= end) return;
        await call(caller, n);
        const done = performance.now();
        if (started >= warmUntil && done <= end) latencies.push(done - started);
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  return { p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), itemsPerSecond: latencies.length / SECONDS };
}

type Mode = 'off' | 'hit100' | 'hit50';
const MODES: readonly Mode[] = ['off', 'hit100', 'hit50'];

async function main(): Promise<void> {
  const model = benchModel(MODEL);
  const child = fork(fileURLToPath(import.meta.url), ['server'], {
    execArgv: process.execArgv,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const up = await ready(child);
  const client = new grpc.Client(`127.0.0.1:${up.port}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': 64 << 20,
  });
  const item = benchItem(model);
  // raw_input_contents is the request's last field: its bytes end the encoded message.
  const bodyOf = (modelName: string): Buffer => encodeInferRequest(model, item, { modelName });
  const plain = bodyOf(model.name);
  const cached = bodyOf(`${model.name}-cached`);
  let fresh = 0;
  /** The cached model's request with an input no request carried before: its last float is a counter. */
  const unique = (): Buffer => {
    const body = Buffer.from(cached);
    body.writeFloatLE(1 + ++fresh, body.length - 4);
    return body;
  };
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${up.token}`);
  const identity = (b: Buffer): Buffer => b;
  const send = (body: Buffer): Promise<Buffer> =>
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
  const calls: Record<Mode, (caller: number, n: number) => Promise<unknown>> = {
    off: () => send(plain),
    hit100: () => send(cached),
    hit50: (_caller, n) => send(n % 2 === 0 ? cached : unique()),
  };
  const rounds = new Map<string, Cell[]>();
  try {
    await send(cached);
    // The three cells in turn, ROUNDS times per concurrency, so that load from elsewhere on the
    // machine falls on all of them.
    for (const concurrency of [1, 64]) {
      for (let round = 0; round < ROUNDS; round++) {
        for (const mode of MODES) {
          const key = `${concurrency}/${mode}`;
          rounds.set(key, [...(rounds.get(key) ?? []), await drive(concurrency, calls[mode])]);
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
  const label: Record<Mode, string> = { off: 'no cache', hit100: 'cache, 100% hits', hit50: 'cache, 50% hits' };
  const rows = [1, 64].flatMap((concurrency) => {
    const off = cells.get(`${concurrency}/off`)!;
    return MODES.map((mode) => {
      const cell = cells.get(`${concurrency}/${mode}`)!;
      return [
        String(concurrency),
        label[mode],
        ms(cell.p50),
        ms(cell.p99),
        formatRate(cell.itemsPerSecond),
        `${(cell.p50 / off.p50).toFixed(2)}×`,
        `${(cell.itemsPerSecond / off.itemsPerSecond).toFixed(2)}×`,
      ];
    });
  });
  console.log(
    `${model.name}, unary ModelInfer, one item per request, median of ${ROUNDS} rounds of ${SECONDS} s per cell ` +
      `(cache: ${CACHE_BYTES >> 20} MiB of response cache)\n`,
  );
  console.log(
    markdownTable(['concurrency', 'requests', 'p50 ms', 'p99 ms', 'items/s', 'p50 ratio', 'items/s ratio'], rows),
  );
}

if (process.argv[2] === 'server') await server();
else await main();
