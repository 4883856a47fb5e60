import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { OnnxDataType } from './data-types.js';
import { demoModels, writeDemoModels } from './demo-models.js';
import { inspectOnnx, inspectOnnxFile } from './inspect.js';
import { encodeModel, floatTensor } from './model-spec.js';
import { tempDir } from './testing/fixtures.js';

const tmp = tempDir();
afterAll(() => tmp.remove());

describe('demo models on disk', () => {
  it('writes every demo model; each loads in onnxruntime and inspects the same from file and memory', async () => {
    const paths = await writeDemoModels(join(tmp.dir, 'models'));
    expect(paths.map((p) => p.split('/').pop())).toEqual(Object.keys(demoModels()));
    for (const path of paths) {
      const info = await inspectOnnxFile(path);
      expect(info).toEqual(inspectOnnx(readFileSync(path)));
      const session = await ort.InferenceSession.create(path);
      expect(info.inputs.map((v) => v.name)).toEqual(session.inputNames);
      expect(info.outputs.map((v) => v.name)).toEqual(session.outputNames);
      await session.release();
    }
  });
});

describe('external data', () => {
  it('flags an initializer stored beside the model, which onnxruntime loads from there', async () => {
    const dir = join(tmp.dir, 'external');
    await writeDemoModels(dir); // creates the folder
    const weights = floatTensor('w', [4], [0.5, -1, 2, 8]);
    writeFileSync(join(dir, 'weights.bin'), weights.raw as Uint8Array);
    const bytes = encodeModel({
      graph: {
        name: 'external',
        nodes: [{ opType: 'Add', inputs: ['x', 'w'], outputs: ['y'] }],
        initializers: [
          {
            name: 'w',
            dataType: OnnxDataType.FLOAT,
            dims: [4],
            external: { location: 'weights.bin', offset: 0, length: 16 },
          },
        ],
        inputs: [{ name: 'x', dataType: OnnxDataType.FLOAT, shape: [4] }],
        outputs: [{ name: 'y', dataType: OnnxDataType.FLOAT, shape: [4] }],
      },
    });
    const path = join(dir, 'external.onnx');
    writeFileSync(path, bytes);
    const info = await inspectOnnxFile(path);
    expect(info.hasExternalData).toBe(true);
    expect(info.initializers[0]).toMatchObject({
      name: 'w',
      external: true,
      location: 'weights.bin',
      byteSize: 16,
      elementCount: 4,
    });
    const session = await ort.InferenceSession.create(path);
    try {
      const out = await session.run({ x: new ort.Tensor('float32', Float32Array.from([1, 1, 1, 1]), [4]) });
      expect(Array.from(out.y!.data as Float32Array)).toEqual([1.5, 0, 3, 9]);
    } finally {
      await session.release();
    }
  });
});
