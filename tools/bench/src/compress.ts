// The registry's CompressVersion on the CNN, an MLP, the LSTM and the real PP-OCR classifier, every
// method, in one run: crypto and model-registry as their own processes (as `npm start` runs them),
// each model pushed once, then compressed once per method with 200 generated calibration samples.
// Every figure comes from the report the registry stores with the new version (onnxruntime-node in
// the registry process, parent and child timed alternately), printed as a markdown table with a
// verdict per compression target (size, accuracy and latency gates; see tools/bench/README.md).
//
//   npm run bench:compress -w @quanta/bench
//   BENCH_SAMPLES=200 (calibration samples), BENCH_SEED=1, BENCH_MODELS=cnn,mlp,lstm,ocr-cls (a subset)
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { registry as pb } from '@quanta/contracts';
import { buildCnn, buildLstm, buildMlp } from '@quanta/onnx';
import { markdownTable } from './measure.js';
import { metadata, REPO_ROOT, startService } from './services.js';

const OCR_CLS = join(
  REPO_ROOT,
  'node_modules',
  '@gutenye',
  'ocr-models',
  'assets',
  'ch_ppocr_mobile_v2.0_cls_infer.onnx',
);
const SAMPLES = Number(process.env['BENCH_SAMPLES'] ?? 200);
const SEED = BigInt(process.env['BENCH_SEED'] ?? 1);

interface BenchModel {
  readonly name: string;
  readonly what: string;
  readonly bytes: () => Promise<Uint8Array>;
  readonly dims: Record<string, number>;
}

const MODELS: readonly BenchModel[] = [
  {
    name: 'cnn',
    what: 'CNN (buildCnn: 2 Conv + Gemm, 3x32x32 → 10)',
    bytes: () => Promise.resolve(buildCnn()),
    dims: {},
  },
  {
    name: 'mlp',
    what: 'MLP (buildMlp: 256 → 1024 → 1024 → 10)',
    bytes: () => Promise.resolve(buildMlp({ inputSize: 256, hiddenSizes: [1024, 1024], outputSize: 10 })),
    dims: {},
  },
  {
    name: 'lstm',
    what: 'LSTM (buildLstm: input 64, hidden 256, T=16)',
    bytes: () => Promise.resolve(buildLstm({ inputSize: 64, hiddenSize: 256 })),
    dims: { T: 16 },
  },
  {
    name: 'ocr-cls',
    what: 'PP-OCR mobile v2.0 direction classifier (3x48x192 → 2)',
    bytes: () => readFile(OCR_CLS),
    dims: {},
  },
];

const ONLY = process.env['BENCH_MODELS']?.split(',');

const METHODS: readonly { label: string; method: pb.CompressionMethod; sparsity?: number }[] = [
  { label: 'int8-weights', method: pb.CompressionMethod.COMPRESSION_METHOD_INT8_WEIGHTS },
  { label: 'int8-dynamic', method: pb.CompressionMethod.COMPRESSION_METHOD_INT8_DYNAMIC },
  { label: 'fp16', method: pb.CompressionMethod.COMPRESSION_METHOD_FP16 },
  { label: 'prune 0.5', method: pb.CompressionMethod.COMPRESSION_METHOD_PRUNE, sparsity: 0.5 },
];

function push(
  client: pb.RegistryServiceClient,
  token: string,
  model: string,
  bytes: Uint8Array,
): Promise<pb.ModelVersion> {
  return new Promise((resolvePush, reject) => {
    const call = client.uploadVersion(metadata(token), (error, response) =>
      error || response?.version === undefined
        ? reject(error ?? new Error('UploadVersion answered without a version'))
        : resolvePush(response.version),
    );
    call.write({
      part: {
        $case: 'header',
        value: {
          model,
          description: '',
          tags: {},
          expectedSha256: '',
          expectedSizeBytes: BigInt(bytes.length),
          lineage: undefined,
          createModel: true,
        },
      },
    });
    for (let at = 0; at < bytes.length; at += 1 << 20)
      call.write({ part: { $case: 'chunk', value: Buffer.from(bytes.subarray(at, at + (1 << 20))) } });
    call.end();
  });
}

async function compress(
  client: pb.RegistryServiceClient,
  token: string,
  request: pb.CompressVersionRequest,
): Promise<pb.ModelVersion> {
  let version: pb.ModelVersion | undefined;
  for await (const message of client.compressVersion(
    request,
    metadata(token),
  ) as AsyncIterable<pb.CompressVersionResponse>) {
    if (message.event?.$case === 'version') version = message.event.value;
  }
  if (version === undefined) throw new Error('CompressVersion ended without a version');
  return version;
}

const kib = (bytes: bigint): string => (Number(bytes) / 1024).toFixed(0);
const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
const sci = (x: number): string => (x >= 0.01 ? x.toFixed(3) : x.toExponential(1));

