import { describe, expect, it } from 'vitest';
import { buildMlp, mlpModel } from '../build-mlp.js';
import { buildScalarModel } from '../build-scalar.js';
import { OnnxDataType } from '../data-types.js';
import { inspectOnnx } from '../inspect.js';
import { encodeModel, floatTensor, type ModelSpec } from '../model-spec.js';
import { createRng, uniform } from '../rng.js';
import { generateCalibrationInputs } from './calibration.js';
import { CompressError } from './compress-error.js';
import { COMPRESS_METHODS, compressModel, type CompressOptions } from './compress-model.js';
import { floatData, readModel } from './onnx-graph.js';
import { checkModels, cosine, runSamples } from '../testing/compress.js';

// The rules around the methods: option checks, models with nothing to rewrite, shared and
// overridable weights, old opsets, external data, and fields the rewriter does not know.

function compressError(run: () => unknown): CompressError {
  try {
    run();
  } catch (e) {
    if (e instanceof CompressError) return e;
    throw e;
  }
  throw new Error('expected a CompressError');
}

const ops = (model: Uint8Array): string[] => readModel(model).graph.nodes.map((n) => n.opType);

/** x [N,64] -> MatMul(W) -> a, MatMul(W) -> b (one weight read twice), Add(a, V) with V read as a weight too. */
function sharedWeightModel(): ModelSpec {
  const rng = createRng(3);
  return {
    graph: {
      name: 'shared',
      nodes: [
        { opType: 'MatMul', name: 'first', inputs: ['x', 'W'], outputs: ['a'] },
        { opType: 'MatMul', name: 'second', inputs: ['a', 'W'], outputs: ['b'] },
        { opType: 'MatMul', name: 'third', inputs: ['b', 'V'], outputs: ['c'] },
        { opType: 'Add', name: 'add', inputs: ['c', 'V'], outputs: ['y'] },
      ],
      initializers: [
        floatTensor('W', [64, 64], uniform(rng, 4096, 0.125)),
        floatTensor('V', [64, 64], uniform(rng, 4096, 0.125)),
      ],
      inputs: [{ name: 'x', dataType: OnnxDataType.FLOAT, shape: ['N', 64] }],
      outputs: [{ name: 'y', dataType: OnnxDataType.FLOAT, shape: ['N', 64] }],
    },
  };
}

describe('options', () => {
  const model = buildMlp({ inputSize: 64, hiddenSizes: [64] });

  it.each<[string, unknown, RegExp]>([
    [
      'an unknown method',
      { method: 'int4' },
      /unknown compression method "int4": use one of int8-weights, int8-dynamic, fp16, prune/,
    ],
    ['no method', {}, /unknown compression method undefined/],
    ['prune without sparsity', { method: 'prune' }, /prune needs a sparsity/],
    [
      'sparsity 0',
      { method: 'prune', sparsity: 0 },
      /sparsity must be a number between 0 and 1 \(both excluded\), got 0/,
    ],
    ['sparsity 1', { method: 'int8-weights', sparsity: 1 }, /between 0 and 1.*got 1/],
    ['sparsity NaN', { method: 'prune', sparsity: Number.NaN }, /got NaN/],
    ['a negative sparsity', { method: 'prune', sparsity: -0.5 }, /got -0.5/],
    [
      'sparsity with fp16',
      { method: 'fp16', sparsity: 0.5 },
      /sparsity applies to prune and int8-weights, not to fp16/,
    ],
    ['sparsity with int8-dynamic', { method: 'int8-dynamic', sparsity: 0.5 }, /not to int8-dynamic/],
  ])('%s is refused', (_, options, message) => {
    const e = compressError(() => compressModel(model, options as CompressOptions));
    expect(e.problem).toBe('bad-options');
    expect(e.message).toMatch(message);
  });

  it('bytes that are not a model are refused', () => {
    expect(compressError(() => compressModel(new Uint8Array(0), { method: 'fp16' })).problem).toBe('bad-model');
    expect(
      compressError(() => compressModel(new TextEncoder().encode('hello, world'), { method: 'fp16' })).problem,
    ).toBe('bad-model');
  });

  it('a model whose weights live in an external file is refused with what to do', () => {
    const spec = mlpModel({ inputSize: 64, hiddenSizes: [64] });
    const external = encodeModel({
      ...spec,
      graph: {
        ...spec.graph,
        initializers: spec.graph.initializers.map((t, i) =>
          i === 0 ? { name: t.name, dataType: t.dataType, dims: t.dims, external: { location: 'weights.bin' } } : t,
        ),
      },
    });
    const e = compressError(() => compressModel(external, { method: 'int8-weights' }));
    expect(e.problem).toBe('external-data');
    expect(e.message).toMatch(
      /initializer "fc0.weight" keeps its data in an external file.*save_as_external_data=False/,
    );
  });
});

