/**
 * Model registry: upload and download of a large ONNX model through the real registry process, against
 * a plain gRPC bytes stream (a tiny grpc-js server in a child process) with the same file and chunk size.
 *   npm run bench:registry -w @quanta/bench
 *   (or: npx tsx --conditions=@quanta/source tools/bench/src/registry.ts)
 * BENCH_REGISTRY_MIB (default 1024) sets the size of the model's one initializer; BENCH_REGISTRY_NODE_ARGS
 * adds node flags to the service processes (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
 *
 * Crypto and the registry run as their own processes (`services/<name>/src/main.ts`, as `npm start`
 * runs them) on port 0 with a fresh QUANTA_HOME; the plain server is this file forked with `--plain`.
 * Each server's VmRSS is sampled from /proc every 50 ms and its CPU time read from /proc/<pid>/stat.
 * The registry rows use the client the CLI uses (`LeanRegistryServiceClient` and `readUploadChunks` from
 * @quanta/contracts); the "generated client codec" rows the plain ts-proto client on the same reads.
 */
import { fork } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream, readFileSync } from 'node:fs';
import { mkdtemp, open, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { LeanRegistryServiceClient, readUploadChunks, registry as pb } from '@quanta/contracts';
import { OnnxDataType, encodeModelChunks, floatTensor } from '@quanta/onnx';
import type { ModelSpec } from '@quanta/onnx';
import { cpuSeconds, markdownTable } from './measure.js';
import { metadata, startService, type ServiceOptions, type ServiceProcess } from './services.js';

const MiB = 1024 * 1024;
// BENCH_REGISTRY_CHUNK_KIB: the chunk size of both clients' uploads and downloads (default 1024, the CLI's).
const CHUNK = Number(process.env['BENCH_REGISTRY_CHUNK_KIB'] ?? '1024') * 1024;
const SIZE_MIB = Number(process.env['BENCH_REGISTRY_MIB'] ?? '1024');
const CLK_TCK = 100; // Linux USER_HZ: the unit of utime/stime in /proc/<pid>/stat
const UPLOAD_PATH = '/bench.PlainBytes/Upload';
const DOWNLOAD_PATH = '/bench.PlainBytes/Download';
const identity = (b: Buffer): Buffer => b;

// ---- the plain server (child side) ----

/**
 * A grpc-js server with a client-streaming upload that writes the bytes to `file` and a
 * server-streaming download that reads it back.
 */
async function servePlain(file: string): Promise<void> {
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 8 * MiB });
  const method = (
    path: string,
    requestStream: boolean,
    responseStream: boolean,
  ): grpc.MethodDefinition<Buffer, Buffer> => ({
    path,
    requestStream,
    responseStream,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  });
  server.addService(
    { upload: method(UPLOAD_PATH, true, false), download: method(DOWNLOAD_PATH, false, true) },
    {
      upload: (call: grpc.ServerReadableStream<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        pipeline(call, createWriteStream(file)).then(
          () => callback(null, Buffer.alloc(0)),
          (error: unknown) => callback({ code: grpc.status.INTERNAL, details: String(error) }),
        );
      },
      download: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        const send = async (): Promise<void> => {
          for await (const chunk of createReadStream(file, { highWaterMark: CHUNK }) as AsyncIterable<Buffer>) {
            if (!call.write(chunk)) await once(call, 'drain');
          }
          call.end();
        };
        send().catch((error: unknown) => call.destroy(error instanceof Error ? error : new Error(String(error))));
      },
    },
  );
  const port = await new Promise<number>((resolvePort, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, p) =>
      error ? reject(error) : resolvePort(p),
    );
  });
  process.on('message', (message: unknown) => {
    if (message === 'stop') server.tryShutdown(() => process.exit(0));
  });
  process.send?.({ port });
}

// ---- processes, /proc sampling ----

type Proc = ServiceProcess;

