/**
 * `quanta batch` against a plain streaming client, in one run, on the same server and data:
 *   - a dataset of BENCH_ROWS rows (default 100,000) for the CNN ([N,3,32,32]) and the MLP
 *     (256 → 1024 → 1024 → 10, [N,256]), each one .npy of rows on disk;
 *   - the streaming client: one grpc-js ModelStreamInfer, one row per request, a closed loop of
 *     BENCH_WINDOWS requests in flight (default 16 and 64; the best is the reference), reading the
 *     rows from the same file; nothing is written;
 *   - `quanta batch MODEL --input rows.npy --out out.npy --json` as its own process (the CLI's
 *     sources, not the launcher), with its defaults (--batch-rows auto, a window of 64 rows' worth),
 *     and once with --batch-rows BENCH_BATCH_ROWS (default 1: one row per request); rows/s from its
 *     summary (job wall time), peak RSS from its own getrusage. BENCH_CLI=dist runs the compiled CLI.
 * The inference service runs in a process of its own (batch-server.ts): max batch 64, 1 ms delay.
 *   npm run bench:batch -w @quanta/bench       (BENCH_ROWS=20000 for a shorter run; BENCH_MODELS=cnn,mlp)
 */
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { inference } from '@quanta/contracts';
import { formatRate, markdownTable } from './measure.js';

const ROWS = Number(process.env['BENCH_ROWS'] ?? '100000');
const MODELS = (process.env['BENCH_MODELS'] ?? 'cnn,mlp').split(',');
const WINDOWS = (process.env['BENCH_WINDOWS'] ?? '16,64').split(',').map(Number);
const BATCH_ROWS = Number(process.env['BENCH_BATCH_ROWS'] ?? '1');
// BENCH_CLI=dist runs the compiled CLI (as an installed package does; `npx nx run cli:build` first);
// the default runs its TypeScript sources under tsx, as `npx quanta` does in a checkout.
const CLI_BUILT = process.env['BENCH_CLI'] === 'dist';
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../../..');

const ROW_SHAPE: Record<string, number[]> = { cnn: [3, 32, 32], mlp: [256] };

