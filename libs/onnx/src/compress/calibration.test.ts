import { tensorToOrt } from '@quanta/tensor';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { buildCnn } from '../build-cnn.js';
import { buildLstm, LSTM_NAMES } from '../build-lstm.js';
import { buildScalarModel } from '../build-scalar.js';
import { OnnxDataType } from '../data-types.js';
import { encodeModel } from '../model-spec.js';
import { generateCalibrationInputs } from './calibration.js';
import { CompressError } from './compress-error.js';

describe('generateCalibrationInputs', () => {
  it('is the same for the same seed and differs for another', () => {
    const model = buildCnn();
    const a = generateCalibrationInputs(model, { count: 3, seed: 11 });
    const b = generateCalibrationInputs(model, { count: 3, seed: 11 });
    const c = generateCalibrationInputs(model, { count: 3, seed: 12 });
    expect(a).toHaveLength(3);
    expect(a).toEqual(b);
    expect(a[0]!['input']!.data).not.toEqual(c[0]!['input']!.data);
    expect(a[0]!['input']!.data).not.toEqual(a[1]!['input']!.data);
  });

  it('sizes dynamic dims from dims by name, else 1, and draws floats around N(0, 1)', () => {
    const [sample] = generateCalibrationInputs(buildCnn(), { count: 1, seed: 1, dims: { N: 8 } });
    const input = sample!['input']!;
    expect(input.datatype).toBe('FP32');
    expect(input.shape).toEqual([8, 3, 32, 32]);
    const data = input.data as Float32Array;
    const mean = data.reduce((s, x) => s + x, 0) / data.length;
    const variance = data.reduce((s, x) => s + (x - mean) ** 2, 0) / data.length;
    expect(Math.abs(mean)).toBeLessThan(0.05);
    expect(Math.abs(variance - 1)).toBeLessThan(0.05);
    expect(generateCalibrationInputs(buildCnn(), { count: 1, seed: 1 })[0]!['input']!.shape).toEqual([1, 3, 32, 32]);
  });

  it('feeds recurrent state zeros, and the samples run in onnxruntime', async () => {
    const model = buildLstm();
    const samples = generateCalibrationInputs(model, { count: 2, seed: 3, dims: { T: 4, N: 2 } });
    const s = samples[0]!;
    expect(Object.keys(s)).toEqual([LSTM_NAMES.input, LSTM_NAMES.h, LSTM_NAMES.c]);
    expect(s[LSTM_NAMES.input]!.shape).toEqual([4, 2, 4]);
    expect([...(s[LSTM_NAMES.h]!.data as Float32Array)].every((x) => x === 0)).toBe(true);
    expect([...(s[LSTM_NAMES.c]!.data as Float32Array)].every((x) => x === 0)).toBe(true);
    expect([...(s[LSTM_NAMES.input]!.data as Float32Array)].some((x) => x !== 0)).toBe(true);
    const explicit = generateCalibrationInputs(model, { count: 1, seed: 3, stateInputs: [] })[0]!;
    expect([...(explicit[LSTM_NAMES.h]!.data as Float32Array)].some((x) => x !== 0)).toBe(true);
    const session = await ort.InferenceSession.create(model);
    try {
      const out = await session.run(Object.fromEntries(Object.entries(s).map(([k, t]) => [k, tensorToOrt(t)])));
      expect(out[LSTM_NAMES.output]!.dims).toEqual([4, 1, 2, 8]);
    } finally {
      await session.release();
    }
  });

  it('gives scalars, integers and booleans values of their type', () => {
    const [sample] = generateCalibrationInputs(buildScalarModel(), { count: 1, seed: 2, dims: { N: 5 } });
    expect(sample!['s']!.shape).toEqual([]);
    expect(sample!['x']!.shape).toEqual([5]);
    // x is shaped like the output y, but a model whose every input looks like an output has no state.
    expect([...(sample!['x']!.data as Float32Array)].some((v) => v !== 0)).toBe(true);
    const typed = encodeModel({
      graph: {
        name: 'typed',
        nodes: [
          { opType: 'Identity', inputs: ['ids'], outputs: ['ids_out'] },
          { opType: 'Identity', inputs: ['mask'], outputs: ['mask_out'] },
        ],
        initializers: [],
        inputs: [
          { name: 'ids', dataType: OnnxDataType.INT64, shape: ['N', 16] },
          { name: 'mask', dataType: OnnxDataType.BOOL, shape: ['N', 16] },
        ],
        outputs: [
          { name: 'ids_out', dataType: OnnxDataType.INT64, shape: ['N', 16] },
          { name: 'mask_out', dataType: OnnxDataType.BOOL, shape: ['N', 16] },
        ],
      },
    });
    const [t] = generateCalibrationInputs(typed, { count: 1, seed: 4, stateInputs: [] });
    const ids = [...(t!['ids']!.data as BigInt64Array)];
    expect(ids.every((v) => v >= 0n && v < 10n)).toBe(true);
    expect(new Set(ids).size).toBeGreaterThan(1);
    const mask = [...(t!['mask']!.data as Uint8Array)];
    expect(mask.every((v) => v === 0 || v === 1)).toBe(true);
    expect(mask).toContain(0);
    expect(mask).toContain(1);
  });

  it('refuses a count or a dim that is not a positive integer', () => {
    expect(() => generateCalibrationInputs(buildCnn(), { count: 0, seed: 1 })).toThrow(CompressError);
    expect(() => generateCalibrationInputs(buildCnn(), { count: 1, seed: 1, dims: { N: 0 } })).toThrow(
      /dim N must be a positive integer, got 0/,
    );
  });
});
