import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { buildCnn, cnnModel } from './build-cnn.js';
import { buildLstm, lstmModel, LSTM_NAMES } from './build-lstm.js';
import { buildMlp, mlpModel } from './build-mlp.js';
import { buildScalarModel, scalarModel } from './build-scalar.js';
import { inspectOnnx } from './inspect.js';
import type { OnnxModelInfo, OnnxValueInfo } from './model-info.js';
import { encodeModel, type ModelSpec, type ValueSpec } from './model-spec.js';
import { OnnxDataType } from './data-types.js';
import { createRng, uniform } from './rng.js';
import { conv3x3, gemm, lstmForward, maxPool2, relu, softmaxRows, weightOf } from './testing/reference-math.js';

const ORT_TYPE: Record<string, string> = { FP32: 'float32', BYTES: 'string', INT64: 'int64', BOOL: 'bool' };

/** Every element within atol + rtol*|expected|. */
function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, atol = 1e-5, rtol = 1e-4): void {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < expected.length; i++) {
    const excess = Math.abs(actual[i]! - expected[i]!) - (atol + rtol * Math.abs(expected[i]!));
    if (excess > worst) [worst, at] = [excess, i];
  }
  expect(at, `element ${at}: ${actual[at]} vs ${expected[at]}`).toBe(-1);
}

