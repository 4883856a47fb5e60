/**
 * Monitoring benchmark: the real monitoring server (in this process, on 127.0.0.1:0, checking
 * real EdDSA tokens) fed through its gRPC Ingest client stream, then GetModelStats over a 1 h
 * window of 100 filled models through gRPC.
 *
 * Ingest batches are encoded before the clock starts and written as raw bytes, so the client's
 * share of this process's CPU is framing only; the rate is the server's accepted count over wall
 * time, and also over this process's CPU time (the machine is shared: wall time includes other
 * processes' load, CPU time does not).
 *
 *   npm run bench:monitoring -w tools/bench   [-- --records 720000 --queries 2000]
 */
import * as grpc from '@grpc/grpc-js';
import { createMemorySigningKeyStore, createTokenIssuer, createTokenVerifier } from '@quanta/auth';
import { monitoring as pb } from '@quanta/contracts';
import type { MonitoringConfig } from '@quanta/monitoring';
import { modelStats, resolveSpan, startMonitoringServer } from '@quanta/monitoring';
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

const config: MonitoringConfig = {
  host: '127.0.0.1',
  port: 0,
  tlsCert: undefined,
  tlsKey: undefined,
  tlsCa: undefined,
  tlsRequireClientCert: false,
  maxReceiveMessageBytes: 4 * 1024 * 1024,
  shutdownGrace: 1000,
  httpHost: '127.0.0.1',
  httpPort: 0,
  horizon: HOUR_S * 1000,
  cryptoAddr: '127.0.0.1:1',
  targets: undefined,
  healthInterval: 5000,
  healthTimeout: 2000,
  dashboardPublic: false,
};

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
        time: new Date(timeMs),
      });
    }
    out.push(Buffer.from(pb.IngestRequest.encode({ records }).finish()));
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
      (error, response) => (error || response === undefined ? reject(error ?? new Error('no response')) : resolve(response)),
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