describe('a model with nothing to rewrite', () => {
  const model = buildScalarModel();

  it.each<CompressOptions>([
    { method: 'int8-weights' },
    { method: 'int8-dynamic' },
    { method: 'fp16' },
    { method: 'prune', sparsity: 0.5 },
  ])('$method returns a copy with every op in left', (options) => {
    const r = compressModel(model, options);
    expect(r.model).toEqual(model);
    expect(r.model).not.toBe(model);
    expect(r.sizeAfter).toBe(r.sizeBefore);
    expect(r.rewritten).toEqual([]);
    expect(r.left.map((l) => [l.op, l.count])).toEqual([
      ['Mul', 1],
      ['ReduceSum', 1],
    ]);
    for (const l of r.left) expect(l.reason).toMatch(/no float32 constants/);
  });

  it('the copy of a Buffer does not share its memory', () => {
    const buffer = Buffer.from(model);
    const r = compressModel(buffer, { method: 'fp16' });
    buffer.fill(0);
    expect(r.model).toEqual(model);
  });
});

describe('shared and overridable weights', () => {
  const model = encodeModel(sharedWeightModel());
  // Add(c [N,64], V [64,64]) broadcasts only with N = 64 (or 1).
  const samples = generateCalibrationInputs(model, { count: 2, seed: 1, dims: { N: 64 } });

  it.each<CompressOptions>([
    { method: 'int8-weights' },
    { method: 'int8-dynamic' },
    { method: 'fp16' },
    { method: 'prune', sparsity: 0.25 },
  ])(
    '$method: a weight read by two MatMuls is rewritten once; one also read by Add stays float32 (int8, prune)',
    async (options) => {
      const r = compressModel(model, options);
      expect(checkModels([r.model])).toEqual(['ok']);
      const after = ops(r.model);
      if (options.method === 'int8-weights') {
        expect(after.filter((o) => o === 'DequantizeLinear')).toHaveLength(1);
      }
      if (options.method === 'int8-dynamic') {
        // V is read by Add too, so the float copy stays beside the quantized one for the third MatMul.
        expect(after.filter((o) => o === 'MatMulInteger')).toHaveLength(3);
        expect(readModel(r.model).graph.initializers.has('V')).toBe(true);
        expect(readModel(r.model).graph.initializers.has('W')).toBe(false);
      }
      if (options.method === 'fp16') expect(after.filter((o) => o === 'Cast')).toHaveLength(2);
      if (options.method === 'int8-weights' || options.method === 'prune') {
        expect(r.rewritten).toEqual([{ op: 'MatMul', count: 2 }]);
        expect(r.left).toContainEqual({
          op: 'MatMul',
          count: 1,
          reason: 'weight "V" is also input 1 of Add, so it stays float32',
        });
      }
      const [want, got] = [await runSamples(model, samples), await runSamples(r.model, samples)];
      expect(cosine(got.outputs['y']!, want.outputs['y']!)).toBeGreaterThan(options.method === 'prune' ? 0.8 : 0.99);
    },
  );

  it('an initializer that is also a graph input stays float32 and the inputs stay as they were', async () => {
    const spec = sharedWeightModel();
    const overridable = encodeModel({
      ...spec,
      graph: {
        ...spec.graph,
        inputs: [...spec.graph.inputs, { name: 'W', dataType: OnnxDataType.FLOAT, shape: [64, 64] }],
      },
    });
    for (const method of ['int8-weights', 'fp16', 'int8-dynamic'] as const) {
      const r = compressModel(overridable, { method });
      expect(checkModels([r.model])).toEqual(['ok']);
      expect(inspectOnnx(r.model).initializerInputs.map((v) => v.name)).toEqual(['W']);
      expect(r.left.some((l) => l.reason.includes('"W" is also a graph input'))).toBe(true);
      await runSamples(r.model, samples);
    }
  });
});

