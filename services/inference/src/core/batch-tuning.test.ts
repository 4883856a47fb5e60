import { afterEach, describe, expect, it } from 'vitest';
import { buildCnn, buildMlp } from '@quanta/onnx';
import { candidateSizes, preferredOf, tuneBatchSize, type BatchTiming } from './batch-tuning.js';
import type { InstancePool } from './instance-pool.js';
import { createModelManager } from './model-manager.js';
import { signatureOf } from './signature.js';
import { inputs, openedPools, randomFloats, runDirect, servingConfig, values } from './test-helpers.js';

const pools = openedPools();
afterEach(() => pools.releaseAll());

const timing = (batchSize: number, rowsPerSecond: number): BatchTiming => ({ batchSize, rowsPerSecond, bestRunNs: (batchSize * 1e9) / rowsPerSecond });

describe('batch tuning: the sizes tried and the size chosen', () => {
  it('tries powers of two below the max batch size, and the max', () => {
    expect(candidateSizes(64)).toEqual([1, 2, 4, 8, 16, 32, 64]);
    expect(candidateSizes(6)).toEqual([1, 2, 4, 6]);
    expect(candidateSizes(2)).toEqual([1, 2]);
    expect(candidateSizes(1)).toEqual([1]);
  });

  it('prefers the smallest size within the tolerance of the most rows per second', () => {
    // The PP-OCR classifier's shape: fastest per row at 4, slower beyond.
    const ocr = [timing(1, 1086), timing(2, 1169), timing(4, 1259), timing(8, 1029), timing(64, 728)];
    expect(preferredOf(ocr)).toBe(4);
    // The CNN's shape: rows/s keeps rising and flattens; 8 is within 5% of 32's best.
    const cnn = [timing(1, 17_500), timing(2, 22_964), timing(4, 24_732), timing(8, 27_300), timing(16, 28_206), timing(32, 28_606), timing(64, 28_367)];
    expect(preferredOf(cnn)).toBe(8);
    expect(preferredOf(cnn, 0)).toBe(32);
    // Order of the timings does not matter.
    expect(preferredOf([...ocr].reverse())).toBe(4);
  });
});

/** `pool` whose runs take `costMs(rows)` longer than onnxruntime does (a model slow per row at large batches). */
function slowedPool(pool: InstancePool, costMs: (rows: number) => number): InstancePool {
  return {
    get metadata() {
      return pool.metadata;
    },
    size: pool.size,
    async run(feeds, fetches, options) {
      const rows = Number(Object.values(feeds)[0]?.dims[0] ?? 1);
      await new Promise((resolve) => setTimeout(resolve, costMs(rows)));
      return pool.run(feeds, fetches, options);
    },
    release: () => pool.release(),
    inputBuffers: () => pool.inputBuffers(),
  };
}

