/**
 * Three ways to serve the same models, side by side in one run:
 *   (a) onnxruntime-node called in-process: batch 1, and every batch size up to 64 (the limit);
 *   (b) a seed-style JSON REST `/predict` server (one onnxruntime run per request, JSON in and out);
 *   (c) Quanta's inference service over gRPC (KServe v2 raw tensors) with dynamic batching, twice: one
 *       unary ModelInfer per item, and ModelStreamInfer (Triton's bidirectional stream, one item per
 *       message, answers matched by id);
 * (b) and (c) at concurrency 1, 8 and 64, each in its own process; plus the floors: an empty grpc-js
 * unary call, and an empty message echoed on an open grpc-js bidi stream.
 *   npm run bench:inference -w @quanta/bench      (BENCH_QUICK=1 for a short smoke run)
 * BENCH_SECONDS (per cell, default 4; quick 0.4), BENCH_MODELS=cnn,ocr-cls, BENCH_MAX_BATCH (64),
 * BENCH_QUANTA (Quanta deployments, each execution:instances:delayUs[:auto|N+N], default
 * auto:1:1000:auto,worker:1:1000,inline:1:1000; execution worker, inline or auto (decided per model at
 * load); :auto: the preferred batch size measured on live traffic (worker sessions), N+N: preferred
 * sizes), BENCH_CLIENT_BATCH (items per request of one extra cell of the first deployment, default 64;
 * 0: none) at BENCH_BATCHED_CONCURRENCY (8),
 * BENCH_THREADS (intra-op threads of every onnxruntime session in (a), (b) and (c);
 * default 1; 0: onnxruntime's default),
 * BENCH_PROFILE=DIR (a V8 CPU profile of every server process, written there), BENCH_CONCURRENCY (1,8,64),
 * BENCH_STREAMS (ModelStreamInfer streams of the streaming rows: 'worker', one per client worker, the
 * default; or N, at most N streams that the workers share, worker w on stream w mod N),
 * BENCH_WAYS (unary,streaming: which (c) rows to measure).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import { loadavg } from 'node:os';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { inference, unaryCaller } from '@quanta/contracts';
import * as ort from 'onnxruntime-node';
import {
  BENCH_MODELS,
  BENCH_THREADS,
  EMPTY_METHOD,
  EMPTY_STREAM_METHOD,
  benchItem,
  benchModel,
  formatDeployment,
  nest,
  parseDeployment,
  sessionOptions,
  type BenchModel,
  type QuantaDeployment,
  type ServerKind,
  type ToParent,
  encodeInferRequest,
} from './bench-inference-models.js';
import { cpuSeconds, formatRate, markdownTable } from './measure.js';

const QUICK = process.env['BENCH_QUICK'] === '1';
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? (QUICK ? '0.4' : '4'));
const MODELS = (process.env['BENCH_MODELS'] ?? Object.keys(BENCH_MODELS).join(',')).split(',').map(benchModel);
const MAX_BATCH = Number(process.env['BENCH_MAX_BATCH'] ?? '64');
/**
 * Quanta deployments to measure, each `execution:instances:delayUs[:auto|N+N]` (see
 * QuantaDeployment). By default: the service's defaults (execution auto: inline or a worker thread,
 * decided per model at load; one instance) with a 1000 µs delay and the preferred batch size
 * measured on live traffic (tune_preferred_batch_size); worker-thread sessions with batches filled
 * up to the max batch size (no preferred size); and sessions on the event loop (inline).
 */
/**
 * Items per request of one extra Quanta cell (the first deployment, concurrency
 * BENCH_BATCHED_CONCURRENCY, default 8) in which the client sends batches: not a target's figure,
 * it shows what the server reaches once the per-request cost is spread over many items. 0: none.
 */
const CLIENT_BATCH = Number(process.env['BENCH_CLIENT_BATCH'] ?? '64');
const BATCHED_CONCURRENCY = Number(process.env['BENCH_BATCHED_CONCURRENCY'] ?? '8');
const DEPLOYMENTS: readonly QuantaDeployment[] = (
  process.env['BENCH_QUANTA'] ?? 'auto:1:1000:auto,worker:1:1000,inline:1:1000'
)
  .split(',')
  .map(parseDeployment);
