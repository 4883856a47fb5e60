/**
 * Monitoring benchmark, in three processes, as in production: the real monitoring server (this
 * file forked with `--server`, on 127.0.0.1:0, checking real EdDSA tokens) fed through its gRPC
 * Ingest client stream from this process; then, once the ingest is done, a query client (this
 * file forked with `--query-client`) times GetModelStats over a 1 h window of 100 filled models
 * through gRPC, and TopModels. The server's heap holds only the server; the query client's holds
 * neither the server's windows nor the 720,000 records the ingest client built, so neither side's
 * garbage collection is charged to the other, and each is reported for the timed calls.
 *
 * Ingest batches are encoded before the clock starts and written as raw bytes, so the client's
 * share of the CPU is framing only; the rate is the server's accepted count over wall time, and
 * also over the CPU time of both processes (the machine is shared: wall time includes other
 * processes' load, CPU time does not).
 *
 *   npm run bench:monitoring -w tools/bench   [-- --records 720000 --queries 2000]
 *   BENCH_SERVER_NODE_FLAGS='--trace-gc' (or '--cpu-prof --cpu-prof-dir=DIR'): node flags for the server process
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { PerformanceObserver } from 'node:perf_hooks';
import type { NodeGCPerformanceDetail } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { createMemorySigningKeyStore, createTokenIssuer, createTokenVerifier } from '@quanta/auth';
import { monitoring as pb } from '@quanta/contracts';
import type { MonitoringConfig } from '@quanta/monitoring';
import { modelStats, monitoringConfig, resolveSpan, startMonitoringServer } from '@quanta/monitoring';
import { pino } from 'pino';
import { cpuSeconds, formatRate, markdownTable } from './measure.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`);
  return v;
}

const RECORDS = arg('records', 720_000);
const BATCH = arg('batch', 500);
const MODELS = arg('models', 100);
const QUERIES = arg('queries', 2000);
const HOUR_S = 3600;

// The schema's defaults (a field added later gets its default here), no home: rules in memory.
const config: MonitoringConfig = monitoringConfig({
  port: 0,
  shutdownGrace: 1000,
  httpPort: 0,
  horizon: HOUR_S * 1000,
  cryptoAddr: '127.0.0.1:1',
  home: undefined,
});

/** A deterministic lognormal-ish latency in µs (xorshift), so sketches see many bins. */
function makeRandom(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

function buildBatches(total: number, batch: number, spreadSeconds: number, endMs: number, seed: number): Buffer[] {
  const rnd = makeRandom(seed);
  const out: Buffer[] = [];
  for (let done = 0; done < total; done += batch) {
    const records: pb.InferenceRecord[] = [];
    for (let i = 0; i < batch && done + i < total; i++) {
      const n = done + i;
      const compute = Math.round(Math.exp(6 + 2 * rnd()));
      const queue = Math.round(Math.exp(3 + 3 * rnd()));
      // Records spread evenly over the span, the newest a second before the end.
      const timeMs = endMs - 1000 - Math.floor(((total - 1 - n) / total) * spreadSeconds * 1000);
      records.push({
        tenant: 'acme',
        model: `model-${n % MODELS}`,
        version: '1',
        deployment: `model-${n % MODELS}-prod`,
        requestId: `req-${n}`,
        traceId: '',
        spanId: '',
        statusCode: rnd() < 0.01 ? 13 : 0,
        queueUs: BigInt(queue),
        computeUs: BigInt(compute),
        totalUs: BigInt(queue + compute + 50),
        batchSize: 1 + Math.floor(rnd() * 8),
        bytesIn: 3072n,
        bytesOut: 40n,
        route: '',
        cacheHit: false,
        cacheMiss: false,
        time: new Date(timeMs),
      });
    }
    out.push(Buffer.from(pb.IngestRequest.encode({ records, inputSummaries: [] }).finish()));
  }
  return out;
}

/** Streams pre-encoded IngestRequest messages over one Ingest call. */
function ingestRaw(client: grpc.Client, token: string, batches: readonly Buffer[]): Promise<pb.IngestResponse> {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  return new Promise((resolve, reject) => {
    const stream = client.makeClientStreamRequest<Buffer, pb.IngestResponse>(
      pb.MonitoringServiceService.ingest.path,
      (b) => b,
      (b) => pb.IngestResponse.decode(b),
      md,
      {},
      (error, response) =>
        error || response === undefined ? reject(error ?? new Error('no response')) : resolve(response),
    );
    let i = 0;
    const pump = (): void => {
      while (i < batches.length) {
        const b = batches[i++];
        if (b !== undefined && !stream.write(b)) {
          stream.once('drain', pump);
          return;
        }
      }
      stream.end();
    };
    pump();
  });
}

const percentile = (sorted: readonly number[], q: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;

/**
 * This process's garbage collections since `reset`: [scavenges, their total ms, longest ms, the
 * others (mark-compact and its incremental marking steps), their total ms, longest ms].
 */
function gcWatch(): { reset(): void; stats(): number[] } {
  let s = [0, 0, 0, 0, 0, 0];
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const minor = (e as { detail?: NodeGCPerformanceDetail }).detail?.kind === 1; // NODE_PERFORMANCE_GC_MINOR
      const o = minor ? 0 : 3;
      s[o] = (s[o] ?? 0) + 1;
      s[o + 1] = (s[o + 1] ?? 0) + e.duration;
      s[o + 2] = Math.max(s[o + 2] ?? 0, e.duration);
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  return {
    reset: () => {
      s = [0, 0, 0, 0, 0, 0];
    },
    stats: () => s,
  };
}

const formatGc = ([n = 0, total = 0, max = 0, majors = 0, mtotal = 0, mmax = 0]: readonly number[]): string =>
  `${n} scavenges (${total.toFixed(1)} ms, longest ${max.toFixed(1)}), ` +
  `${majors} major (${mtotal.toFixed(1)} ms, longest ${mmax.toFixed(1)})`;

/** What the server process answers: one reply per request, matched by id. */
type Request = { id: number; op: 'cpu' | 'count' | 'memory' | 'direct' | 'gc-reset' | 'gc' | 'stop' };
type Reply = { id: number; value: number | number[] };
type Ready = { kind: 'ready'; port: number; admin: string; reader: string };

/** The records the windows hold over every second kept. */
function storeCount(server: Awaited<ReturnType<typeof startMonitoringServer>>): number {
  return server.store.aggregate(server.store.series({ tenant: 'acme' }), {
    start: 0,
    end: Math.ceil(Date.now() / 1000) + 1,
  }).count;
}

/**
 * The same query as GetModelStats straight on the windows (no gRPC, no auth), in the server
 * process: what the windows themselves cost. Returns wall p50, p99, CPU per call (ms).
 */
function directQueries(server: Awaited<ReturnType<typeof startMonitoringServer>>): number[] {
  const times: number[] = [];
  for (let i = 0; i < 200; i++)
    modelStats(
      server.store,
      'acme',
      `model-${i % MODELS}`,
      '',
      resolveSpan({ windowMs: HOUR_S * 1000 }, server.store.clock(), server.store.horizonSeconds),
    );
  const cpu0 = cpuSeconds();
  for (let i = 0; i < QUERIES; i++) {
    const t0 = performance.now();
    const span = resolveSpan({ windowMs: HOUR_S * 1000 }, server.store.clock(), server.store.horizonSeconds);
    modelStats(server.store, 'acme', `model-${i % MODELS}`, '', span);
    times.push(performance.now() - t0);
  }
  const cpu = cpuSeconds() - cpu0;
  times.sort((a, b) => a - b);
  return [percentile(times, 0.5), percentile(times, 0.99), (cpu / QUERIES) * 1000];
}

/** Server process: the monitoring server and the token issuer; answers the parent's requests. */
async function serve(): Promise<void> {
  const issuer = await createTokenIssuer({ store: createMemorySigningKeyStore() });
  const server = await startMonitoringServer(config, {
    authenticator: createTokenVerifier({ fetchJwks: () => issuer.jwks(), minRefreshIntervalMs: 0 }),
    timers: false,
    targets: [],
    logger: pino({ level: 'silent' }),
  });
  const admin = await issuer.issue({ tenant: 'acme', subject: 'bench', scopes: ['admin'], ttlSeconds: 3600 });
  const reader = await issuer.issue({
    tenant: 'acme',
    subject: 'bench',
    scopes: ['monitoring:read'],
    ttlSeconds: 3600,
  });
  const gc = gcWatch();
  process.on('message', (m: Request) => {
    const reply = (value: number | number[]): void => {
      process.send?.({ id: m.id, value } satisfies Reply);
    };
    if (m.op === 'cpu') reply(cpuSeconds());
    else if (m.op === 'count') reply(storeCount(server));
    else if (m.op === 'memory') reply([process.memoryUsage().heapUsed, process.memoryUsage().rss]);
    else if (m.op === 'direct') reply(directQueries(server));
    else if (m.op === 'gc-reset') {
      gc.reset();
      reply(0);
    } else if (m.op === 'gc') reply(gc.stats());
    else void server.stop({ graceMs: 1000 }).then(() => process.exit(0));
  });
  process.send?.({ kind: 'ready', port: server.port, admin, reader } satisfies Ready);
}

interface ServerProcess extends Ready {
  child: ChildProcess;
  ask(op: Request['op']): Promise<number | number[]>;
}

async function startServerProcess(): Promise<ServerProcess> {
  // The same loader flags (tsx, conditions) as this process, and any asked for the server.
  const extra = (process.env['BENCH_SERVER_NODE_FLAGS'] ?? '').split(' ').filter((f) => f !== '');
  const child = fork(fileURLToPath(import.meta.url), ['--server', ...process.argv.slice(2)], {
    execArgv: [...process.execArgv, ...extra],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ready = await new Promise<Ready>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the server process exited with ${code}`)));
    child.once('message', (m: Ready) => resolve(m));
  });
  let next = 0;
  const waiting = new Map<number, (value: number | number[]) => void>();
  child.on('message', (m: Reply) => waiting.get(m.id)?.(m.value));
  const ask = (op: Request['op']): Promise<number | number[]> =>
    new Promise((resolve) => {
      const id = next++;
      waiting.set(id, (value) => {
        waiting.delete(id);
        resolve(value);
      });
      child.send({ id, op } satisfies Request);
    });
  return { ...ready, child, ask };
}

/** From the query client to the parent. */
type FromQueryClient =
  { kind: 'start' } | { kind: 'end' } | { kind: 'result'; times: number[]; cpu: number; gc: number[]; tops: number[] };

/**
 * Query client process: GetModelStats, 1 h window, over the 100 filled models (one model per call,
 * round robin), one call at a time, after a warm-up, timed here; then TopModels by p99. A process
 * of its own, started after the ingest: the ingest client's heap (720,000 records built and
 * encoded) and its garbage collections are not in these timings.
 */
async function queryClient(): Promise<void> {
  const { port, reader } = await new Promise<{ port: number; reader: string }>((resolve) =>
    process.once('message', resolve),
  );
  const step = (m: FromQueryClient): Promise<unknown> =>
    new Promise((resolve) => {
      process.once('message', resolve);
      process.send?.(m);
    });
  const client = new pb.MonitoringServiceClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${reader}`);
  const window = { $case: 'window' as const, value: { seconds: BigInt(HOUR_S), nanos: 0 } };
  const query = (model: string): Promise<pb.GetModelStatsResponse> =>
    new Promise((resolve, reject) =>
      client.getModelStats({ model, version: '', byVersion: false, span: window }, md, (e, r) =>
        e ? reject(e) : resolve(r),
      ),
    );
  for (let i = 0; i < 500; i++) await query(`model-${i % MODELS}`);
  const times = new Float64Array(QUERIES);
  await step({ kind: 'start' }); // the parent takes the server's CPU and GC counts
  const gc = gcWatch();
  const cpu0 = cpuSeconds();
  for (let i = 0; i < QUERIES; i++) {
    const t0 = performance.now();
    const r = await query(`model-${i % MODELS}`);
    times[i] = performance.now() - t0;
    if (r.stats === undefined || r.stats.count === 0n) throw new Error(`model-${i % MODELS} has no stats`);
  }
  const cpu = cpuSeconds() - cpu0;
  const gcs = [...gc.stats()];
  await step({ kind: 'end' });

  // TopModels by p99 over the same hour: every one of the 100 models merged and ranked.
  const top = (): Promise<pb.TopModelsResponse> =>
    new Promise((resolve, reject) =>
      client.topModels(
        { span: window, orderBy: pb.TopModelsOrder.TOP_MODELS_ORDER_P99_LATENCY, limit: 10, byVersion: false },
        md,
        (e, r) => (e ? reject(e) : resolve(r)),
      ),
    );
  for (let i = 0; i < 5; i++) await top();
  const tops: number[] = [];
  for (let i = 0; i < 100; i++) {
    const t0 = performance.now();
    await top();
    tops.push(performance.now() - t0);
  }
  client.close();
  process.send?.({ kind: 'result', times: [...times], cpu, gc: gcs, tops } satisfies FromQueryClient, () =>
    process.disconnect(),
  );
}

interface QueryResults {
  times: number[];
  clientCpu: number;
  clientGc: number[];
  serverCpu: number;
  serverGc: number[];
  tops: number[];
}

async function runQueryClient(server: ServerProcess): Promise<QueryResults> {
  const child = fork(fileURLToPath(import.meta.url), ['--query-client', ...process.argv.slice(2)], {
    execArgv: process.execArgv,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise<QueryResults>((resolve, reject) => {
    let serverCpu = 0;
    let serverGc: number[] = [];
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the query client exited with ${code}`)));
    child.on('message', (m: FromQueryClient) => {
      if (m.kind === 'start') {
        void Promise.all([server.ask('cpu'), server.ask('gc-reset')]).then(([cpu]) => {
          serverCpu = -Number(cpu);
          child.send('go');
        });
      } else if (m.kind === 'end') {
        void Promise.all([server.ask('cpu'), server.ask('gc')]).then(([cpu, gc]) => {
          serverCpu += Number(cpu);
          serverGc = gc as number[];
          child.send('go');
        });
      } else resolve({ times: m.times, clientCpu: m.cpu, clientGc: m.gc, serverCpu, serverGc, tops: m.tops });
    });
    child.send({ port: server.port, reader: server.reader });
  });
}

async function main(): Promise<void> {
  const server = await startServerProcess();
  const serverCpu = async (): Promise<number> => Number(await server.ask('cpu'));
  const address = `127.0.0.1:${server.port}`;
  const raw = new grpc.Client(address, grpc.credentials.createInsecure());
  const rows: string[][] = [];
  try {
    // 1. Ingest: these records fill the hour (less a minute of margin: building them takes time).
    let batches: Buffer[] | undefined = buildBatches(RECORDS, BATCH, HOUR_S - 60, Date.now(), 42);
    await ingestRaw(raw, server.admin, buildBatches(20_000, BATCH, 60, Date.now(), 7)); // warm-up
    const warm = Number(await server.ask('count'));
    const wall0 = performance.now();
    const cpu0 = cpuSeconds();
    const scpu0 = await serverCpu();
    const reply = await ingestRaw(raw, server.admin, batches);
    const wall = (performance.now() - wall0) / 1000;
    const ccpu = cpuSeconds() - cpu0;
    const scpu = (await serverCpu()) - scpu0;
    batches = undefined;
    const accepted = Number(reply.accepted);
    if (reply.rejected !== 0n || accepted !== RECORDS)
      throw new Error(
        `ingest accepted ${accepted} of ${RECORDS}, rejected ${reply.rejected}: ${reply.rejections[0]?.reason}`,
      );
    const kept = Number(await server.ask('count')) - warm;
    if (kept !== RECORDS) throw new Error(`windows hold ${kept} records, expected ${RECORDS}`);
    rows.push([
      `Ingest, ${formatRate(RECORDS)} records in batches of ${BATCH}, one stream`,
      `${formatRate(accepted / wall)} records/s wall`,
      `${formatRate(accepted / (scpu + ccpu))} records/CPU-s (server ${formatRate(accepted / scpu)} records/CPU-s)`,
      '≥ 200,000 records/s',
    ]);
    const [heapUsed = 0, rss = 0] = (await server.ask('memory')) as number[];

    // 2. GetModelStats and TopModels, from a query client in a process of its own (below).
    const q = await runQueryClient(server);
    const sorted = [...q.times].sort((x, y) => x - y);
    rows.push([
      `GetModelStats, 1 h window, ${MODELS} models × ${HOUR_S} s filled, ${QUERIES} calls`,
      `p50 ${percentile(sorted, 0.5).toFixed(2)} ms, p99 ${percentile(sorted, 0.99).toFixed(2)} ms, ` +
        `max ${(sorted.at(-1) ?? 0).toFixed(2)} ms`,
      `CPU/call: server ${((q.serverCpu / QUERIES) * 1000).toFixed(2)} ms, ` +
        `client ${((q.clientCpu / QUERIES) * 1000).toFixed(2)} ms`,
      'p99 < 5 ms',
    ]);
    rows.push([
      `GC pauses during those ${QUERIES} calls`,
      `server: ${formatGc(q.serverGc)}; client: ${formatGc(q.clientGc)}`,
      '',
      '',
    ]);

    // The same query without gRPC and auth, in the server process: what the windows themselves cost.
    const [dp50 = 0, dp99 = 0, dcpu = 0] = (await server.ask('direct')) as number[];
    rows.push([
      `the same, in the server process (windows only, no gRPC or auth)`,
      `p50 ${dp50.toFixed(3)} ms, p99 ${dp99.toFixed(3)} ms`,
      `${dcpu.toFixed(3)} ms CPU/call`,
      '',
    ]);
    const tops = [...q.tops].sort((x, y) => x - y);
    rows.push([
      `TopModels by p99, 1 h window over all ${MODELS} models, 100 calls`,
      `p50 ${percentile(tops, 0.5).toFixed(2)} ms, p99 ${percentile(tops, 0.99).toFixed(2)} ms`,
      '',
      '',
    ]);
    rows.push([
      `Server memory after ingest (${formatRate(RECORDS + 20_000)} records, ${MODELS} series)`,
      `heap used ${(heapUsed / 2 ** 20).toFixed(0)} MiB, RSS ${(rss / 2 ** 20).toFixed(0)} MiB`,
      '',
      '',
    ]);
    console.log(markdownTable(['measure', 'result', 'CPU', 'target'], rows));
  } finally {
    raw.close();
    await new Promise((resolve) => {
      server.child.once('exit', resolve);
      server.child.send({ id: -1, op: 'stop' } satisfies Request);
    });
  }
}

if (process.argv.includes('--server')) await serve();
else if (process.argv.includes('--query-client')) await queryClient();
else await main();
