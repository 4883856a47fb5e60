// A stock KServe v2 client: built only from KServe's public proto (the fixture in libs/contracts),
// loaded with @grpc/proto-loader, none of Quanta's generated code. It must get the same answers.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { buildCnn, buildMlp } from '@quanta/onnx';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../testing/harness.js';
import { bearer, ocrClassifier, runOrt, seededFloats, startHarness } from '../testing/harness.js';

const here = dirname(fileURLToPath(import.meta.url));
const PROTO = join(
  here,
  '..',
  '..',
  '..',
  '..',
  'libs',
  'contracts',
  'test',
  'fixtures',
  'kserve-grpc-predict-v2.proto',
);

interface KServeClient extends grpc.Client {
  [method: string]: unknown;
}

let h: Harness;
let client: KServeClient;
let token: string;
const MLP = buildMlp();
const CNN = buildCnn();
const OCR = ocrClassifier();

/** Calls a unary method of the proto-loader client. */
/** `t`: the bearer token; null sends none. */
function rpc(method: string, request: unknown, t: string | null = token): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const fn = client[method] as (
      req: unknown,
      md: grpc.Metadata,
      cb: (e: grpc.ServiceError | null, r: Record<string, unknown>) => void,
    ) => void;
    fn.call(client, request, bearer(t ?? undefined), (error, response) =>
      error === null ? resolve(response) : reject(error),
    );
  });
}

function floats(buffer: Buffer): Float32Array {
  return new Float32Array(buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength));
}

function expectClose(actual: ArrayLike<number>, expected: Float32Array | undefined): void {
  expect(actual.length).toBe(expected!.length);
  for (let i = 0; i < actual.length; i++) expect(Math.abs(actual[i]! - expected![i]!)).toBeLessThanOrEqual(1e-5);
}

beforeAll(async () => {
  h = await startHarness();
  await Promise.all([
    h.deploy('acme', 'mlp', '1', MLP),
    h.deploy('acme', 'cnn', '2', CNN),
    h.deploy('acme', 'ocr-cls', '1', OCR),
  ]);
  token = await h.token('acme', ['infer', 'models:read']);
  // Options as KServe's docs and most clients load it: int64 as strings, defaults filled in.
  const definition = protoLoader.loadSync(PROTO, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    inference: { GRPCInferenceService: grpc.ServiceClientConstructor };
  };
  client = new loaded.inference.GRPCInferenceService(`127.0.0.1:${h.server.port}`, grpc.credentials.createInsecure());
});
afterAll(async () => {
  client.close();
  await h.close();
});

describe('a client built from the public KServe v2 proto', () => {
  it('health, server and model metadata', async () => {
    expect(await rpc('ServerLive', {}, null)).toEqual({ live: true });
    expect(await rpc('ServerReady', {}, null)).toEqual({ ready: true });
    expect(await rpc('ModelReady', { name: 'cnn', version: '2' })).toEqual({ ready: true });
    const server = await rpc('ServerMetadata', {});
    expect(server['name']).toBe('quanta');
    const meta = await rpc('ModelMetadata', { name: 'cnn', version: '' });
    expect(meta).toEqual({
      name: 'cnn',
      versions: ['2'],
      platform: 'onnxruntime_onnx',
      inputs: [{ name: 'input', datatype: 'FP32', shape: ['-1', '3', '32', '32'] }],
      outputs: [{ name: 'output', datatype: 'FP32', shape: ['-1', '10'] }],
    });
  });

  const models = [
    { name: 'mlp', bytes: () => MLP, input: 'input', shape: [2, 4], output: 'output' },
    { name: 'cnn', bytes: () => CNN, input: 'input', shape: [1, 3, 32, 32], output: 'output' },
    { name: 'ocr-cls', bytes: () => OCR, input: 'x', shape: [1, 3, 48, 192], output: 'softmax_0.tmp_0' },
  ];
  for (const model of models) {
    it(`ModelInfer ${model.name}: typed and raw, the same as onnxruntime`, async () => {
      const data = seededFloats(
        model.shape.reduce((a, b) => a * b, 1),
        17,
      );
      const expected = (await runOrt(model.bytes(), { [model.input]: { dims: model.shape, data } }))[model.output];
      const head = { name: model.input, datatype: 'FP32', shape: model.shape.map(String) };

      const typed = await rpc('ModelInfer', {
        model_name: model.name,
        id: 'typed',
        inputs: [{ ...head, contents: { fp32_contents: Array.from(data) } }],
      });
      expect(typed['id']).toBe('typed');
      const out = (
        typed['outputs'] as { name: string; datatype: string; shape: string[]; contents: { fp32_contents: number[] } }[]
      )[0]!;
      expect([out.name, out.datatype]).toEqual([model.output, 'FP32']);
      expect(out.shape[0]).toBe(String(model.shape[0]));
      expectClose(out.contents.fp32_contents, expected);

      const raw = await rpc('ModelInfer', {
        model_name: model.name,
        id: 'raw',
        inputs: [head],
        raw_input_contents: [Buffer.from(data.buffer, data.byteOffset, data.byteLength)],
      });
      const rawOut = raw['raw_output_contents'] as Buffer[];
      expect(rawOut).toHaveLength(1);
      expectClose(floats(rawOut[0]!), expected);
    });
  }

  it('gets the same statuses for bad requests', async () => {
    const missing = (await rpc('ModelInfer', { model_name: 'nope', inputs: [] }).catch(
      (e: unknown) => e,
    )) as grpc.ServiceError;
    expect(missing.code).toBe(grpc.status.NOT_FOUND);
    const bad = (await rpc('ModelInfer', {
      model_name: 'mlp',
      inputs: [{ name: 'input', datatype: 'FP32', shape: ['2', '4'], contents: { fp32_contents: [1, 2, 3] } }],
    }).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(bad.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(bad.details).toMatch(/"input"/);
    const anonymous = (await rpc('ModelInfer', { model_name: 'mlp', inputs: [] }, null).catch(
      (e: unknown) => e,
    )) as grpc.ServiceError;
    expect(anonymous.code).toBe(grpc.status.UNAUTHENTICATED);
  });
});