const STREAMS = process.env['BENCH_STREAMS'] ?? 'worker';
const WAYS = new Set((process.env['BENCH_WAYS'] ?? 'unary,streaming').split(','));
/** Whether to measure the bare grpc-js + onnxruntime server (d), the floor of any KServe v2 gRPC server here. */
const BARE = process.env['BENCH_BARE'] !== '0';
const CONCURRENCIES = (process.env['BENCH_CONCURRENCY'] ?? '1,8,64').split(',').map(Number);
const BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64].filter((b) => b <= MAX_BATCH);
/**
 * Outputs of (b) and (c) must equal in-process onnxruntime's within this (batched kernels may sum in
 * another order).
 */
const TOLERANCE = 1e-4;

interface Cell {
  model: string;
  way: string;
  concurrency: string;
  requests: number;
  itemsPerSecond: number;
  p50: number;
  p99: number;
  /** CPU per item of the process that ran the model (the server's, or this one in-process), µs. */
  serverCpuUs?: number;
  /** This (client) process's CPU per request, µs. */
  clientCpuUs?: number;
  /** Items each request carries (1 unless the client sends batches). */
  itemsPerRequest?: number;
  /** Quanta: rows per onnxruntime execution, from ModelStatistics. */
  meanBatch?: number;
  /** Quanta: mean time a request waited in the batcher's queue, µs (ModelStatistics queue ns / count). */
  meanQueueUs?: number;
  /**
   * Quanta: mean onnxruntime time per execution, µs (ModelStatistics compute_infer ns / count:
   * Triton counts it per request, each with its batch's time).
   */
  meanInferUs?: number;
}

/** Quanta's ModelStatistics, summed over versions, at one moment. */
interface Executions {
  items: number;
  executions: number;
  queueNs: number;
  queued: number;
  inferNs: number;
  inferred: number;
}

const cells: Cell[] = [];

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** Hooks around the measured window (after the warm-up, and right after it): where the server's counters are read. */
interface Window {
  before(): Promise<void>;
  after(): Promise<void>;
}

/**
 * Runs `call` with `concurrency` in flight for SECONDS after a warm-up (closed loop: worker `w` calls
 * `call(w)` again when its previous call settles); latencies in ms, CPU of this process in s.
 */