// BENCH_REGISTRY_NODE_ARGS: extra node flags for the service processes, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
// BENCH_REGISTRY_LOG_DIR=<dir>: keep each service's stdout (logs, --trace-gc lines) in <dir>/<name>.log.
const LOG_DIR = process.env['BENCH_REGISTRY_LOG_DIR'];
const SERVICE_OPTIONS: ServiceOptions = {
  nodeArgs: (process.env['BENCH_REGISTRY_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== ''),
  ...(LOG_DIR === undefined ? {} : { logDir: LOG_DIR }),
};

async function startPlain(file: string): Promise<Proc> {
  const child = fork(fileURLToPath(import.meta.url), ['--plain', file], {
    execArgv: process.execArgv,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const port = await new Promise<number>((resolvePort, reject) => {
    child.once('exit', (code) => reject(new Error(`the plain server exited with ${code}`)));
    child.once('message', (m: { port: number }) => resolvePort(m.port));
  });
  const exited = once(child, 'exit');
  return {
    name: 'plain',
    child,
    address: `127.0.0.1:${port}`,
    async stop() {
      child.send('stop');
      await exited;
    },
  };
}

function pidOf(proc: Proc): number {
  if (proc.child.pid === undefined) throw new Error(`${proc.name} has no pid`);
  return proc.child.pid;
}

function rssBytes(pid: number): number {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(text)?.[1]) * 1024;
}

/** utime + stime of the process (all its threads), in seconds. */
function procCpuSeconds(pid: number): number {
  // Fields after the "(comm)" part: state is field 3, utime 14, stime 15.
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

interface Phase {
  label: string;
  bytes: number;
  wall: number;
  serverCpu: number;
  clientCpu: number;
  rssGrowth: number;
}

/** Runs `fn` while sampling the server's VmRSS every 50 ms; growth is the peak sample minus the sample before. */
async function phase(label: string, server: Proc, fn: () => Promise<number>): Promise<Phase> {
  const pid = pidOf(server);
  const before = rssBytes(pid);
  let peak = before;
  const timer = setInterval(() => {
    peak = Math.max(peak, rssBytes(pid));
  }, 50);
  const serverStart = procCpuSeconds(pid);
  const clientStart = cpuSeconds();
  const wallStart = performance.now();
  try {
    const bytes = await fn();
    const wall = (performance.now() - wallStart) / 1000;
    peak = Math.max(peak, rssBytes(pid));
    return {
      label,
      bytes,
      wall,
      serverCpu: procCpuSeconds(pid) - serverStart,
      clientCpu: cpuSeconds() - clientStart,
      rssGrowth: peak - before,
    };
  } finally {
    clearInterval(timer);
  }
}

// ---- the model file ----

/**
 * Writes an ONNX model whose one big FLOAT initializer has `mib` MiB (a random 1 MiB block repeated);
 * returns size and sha256.
 */
async function writeModel(path: string, mib: number): Promise<{ size: number; sha256: string }> {
  const block = randomBytes(MiB);
  const spec: ModelSpec = {
    graph: {
      name: 'bench',
      nodes: [{ opType: 'Add', inputs: ['x', 'small'], outputs: ['y'] }],
      initializers: [
        { name: 'big', dataType: OnnxDataType.FLOAT, dims: [(mib * MiB) / 4], raw: Array<Uint8Array>(mib).fill(block) },
        floatTensor('small', [4], [1, 2, 3, 4]),
      ],
      inputs: [{ name: 'x', dataType: OnnxDataType.FLOAT, shape: ['N', 4] }],
      outputs: [{ name: 'y', dataType: OnnxDataType.FLOAT, shape: ['N', 4] }],
    },
  };
  const hash = createHash('sha256');
  const file = await open(path, 'w');
  try {
    for (const part of encodeModelChunks(spec)) {
      hash.update(part);
      await file.write(part);
    }
  } finally {
    await file.close();
  }
  return { size: (await stat(path)).size, sha256: hash.digest('hex') };
}

/**
 * Writes and deletes `mib` MiB, so that the measured phases' disk writes land in page-cache pages this
 * VM has just used: writing into pages the guest has not touched lately costs the kernel several times
 * the CPU (figures in tools/bench/README.md), and without this whichever phase wrote first would get
 * the cheap pages.
 */
async function warmPageCache(path: string, mib: number): Promise<void> {
  const block = Buffer.alloc(MiB, 1);
  const file = await open(path, 'w');
  try {
    for (let i = 0; i < mib; i++) await file.write(block);
  } finally {
    await file.close();
  }
  await rm(path);
}

// ---- clients ----

/** Streams the chunks into `stream`, waiting for 'drain' as the CLI does. */
async function sendChunks(
  stream: grpc.ClientWritableStream<never> | NodeJS.WritableStream,
  chunks: AsyncIterable<Buffer>,
  wrap: (chunk: Buffer) => unknown,
): Promise<void> {
  const writable = stream as NodeJS.WritableStream & { write(message: unknown): boolean };
  for await (const chunk of chunks) {
    if (!writable.write(wrap(chunk))) await once(writable, 'drain');
  }
  writable.end();
}

/** `file` in CHUNK-byte chunks, as a file stream reads it (a fresh buffer per read). */
const fileChunks = (file: string): AsyncIterable<Buffer> =>
  createReadStream(file, { highWaterMark: CHUNK }) as AsyncIterable<Buffer>;

function plainUpload(client: grpc.Client, file: string): Promise<number> {
  return new Promise((resolveDone, reject) => {
    const call = client.makeClientStreamRequest<Buffer, Buffer>(UPLOAD_PATH, identity, identity, (error) =>
      error ? reject(error) : resolveDone(0),
    );
    sendChunks(call as never, fileChunks(file), (chunk) => chunk).catch(reject);
  });
}

async function plainDownload(client: grpc.Client): Promise<number> {
  let bytes = 0;
  for await (const chunk of client.makeServerStreamRequest<Buffer, Buffer>(
    DOWNLOAD_PATH,
    identity,
    identity,
    Buffer.alloc(0),
  ) as AsyncIterable<Buffer>)
    bytes += chunk.length;
  return bytes;
}

function registryUpload(
  client: pb.RegistryServiceClient,
  token: string,
  model: string,
  file: string,
  size: number,
): Promise<pb.ModelVersion> {
  return new Promise((resolveVersion, reject) => {
    const call = client.uploadVersion(metadata(token), (error, response) => {
      if (error) reject(error);
      else if (response?.version === undefined) reject(new Error('UploadVersion answered without a version'));
      else resolveVersion(response.version);
    });
    call.write({
      part: {
        $case: 'header',
        value: {
          model,
          description: '',
          tags: {},
          expectedSha256: '',
          expectedSizeBytes: BigInt(size),
          createModel: true,
          lineage: undefined,
        },
      },
    });
    sendChunks(call as never, readUploadChunks(file, CHUNK), (chunk) => ({
      part: { $case: 'chunk', value: chunk },
    })).catch(reject);
  });
}

async function registryDownload(
  client: pb.RegistryServiceClient,
  token: string,
  ref: string,
): Promise<{ bytes: number; version: pb.ModelVersion | undefined }> {
  let bytes = 0;
  let version: pb.ModelVersion | undefined;
  for await (const message of client.downloadVersion(
    { ref, chunkSizeBytes: CHUNK, tenant: '' },
    metadata(token),
  ) as AsyncIterable<pb.DownloadVersionResponse>) {
    if (message.part?.$case === 'header') version = message.part.value.version;
    else if (message.part?.$case === 'chunk') bytes += message.part.value.length;
  }
  return { bytes, version };
}

// ---- main ----

async function main(): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), 'quanta-bench-registry-'));
  const procs: Proc[] = [];
  try {
    const modelPath = join(home, 'model.onnx');
    const model = await writeModel(modelPath, SIZE_MIB);
    // A second file of the same size (another random block) for the generated-client rows, so that
    // upload is not deduplicated (and spared its fsync) against the first.
    const model2Path = join(home, 'model2.onnx');
    const model2 = await writeModel(model2Path, SIZE_MIB);
    console.log(`model: ${(model.size / MiB).toFixed(2)} MiB, sha256 ${model.sha256}`);
    // The plain upload and the two registry uploads write three files of the model's size.
    await warmPageCache(join(home, 'warm-up.bin'), 3 * Math.ceil(model.size / MiB));

    const crypto = await startService('crypto', { QUANTA_HOME: home, QUANTA_CRYPTO_PORT: '0' }, SERVICE_OPTIONS);
    procs.push(crypto);
    const registry = await startService(
      'model-registry',
      {
        QUANTA_HOME: home,
        QUANTA_REGISTRY_PORT: '0',
        QUANTA_CRYPTO_ADDR: crypto.address,
      },
      SERVICE_OPTIONS,
    );
    procs.push(registry);
    const plain = await startPlain(join(home, 'plain.bin'));
    procs.push(plain);
    const token = (await readFile(join(home, 'admin.token'), 'utf8')).trim();
    const options = { 'grpc.max_receive_message_length': 8 * MiB };
    const plainClient = new grpc.Client(plain.address, grpc.credentials.createInsecure(), options);
    // The contracts' lean codec, as the CLI's push and pull use it (libs/contracts/src/registry-codec.ts).
    const leanClient = new LeanRegistryServiceClient(registry.address, grpc.credentials.createInsecure(), options);
    const generatedClient = new pb.RegistryServiceClient(registry.address, grpc.credentials.createInsecure(), options);

    const uploadPhase = async (
      label: string,
      client: pb.RegistryServiceClient,
      name: string,
      path: string,
      expected: { size: number; sha256: string },
    ): Promise<[Phase, pb.ModelVersion]> => {
      const uploaded: { version?: pb.ModelVersion } = {};
      const p = await phase(label, registry, async () => {
        uploaded.version = await registryUpload(client, token, name, path, expected.size);
        return Number(uploaded.version.sizeBytes);
      });
      const version = uploaded.version;
      if (version === undefined) throw new Error('no version uploaded');
      if (version.sha256 !== expected.sha256 || version.sizeBytes !== BigInt(expected.size)) {
        throw new Error(
          `registry stored ${version.sha256} (${version.sizeBytes} bytes), ` +
            `expected ${expected.sha256} (${expected.size})`,
        );
      }
      return [p, version];
    };
    const downloadPhase = (label: string, client: pb.RegistryServiceClient, version: pb.ModelVersion): Promise<Phase> =>
      phase(label, registry, async () => {
        const { bytes, version: header } = await registryDownload(client, token, `${version.model}:${version.version}`);
        if (header?.sha256 !== version.sha256) throw new Error('download header names another digest');
        return bytes;
      });

    const plainUp = await phase('plain gRPC bytes stream: upload', plain, () =>
      plainUpload(plainClient, modelPath).then(() => model.size),
    );
    if ((await stat(join(home, 'plain.bin'))).size !== model.size)
      throw new Error('the plain server wrote a different size');
    const [regUp, version] = await uploadPhase('registry UploadVersion', leanClient, 'bench', modelPath, model);
    const [regUpGenerated, version2] = await uploadPhase(
      'registry UploadVersion, generated client codec',
      generatedClient,
      'bench2',
      model2Path,
      model2,
    );
    const plainDown = await phase('plain gRPC bytes stream: download', plain, () => plainDownload(plainClient));
    const regDown = await downloadPhase('registry DownloadVersion', leanClient, version);
    const regDownGenerated = await downloadPhase(
      'registry DownloadVersion, generated client codec',
      generatedClient,
      version2,
    );
    for (const p of [plainUp, regUp, regUpGenerated, plainDown, regDown, regDownGenerated]) {
      if (p.bytes !== model.size) throw new Error(`${p.label}: moved ${p.bytes} bytes, expected ${model.size}`);
    }
    plainClient.close();
    leanClient.close();
    generatedClient.close();

    const mibps = (p: Phase): number => p.bytes / MiB / p.wall;
    const perCpu = (p: Phase): number => p.bytes / MiB / (p.serverCpu + p.clientCpu);
    const row = (p: Phase, base: Phase): string[] => [
      p.label,
      mibps(p).toFixed(1),
      `${((100 * mibps(p)) / mibps(base)).toFixed(0)}%`,
      p.wall.toFixed(2),
      p.serverCpu.toFixed(2),
      p.clientCpu.toFixed(2),
      perCpu(p).toFixed(1),
      `${((100 * perCpu(p)) / perCpu(base)).toFixed(0)}%`,
      (p.rssGrowth / MiB).toFixed(1),
    ];
    const load = (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
    console.log(
      `\n${(model.size / MiB).toFixed(0)} MiB model, ${CHUNK / 1024} KiB chunks, node ${process.version}, ` +
        `load average ${load}\n`,
    );
    console.log(
      markdownTable(
        [
          '',
          'MiB/s (wall)',
          'vs plain (wall)',
          'wall s',
          'server CPU-s',
          'client CPU-s',
          'MiB per CPU-s (server+client)',
          'vs plain (CPU)',
          'server peak RSS growth MiB',
        ],
        [
          row(plainUp, plainUp),
          row(regUp, plainUp),
          row(regUpGenerated, plainUp),
          row(plainDown, plainDown),
          row(regDown, plainDown),
          row(regDownGenerated, plainDown),
        ],
      ),
    );
  } finally {
    for (const p of procs.reverse()) await p.stop();
    await rm(home, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--plain') await servePlain(process.argv[3] ?? join(tmpdir(), 'quanta-bench-plain.bin'));
else await main();
