import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildCnn } from './build-cnn.js';
import { buildLstm } from './build-lstm.js';
import { buildMlp } from './build-mlp.js';
import { buildScalarModel } from './build-scalar.js';

/** The demo's models, by file name, built with their default (seed 1) weights. */
export function demoModels(): Record<string, Uint8Array> {
  return {
    'mlp.onnx': buildMlp(),
    'cnn.onnx': buildCnn(),
    'cnn-softmax.onnx': buildCnn({ softmax: true }),
    'lstm.onnx': buildLstm(),
    'scalar.onnx': buildScalarModel(),
  };
}

/** Writes the demo models into `dir` (created if missing); returns the paths written. */
export async function writeDemoModels(dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const paths: string[] = [];
  for (const [name, bytes] of Object.entries(demoModels())) {
    const path = join(dir, name);
    await writeFile(path, bytes);
    paths.push(path);
  }
  return paths;
}
