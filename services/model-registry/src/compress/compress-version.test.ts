import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { registry as pb } from '@quanta/contracts';
import { buildCnn, buildLstm, buildMlp } from '@quanta/onnx';
import { writeNpy } from '@quanta/tensor';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compress, failure, grpc, pull, push } from '../testing/client.js';
import { call, startHarness } from '../testing/harness.js';
import type { Harness } from '../testing/harness.js';
import { REPO_ROOT } from '@quanta/service-kit/testing';

const M = pb.CompressionMethod;
const OCR_CLS = join(
  REPO_ROOT,
  'node_modules',
  '@gutenye',
  'ocr-models',
  'assets',
  'ch_ppocr_mobile_v2.0_cls_infer.onnx',
);

describe('CompressVersion against a real crypto service and real onnxruntime sessions', () => {
  let h: Harness;
  let writer: string;
  let reader: string;
  const cnn = Buffer.from(buildCnn());
  const mlp = Buffer.from(buildMlp({ inputSize: 64, hiddenSizes: [128], outputSize: 10 }));
  const lstm = Buffer.from(buildLstm());

  beforeAll(async () => {
    h = await startHarness();
    writer = await h.token('acme', ['models:read', 'models:write']);
    reader = await h.token('acme', ['models:read']);
    await push(h.client, writer, { model: 'cnn' }, cnn);
    await push(h.client, writer, { model: 'mlp' }, mlp);
    await push(h.client, writer, { model: 'lstm' }, lstm);
  }, 240_000);
  afterAll(async () => {
    await h?.close();
  });

  const versionCount = async (model: string): Promise<number> =>
    (await call(h.client, 'getModel', { name: model }, reader)).model!.versionCount;

  it('int8-weights makes the next version with lineage and a measured report; the source is unchanged', async () => {
    const { version, progress } = await compress(h.client, writer, {
      ref: 'cnn:1',
      method: M.COMPRESSION_METHOD_INT8_WEIGHTS,
      seed: 7n,
      description: 'int8',
    });
    expect(version).toMatchObject({
      model: 'cnn',
      version: 2,
      status: pb.VersionStatus.VERSION_STATUS_READY,
      description: 'int8',
    });
    expect(version.lineage?.origin).toEqual({
      $case: 'parent',
      value: { model: 'cnn', version: 1, transform: 'int8-weights', transformParams: expect.any(Object) },
    });
    const report = version.compression!;
    expect(report.method).toBe('int8-weights');
    expect(report.sizeBeforeBytes).toBe(BigInt(cnn.length));
    expect(report.sizeAfterBytes).toBe(version.sizeBytes);
    expect(Number(report.sizeAfterBytes) / cnn.length).toBeLessThan(0.35);
    expect(report.opsRewritten.map((o) => o.op).sort()).toEqual(['Conv', 'Gemm']);
    expect(report.calibration).toMatchObject({ kind: 'generated', sampleCount: 8, seed: 7n, dims: { N: 1 } });
    expect(report.calibration!.description).toBe('generated, seed 7, dims N=1, 8 samples');
    const [output] = report.outputs;
    expect(output).toMatchObject({ name: 'output' });
    expect(output!.cosine).toBeGreaterThan(0.99);
    expect(output!.maxAbsError).toBeGreaterThan(0);
    expect(output!.meanAbsError).toBeLessThanOrEqual(output!.maxAbsError);
    expect(output!.top1Agreement).toBeGreaterThanOrEqual(0.75);
    expect(report.latency.map((l) => l.batchSize)).toEqual([1, 8]);
    for (const l of report.latency) {
      expect(l.p50BeforeMs).toBeGreaterThan(0);
      expect(l.p50AfterMs).toBeGreaterThan(0);
      expect(l.runs).toBeGreaterThanOrEqual(5);
    }
    expect(report.measuredOn).toMatch(/^onnxruntime-node 1\.30\.0/);
    // Progress runs from reading to storing, never backwards.
    expect(progress[0]).toEqual({ phase: 'reading', fraction: 0 });
    expect(progress.at(-1)).toEqual({ phase: 'storing', fraction: 1 });
    expect(new Set(progress.map((p) => p.phase))).toEqual(
      new Set(['reading', 'compressing', 'calibrating', 'timing', 'storing']),
    );
    for (let i = 1; i < progress.length; i += 1)
      expect(progress[i]!.fraction).toBeGreaterThanOrEqual(progress[i - 1]!.fraction);
    // The stored report comes back on GetVersion, and the source is the same file.
    const got = await call(h.client, 'getVersion', { ref: 'cnn:2' }, reader);
    expect(got.version!.compression).toEqual(report);
    const source = await pull(h.client, reader, 'cnn:1');
    expect(source.bytes.equals(cnn)).toBe(true);
    expect(source.version.compression).toBeUndefined();
    const made = await pull(h.client, reader, 'cnn:2');
    expect(made.bytes.length).toBe(Number(version.sizeBytes));
  });

  it.each([
    ['int8-dynamic', 'mlp', { method: M.COMPRESSION_METHOD_INT8_DYNAMIC }, 'int8-dynamic'],
    ['fp16', 'lstm', { method: M.COMPRESSION_METHOD_FP16 }, 'fp16'],
    ['prune', 'cnn', { method: M.COMPRESSION_METHOD_PRUNE, sparsity: 0.5 }, 'prune'],
    ['int8-weights with sparsity', 'mlp', { method: M.COMPRESSION_METHOD_INT8_WEIGHTS, sparsity: 0.3 }, 'int8-weights'],
  ] as const)('%s on the %s makes a version with its lineage and report', async (_label, model, request, transform) => {
    const before = await call(h.client, 'getModel', { name: model }, reader);
    const { version } = await compress(h.client, writer, { ref: `${model}:1`, ...request });
    expect(version.version).toBe(before.model!.latestVersion + 1);
    const parent = version.lineage?.origin?.$case === 'parent' ? version.lineage.origin.value : undefined;
    expect(parent).toMatchObject({ model, version: 1, transform });
    expect(version.compression!.parameters).toEqual(parent!.transformParams);
    if ('sparsity' in request) expect(Object.values(parent!.transformParams)).toContain(String(request.sparsity));
    expect(version.compression!.outputs.length).toBeGreaterThan(0);
    for (const o of version.compression!.outputs) expect(o.cosine).toBeGreaterThan(0.9);
  });

  it('keeps the LSTM inputs and its float state outputs, measures every output, times batch 8 along N', async () => {
    const { version } = await compress(h.client, writer, { ref: 'lstm:1', method: M.COMPRESSION_METHOD_INT8_WEIGHTS });
    const report = version.compression!;
    expect(report.outputs.map((o) => o.name)).toEqual(['y', 'hn', 'cn']);
    expect(version.signature!.outputs.map((o) => o.datatype)).toEqual(['FP32', 'FP32', 'FP32']);
    expect(version.signature!.inputs).toEqual(
      (await call(h.client, 'getVersion', { ref: 'lstm:1' }, reader)).version!.signature!.inputs,
    );
    expect(report.latency.map((l) => l.batchSize)).toEqual([1, 8]);
  });

  it('stores the PP-OCR classifier in fp16 as a new model, and moves an alias there', async () => {
    const ocr = await readFile(OCR_CLS);
    await push(h.client, writer, { model: 'ocr-cls' }, ocr);
    const { version } = await compress(h.client, writer, {
      ref: 'ocr-cls',
      method: M.COMPRESSION_METHOD_FP16,
      targetModel: 'ocr-cls-small',
      alias: 'staging',
      gates: { minCosine: 0.999, minTop1Agreement: 0.99 },
    });
    expect(version).toMatchObject({ model: 'ocr-cls-small', version: 1, aliases: ['staging'] });
    expect(version.lineage?.origin).toMatchObject({
      $case: 'parent',
      value: { model: 'ocr-cls', version: 1, transform: 'fp16' },
    });
    expect(Number(version.sizeBytes) / ocr.length).toBeLessThan(0.6);
    const model = await call(h.client, 'getModel', { name: 'ocr-cls-small' }, reader);
    expect(model.model!.aliases).toEqual({ staging: 1 });
  });

  it('creates nothing when a gate is missed, and names the output and the figure', async () => {
    const count = await versionCount('cnn');
    const cosine = await failure(
      compress(h.client, writer, {
        ref: 'cnn:1',
        method: M.COMPRESSION_METHOD_INT8_WEIGHTS,
        alias: 'staging',
        gates: { minCosine: 1 },
      }),
    );
    expect(cosine.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(cosine.details).toMatch(
      /^cnn:1 int8-weights: output "output": cosine 0\.\d+ is below min_cosine 1; no version was created$/,
    );
    const abs = await failure(
      compress(h.client, writer, {
        ref: 'cnn:1',
        method: M.COMPRESSION_METHOD_PRUNE,
        sparsity: 0.9,
        gates: { maxAbsError: 1e-6 },
      }),
    );
    expect(abs.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(abs.details).toMatch(/output "output": max abs error [\d.e-]+ is above max_abs_error 0\.000001/);
    const top1 = await failure(
      compress(h.client, writer, {
        ref: 'lstm:1',
        method: M.COMPRESSION_METHOD_FP16,
        gates: { minTop1Agreement: 0.5 },
      }),
    );
    expect(top1.details).toMatch(/no output is shaped like class scores/);
    expect(await versionCount('cnn')).toBe(count);
    expect((await call(h.client, 'getModel', { name: 'cnn' }, reader)).model!.aliases).toEqual({});
  });

  it(
    'answers bad requests with INVALID_ARGUMENT, unknown sources ' + 'with NOT_FOUND, readers with PERMISSION_DENIED',
    async () => {
      const cases: [
        Partial<pb.CompressVersionRequest> & { ref: string; method: pb.CompressionMethod },
        grpc.status,
        RegExp,
      ][] = [
        [
          { ref: 'cnn:1', method: M.COMPRESSION_METHOD_UNSPECIFIED },
          grpc.status.INVALID_ARGUMENT,
          /method is required/,
        ],
        [{ ref: 'cnn:1', method: M.COMPRESSION_METHOD_PRUNE }, grpc.status.INVALID_ARGUMENT, /PRUNE needs sparsity/],
        [
          { ref: 'cnn:1', method: M.COMPRESSION_METHOD_PRUNE, sparsity: 1.5 },
          grpc.status.INVALID_ARGUMENT,
          /sparsity must be above 0 and below 1, got 1\.5/,
        ],
        [
          { ref: 'cnn:1', method: M.COMPRESSION_METHOD_FP16, sparsity: 0.5 },
          grpc.status.INVALID_ARGUMENT,
          /sparsity applies to PRUNE and INT8_WEIGHTS only/,
        ],
        [
          { ref: 'cnn:1', method: M.COMPRESSION_METHOD_FP16, gates: { minCosine: 2 } },
          grpc.status.INVALID_ARGUMENT,
          /gates\.min_cosine must be between -1 and 1, got 2/,
        ],
        [
          { ref: 'cnn:1', method: M.COMPRESSION_METHOD_FP16, dims: { N: 0 } },
          grpc.status.INVALID_ARGUMENT,
          /dims: "N" is 0/,
        ],
        [{ ref: 'cnn:1', method: M.COMPRESSION_METHOD_FP16, alias: '7' }, grpc.status.INVALID_ARGUMENT, /alias/],
        [
          { ref: 'cnn:1', method: M.COMPRESSION_METHOD_FP16, sampleCount: 5000 },
          grpc.status.INVALID_ARGUMENT,
          /sample_count 5000 is over the maximum of 1000/,
        ],
        [{ ref: 'cnn:99', method: M.COMPRESSION_METHOD_FP16 }, grpc.status.NOT_FOUND, /model "cnn" has no version 99/],
        [{ ref: 'nope', method: M.COMPRESSION_METHOD_FP16 }, grpc.status.NOT_FOUND, /nope/],
        [
          {
            ref: 'cnn:1',
            method: M.COMPRESSION_METHOD_FP16,
            calibration: [
              {
                inputName: 'image',
                format: pb.CalibrationFormat.CALIBRATION_FORMAT_NPY,
                data: writeNpy({ datatype: 'FP32', shape: [1, 3, 32, 32], data: new Float32Array(3072) }),
              },
            ],
          },
          grpc.status.INVALID_ARGUMENT,
          /the model has no input "image"; its inputs are "input"/,
        ],
        [
          {
            ref: 'cnn:1',
            method: M.COMPRESSION_METHOD_FP16,
            calibration: [
              { inputName: '', format: pb.CalibrationFormat.CALIBRATION_FORMAT_NPY, data: Buffer.from('not numpy') },
            ],
          },
          grpc.status.INVALID_ARGUMENT,
          /calibration\[0\]: .*is not a \.npy file/,
        ],
        [
          {
            ref: 'cnn:1',
            method: M.COMPRESSION_METHOD_FP16,
            calibration: [
              {
                inputName: '',
                format: pb.CalibrationFormat.CALIBRATION_FORMAT_NPY,
                data: writeNpy({ datatype: 'FP32', shape: [2, 3, 16, 16], data: new Float32Array(1536) }),
              },
            ],
          },
          grpc.status.INVALID_ARGUMENT,
          /input "input" has shape \[\?, 3, 32, 32\]; a sample of the data given has \[1, 3, 16, 16\]/,
        ],
      ];
      const count = await versionCount('cnn');
      for (const [request, code, message] of cases) {
        const error = await failure(compress(h.client, writer, request));
        expect({ code: error.code, details: error.details }).toEqual({ code, details: expect.stringMatching(message) });
      }
      const denied = await failure(compress(h.client, reader, { ref: 'cnn:1', method: M.COMPRESSION_METHOD_FP16 }));
      expect(denied.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(await versionCount('cnn')).toBe(count);
    },
  );

  it('measures on the caller samples given as .npy and as KServe JSON, and says so', async () => {
    const rows = 5;
    const images = Float32Array.from({ length: rows * 3072 }, (_, i) => Math.sin(i));
    const fromNpy = await compress(h.client, writer, {
      ref: 'cnn:1',
      method: M.COMPRESSION_METHOD_FP16,
      calibration: [
        {
          inputName: 'input',
          format: pb.CalibrationFormat.CALIBRATION_FORMAT_NPY,
          data: writeNpy({ datatype: 'FP32', shape: [rows, 3, 32, 32], data: images }),
        },
      ],
    });
    expect(fromNpy.version.compression!.calibration).toMatchObject({
      kind: 'caller',
      sampleCount: rows,
      description: 'caller, 5 samples',
    });
    const json = JSON.stringify({
      inputs: [
        { name: 'input', datatype: 'FP32', shape: [3, 64], data: Array.from({ length: 192 }, (_, i) => Math.cos(i)) },
      ],
    });
    const fromJson = await compress(h.client, writer, {
      ref: 'mlp:1',
      method: M.COMPRESSION_METHOD_INT8_WEIGHTS,
      calibration: [
        { inputName: '', format: pb.CalibrationFormat.CALIBRATION_FORMAT_KSERVE_JSON, data: Buffer.from(json) },
      ],
    });
    expect(fromJson.version.compression!.calibration).toMatchObject({ kind: 'caller', sampleCount: 3 });
    expect(fromJson.version.compression!.outputs[0]!.top1Agreement).toBeDefined();
  });
});