const percentile = (sorted: readonly number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;

async function main(): Promise<void> {
  const issuer = await createTokenIssuer({ store: createMemorySigningKeyStore() });
  const server = await startMonitoringServer(config, {
    authenticator: createTokenVerifier({ fetchJwks: () => issuer.jwks(), minRefreshIntervalMs: 0 }),
    timers: false,
    targets: [],
    logger: pino({ level: 'silent' }),
  });
  const address = `127.0.0.1:${server.port}`;
  const admin = await issuer.issue({ tenant: 'acme', subject: 'bench', scopes: ['admin'], ttlSeconds: 3600 });
  const reader = await issuer.issue({ tenant: 'acme', subject: 'bench', scopes: ['monitoring:read'], ttlSeconds: 3600 });
  const raw = new grpc.Client(address, grpc.credentials.createInsecure());
  const client = new pb.MonitoringServiceClient(address, grpc.credentials.createInsecure());
  const rows: string[][] = [];
  try {
    // 1. Ingest: these records fill the hour (less a minute of margin: building them takes time).
    const batches = buildBatches(RECORDS, BATCH, HOUR_S - 60, Date.now(), 42);
    await ingestRaw(raw, admin, buildBatches(20_000, BATCH, 60, Date.now(), 7)); // warm-up
    const warm = server.store.aggregate(server.store.series({ tenant: 'acme' }), { start: 0, end: Math.ceil(Date.now() / 1000) + 1 }).count;
    if (global.gc) global.gc();
    const wall0 = performance.now();
    const cpu0 = cpuSeconds();
    const reply = await ingestRaw(raw, admin, batches);
    const wall = (performance.now() - wall0) / 1000;
    const cpu = cpuSeconds() - cpu0;
    const accepted = Number(reply.accepted);
    if (reply.rejected !== 0n || accepted !== RECORDS) throw new Error(`ingest accepted ${accepted} of ${RECORDS}, rejected ${reply.rejected}: ${reply.rejections[0]?.reason}`);
    const kept = server.store.aggregate(server.store.series({ tenant: 'acme' }), { start: 0, end: Math.ceil(Date.now() / 1000) + 1 }).count - warm;
    if (kept !== RECORDS) throw new Error(`windows hold ${kept} records, expected ${RECORDS}`);
    rows.push([`Ingest, ${formatRate(RECORDS)} records in batches of ${BATCH}, one stream`, `${formatRate(accepted / wall)} records/s wall`, `${formatRate(accepted / cpu)} records/CPU-s`, '≥ 200,000 records/s']);
    const mem = process.memoryUsage();

    // 2. GetModelStats, 1 h window, over the 100 filled models (one model per call, round robin).
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${reader}`);
    const query = (model: string): Promise<pb.GetModelStatsResponse> =>
      new Promise((resolve, reject) =>
        client.getModelStats({ model, version: '', span: { $case: 'window', value: { seconds: BigInt(HOUR_S), nanos: 0 } } }, md, (e, r) => (e ? reject(e) : resolve(r))),
      );
    for (let i = 0; i < 200; i++) await query(`model-${i % MODELS}`);
    const times: number[] = [];
    const cpus: number[] = [];
    const qcpu0 = cpuSeconds();
    for (let i = 0; i < QUERIES; i++) {
      const c0 = cpuSeconds();
      const t0 = performance.now();
      const r = await query(`model-${i % MODELS}`);
      times.push(performance.now() - t0);
      cpus.push((cpuSeconds() - c0) * 1000);
      if (r.stats === undefined || r.stats.count === 0n) throw new Error(`model-${i % MODELS} has no stats`);
    }
    const qcpu = cpuSeconds() - qcpu0;
    times.sort((a, b) => a - b);
    cpus.sort((a, b) => a - b);
    rows.push([
      `GetModelStats, 1 h window, ${MODELS} models × ${HOUR_S} s filled, ${QUERIES} calls`,
      `p50 ${percentile(times, 0.5).toFixed(2)} ms, p99 ${percentile(times, 0.99).toFixed(2)} ms, max ${(times.at(-1) ?? 0).toFixed(2)} ms`,
      `${((qcpu / QUERIES) * 1000).toFixed(2)} ms CPU/call (client + server); per call p50 ${percentile(cpus, 0.5).toFixed(2)} ms, p99 ${percentile(cpus, 0.99).toFixed(2)} ms`,
      'p99 < 5 ms',
    ]);

    // The same query without gRPC and auth: what the windows themselves cost.
    const direct: number[] = [];
    const dcpus: number[] = [];
    const dcpu0 = cpuSeconds();
    for (let i = 0; i < QUERIES; i++) {
      const c0 = cpuSeconds();
      const t0 = performance.now();
      const span = resolveSpan({ windowMs: HOUR_S * 1000 }, server.store.clock(), server.store.horizonSeconds);
      modelStats(server.store, 'acme', `model-${i % MODELS}`, '', span);
      direct.push(performance.now() - t0);
      dcpus.push((cpuSeconds() - c0) * 1000);
    }
    const dcpu = cpuSeconds() - dcpu0;
    direct.sort((a, b) => a - b);
    dcpus.sort((a, b) => a - b);
    rows.push([
      `the same, in-process (windows only, no gRPC or auth)`,
      `p50 ${percentile(direct, 0.5).toFixed(3)} ms, p99 ${percentile(direct, 0.99).toFixed(3)} ms`,
      `${((dcpu / QUERIES) * 1000).toFixed(3)} ms CPU/call; per call p50 ${percentile(dcpus, 0.5).toFixed(3)} ms, p99 ${percentile(dcpus, 0.99).toFixed(3)} ms`,
      '',
    ]);

    // 3. TopModels by p99 over the same hour: every one of the 100 models merged and ranked.
    const top = (): Promise<pb.TopModelsResponse> =>
      new Promise((resolve, reject) =>
        client.topModels(
          { span: { $case: 'window', value: { seconds: BigInt(HOUR_S), nanos: 0 } }, orderBy: pb.TopModelsOrder.TOP_MODELS_ORDER_P99_LATENCY, limit: 10, byVersion: false },
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
    tops.sort((a, b) => a - b);
    rows.push([`TopModels by p99, 1 h window over all ${MODELS} models, 100 calls`, `p50 ${percentile(tops, 0.5).toFixed(2)} ms, p99 ${percentile(tops, 0.99).toFixed(2)} ms`, '', '']);
    rows.push([`Memory after ingest (${formatRate(RECORDS + 20_000)} records, ${MODELS} series)`, `heap used ${(mem.heapUsed / 2 ** 20).toFixed(0)} MiB, RSS ${(mem.rss / 2 ** 20).toFixed(0)} MiB`, '', '']);
    console.log(markdownTable(['measure', 'result', 'CPU', 'target'], rows));
  } finally {
    raw.close();
    client.close();
    await server.stop({ graceMs: 1000 });
  }
}

await main();
