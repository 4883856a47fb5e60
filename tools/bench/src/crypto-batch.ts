/**
 * Batch encrypt over gRPC: BatchEncrypt of 1 KiB items at several batch sizes and concurrencies, against
 * unary Encrypt calls and raw in-process node:crypto AES-256-GCM (the ceiling).
 *   npm run bench:crypto-batch -w @quanta/bench
 *   (or: npx tsx --conditions=@quanta/source tools/bench/src/crypto-batch.ts)
 * BENCH_ITEMS (default 2048) sets the 1 KiB items per row.
 *
 * The crypto server runs in a child process (this file, forked with `--server`) over an in-memory
 * embedded store, as the service's own tests run it; so client and server CPU time are counted apart.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createCipheriv, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { crypto as pb } from '@quanta/contracts';
import { startCryptoServer } from '@quanta/crypto';
import { openStore } from '@quanta/store';
import { pino } from 'pino';
import { cpuSeconds, formatRate, markdownTable } from './measure.js';
import { metadata } from './services.js';

const ITEM_BYTES = 1024;
const ITEMS = Number(process.env['BENCH_ITEMS'] ?? '2048');
const BATCH_SIZES = [1, 16, 128, 1024];
const CONCURRENCIES = [1, 8];
const KEY_NAME = 'bench-aes';

type ToParent = { kind: 'ready'; port: number; token: string } | { kind: 'cpu'; seconds: number };

/** Child side: a real crypto server on 127.0.0.1:0; answers 'cpu' with its process CPU seconds. */
async function serve(): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), 'quanta-bench-crypto-'));
  const store = await openStore({});
  const server = await startCryptoServer(
    {
      home,
      host: '127.0.0.1',
      port: 0,
      databaseUrl: undefined,
      maxPayloadBytes: 4 * 1024 * 1024,
      maxMessageBytes: 64 * 1024 * 1024,
      adminTokenTtl: 3600_000,
      tlsCert: undefined,
      tlsKey: undefined,
      tlsCa: undefined,
    },
    { store, masterKey: randomBytes(32), logger: pino({ level: 'silent' }) },
  );
  const token = await server.issuer.issue({
    tenant: 'bench',
    subject: 'bench',
    scopes: ['keys:use', 'keys:admin'],
    ttlSeconds: 3600,
  });
  const send = (message: ToParent): void => {
    process.send?.(message);
  };
  process.on('message', (message: unknown) => {
    if (message === 'cpu') send({ kind: 'cpu', seconds: cpuSeconds() });
    if (message === 'stop') {
      void server
        .stop({ graceMs: 1000 })
        .then(() => store.close())
        .then(() => rm(home, { recursive: true, force: true }))
        .then(() => process.exit(0));
    }
  });
  send({ kind: 'ready', port: server.port, token });
}

interface Server {
  child: ChildProcess;
  port: number;
  token: string;
  cpu(): Promise<number>;
}

