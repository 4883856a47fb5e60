import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCnn } from '../build-cnn.js';
import { buildLstm } from '../build-lstm.js';
import { buildMlp, mlpModel } from '../build-mlp.js';
import { inspectOnnx } from '../inspect.js';
import { encodeModel } from '../model-spec.js';
import { ppOcrClassifierPath } from '../testing/fixtures.js';
import { generateCalibrationInputs } from './calibration.js';
import { compressModel, type CompressOptions, type CompressResult } from './compress-model.js';
import { checkModels, cosine, runSamples, type Signature } from '../testing/compress.js';

// Every method on every kind of model the platform serves: the rewritten model passes the ONNX
// checker, keeps its signature and opset imports, runs in onnxruntime and answers close to its
// parent on generated calibration inputs.

interface Case {
  readonly name: string;
  readonly model: () => Uint8Array;
  readonly dims?: Readonly<Record<string, number>>;
  /** Weights dominate the file: the size targets apply. */
  readonly weightHeavy: boolean;
  /** A bound above the int8 target, where the model's structure alone keeps it out of reach. */
  readonly int8Limit?: number;
}

const CASES: readonly Case[] = [
  { name: 'CNN', model: () => buildCnn(), dims: { N: 2 }, weightHeavy: true },
  {
    name: 'MLP',
    model: () => buildMlp({ inputSize: 64, hiddenSizes: [128, 64], outputSize: 10 }),
    dims: { N: 4 },
    weightHeavy: true,
  },
  { name: 'small MLP (weights under the minimum)', model: () => buildMlp(), weightHeavy: false },
  {
    name: 'LSTM with state',
    model: () => buildLstm({ inputSize: 64, hiddenSize: 64 }),
    dims: { T: 5, N: 2 },
    weightHeavy: true,
  },
  {
    name: 'MLP with an unnamed dynamic batch dim',
    model: () => encodeModel(mlpModel({ batch: null, inputSize: 128, hiddenSizes: [256], outputSize: 16 })),
    weightHeavy: true,
  },
  {
    name: 'PP-OCR classifier',
    model: () => new Uint8Array(readFileSync(ppOcrClassifierPath())),
    dims: { 'p2o.DynamicDimension.0': 1, 'p2o.DynamicDimension.1': 48, 'p2o.DynamicDimension.2': 192 },
    weightHeavy: true,
    // Opset 9: no per-axis DequantizeLinear, so each weight is restored by Cast + Mul with a float32
    // scale per channel, and the depthwise kernels hold only 9 or 25 weights per channel; the
    // graph's own nodes and names are 6% of the file. See the README for the byte count.
    int8Limit: 0.33,
  },
];

interface Method {
  readonly label: string;
  readonly options: CompressOptions;
  readonly minCosine: number;
  readonly maxSizeRatio: number | undefined;
}

const METHODS: readonly Method[] = [
  { label: 'int8-weights', options: { method: 'int8-weights' }, minCosine: 0.99, maxSizeRatio: 0.3 },
  { label: 'int8-dynamic', options: { method: 'int8-dynamic' }, minCosine: 0.99, maxSizeRatio: undefined },
  { label: 'fp16', options: { method: 'fp16' }, minCosine: 0.999, maxSizeRatio: 0.52 },
  // Pruning half the weights of random (untrained) models moves their outputs a lot; only that it runs is checked.
  { label: 'prune 0.5', options: { method: 'prune', sparsity: 0.5 }, minCosine: 0, maxSizeRatio: undefined },
  {
    label: 'int8-weights, sparsity 0.5',
    options: { method: 'int8-weights', sparsity: 0.5 },
    minCosine: 0,
    maxSizeRatio: 0.3,
  },
];

const figures: string[] = [];

afterAll(() => {
  if (process.env['QUANTA_COMPRESS_FIGURES'] !== undefined)
    console.log(['model | method | size ratio | min cosine', ...figures].join('\n'));
});

describe.each(CASES)('$name', ({ name, model, dims, weightHeavy, int8Limit }) => {
  const parent = model();
  const results = new Map<string, CompressResult>();
  const checked = new Map<string, string>();
  const samples = generateCalibrationInputs(parent, { count: 4, seed: 7, ...(dims === undefined ? {} : { dims }) });
  let expected: { signature: Signature; outputs: Record<string, number[]> };

  beforeAll(async () => {
    for (const m of METHODS) results.set(m.label, compressModel(parent, m.options));
    const verdicts = checkModels([parent, ...METHODS.map((m) => results.get(m.label)!.model)]);
    expect(verdicts[0], 'the parent passes the checker').toBe('ok');
    METHODS.forEach((m, i) => checked.set(m.label, verdicts[i + 1]!));
    expected = await runSamples(parent, samples);
  }, 120_000);

  it.each(METHODS)('$label: passes the checker, keeps the signature and answers close to the parent', async (m) => {
    const r = results.get(m.label)!;
    expect(checked.get(m.label)).toBe('ok');
    expect(r.sizeBefore).toBe(parent.length);
    expect(r.sizeAfter).toBe(r.model.length);
    const before = inspectOnnx(parent);
    const after = inspectOnnx(r.model);
    expect(after.inputs).toEqual(before.inputs);
    expect(after.outputs).toEqual(before.outputs);
    // Only int8-dynamic adds an operator set: com.microsoft, for DynamicQuantizeLSTM.
    expect(after.opsetImports.slice(0, before.opsetImports.length)).toEqual(before.opsetImports);
    const added = after.opsetImports.slice(before.opsetImports.length);
    expect(added).toEqual(
      m.options.method === 'int8-dynamic' && name.startsWith('LSTM') ? [{ domain: 'com.microsoft', version: 1 }] : [],
    );
    expect(after.irVersion).toBe(before.irVersion);
    const actual = await runSamples(r.model, samples);
    expect(actual.signature).toEqual(expected.signature);
    const cosines = Object.keys(expected.outputs).map((k) => cosine(actual.outputs[k]!, expected.outputs[k]!));
    const ratio = r.sizeAfter / r.sizeBefore;
    figures.push(`${name} | ${m.label} | ${(ratio * 100).toFixed(1)}% | ${Math.min(...cosines).toFixed(5)}`);
    for (const c of cosines) expect(c).toBeGreaterThanOrEqual(m.minCosine);
    const limit = m.options.method === 'int8-weights' ? (int8Limit ?? m.maxSizeRatio) : m.maxSizeRatio;
    if (weightHeavy && limit !== undefined) expect(ratio).toBeLessThanOrEqual(limit);
  });
});