async function drive(
  concurrency: number,
  call: (worker: number) => Promise<unknown>,
  window?: Window,
): Promise<{ requests: number; wall: number; cpu: number; latencies: number[] }> {
  const warm = performance.now() + Math.min(1000, SECONDS * 250);
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      do await call(worker);
      while (performance.now() < warm);
    }),
  );
  await window?.before();
  const latencies: number[] = [];
  const cpu0 = cpuSeconds();
  const start = performance.now();
  const end = start + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      while (performance.now() < end) {
        const t0 = performance.now();
        await call(worker);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const wall = (performance.now() - start) / 1000;
  const cpu = cpuSeconds() - cpu0;
  await window?.after();
  return { requests: latencies.length, wall, cpu, latencies: latencies.sort((a, b) => a - b) };
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function checkOutput(way: string, model: BenchModel, got: ArrayLike<number>, expected: ArrayLike<number>): void {
  const diff = maxDiff(got, expected);
  if (!(diff <= TOLERANCE))
    throw new Error(`${way} answered ${model.name} wrongly: max |diff| ${diff} against in-process onnxruntime`);
}

// ---- (a) onnxruntime in-process ------------------------------------------------------------------

interface OrtBaseline {
  expected: Float32Array;
  p50: number;
  bestBatch: number;
  bestItemsPerSecond: number;
  bestPerCpuSecond: number;
}

async function inProcess(model: BenchModel, item: Float32Array): Promise<OrtBaseline> {
  const session = await ort.InferenceSession.create(await model.bytes(), sessionOptions());
  const tensorOf = (batch: number): ort.Tensor => {
    const data = new Float32Array(batch * item.length);
    for (let b = 0; b < batch; b++) data.set(item, b * item.length);
    return new ort.Tensor('float32', data, [batch, ...model.itemShape]);
  };
  const one = tensorOf(1);
  const expected = Float32Array.from((await session.run({ [model.input]: one }))[model.output]!.data as Float32Array);
  const single = await drive(1, () => session.run({ [model.input]: one }));
  const p50 = quantile(single.latencies, 0.5);
  const cpuUs = (run: { cpu: number; requests: number }, batch: number): number =>
    (run.cpu / (run.requests * batch)) * 1e6;
  cells.push({
    model: model.name,
    way: '(a) onnxruntime in-process, batch 1',
    concurrency: '1',
    requests: single.requests,
    itemsPerSecond: single.requests / single.wall,
    p50,
    p99: quantile(single.latencies, 0.99),
    serverCpuUs: cpuUs(single, 1),
  });
  let best = {
    batch: 1,
    itemsPerSecond: single.requests / single.wall,
    p50,
    p99: quantile(single.latencies, 0.99),
    requests: single.requests,
    cpu: cpuUs(single, 1),
  };
  const perBatch: string[] = [];
  for (const batch of BATCH_SIZES) {
    const input = tensorOf(batch);
    const run = await drive(1, () => session.run({ [model.input]: input }));
    const itemsPerSecond = (run.requests * batch) / run.wall;
    perBatch.push(`${batch}: ${formatRate(itemsPerSecond)}`);
    if (itemsPerSecond > best.itemsPerSecond)
      best = {
        batch,
        itemsPerSecond,
        p50: quantile(run.latencies, 0.5),
        p99: quantile(run.latencies, 0.99),
        requests: run.requests,
        cpu: cpuUs(run, batch),
      };
  }
  console.log(`  ${model.name} in-process items/s by batch size: ${perBatch.join(', ')}`);
  cells.push({
    model: model.name,
    way: `(a) onnxruntime in-process, best batch (${best.batch})`,
    concurrency: '1',
    requests: best.requests,
    itemsPerSecond: best.itemsPerSecond,
    p50: best.p50,
    p99: best.p99,
    serverCpuUs: best.cpu,
  });
  await session.release();
  return {
    expected,
    p50,
    bestBatch: best.batch,
    bestItemsPerSecond: best.itemsPerSecond,
    bestPerCpuSecond: 1e6 / best.cpu,
  };
}

// ---- server processes ----------------------------------------------------------------------------

interface ServerProcess {
  port: number;
  token: string;
  cpu(): Promise<number>;
  stop(): Promise<void>;
}

function startProcess(file: string, args: string[]): Promise<ServerProcess> {
  // The same loader flags (tsx, conditions) as this process.
  // BENCH_PROFILE=DIR writes a V8 CPU profile of each server process there (open it in Chrome DevTools).
  const profile = process.env['BENCH_PROFILE'];
  // BENCH_SERVER=dist: the servers import the packages' compiled dist/ (as production runs them:
  // `npx nx run-many -t build` first) rather than their TypeScript sources through tsx.
  const base =
    process.env['BENCH_SERVER'] === 'dist'
      ? process.execArgv.filter((flag) => flag !== '--conditions=@quanta/source')
      : process.execArgv;
  const execArgv = profile === undefined ? base : [...base, '--cpu-prof', `--cpu-prof-dir=${profile}`];
  const child: ChildProcess = fork(file, args, { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const next = <K extends ToParent['kind']>(kind: K): Promise<Extract<ToParent, { kind: K }>> =>
    new Promise((resolve, reject) => {
      const onExit = (code: number | null): void => reject(new Error(`${args.join(' ')} server exited with ${code}`));
      const onMessage = (m: ToParent): void => {
        if (m.kind !== kind) return;
        child.off('message', onMessage);
        child.off('exit', onExit);
        resolve(m as Extract<ToParent, { kind: K }>);
      };
      child.on('message', onMessage);
      child.once('exit', onExit);
    });
  return next('ready').then(({ port, token }) => ({
    port,
    token,
    cpu: () => {
      const answer = next('cpu');
      child.send('cpu');
      return answer.then((m) => m.seconds);
    },
    stop: () => {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.send('stop');
      return exited;
    },
  }));
}

// .ts when run from source (tsx), .js when built
const serversFile = fileURLToPath(
  new URL(`./bench-inference-servers${extname(fileURLToPath(import.meta.url))}`, import.meta.url),
);

function startServer(kind: ServerKind, model = '', deployment = ''): Promise<ServerProcess> {
  return startProcess(serversFile, [kind, model, deployment]);
}

const describeDeployment = (d: QuantaDeployment, streaming = false): string => {
  const streams = STREAMS === 'worker' ? 'a stream per worker' : `≤ ${STREAMS} shared streams`;
  const way = streaming ? `streaming (ModelStreamInfer, ${streams})` : 'unary (ModelInfer)';
  const sessions = d.execution === 'worker' ? 'worker-thread' : d.execution === 'auto' ? 'auto-placed' : 'inline';
  const batching = `batching max ${MAX_BATCH}, delay ${d.delayUs} µs`;
  return `(c) Quanta gRPC ${way}, ${sessions} sessions ×${d.instances}, ${batching}`;
};

/** One cell per concurrency against a server process, with its CPU per item. */
async function measureServer(
  model: BenchModel,
  way: string,
  server: ServerProcess,
  call: (worker: number) => Promise<unknown>,
  executions?: () => Promise<Executions>,
  shape: { concurrencies?: readonly number[]; itemsPerRequest?: number } = {},
): Promise<Map<number, Cell>> {
  const byConcurrency = new Map<number, Cell>();
  const perRequest = shape.itemsPerRequest ?? 1;
  for (const concurrency of shape.concurrencies ?? CONCURRENCIES) {
    let cpu0 = 0;
    let serverCpu = 0;
    let before: Executions | undefined;
    let after: typeof before;
    const run = await drive(concurrency, call, {
      before: async () => {
        before = await executions?.();
        cpu0 = await server.cpu();
      },
      after: async () => {
        serverCpu = (await server.cpu()) - cpu0;
        after = await executions?.();
      },
    });
    const cell: Cell = {
      model: model.name,
      way,
      concurrency: String(concurrency),
      requests: run.requests,
      itemsPerSecond: (run.requests * perRequest) / run.wall,
      p50: quantile(run.latencies, 0.5),
      p99: quantile(run.latencies, 0.99),
      serverCpuUs: (serverCpu / (run.requests * perRequest)) * 1e6,
      clientCpuUs: (run.cpu / run.requests) * 1e6,
      ...(perRequest === 1 ? {} : { itemsPerRequest: perRequest }),
      ...(before === undefined || after === undefined
        ? {}
        : {
            meanBatch: (after.items - before.items) / Math.max(1, after.executions - before.executions),
            meanQueueUs: (after.queueNs - before.queueNs) / Math.max(1, after.queued - before.queued) / 1000,
            // Triton counts compute_infer per request (each request gets its batch's time), so this is
            // the mean per execution.
            meanInferUs: (after.inferNs - before.inferNs) / Math.max(1, after.inferred - before.inferred) / 1000,
          }),
    };
    cells.push(cell);
    byConcurrency.set(concurrency, cell);
  }
  return byConcurrency;
}

// ---- requests on open bidi streams -------------------------------------------------------------

interface StreamPool<Res> {
  /** Sends `request` on worker `worker`'s stream; settles with the answer whose key is `key`. */
  send(worker: number, key: string, request: Buffer): Promise<Res>;
  close(): void;
}

/**
 * Bidi streams carrying requests in a closed loop: one stream per worker (BENCH_STREAMS=worker) or
 * at most N shared ones (worker w on stream w mod N), each opened on first use. Every answer settles
 * the request with its key (an answer without a key, a stream's in-stream error, the oldest one of
 * its stream, which answers in order); a stream that fails rejects its pending requests and is
 * opened again by the next request.
 */
function streamPool<Res>(
  open: () => grpc.ClientDuplexStream<Buffer, Res>,
  keyOf: (response: Res) => string,
): StreamPool<Res> {
  interface Open {
    call: grpc.ClientDuplexStream<Buffer, Res>;
    pending: Map<string, { resolve(r: Res): void; reject(e: Error): void }>;
  }
  const streams: (Open | undefined)[] = [];
  const shared = STREAMS === 'worker' ? 0 : Number(STREAMS);
  const streamOf = (worker: number): Open => {
    const index = shared === 0 ? worker : worker % shared;
    const existing = streams[index];
    if (existing !== undefined) return existing;
    const stream: Open = { call: open(), pending: new Map() };
    const fail = (error: Error): void => {
      if (streams[index] === stream) streams[index] = undefined;
      for (const p of stream.pending.values()) p.reject(error);
      stream.pending.clear();
    };
    stream.call.on('data', (response: Res) => {
      let key = keyOf(response);
      let p = stream.pending.get(key);
      if (p === undefined) {
        // No key of a pending request (an in-stream error): the oldest, as the stream answers in order.
        const oldest = stream.pending.entries().next().value;
        if (oldest === undefined) return fail(new Error(`an answer with key "${key}" nobody waits for`));
        [key, p] = oldest;
      }
      stream.pending.delete(key);
      p.resolve(response);
    });
    stream.call.on('error', fail);
    stream.call.on('end', () => fail(new Error('the server ended the stream')));
    streams[index] = stream;
    return stream;
  };
  return {
    send: (worker, key, request) =>
      new Promise<Res>((resolve, reject) => {
        const stream = streamOf(worker);
        stream.pending.set(key, { resolve, reject });
        stream.call.write(request);
      }),
    close: () => {
      for (const stream of streams) stream?.call.end();
      streams.length = 0;
    },
  };
}

// ---- (b) seed-style JSON REST --------------------------------------------------------------------

async function seedStyle(model: BenchModel, item: Float32Array, expected: Float32Array): Promise<Map<number, Cell>> {
  const server = await startServer('seed', model.name);
  const agent = new Agent({ keepAlive: true, maxSockets: Math.max(...CONCURRENCIES) });
  // What a seed client sends: the item as a nested list (numpy's tolist()), batch of one.
  const body = Buffer.from(JSON.stringify({ data: nest(item, [1, ...model.itemShape]) }));
  const post = (): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: server.port,
          path: '/predict',
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', 'content-length': body.length },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            res.statusCode === 200
              ? resolve(Buffer.concat(chunks))
              : reject(new Error(`seed server: HTTP ${res.statusCode} ${Buffer.concat(chunks).toString()}`)),
          );
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  try {
    const first = JSON.parse((await post()).toString('utf8')) as { prediction: unknown[] };
    checkOutput('the seed-style server', model, first.prediction.flat(Infinity) as number[], expected);
    return await measureServer(
      model,
      '(b) seed-style JSON REST /predict',
      server,
      async () => JSON.parse((await post()).toString('utf8')) as unknown,
    );
  } finally {
    agent.destroy();
    await server.stop();
  }
}

// ---- (c) Quanta over gRPC, dynamic batching ------------------------------------------------------

/**
 * A request's protobuf bytes with its `id` (field 3) appended: a later field of a message wins, so
 * the item's encoded bytes are reused.
 */
function withId(request: Buffer, id: string): Buffer {
  const idBytes = Buffer.from(id, 'utf8');
  const out = Buffer.allocUnsafe(request.length + 2 + idBytes.length);
  request.copy(out, 0);
  out[request.length] = 26;
  out[request.length + 1] = idBytes.length; // ids are short decimal strings: one varint byte
  idBytes.copy(out, request.length + 2);
  return out;
}

interface QuantaCells {
  unary?: Map<number, Cell>;
  streaming?: Map<number, Cell>;
}

/** A KServe v2 gRPC client of one benchmark server: requests encoded once, unary ModelInfer, the answer checked. */
function inferClient(server: ServerProcess, model: BenchModel, item: Float32Array, expected: Float32Array) {
  const client = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': 64 << 20,
  });
  // Encoded once: a KServe v2 ModelInferRequest with the item as raw_input_contents (batch of one),
  // or the item `n` times (a client batch).
  const encode = (rows: number): Buffer => encodeInferRequest(model, item, { rows });
  const body = encode(1);
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${server.token}`);
  const identity = (b: Buffer): Buffer => b;
  const method = inference.GRPCInferenceServiceService.modelInfer.path;
  const send = (request: Buffer): Promise<inference.ModelInferResponse> =>
    new Promise((resolve, reject) => {
      client.makeUnaryRequest(
        method,
        identity,
        (b: Buffer) => inference.ModelInferResponse.decode(b),
        request,
        metadata,
        (error, response) => (error ? reject(error) : resolve(response!)),
      );
    });
  const call = (): Promise<inference.ModelInferResponse> => send(body);
  const check = (way: string, answer: inference.ModelInferResponse): void => {
    const raw = answer.rawOutputContents[0];
    if (raw === undefined) throw new Error(`${way} answered a raw request without raw_output_contents`);
    checkOutput(
      way,
      model,
      new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)),
      expected,
    );
  };
  return { client, encode, body, metadata, send, call, check };
}

// ---- (d) the floor of a KServe v2 gRPC server: grpc-js + one onnxruntime run per request -------------

async function bareGrpc(model: BenchModel, item: Float32Array, expected: Float32Array): Promise<Map<number, Cell>> {
  const server = await startServer('bare', model.name);
  const { client, call, check } = inferClient(server, model, item, expected);
  try {
    check('the bare grpc-js server', await call());
    return await measureServer(
      model,
      '(d) bare grpc-js ModelInfer + one in-process onnxruntime run per request (no batching, auth, stats: a floor)',
      server,
      call,
    );
  } finally {
    client.close();
    await server.stop();
  }
}

async function quanta(
  model: BenchModel,
  item: Float32Array,
  expected: Float32Array,
  deployment: QuantaDeployment,
  withClientBatches: boolean,
): Promise<QuantaCells> {
  const server = await startServer('quanta', model.name, formatDeployment(deployment));
  const { client, encode, body, metadata, send, call, check } = inferClient(server, model, item, expected);
  const identity = (b: Buffer): Buffer => b;
  // ModelStreamInfer: each request is the same bytes plus its id; the answers are matched by id.
  const pool = streamPool(
    () =>
      client.makeBidiStreamRequest(
        inference.GRPCInferenceServiceService.modelStreamInfer.path,
        identity,
        (b: Buffer) => inference.ModelStreamInferResponse.decode(b),
        metadata,
      ),
    (response) => response.inferResponse?.id ?? '',
  );
  let nextId = 0;
  const streamCall = (worker: number): Promise<inference.ModelInferResponse> => {
    const id = String(nextId++ % 1e9);
    return pool.send(worker, id, withId(body, id)).then((response) => {
      if (response.inferResponse === undefined) throw new Error(`ModelStreamInfer: ${response.errorMessage}`);
      return response.inferResponse;
    });
  };
  const cellsOf: QuantaCells = {};
  try {
    const statistics = unaryCaller(client, inference.GRPCInferenceServiceService);
    const executions = async (): Promise<Executions> => {
      const { modelStats } = await statistics('modelStatistics', { name: model.name, version: '' }, { metadata });
      const sum = (pick: (m: inference.ModelStatistics) => bigint | undefined): number =>
        modelStats.reduce((a, m) => a + Number(pick(m) ?? 0n), 0);
      return {
        items: sum((m) => m.inferenceCount),
        executions: sum((m) => m.executionCount),
        queueNs: sum((m) => m.inferenceStats?.queue?.ns),
        queued: sum((m) => m.inferenceStats?.queue?.count),
        inferNs: sum((m) => m.inferenceStats?.computeInfer?.ns),
        inferred: sum((m) => m.inferenceStats?.computeInfer?.count),
      };
    };
    if (WAYS.has('unary')) {
      check('Quanta', await call());
      cellsOf.unary = await measureServer(model, describeDeployment(deployment), server, call, executions);
    }
    if (WAYS.has('streaming')) {
      check('Quanta (ModelStreamInfer)', await streamCall(0));
      cellsOf.streaming = await measureServer(
        model,
        describeDeployment(deployment, true),
        server,
        streamCall,
        executions,
      );
      pool.close();
    }
    if (WAYS.has('unary') && withClientBatches && CLIENT_BATCH > 1) {
      const batched = encode(CLIENT_BATCH);
      const answer = (await send(batched)).rawOutputContents[0];
      if (answer === undefined) throw new Error('Quanta answered a raw request without raw_output_contents');
      const rows = new Float32Array(answer.buffer.slice(answer.byteOffset, answer.byteOffset + answer.byteLength));
      // Every row is the same item's: check the last one.
      checkOutput('Quanta (client batch)', model, rows.subarray(rows.length - expected.length), expected);
      await measureServer(
        model,
        `${describeDeployment(deployment)}; client sends ${CLIENT_BATCH}-item requests`,
        server,
        () => send(batched),
        executions,
        {
          concurrencies: [BATCHED_CONCURRENCY],
          itemsPerRequest: CLIENT_BATCH,
        },
      );
    }
    return cellsOf;
  } finally {
    pool.close();
    client.close();
    await server.stop();
  }
}

// ---- the floor: an empty grpc-js call ------------------------------------------------------------

interface Floors {
  /** p50 of an empty grpc-js unary call, ms. */
  unary: number;
  /** p50 of a round trip on an open grpc-js bidi stream (a few bytes echoed), ms. */
  stream: number;
}

async function emptyGrpcFloors(): Promise<Floors> {
  const server = await startServer('empty');
  const client = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  const identity = (b: Buffer): Buffer => b;
  const empty = Buffer.alloc(0);
  const call = (): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      client.makeUnaryRequest(EMPTY_METHOD, identity, identity, empty, (error, response) =>
        error ? reject(error) : resolve(response!),
      );
    });
  // The echo's payload is the request's key (a short decimal string), so answers are matched as Quanta's are.
  const pool = streamPool(
    () => client.makeBidiStreamRequest(EMPTY_STREAM_METHOD, identity, identity, new grpc.Metadata()),
    (b: Buffer) => b.toString('latin1'),
  );
  let nextKey = 0;
  const echo = (worker: number): Promise<Buffer> => {
    const key = String(nextKey++ % 1e9);
    return pool.send(worker, key, Buffer.from(key, 'latin1'));
  };
  const floor = async (way: string, fn: (worker: number) => Promise<unknown>): Promise<number> => {
    let cpu0 = 0;
    let serverCpu = 0;
    const run = await drive(1, fn, {
      before: async () => {
        cpu0 = await server.cpu();
      },
      after: async () => {
        serverCpu = (await server.cpu()) - cpu0;
      },
    });
    const p50 = quantile(run.latencies, 0.5);
    cells.push({
      model: '–',
      way,
      concurrency: '1',
      requests: run.requests,
      itemsPerSecond: run.requests / run.wall,
      p50,
      p99: quantile(run.latencies, 0.99),
      serverCpuUs: (serverCpu / run.requests) * 1e6,
      clientCpuUs: (run.cpu / run.requests) * 1e6,
    });
    return p50;
  };
  try {
    const unary = await floor('empty grpc-js unary call', call);
    const stream = await floor('empty grpc-js bidi stream round trip (one open stream, a few bytes echoed)', echo);
    return { unary, stream };
  } finally {
    pool.close();
    client.close();
    await server.stop();
  }
}

// ---- the run -------------------------------------------------------------------------------------

/**
 * Items per CPU-second of the model's process and the client together: throughput that other load
 * on the machine does not decide.
 */
const perCpuSecond = (c: Cell): number =>
  1e6 / ((c.serverCpuUs ?? 0) + (c.clientCpuUs ?? 0) / (c.itemsPerRequest ?? 1));

const ms = (v: number): string => (v >= 10 ? v.toFixed(1) : v.toFixed(2));

async function main(): Promise<void> {
  const load0 = loadavg();
  const cpu0 = cpuSeconds();
  console.log(
    [
      `inference benchmark: ${SECONDS} s per cell`,
      `models ${MODELS.map((m) => m.name).join(', ')}`,
      `concurrency ${CONCURRENCIES.join('/')}`,
      `onnxruntime threads ${BENCH_THREADS === 0 ? 'default' : BENCH_THREADS}`,
      `Quanta max batch ${MAX_BATCH}`,
      `deployments ${DEPLOYMENTS.map(formatDeployment).join(' ')} (execution:instances:delay µs)`,
      `onnxruntime-node ${ort.env.versions.common}`,
      `node ${process.version}`,
    ].join(', '),
  );
  console.log(`load average at start: ${load0.map((l) => l.toFixed(2)).join(' ')}`);
  const floors = await emptyGrpcFloors();
  const verdicts: string[] = [];
  const mark = (ok: boolean): string => (ok ? 'met' : 'NOT met');
  for (const model of MODELS) {
    const item = benchItem(model);
    const ort0 = await inProcess(model, item);
    const seed = await seedStyle(model, item, ort0.expected);
    const s64 = seed.get(64);
    const bare = BARE ? await bareGrpc(model, item, ort0.expected) : undefined;
    for (const deployment of DEPLOYMENTS) {
      const q = await quanta(model, item, ort0.expected, deployment, deployment === DEPLOYMENTS[0]);
      for (const [way, byConcurrency] of [
        ['unary ModelInfer', q.unary],
        ['streaming ModelStreamInfer', q.streaming],
      ] as const) {
        const q64 = byConcurrency?.get(64);
        const q1 = byConcurrency?.get(1);
        const who = `${model.name}, Quanta ${formatDeployment(deployment)} ${way}`;
        if (s64 !== undefined && q64 !== undefined) {
          const rate = q64.itemsPerSecond;
          const perCpu = perCpuSecond(q64);
          const seedRatio = (rate / s64.itemsPerSecond).toFixed(2);
          const ortShare = ((100 * rate) / ort0.bestItemsPerSecond).toFixed(0);
          verdicts.push(
            `${who}: concurrency 64: ${formatRate(rate)} items/s = ${seedRatio}× the seed-style server ` +
              `(${formatRate(s64.itemsPerSecond)}; target ≥ 3×: ${mark(rate >= 3 * s64.itemsPerSecond)}) ` +
              `and ${ortShare}% of in-process onnxruntime at batch ${ort0.bestBatch} ` +
              `(${formatRate(ort0.bestItemsPerSecond)}; target ≥ 70%: ${mark(rate >= 0.7 * ort0.bestItemsPerSecond)})`,
            `${who}: the same in items per CPU-second (model process + client): ${formatRate(perCpu)} = ` +
              `${(perCpu / perCpuSecond(s64)).toFixed(2)}× the seed-style server (${formatRate(perCpuSecond(s64))}) ` +
              `and ${((100 * perCpu) / ort0.bestPerCpuSecond).toFixed(0)}% of in-process onnxruntime ` +
              `at batch ${ort0.bestBatch} (${formatRate(ort0.bestPerCpuSecond)})`,
          );
        }
        if (q1 !== undefined) {
          // The latency floor is an empty grpc-js call (unary); a stream's requests are also judged
          // against a round trip on an open stream.
          const against = (name: string, floor: number): string => {
            const budget = 1.2 * (floor + ort0.p50);
            const sum = `${name} ${ms(floor)} + onnxruntime ${ms(ort0.p50)}`;
            return `1.2 × (${sum}) = ${ms(budget)} ms (${mark(q1.p50 <= budget)})`;
          };
          verdicts.push(
            `${who}: concurrency 1: p50 ${ms(q1.p50)} ms against ${against('empty unary call', floors.unary)}` +
              (way === 'streaming ModelStreamInfer'
                ? `; against ${against('empty stream round trip', floors.stream)}`
                : ''),
          );
          const b1 = bare?.get(1);
          if (b1 !== undefined)
            verdicts.push(
              `${who}: concurrency 1: p50 ${ms(q1.p50)} ms = ${(q1.p50 / b1.p50).toFixed(2)}× ` +
                `the bare grpc-js + onnxruntime server's ${ms(b1.p50)} ms ` +
                `(target ≤ 1.15×: ${mark(q1.p50 <= 1.15 * b1.p50)})`,
            );
        }
        const b64 = bare?.get(64);
        if (q64 !== undefined && b64 !== undefined)
          verdicts.push(
            `${who}: concurrency 64: ${formatRate(q64.itemsPerSecond)} items/s = ` +
              `${(q64.itemsPerSecond / b64.itemsPerSecond).toFixed(2)}× the bare grpc-js + onnxruntime ` +
              `server's ${formatRate(b64.itemsPerSecond)} ` +
              `(target ≥ 1×: ${mark(q64.itemsPerSecond >= b64.itemsPerSecond)})`,
          );
      }
    }
  }
  const load1 = loadavg();
  console.log('');
  console.log(
    markdownTable(
      [
        'model',
        'server',
        'concurrency',
        'requests',
        'items/s',
        'p50 ms',
        'p99 ms',
        'model process CPU µs/item',
        'client CPU µs/request',
        'items per CPU-s',
        'mean batch',
        'mean queue µs',
        'mean onnxruntime µs/execution',
      ],
      cells.map((c) => [
        c.model,
        c.way,
        c.concurrency,
        String(c.requests),
        formatRate(c.itemsPerSecond),
        ms(c.p50),
        ms(c.p99),
        c.serverCpuUs === undefined ? '' : formatRate(c.serverCpuUs),
        c.clientCpuUs === undefined ? '' : formatRate(c.clientCpuUs),
        c.serverCpuUs === undefined ? '' : formatRate(perCpuSecond(c)),
        c.meanBatch === undefined ? '' : c.meanBatch.toFixed(1),
        c.meanQueueUs === undefined ? '' : formatRate(c.meanQueueUs),
        c.meanInferUs === undefined ? '' : formatRate(c.meanInferUs),
      ]),
    ),
  );
  console.log('');
  for (const v of verdicts) console.log(v);
  console.log(
    `load average at end: ${load1.map((l) => l.toFixed(2)).join(' ')}; ` +
      `this process used ${(cpuSeconds() - cpu0).toFixed(1)} CPU-s`,
  );
}

await main();
