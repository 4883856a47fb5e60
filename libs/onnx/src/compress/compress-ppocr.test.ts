import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { describe, expect, it } from 'vitest';
import { inspectOnnx } from '../inspect.js';
import { ppOcrModelPaths } from '../testing/fixtures.js';
import { generateCalibrationInputs } from './calibration.js';
import { compressModel, type CompressMethod } from './compress-model.js';
import { checkModels, cosine, runSamples } from '../testing/compress.js';

// The PP-OCR detector (opset 11, ConvTranspose) and recognizer (opset 9, MatMul attention, 10.8 MB)
// through the storage methods: real exports, larger than the builders' models.

const DIMS: Readonly<Record<string, Readonly<Record<string, number>>>> = {
  'ch_PP-OCRv4_det_infer.onnx': {
    'p2o.DynamicDimension.0': 1,
    'p2o.DynamicDimension.1': 64,
    'p2o.DynamicDimension.2': 64,
  },
  'ch_PP-OCRv4_rec_infer.onnx': { 'p2o.DynamicDimension.0': 1, 'p2o.DynamicDimension.1': 96 },
};

const LIMITS: Readonly<Record<string, { ratio: number; cosine: number }>> = {
  // The recognizer's 6625-way softmax on noise input moves more under int8 weights than the
  // classifiers' outputs do, so its cosine floor is lower (figure in libs/onnx/README.md).
  'int8-weights': { ratio: 0.3, cosine: 0.98 },
  fp16: { ratio: 0.52, cosine: 0.999 },
};

/** Outputs too close to zero everywhere for a cosine to mean anything (the detector on noise). */
const FLAT = 1e-4;

describe.each(ppOcrModelPaths().filter((p) => DIMS[basename(p)] !== undefined))('%s', (path) => {
  it.each(['int8-weights', 'fp16'] as CompressMethod[])(
    '%s passes the checker and answers close to the parent',
    async (method) => {
      const parent = new Uint8Array(readFileSync(path));
      const r = compressModel(parent, { method });
      expect(checkModels([r.model])).toEqual(['ok']);
      expect(inspectOnnx(r.model).inputs).toEqual(inspectOnnx(parent).inputs);
      expect(r.sizeAfter / r.sizeBefore).toBeLessThanOrEqual(LIMITS[method]!.ratio);
      const samples = generateCalibrationInputs(parent, { count: 1, seed: 3, dims: DIMS[basename(path)]! });
      const [want, got] = [await runSamples(parent, samples), await runSamples(r.model, samples)];
      expect(got.signature).toEqual(want.signature);
      for (const [name, values] of Object.entries(want.outputs)) {
        const actual = got.outputs[name]!;
        if (Math.max(...values.map(Math.abs)) < FLAT) {
          expect(Math.max(...actual.map((v, i) => Math.abs(v - values[i]!)))).toBeLessThan(FLAT);
        } else {
          expect(cosine(actual, values)).toBeGreaterThanOrEqual(LIMITS[method]!.cosine);
        }
      }
    },
    60_000,
  );
});