async function startServerProcess(): Promise<Server> {
  // The same loader flags (tsx, conditions) as this process.
  const child = fork(fileURLToPath(import.meta.url), ['--server'], {
    execArgv: process.execArgv,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ready = await new Promise<{ port: number; token: string }>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the server process exited with ${code}`)));
    const onMessage = (m: ToParent): void => {
      if (m.kind === 'ready') {
        child.off('message', onMessage);
        resolve(m);
      }
    };
    child.on('message', onMessage);
  });
  const cpu = (): Promise<number> =>
    new Promise((resolve) => {
      const onMessage = (m: ToParent): void => {
        if (m.kind === 'cpu') {
          child.off('message', onMessage);
          resolve(m.seconds);
        }
      };
      child.on('message', onMessage);
      child.send('cpu');
    });
  return { child, ...ready, cpu };
}

function unaryCall<Req, Res>(
  fn: (req: Req, md: grpc.Metadata, cb: (e: grpc.ServiceError | null, r: Res) => void) => unknown,
  req: Req,
  md: grpc.Metadata,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    fn(req, md, (error, response) => (error ? reject(error) : resolve(response)));
  });
}

interface Row {
  label: string;
  calls: number;
  items: number;
  wall: number;
  clientCpu: number;
  serverCpu: number | undefined;
}

/** Runs `calls` calls of `fn` with `concurrency` in flight, timing wall and both processes' CPU. */
async function measure(
  server: Server | undefined,
  label: string,
  calls: number,
  itemsPerCall: number,
  concurrency: number,
  fn: () => Promise<void>,
): Promise<Row> {
  await fn(); // warm-up: connection, key cache, JIT
  const serverStart = server ? await server.cpu() : 0;
  const clientStart = cpuSeconds();
  const wallStart = performance.now();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < calls) {
      next++;
      await fn();
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, calls) }, worker));
  const wall = (performance.now() - wallStart) / 1000;
  const clientCpu = cpuSeconds() - clientStart;
  const serverCpu = server ? (await server.cpu()) - serverStart : undefined;
  return { label, calls, items: calls * itemsPerCall, wall, clientCpu, serverCpu };
}

function rawRow(items: Buffer[]): Row {
  const key = randomBytes(32);
  const once = (): void => {
    for (const item of items) {
      const cipher = createCipheriv('aes-256-gcm', key, randomBytes(12));
      cipher.update(item);
      cipher.final();
      cipher.getAuthTag();
    }
  };
  once();
  const clientStart = cpuSeconds();
  const wallStart = performance.now();
  once();
  return {
    label: 'raw node:crypto aes-256-gcm, in-process (ceiling)',
    calls: 0,
    items: items.length,
    wall: (performance.now() - wallStart) / 1000,
    clientCpu: cpuSeconds() - clientStart,
    serverCpu: undefined,
  };
}

function cells(row: Row): string[] {
  const mib = (row.items * ITEM_BYTES) / (1024 * 1024);
  const totalCpu = row.clientCpu + (row.serverCpu ?? 0);
  return [
    row.label,
    row.calls === 0 ? '–' : String(row.calls),
    formatRate(row.items / row.wall),
    (mib / row.wall).toFixed(2),
    row.clientCpu.toFixed(2),
    row.serverCpu === undefined ? '–' : row.serverCpu.toFixed(2),
    row.serverCpu === undefined ? formatRate(row.items / row.clientCpu) : formatRate(row.items / row.serverCpu),
    formatRate(row.items / totalCpu),
  ];
}

async function main(): Promise<void> {
  const server = await startServerProcess();
  const client = new pb.CryptoServiceClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
    'grpc.max_send_message_length': 64 * 1024 * 1024,
  });
  const md = metadata(server.token);
  try {
    await unaryCall<pb.CreateKeyRequest, pb.CreateKeyResponse>(
      client.createKey.bind(client),
      { name: KEY_NAME, type: pb.KeyType.KEY_TYPE_AES256_GCM },
      md,
    );
    const items = Array.from({ length: ITEMS }, () => randomBytes(ITEM_BYTES));
    const rows: Row[] = [];
    for (const batch of BATCH_SIZES) {
      const request: pb.BatchEncryptRequest = {
        keyName: KEY_NAME,
        items: Array.from({ length: batch }, (_, i) => ({
          plaintext: items[i % items.length]!,
          associatedData: Buffer.alloc(0),
        })),
      };
      for (const concurrency of CONCURRENCIES) {
        const calls = Math.max(1, Math.ceil(ITEMS / batch));
        const row = await measure(
          server,
          `BatchEncrypt, ${batch} items/call, concurrency ${concurrency}`,
          calls,
          batch,
          concurrency,
          async () => {
            const res = await unaryCall<pb.BatchEncryptRequest, pb.BatchEncryptResponse>(
              client.batchEncrypt.bind(client),
              request,
              md,
            );
            // Every item must have succeeded, or the figure means nothing.
            if (
              res.results.length !== batch ||
              res.results.some((r) => r.error !== undefined || r.ciphertext.length <= ITEM_BYTES)
            ) {
              throw new Error(
                `BatchEncrypt returned ${res.results.length} results for ${batch} items, or a failed or short one: ` +
                  JSON.stringify(res.results.find((r) => r.error)?.error),
              );
            }
          },
        );
        rows.push(row);
        process.stderr.write(`${row.label}: ${row.wall.toFixed(2)} s\n`);
      }
    }
    const single: pb.EncryptRequest = { keyName: KEY_NAME, plaintext: items[0]!, associatedData: Buffer.alloc(0) };
    const unary = await measure(server, 'unary Encrypt, 1 item/call, concurrency 8', ITEMS, 1, 8, async () => {
      const res = await unaryCall<pb.EncryptRequest, pb.EncryptResponse>(client.encrypt.bind(client), single, md);
      if (res.ciphertext.length <= ITEM_BYTES) throw new Error('Encrypt returned a short ciphertext');
    });
    rows.push(unary);
    rows.push(rawRow(items));
    const table = markdownTable(
      [
        '1 KiB items, ' + String(ITEMS) + ' per row',
        'calls',
        'items/s (wall)',
        'MiB/s (wall)',
        'client CPU-s',
        'server CPU-s',
        'items per server CPU-s',
        'items per total CPU-s',
      ],
      rows.map(cells),
    );
    process.stdout.write(`${table}\n`);
  } finally {
    client.close();
    server.child.send('stop');
    await new Promise((resolve) => server.child.once('exit', resolve));
  }
}

if (process.argv.includes('--server')) await serve();
else await main();