describe('rewriting', () => {
  it('prune zeroes exactly floor(s * n) weights of each tensor it rewrites, the smallest ones', () => {
    const model = buildMlp({ inputSize: 64, hiddenSizes: [64], outputSize: 8 });
    const r = compressModel(model, { method: 'prune', sparsity: 0.3 });
    const before = readModel(model).graph.initializers;
    const after = readModel(r.model).graph.initializers;
    for (const name of ['fc0.weight', 'fc1.weight']) {
      const w = floatData(after.get(name)!);
      const original = floatData(before.get(name)!);
      const zeros = w.filter((x) => x === 0).length;
      expect(zeros).toBe(Math.floor(0.3 * w.length));
      const largestPruned = Math.max(...original.filter((_, i) => w[i] === 0).map(Math.abs));
      const smallestKept = Math.min(...original.filter((_, i) => w[i] !== 0).map(Math.abs));
      expect(largestPruned).toBeLessThanOrEqual(smallestKept);
    }
    // The biases are left alone.
    expect(floatData(after.get('fc0.bias')!)).toEqual(floatData(before.get('fc0.bias')!));
    expect(r.parameters).toMatchObject({ sparsity: '0.3' });
  });

  it('below opset 13 int8 weights are restored per channel by Cast and Mul; int8-dynamic needs opset 11', async () => {
    const spec = mlpModel({ inputSize: 64, hiddenSizes: [64], outputSize: 8 });
    const old = encodeModel({ ...spec, irVersion: 6, opsetImports: [{ domain: '', version: 10 }] });
    const int8 = compressModel(old, { method: 'int8-weights' });
    expect(int8.parameters['dequantize']).toBe('Cast+Mul (opset 10 < 13)');
    expect(ops(int8.model).filter((o) => o === 'DequantizeLinear')).toEqual([]);
    const dynamic = compressModel(old, { method: 'int8-dynamic' });
    expect(dynamic.rewritten).toEqual([]);
    expect(dynamic.left.every((l) => l.reason.startsWith('opset 10: DynamicQuantizeLinear needs opset 11'))).toBe(true);
    expect(checkModels([int8.model, dynamic.model])).toEqual(['ok', 'ok']);
    const samples = generateCalibrationInputs(old, { count: 2, seed: 5 });
    const [want, got] = [await runSamples(old, samples), await runSamples(int8.model, samples)];
    expect(cosine(got.outputs['output']!, want.outputs['output']!)).toBeGreaterThan(0.999);
  });

  it('Conv -> BatchNormalization is folded into one Conv under int8-weights and fp16, the same function', async () => {
    const rng = createRng(8);
    const channels = 16;
    const positive = (n: number): number[] => Array.from({ length: n }, () => 0.5 + rng());
    const spec: ModelSpec = {
      graph: {
        name: 'conv-bn',
        nodes: [
          {
            opType: 'Conv',
            name: 'conv',
            inputs: ['x', 'w'],
            outputs: ['c'],
            attributes: { pads: { ints: [1, 1, 1, 1] } },
          },
          {
            opType: 'BatchNormalization',
            name: 'bn',
            inputs: ['c', 'gamma', 'beta', 'mean', 'var'],
            outputs: ['y'],
            attributes: { epsilon: { f: 1e-3 } },
          },
        ],
        initializers: [
          floatTensor('w', [channels, 8, 3, 3], uniform(rng, channels * 72, 0.3)),
          floatTensor('gamma', [channels], positive(channels)),
          floatTensor('beta', [channels], uniform(rng, channels, 1)),
          floatTensor('mean', [channels], uniform(rng, channels, 1)),
          floatTensor('var', [channels], positive(channels)),
        ],
        inputs: [{ name: 'x', dataType: OnnxDataType.FLOAT, shape: ['N', 8, 8, 8] }],
        outputs: [{ name: 'y', dataType: OnnxDataType.FLOAT, shape: ['N', channels, 8, 8] }],
      },
    };
    const model = encodeModel(spec);
    const samples = generateCalibrationInputs(model, { count: 2, seed: 2 });
    const want = await runSamples(model, samples);
    for (const method of ['int8-weights', 'fp16'] as const) {
      const r = compressModel(model, { method });
      expect(ops(r.model)).not.toContain('BatchNormalization');
      expect(r.rewritten).toEqual(
        expect.arrayContaining([
          { op: 'BatchNormalization', count: 1 },
          { op: 'Conv', count: 1 },
        ]),
      );
      expect(r.parameters['batchNorm']).toBe('1 folded into the Conv before each');
      expect(readModel(r.model).graph.initializers.has('gamma')).toBe(false);
      expect(checkModels([r.model])).toEqual(['ok']);
      const got = await runSamples(r.model, samples);
      expect(cosine(got.outputs['y']!, want.outputs['y']!)).toBeGreaterThan(method === 'fp16' ? 0.99999 : 0.9999);
    }
    // prune and int8-dynamic leave the pair alone.
    expect(ops(compressModel(model, { method: 'prune', sparsity: 0.5 }).model)).toContain('BatchNormalization');
  });

  it('weights in Constant nodes of an IR 3 model are rewritten as Constant nodes, int8 from opset 9 on', async () => {
    const rng = createRng(4);
    const weight = floatTensor('w', [64, 32], uniform(rng, 2048, 0.2));
    const model = encodeModel({
      irVersion: 3,
      opsetImports: [{ domain: '', version: 8 }],
      graph: {
        name: 'ir3',
        nodes: [
          { opType: 'Constant', name: 'w_const', inputs: [], outputs: ['w'], attributes: { value: { t: weight } } },
          { opType: 'MatMul', name: 'mm', inputs: ['x', 'w'], outputs: ['y'] },
        ],
        initializers: [],
        inputs: [{ name: 'x', dataType: OnnxDataType.FLOAT, shape: ['N', 64] }],
        outputs: [{ name: 'y', dataType: OnnxDataType.FLOAT, shape: ['N', 32] }],
      },
    });
    const samples = generateCalibrationInputs(model, { count: 2, seed: 6, dims: { N: 4 } });
    const want = await runSamples(model, samples);
    const int8 = compressModel(model, { method: 'int8-weights' });
    expect(int8.rewritten).toEqual([]);
    expect(int8.left).toEqual([
      {
        op: 'MatMul',
        count: 1,
        reason: 'opset 8, IR 3: an int8 "w" needs a Constant of int8 (opset 9) or an initializer (IR 4)',
      },
    ]);
    for (const options of [{ method: 'fp16' }, { method: 'prune', sparsity: 0.5 }] as CompressOptions[]) {
      const r = compressModel(model, options);
      expect(r.rewritten).toEqual([{ op: 'MatMul', count: 1 }]);
      const graph = readModel(r.model).graph;
      expect(graph.initializers.size, options.method).toBe(0);
      expect(ops(r.model).filter((o) => o === 'Constant').length).toBeGreaterThanOrEqual(1);
      expect(checkModels([r.model])).toEqual(['ok']);
      const got = await runSamples(r.model, samples);
      expect(cosine(got.outputs['y']!, want.outputs['y']!)).toBeGreaterThan(options.method === 'prune' ? 0.8 : 0.999);
    }
  });

  it('fields the rewriter does not know are kept byte for byte', () => {
    const spec = mlpModel({ inputSize: 64, hiddenSizes: [64] });
    const base = encodeModel({ ...spec, docString: 'kept', metadata: { owner: 'team-a' } });
    // An unknown ModelProto field 99 (varint 7), as a newer writer could add.
    const unknown = Uint8Array.from([0x98, 0x06, 0x07]);
    const model = new Uint8Array([...base, ...unknown]);
    for (const method of COMPRESS_METHODS) {
      const r = compressModel(model, method === 'prune' ? { method, sparsity: 0.5 } : { method });
      expect(Buffer.from(r.model).includes(Buffer.from(unknown)), method).toBe(true);
      const info = inspectOnnx(r.model);
      expect(info.docString).toBe('kept');
      expect(info.metadata).toEqual({ owner: 'team-a' });
    }
  });

  it('names the rewriter adds never collide with names already in the graph', () => {
    const spec = mlpModel({ inputSize: 64, hiddenSizes: [64] });
    const taken = encodeModel({
      ...spec,
      graph: {
        ...spec.graph,
        nodes: [{ opType: 'Identity', inputs: ['input'], outputs: ['fc0.weight_quantized'] }, ...spec.graph.nodes],
      },
    });
    const r = compressModel(taken, { method: 'int8-weights' });
    expect(checkModels([r.model])).toEqual(['ok']);
    expect(readModel(r.model).graph.initializers.has('fc0.weight_quantized_1')).toBe(true);
  });
});