describe('batch tuning: timing runs through the instances', () => {
  it('times every size through a real pool and gives its input buffers back', async () => {
    const bytes = buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 3, seed: 5 });
    const pool = await pools.open(bytes, { execution: 'worker', maxBatchSize: 8 });
    const { signature } = signatureOf(pool.metadata);
    const tuning = await tuneBatchSize(pool, signature, { maxBatchSize: 8, minMsPerSize: 2 });
    if (!tuning.tuned) throw new Error(`not tuned: ${tuning.reason}`);
    expect(tuning.timings.map((t) => t.batchSize)).toEqual([1, 2, 4, 8]);
    for (const t of tuning.timings) {
      expect(t.bestRunNs).toBeGreaterThan(0);
      expect(t.rowsPerSecond).toBeCloseTo((t.batchSize * 1e9) / t.bestRunNs, 6);
    }
    expect([1, 2, 4, 8]).toContain(tuning.preferred);
    expect(tuning.preferred).toBe(preferredOf(tuning.timings));
    // Every staged input buffer came back to the instance.
    expect(pool.inputBuffers().free).toBe(pool.inputBuffers().allocated);
  });

  it('prefers the batch size that serves the most rows per second, not the largest', async () => {
    const bytes = buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 3, seed: 5 });
    const real = await pools.open(bytes, { execution: 'inline', maxBatchSize: 16 });
    // 2 ms per run plus 0.5 ms per row up to 4 rows, 3 ms per row beyond: 4 rows serve the most per second.
    const pool = slowedPool(real, (rows) => 2 + (rows <= 4 ? 0.5 * rows : 3 * rows));
    const { signature } = signatureOf(pool.metadata);
    const tuning = await tuneBatchSize(pool, signature, { maxBatchSize: 16, minRuns: 2, minMsPerSize: 0 });
    if (!tuning.tuned) throw new Error(`not tuned: ${tuning.reason}`);
    expect(tuning.timings.map((t) => t.batchSize)).toEqual([1, 2, 4, 8, 16]);
    expect(tuning.preferred).toBe(4);
  });

  it('stops trying larger sizes once its time budget is spent', async () => {
    const bytes = buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 3, seed: 5 });
    const real = await pools.open(bytes, { execution: 'inline', maxBatchSize: 64 });
    const pool = slowedPool(real, (rows) => 10 * rows);
    const { signature } = signatureOf(pool.metadata);
    const tuning = await tuneBatchSize(pool, signature, { maxBatchSize: 64, minRuns: 1, minMsPerSize: 0, budgetMs: 50 });
    if (!tuning.tuned) throw new Error(`not tuned: ${tuning.reason}`);
    // 1, 2 and 4 rows take 10 + 10, 20 + 20 and 40 + 40 ms (untimed + timed run): the budget ends the sweep there or before.
    expect(tuning.timings.length).toBeLessThan(7);
    expect(tuning.timings.map((t) => t.batchSize)).toEqual(candidateSizes(64).slice(0, tuning.timings.length));
  });

  it('does not tune a model whose requests it cannot stand for with one shape', async () => {
    const bytes = buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 3, seed: 5 });
    const pool = await pools.open(bytes, { execution: 'inline', maxBatchSize: 8 });
    const { signature } = signatureOf(pool.metadata);
    const dynamic = { ...signature, inputs: signature.inputs.map((spec) => ({ ...spec, shape: [-1, -1] })) };
    expect(await tuneBatchSize(pool, dynamic, { maxBatchSize: 8 })).toEqual({
      tuned: false,
      reason: 'input "input" has a dynamic dim after the batch dim ([-1,-1]), so one size cannot stand for the requests',
    });
    expect(await tuneBatchSize(pool, signature, { maxBatchSize: 1 })).toEqual({ tuned: false, reason: 'the model is not batched' });
  });
});

describe.each(['worker', 'inline'] as const)('a model loaded with tunePreferredBatchSize, %s sessions', (execution) => {
  it('serves with the measured preferred size, and its answers equal onnxruntime called directly', async () => {
    const bytes = buildCnn({ seed: 9 });
    const manager = createModelManager();
    try {
      const model = await manager.load('t1', 'cnn', '1', bytes, servingConfig({ execution, threadsPerInstance: 1, maxBatchSize: 8, maxQueueDelayUs: 500, tunePreferredBatchSize: true }));
      expect(model.preferredBatchSizes).toHaveLength(1);
      expect([1, 2, 4, 8]).toContain(model.preferredBatchSizes[0]);
      await manager.activate('t1', 'cnn', '1');
      const requests = Array.from({ length: 12 }, (_, i) => inputs({ input: randomFloats([1, 3, 32, 32], 40 + i) }));
      const results = await Promise.all(requests.map((request, i) => manager.get('t1', 'cnn').infer({ id: `r${i}`, inputs: request })));
      for (const [i, request] of requests.entries()) {
        expect(values(results[i]?.outputs[0])).toEqual(values((await runDirect(bytes, request)).get('output')));
      }
      // Explicit sizes are used as given, and nothing is measured.
      const pinned = await manager.load('t1', 'cnn', '2', bytes, servingConfig({ execution, maxBatchSize: 8, preferredBatchSizes: [2, 4], tunePreferredBatchSize: true }));
      expect(pinned.preferredBatchSizes).toEqual([2, 4]);
      // Without batching there is nothing to prefer.
      const single = await manager.load('t1', 'cnn', '3', bytes, servingConfig({ execution, maxBatchSize: 0, tunePreferredBatchSize: true }));
      expect(single.preferredBatchSizes).toEqual([]);
    } finally {
      await manager.close();
    }
  });
});