function npyHeader(shape: readonly number[]): Buffer {
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}), }`;
  const head = Buffer.alloc(128, 0x20);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]).copy(head, 0);
  head.writeUInt16LE(128 - 10, 8);
  head.write(dict, 10, 'latin1');
  head[127] = 0x0a;
  return head;
}

/** ROWS rows of deterministic values in [-1, 1), written a block at a time. */
async function writeDataset(path: string, rowShape: readonly number[]): Promise<number> {
  const rowLength = rowShape.reduce((a, b) => a * b, 1);
  const out = createWriteStream(path);
  out.write(npyHeader([ROWS, ...rowShape]));
  let seed = 12345;
  for (let first = 0; first < ROWS; first += 1024) {
    const count = Math.min(1024, ROWS - first);
    const block = new Float32Array(count * rowLength);
    for (let i = 0; i < block.length; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      block[i] = seed / 2 ** 31 - 1;
    }
    if (!out.write(Buffer.from(block.buffer))) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
  return rowLength * 4;
}

/** The streaming client: rows from the file, `window` requests in flight on one stream; rows/s. */
async function streamingClient(
  address: string,
  token: string,
  model: string,
  file: string,
  rowBytes: number,
  window: number,
): Promise<number> {
  const client = new inference.GRPCInferenceServiceClient(address, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': 64 << 20,
  });
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  const handle = await open(file, 'r');
  const shape = [1n, ...ROW_SHAPE[model]!.map(BigInt)];
  try {
    const started = performance.now();
    const call = client.modelStreamInfer(metadata);
    let sent = 0;
    let scheduled = 0; // sends queued on `chain`, counted when queued
    let answered = 0;
    let block = Buffer.alloc(0);
    let blockFirst = 0;
    const rowAt = async (i: number): Promise<Buffer> => {
      if (i >= blockFirst + block.length / rowBytes || i < blockFirst) {
        const count = Math.min(256, ROWS - i);
        block = Buffer.alloc(count * rowBytes);
        await handle.read(block, 0, block.length, 128 + i * rowBytes);
        blockFirst = i;
      }
      return block.subarray((i - blockFirst) * rowBytes, (i - blockFirst + 1) * rowBytes);
    };
    const send = async (): Promise<void> => {
      const row = await rowAt(sent);
      sent += 1;
      call.write({
        modelName: model,
        modelVersion: '',
        id: '',
        parameters: {},
        inputs: [{ name: 'input', datatype: 'FP32', shape, parameters: {}, contents: undefined }],
        outputs: [],
        rawInputContents: [row],
      });
    };
    await new Promise<void>((resolve, reject) => {
      let chain = Promise.resolve();
      call.on('data', (reply: inference.ModelStreamInferResponse) => {
        if (reply.errorMessage !== '') reject(new Error(reply.errorMessage));
        answered += 1;
        if (answered === ROWS) call.end();
        else if (scheduled < ROWS) {
          scheduled += 1;
          chain = chain.then(send).catch(reject);
        }
      });
      call.on('error', reject);
      call.on('end', resolve);
      for (; scheduled < Math.min(window, ROWS); scheduled++) chain = chain.then(send).catch(reject);
    });
    return ROWS / ((performance.now() - started) / 1000);
  } finally {
    await handle.close();
    client.close();
  }
}

interface CliSummary {
  records: number;
  recordsPerSecond: number;
  wallSeconds: number;
  peakRssMb: number;
  latencyMs: { p50: number; p99: number };
}

const SOURCE_CLI = ['--conditions=@quanta/source', '--import', 'tsx', join(root, 'tools/cli/src/main.ts')];

function quantaBatch(env: NodeJS.ProcessEnv, args: string[]): Promise<CliSummary> {
  const child = spawn(
    process.execPath,
    [...(CLI_BUILT ? [join(root, 'tools/cli/dist/main.js')] : SOURCE_CLI), 'batch', ...args, '--json'],
    {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let stdout = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
  return new Promise((resolve, reject) =>
    child.once('exit', (code) =>
      code === 0 ? resolve(JSON.parse(stdout) as CliSummary) : reject(new Error(`quanta batch exited with ${code}`)),
    ),
  );
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'quanta-bench-batch-'));
  const server = spawn(
    process.execPath,
    ['--conditions=@quanta/source', '--import', 'tsx', join(here, 'batch-server.ts')],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  try {
    const ready = await new Promise<{ port: number; token: string }>((resolve, reject) => {
      server.once('exit', (code) => reject(new Error(`the server exited with ${code}`)));
      createInterface({ input: server.stdout }).once('line', (line) =>
        resolve(JSON.parse(line) as { port: number; token: string }),
      );
    });
    const address = `127.0.0.1:${ready.port}`;
    const env = { ...process.env, QUANTA_HOME: dir, QUANTA_TOKEN: ready.token, QUANTA_INFERENCE_ADDR: address };
    const table: string[][] = [];
    for (const model of MODELS) {
      const file = join(dir, `${model}.npy`);
      const rowBytes = await writeDataset(file, ROW_SHAPE[model]!);
      // Warm-up: the JIT, the server's batches.
      await streamingClient(address, ready.token, model, file, rowBytes, 64).catch(() => 0);
      const streaming = new Map<number, number>();
      for (const window of WINDOWS)
        streaming.set(window, await streamingClient(address, ready.token, model, file, rowBytes, window));
      const best = Math.max(...streaming.values());
      for (const [window, rate] of streaming)
        table.push([
          model,
          `streaming client, window ${window}`,
          formatRate(rate),
          `${((rate / best) * 100).toFixed(0)}%`,
          '',
          '',
        ]);
      for (const extra of [[], ['--batch-rows', String(BATCH_ROWS)]]) {
        await rm(join(dir, `${model}-out.npy.checkpoint.json`), { force: true });
        const s = await quantaBatch(env, [model, '--input', file, '--out', join(dir, `${model}-out.npy`), ...extra]);
        if (s.records !== ROWS) throw new Error(`quanta batch did ${s.records} rows of ${ROWS}`);
        table.push([
          model,
          `quanta batch${extra.length > 0 ? ` ${extra.join(' ')}` : ' (defaults)'}`,
          formatRate(s.recordsPerSecond),
          `${((s.recordsPerSecond / best) * 100).toFixed(0)}%`,
          `${s.latencyMs.p50} / ${s.latencyMs.p99}`,
          `${s.peakRssMb} MB`,
        ]);
      }
    }
    console.log(
      `\n${ROWS.toLocaleString('en-US')} rows per model, one .npy of rows each; ` +
        'the inference service: max batch 64, 1 ms delay\n',
    );
    console.log(markdownTable(['model', 'way', 'rows/s', 'vs best streaming', 'p50 / p99 ms', 'CLI peak RSS'], table));
  } finally {
    server.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