async function run(bytes: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<Record<string, Float32Array>> {
  const session = await ort.InferenceSession.create(bytes);
  try {
    const out = await session.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
  } finally {
    await session.release();
  }
}

const tensor = (data: Float32Array, dims: number[]): ort.Tensor => new ort.Tensor('float32', data, dims);

interface OrtMeta {
  name: string;
  type?: string;
  shape?: readonly (number | string)[];
}

/** Inspection agrees with onnxruntime's session metadata and with what the builder declared. */
async function expectSignature(bytes: Uint8Array, spec: ModelSpec): Promise<OnnxModelInfo> {
  const info = inspectOnnx(bytes);
  const session = await ort.InferenceSession.create(bytes);
  try {
    expect(info.inputs.map((v) => v.name)).toEqual(session.inputNames);
    expect(info.outputs.map((v) => v.name)).toEqual(session.outputNames);
    const check = (
      values: readonly OnnxValueInfo[],
      meta: readonly OrtMeta[],
      declared: readonly ValueSpec[],
    ): void => {
      values.forEach((v, i) => {
        expect(meta[i]!.type).toBe(ORT_TYPE[v.datatype!]);
        // onnxruntime names an unnamed unknown dim ''.
        expect(meta[i]!.shape).toEqual(v.shape!.map((d, j) => v.dimParams![j] ?? (d === -1 ? '' : d)));
        const want = declared[i]!;
        expect(v.name).toBe(want.name);
        expect(v.elemType).toBe(want.dataType);
        expect(v.shape).toEqual(want.shape!.map((d) => (typeof d === 'number' ? d : -1)));
        expect(v.dimParams).toEqual(want.shape!.map((d) => (typeof d === 'string' ? d : null)));
      });
    };
    check(info.inputs, session.inputMetadata, spec.graph.inputs);
    check(info.outputs, session.outputMetadata, spec.graph.outputs);
  } finally {
    await session.release();
  }
  expect(info.initializerCount).toBe(spec.graph.initializers.length);
  expect(info.opsetImports).toEqual([{ domain: '', version: 17 }]);
  expect(info.producerName).toBe(spec.producerName ?? 'quanta');
  expect(info.irVersion).toBe(8);
  return info;
}

describe('MLP', () => {
  const options = { inputSize: 5, hiddenSizes: [7, 6], outputSize: 3, seed: 11 };
  const spec = mlpModel(options);
  const bytes = buildMlp(options);

  it('computes Gemm/Relu layers as written out in TypeScript', async () => {
    const n = 4;
    const x = uniform(createRng(99), n * 5, 2);
    const { output } = await run(bytes, { input: tensor(x, [n, 5]) });
    const w = (name: string): Float32Array => weightOf(spec, name);
    let h = relu(gemm(x, w('fc0.weight'), w('fc0.bias'), n, 5, 7));
    h = relu(gemm(h, w('fc1.weight'), w('fc1.bias'), n, 7, 6));
    expectClose(output!, gemm(h, w('fc2.weight'), w('fc2.bias'), n, 6, 3));
  });

  it('inspects as onnxruntime and the builder see it', async () => {
    const info = await expectSignature(bytes, spec);
    expect(info.inputs[0]).toMatchObject({ name: 'input', datatype: 'FP32', shape: [-1, 5], dimParams: ['N', null] });
    const params = 5 * 7 + 7 + 7 * 6 + 6 + 6 * 3 + 3;
    expect(info.parameterCount).toBe(params);
    expect(info.parameterBytes).toBe(params * 4);
    expect(info.operators).toEqual({ Gemm: 3, Relu: 2 });
  });

  it('is deterministic in its seed', () => {
    expect(buildMlp(options)).toEqual(bytes);
    expect(buildMlp({ ...options, seed: 12 })).not.toEqual(bytes);
    expect(inspectOnnx(buildMlp({ batch: 8 })).inputs[0]).toMatchObject({ shape: [8, 4], dimParams: [null, null] });
  });
});

describe('CNN (CIFAR shape)', () => {
  for (const softmax of [false, true]) {
    it(`computes conv/relu/pool/gemm${softmax ? '/softmax' : ''} as written out in TypeScript`, async () => {
      const spec = cnnModel({ seed: 5, softmax });
      const bytes = buildCnn({ seed: 5, softmax });
      const n = 2;
      const x = uniform(createRng(7), n * 3 * 32 * 32, 1);
      const { output } = await run(bytes, { input: tensor(x, [n, 3, 32, 32]) });
      const w = (name: string): Float32Array => weightOf(spec, name);
      let h = maxPool2(relu(conv3x3(x, w('conv1.weight'), w('conv1.bias'), n, 3, 32, 32, 8)), n, 8, 32, 32);
      h = maxPool2(relu(conv3x3(h, w('conv2.weight'), w('conv2.bias'), n, 8, 16, 16, 16)), n, 16, 16, 16);
      let logits = gemm(h, w('fc.weight'), w('fc.bias'), n, 16 * 8 * 8, 10);
      if (softmax) logits = softmaxRows(logits, n, 10);
      expectClose(output!, logits);
      if (softmax)
        for (let i = 0; i < n; i++)
          expect(output!.subarray(i * 10, i * 10 + 10).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    });
  }

  it('inspects as onnxruntime and the builder see it', async () => {
    const info = await expectSignature(buildCnn({ softmax: true }), cnnModel({ softmax: true }));
    expect(info.inputs[0]).toMatchObject({ shape: [-1, 3, 32, 32], dimParams: ['N', null, null, null] });
    expect(info.outputs[0]).toMatchObject({ name: 'output', shape: [-1, 10] });
    expect(info.parameterCount).toBe(8 * 27 + 8 + 16 * 8 * 9 + 16 + 10 * 1024 + 10);
    expect(info.operators).toEqual({ Conv: 2, Flatten: 1, Gemm: 1, MaxPool: 2, Relu: 2, Softmax: 1 });
  });
});

describe('LSTM with state inputs and outputs', () => {
  const I = 3;
  const H = 5;
  const spec = lstmModel({ inputSize: I, hiddenSize: H, seed: 3 });
  const bytes = buildLstm({ inputSize: I, hiddenSize: H, seed: 3 });
  const T = 6;
  const N = 2;
  const rng = createRng(21);
  const x = uniform(rng, T * N * I, 1);
  const h0 = uniform(rng, N * H, 0.5);
  const c0 = uniform(rng, N * H, 0.5);

  it('computes the ONNX LSTM equations as written out in TypeScript', async () => {
    const out = await run(bytes, { x: tensor(x, [T, N, I]), h: tensor(h0, [1, N, H]), c: tensor(c0, [1, N, H]) });
    const ref = lstmForward(x, h0, c0, weightOf(spec, 'W'), weightOf(spec, 'R'), weightOf(spec, 'B'), T, N, I, H);
    expectClose(out.y!, ref.y);
    expectClose(out.hn!, ref.hn);
    expectClose(out.cn!, ref.cn);
  });

  it('carries state: two halves fed hn -> h, cn -> c equal the whole sequence', async () => {
    const half = (T / 2) * N * I;
    const whole = await run(bytes, { x: tensor(x, [T, N, I]), h: tensor(h0, [1, N, H]), c: tensor(c0, [1, N, H]) });
    const first = await run(bytes, {
      x: tensor(x.slice(0, half), [T / 2, N, I]),
      h: tensor(h0, [1, N, H]),
      c: tensor(c0, [1, N, H]),
    });
    const second = await run(bytes, {
      x: tensor(x.slice(half), [T / 2, N, I]),
      [LSTM_NAMES.h]: tensor(first[LSTM_NAMES.hn]!, [1, N, H]),
      [LSTM_NAMES.c]: tensor(first[LSTM_NAMES.cn]!, [1, N, H]),
    });
    expectClose(second.hn!, whole.hn!, 1e-6, 1e-5);
    expectClose(second.cn!, whole.cn!, 1e-6, 1e-5);
  });

  it('inspects as onnxruntime and the builder see it', async () => {
    const info = await expectSignature(bytes, spec);
    expect(info.inputs.map((v) => v.name)).toEqual(['x', 'h', 'c']);
    expect(info.outputs.map((v) => v.name)).toEqual(['y', 'hn', 'cn']);
    expect(info.inputs[0]).toMatchObject({ shape: [-1, -1, I], dimParams: ['T', 'N', null] });
    expect(info.parameterCount).toBe(4 * H * I + 4 * H * H + 8 * H);
  });
});

describe('scalar model', () => {
  it('takes and returns rank-0 tensors', async () => {
    const x = Float32Array.from([1, -2, 3.5, 4]);
    const out = await run(buildScalarModel(), { x: tensor(x, [4]), s: tensor(Float32Array.from([2.5]), []) });
    expectClose(
      out.y!,
      x.map((v) => v * 2.5),
    );
    expectClose(out.total!, [(1 - 2 + 3.5 + 4) * 2.5]);
  });

  it('inspects as onnxruntime and the builder see it', async () => {
    const info = await expectSignature(buildScalarModel(), scalarModel());
    expect(info.inputs[1]).toMatchObject({ name: 's', shape: [], dimParams: [] });
    expect(info.outputs[1]).toMatchObject({ name: 'total', shape: [] });
    expect(info.parameterCount).toBe(0);
  });

  it('tells an unknown rank (no shape) from a scalar (empty shape)', () => {
    const spec = scalarModel();
    const anyRank = {
      ...spec,
      graph: { ...spec.graph, inputs: [spec.graph.inputs[0]!, { ...spec.graph.inputs[1]!, shape: null }] },
    };
    expect(inspectOnnx(encodeModel(anyRank)).inputs[1]).toMatchObject({ shape: null, dimParams: null });
  });
});

describe('other element types and unknown dims', () => {
  it('maps STRING to BYTES, INT64 and BOOL, and an unnamed unknown dim to -1', async () => {
    const spec: ModelSpec = {
      graph: {
        name: 'types',
        nodes: [
          { opType: 'Identity', inputs: ['s'], outputs: ['s_out'] },
          { opType: 'Identity', inputs: ['i'], outputs: ['i_out'] },
          { opType: 'Identity', inputs: ['b'], outputs: ['b_out'] },
        ],
        initializers: [],
        inputs: [
          { name: 's', dataType: OnnxDataType.STRING, shape: [null, 2] },
          { name: 'i', dataType: OnnxDataType.INT64, shape: ['batch'] },
          { name: 'b', dataType: OnnxDataType.BOOL, shape: [3] },
        ],
        outputs: [
          { name: 's_out', dataType: OnnxDataType.STRING, shape: [null, 2] },
          { name: 'i_out', dataType: OnnxDataType.INT64, shape: ['batch'] },
          { name: 'b_out', dataType: OnnxDataType.BOOL, shape: [3] },
        ],
      },
    };
    const info = await expectSignature(encodeModel(spec), spec);
    expect(info.inputs.map((v) => v.datatype)).toEqual(['BYTES', 'INT64', 'BOOL']);
    expect(info.inputs[0]).toMatchObject({ shape: [-1, 2], dimParams: [null, null], onnxType: 'STRING' });
  });
});