async function main(): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), 'quanta-bench-compress-'));
  const crypto = await startService('crypto', { QUANTA_HOME: home, QUANTA_CRYPTO_PORT: '0' });
  const registry = await startService('model-registry', {
    QUANTA_HOME: home,
    QUANTA_REGISTRY_PORT: '0',
    QUANTA_CRYPTO_ADDR: crypto.address,
  });
  const client = new pb.RegistryServiceClient(registry.address, grpc.credentials.createInsecure());
  const token = (await readFile(join(home, 'admin.token'), 'utf8')).trim();
  const rows: string[][] = [];
  const verdicts: string[] = [];
  let measuredOn = '';
  try {
    for (const model of MODELS.filter((m) => ONLY === undefined || ONLY.includes(m.name))) {
      const bytes = await model.bytes();
      const source = await push(client, token, model.name, bytes);
      for (const m of METHODS) {
        const started = performance.now();
        const version = await compress(client, token, {
          ref: `${model.name}:${source.version}`,
          targetModel: '',
          method: m.method,
          ...(m.sparsity === undefined ? {} : { sparsity: m.sparsity }),
          calibration: [],
          dims: model.dims,
          sampleCount: SAMPLES,
          seed: SEED,
          gates: undefined,
          alias: '',
          description: `bench ${m.label}`,
        });
        const seconds = (performance.now() - started) / 1000;
        const r = version.compression!;
        measuredOn = r.measuredOn;
        const ratio = Number(r.sizeAfterBytes) / Number(r.sizeBeforeBytes);
        // The first output is the model's answer (the LSTM's y; hn and cn are its state).
        const out = r.outputs[0]!;
        const top1 = out.top1Agreement;
        const at = (batch: number): string => {
          const l = r.latency.find((x) => x.batchSize === batch);
          return l === undefined
            ? '-'
            : `${l.p50BeforeMs.toFixed(3)} → ${l.p50AfterMs.toFixed(3)} ` +
                `(${(l.p50BeforeMs / l.p50AfterMs).toFixed(2)}×)`;
        };
        rows.push([
          model.name,
          m.label,
          `${kib(r.sizeBeforeBytes)} → ${kib(r.sizeAfterBytes)} KiB (${pct(ratio)})`,
          r.outputs.map((o) => `${o.name} ${o.cosine.toFixed(6)}`).join(', '),
          `${sci(out.maxAbsError)} / ${sci(out.meanAbsError)}`,
          top1 === undefined ? '-' : pct(top1),
          at(1),
          at(8),
          `${seconds.toFixed(1)} s`,
        ]);
        const minCosine = Math.min(...r.outputs.map((o) => o.cosine));
        const batch8 = r.latency.find((x) => x.batchSize === 8);
        const verdict = (ok: boolean, target: string, figures: string): void => {
          verdicts.push(`${ok ? 'MET   ' : 'MISSED'} ${model.name} ${m.label}: ${target} — ${figures}`);
        };
        if (m.label === 'int8-weights') {
          verdict(
            ratio <= 0.3 && minCosine >= 0.99 && (top1 === undefined || top1 >= 0.99),
            'size ≤ 30%, cosine ≥ 0.99, top-1 ≥ 99%',
            `size ${pct(ratio)}, cosine ${minCosine.toFixed(6)}, top-1 ${top1 === undefined ? 'n/a' : pct(top1)}`,
          );
        } else if (m.label === 'fp16') {
          verdict(
            ratio <= 0.52 && minCosine >= 0.999,
            'size ≤ 52%, cosine ≥ 0.999',
            `size ${pct(ratio)}, cosine ${minCosine.toFixed(6)}`,
          );
        } else if (m.label === 'int8-dynamic' && (model.name === 'lstm' || model.name === 'mlp')) {
          const p50 =
            batch8 === undefined ? 'n/a' : `${batch8.p50BeforeMs.toFixed(3)} → ${batch8.p50AfterMs.toFixed(3)} ms`;
          verdict(
            batch8 !== undefined && batch8.p50AfterMs < batch8.p50BeforeMs && minCosine >= 0.99,
            'faster than float32 at batch 8, cosine ≥ 0.99',
            `batch 8 p50 ${p50}, cosine ${minCosine.toFixed(6)}`,
          );
        }
        console.error(`${model.name} ${m.label}: done in ${seconds.toFixed(1)} s`);
      }
    }
  } finally {
    client.close();
    await registry.stop();
    await crypto.stop();
    await rm(home, { recursive: true, force: true });
  }
  console.log(`\n${SAMPLES} generated calibration samples per row (seed ${SEED}); ${measuredOn}\n`);
  for (const model of MODELS)
    console.log(
      `- ${model.name}: ${model.what}${
        Object.keys(model.dims).length > 0
          ? `, dims ${Object.entries(model.dims)
              .map(([k, v]) => `${k}=${v}`)
              .join(' ')}`
          : ''
      }`,
    );
  console.log('');
  console.log(
    markdownTable(
      [
        'model',
        'method',
        'size',
        'cosine per output',
        'max / mean abs err (first output)',
        'top-1 agree',
        'p50 ms batch 1 (parent → child)',
        'p50 ms batch 8',
        'call',
      ],
      rows,
    ),
  );
  console.log(`\n${verdicts.join('\n')}`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
