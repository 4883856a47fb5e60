import { afterEach, describe, expect, it } from 'vitest';
import { buildCnn, buildMlp } from '@quanta/onnx';
import { candidateSizes, createBatchTuner, preferredOf, type BatchTiming } from './batch-tuning.js';
import { createDynamicBatcher } from './dynamic-batcher.js';
import { createModelManager } from './model-manager.js';
import { signatureOf } from './signature.js';
import { createStatsRecorder } from './stats.js';
import {
  gatedPool,
  inputs,
  manualClock,
  manualTimers,
  nextTurn,
  openedPools,
  randomFloats,
  runDirect,
  servingConfig,
  values,
} from '../testing/core.js';

const pools = openedPools();
afterEach(() => pools.releaseAll());

const timing = (batchSize: number, rowsPerSecond: number): BatchTiming => ({
  batchSize,
  rowsPerSecond,
  bestRunNs: (batchSize * 1e9) / rowsPerSecond,
});

describe('batch tuning: the sizes tried and the size chosen', () => {
  it('tries powers of two below the max batch size, and the max', () => {
    expect(candidateSizes(64)).toEqual([1, 2, 4, 8, 16, 32, 64]);
    expect(candidateSizes(6)).toEqual([1, 2, 4, 6]);
    expect(candidateSizes(2)).toEqual([1, 2]);
    expect(candidateSizes(1)).toEqual([1]);
  });

  it('prefers the largest size within the tolerance of the most rows per second', () => {
    // The PP-OCR classifier's shape: fastest per row at 4, slower beyond.
    const ocr = [timing(1, 1086), timing(2, 1169), timing(4, 1259), timing(8, 1029), timing(64, 728)];
    expect(preferredOf(ocr)).toBe(4);
    // The CNN's shape: rows/s rises and flattens; 64 is within 5% of 32's best, and per-batch
    // costs outside onnxruntime are spread over more rows.
    const cnn = [
      timing(1, 17_500),
      timing(2, 22_964),
      timing(4, 24_732),
      timing(8, 27_300),
      timing(16, 28_206),
      timing(32, 28_606),
      timing(64, 28_367),
    ];
    expect(preferredOf(cnn)).toBe(64);
    expect(preferredOf(cnn, 0)).toBe(32);
    expect(preferredOf(cnn.slice(0, 5))).toBe(16);
    // Order of the timings does not matter.
    expect(preferredOf([...ocr].reverse())).toBe(4);
  });
});

function fakeClock(): { nowNs: () => bigint; advanceMs(ms: number): void } {
  let now = 0n;
  return { nowNs: () => now, advanceMs: (ms) => (now += BigInt(ms * 1e6)) };
}

describe('batch tuner: exploring and choosing', () => {
  it('times each size in turn, then prefers the one with the most rows per second', () => {
    const clock = fakeClock();
    const choices: [number | undefined, BatchTiming[]][] = [];
    const tuner = createBatchTuner({
      maxRows: 8,
      nowNs: clock.nowNs,
      saturation: 0,
      samplesPerSize: 2,
      minMsPerSize: 0,
      onChoice: (size, timings) => choices.push([size, [...timings]]),
    });
    // 1 ms per run up to 2 rows, then 1 ms per row: 2 rows serve the most per second.
    const runNs = (rows: number): bigint => BigInt(Math.max(1, rows <= 2 ? 1 : rows) * 1e6);
    const seen: number[] = [];
    for (let i = 0; i < 8; i++) {
      const size = tuner.target() ?? 0;
      seen.push(size);
      // The second run of each size is slower (noise): the fastest run counts.
      tuner.record(size, runNs(size) * (i % 2 === 0 ? 1n : 3n));
    }
    expect(seen).toEqual([1, 1, 2, 2, 4, 4, 8, 8]);
    expect(tuner.chosen()).toBe(2);
    expect(tuner.target()).toBe(2);
    expect(choices).toHaveLength(1);
    expect(choices[0]?.[1].map((t) => [t.batchSize, Math.round(t.rowsPerSecond)])).toEqual([
      [1, 1000],
      [2, 2000],
      [4, 1000],
      [8, 1000],
    ]);
  });

  it('times a size until it has both enough runs and enough onnxruntime time', () => {
    const clock = fakeClock();
    const tuner = createBatchTuner({
      maxRows: 2,
      nowNs: clock.nowNs,
      saturation: 0,
      samplesPerSize: 2,
      minMsPerSize: 5,
    });
    // 1 ms runs: two are enough runs but not enough time; the fifth reaches 5 ms.
    for (let i = 0; i < 4; i++) {
      tuner.record(1, 1_000_000n);
      expect(tuner.target()).toBe(1);
    }
    tuner.record(1, 1_000_000n);
    expect(tuner.target()).toBe(2);
    // 5 ms runs: the time is there after one, the count after two.
    tuner.record(2, 5_000_000n);
    expect(tuner.target()).toBe(2);
    tuner.record(2, 5_000_000n);
    expect(tuner.chosen()).toBe(1);
  });

  it('skips a size the queue keeps falling short of, and ignores runs larger than the size timed', () => {
    const clock = fakeClock();
    const tuner = createBatchTuner({
      maxRows: 8,
      nowNs: clock.nowNs,
      saturation: 0,
      samplesPerSize: 1,
      minMsPerSize: 0,
      missesPerSize: 3,
    });
    tuner.record(1, 1_000_000n);
    tuner.record(2, 4_000_000n);
    expect(tuner.target()).toBe(4);
    // A 6-row request alone tells nothing about 4 rows.
    tuner.record(6, 1_000_000n);
    expect(tuner.target()).toBe(4);
    // Three batches of 3 rows in a row: 4 is skipped, and so is 8 after three more.
    for (let i = 0; i < 3; i++) tuner.record(3, 1_000_000n);
    expect(tuner.target()).toBe(8);
    for (let i = 0; i < 3; i++) tuner.record(3, 1_000_000n);
    // 1 row ran faster per row than 2: 1 is preferred.
    expect(tuner.chosen()).toBe(1);
  });

  it('prefers nothing while the fastest size is the largest the queue reached, and times again soon', () => {
    const clock = fakeClock();
    const choices: (number | undefined)[] = [];
    const tuner = createBatchTuner({
      maxRows: 8,
      nowNs: clock.nowNs,
      saturation: 0,
      samplesPerSize: 1,
      minMsPerSize: 0,
      missesPerSize: 2,
      retryMs: 100,
      onChoice: (size) => choices.push(size),
    });
    // Concurrency 1: every batch has one row; 2, 4 and 8 are never reached.
    tuner.record(1, 1_000_000n);
    for (let i = 0; i < 6; i++) tuner.record(1, 1_000_000n);
    expect(choices).toEqual([undefined]);
    expect(tuner.chosen()).toBeUndefined();
    expect(tuner.target()).toBeUndefined();
    clock.advanceMs(100);
    // The load grew: now every size is reached, and 4 rows run fastest per row.
    const runMs: Record<number, number> = { 1: 1, 2: 1, 4: 1, 8: 4 };
    for (const size of [1, 2, 4, 8]) {
      expect(tuner.target()).toBe(size);
      tuner.record(size, BigInt((runMs[size] ?? 0) * 1e6));
    }
    expect(choices).toEqual([undefined, 4]);
    expect(tuner.target()).toBe(4);
  });

  it('measures again once the choice is reexploreMs old, and keeps the old choice when nothing could be timed', () => {
    const clock = fakeClock();
    const tuner = createBatchTuner({
      maxRows: 2,
      nowNs: clock.nowNs,
      saturation: 0,
      samplesPerSize: 1,
      minMsPerSize: 0,
      missesPerSize: 1,
      reexploreMs: 1000,
    });
    tuner.record(1, 1_000_000n);
    tuner.record(2, 4_000_000n);
    expect(tuner.chosen()).toBe(1);
    clock.advanceMs(999);
    expect(tuner.target()).toBe(1);
    clock.advanceMs(1);
    // Exploring again, from 1; now 2 rows are the faster choice.
    expect(tuner.target()).toBe(1);
    tuner.record(1, 1_000_000n);
    expect(tuner.target()).toBe(2);
    tuner.record(2, 1_000_000n);
    expect(tuner.chosen()).toBe(2);
    clock.advanceMs(1000);
    // Zero-row batches never happen, so use misses: both sizes are skipped, the choice stays.
    expect(tuner.target()).toBe(1);
    tuner.record(0, 1n);
    tuner.record(0, 1n);
    expect(tuner.chosen()).toBe(2);
  });
});

describe('batch tuner: only while onnxruntime is the bottleneck', () => {
  it('prefers nothing while the instances idle between batches, and starts timing once they are busy', () => {
    const clock = fakeClock();
    const tuner = createBatchTuner({
      maxRows: 4,
      nowNs: clock.nowNs,
      instances: 2,
      windowMs: 100,
      samplesPerSize: 1,
      minMsPerSize: 0,
    });
    const run = (rows: number, busyMs: number, everyMs: number): void => {
      clock.advanceMs(everyMs);
      tuner.record(rows, BigInt(busyMs * 1e6));
    };
    // A 5 ms batch every 10 ms on two instances, for 300 ms: busy 25%, the event loop is the bottleneck.
    for (let i = 0; i < 30; i++) run(3, 5, 10);
    expect(tuner.target()).toBeUndefined();
    // A 19 ms batch every 10 ms over two instances: 95%; after a full window, timing starts from 1 row.
    for (let i = 0; i < 21; i++) run(3, 19, 10);
    expect(tuner.target()).toBe(1);
    tuner.record(1, 1_000_000n);
    expect(tuner.target()).toBe(2);
    // No batch for a while (more than four windows): the backlog is gone, nothing is preferred.
    clock.advanceMs(401);
    expect(tuner.target()).toBeUndefined();
  });
});

describe('batch tuner: hysteresis', () => {
  it(
    'keeps its choice through a lull, drops it after four calm windows, ' + 'and takes it back up without timing again',
    () => {
      const clock = fakeClock();
      const tuner = createBatchTuner({
        maxRows: 4,
        nowNs: clock.nowNs,
        windowMs: 100,
        samplesPerSize: 1,
        minMsPerSize: 0,
      });
      // One batch every 10 ms, each `busyMs` of onnxruntime on the one instance.
      const windowOf = (rows: number, busyMs: number): void => {
        for (let i = 0; i < 10; i++) {
          clock.advanceMs(10);
          tuner.record(rows, BigInt(busyMs * 1e6));
        }
      };
      windowOf(4, 9.5);
      windowOf(4, 9.5);
      // Saturated: 1, 2 and 4 rows are timed; 4 rows in the same time as 1 is the most per second.
      for (const [rows, ms] of [
        [1, 4],
        [2, 4],
        [4, 4],
      ] as const) {
        expect(tuner.target()).toBe(rows);
        clock.advanceMs(1);
        tuner.record(rows, BigInt(ms * 1e6));
      }
      expect(tuner.target()).toBe(4);
      // A window at 60% (between two thirds of 75% and 75%) and then one at 10%: still preferred.
      windowOf(4, 6);
      expect(tuner.target()).toBe(4);
      windowOf(4, 1);
      expect(tuner.target()).toBe(4);
      // Four calm windows in a row (a window closes with the first batch after it): the event loop
      // is the bottleneck now, nothing is preferred.
      for (let i = 0; i < 3; i++) windowOf(4, 1);
      expect(tuner.target()).toBe(4);
      clock.advanceMs(10);
      tuner.record(4, 1_000_000n);
      expect(tuner.target()).toBeUndefined();
      // A backlog again, well within a minute of the choice: 4 applies at once, nothing is timed again.
      windowOf(4, 9.5);
      windowOf(4, 9.5);
      expect(tuner.target()).toBe(4);
      expect(tuner.chosen()).toBe(4);
    },
  );
});

describe('dynamic batcher with tunePreferredBatchSize', () => {
  const bytes = buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 3, seed: 5 });

  it('explores batch sizes on live requests, then serves with the fastest per row, with exact outputs', async () => {
    const real = await pools.open(bytes, { execution: 'inline' });
    const config = servingConfig({
      maxBatchSize: 8,
      maxQueueDelayUs: 1000,
      threadsPerInstance: 1,
      tunePreferredBatchSize: true,
    });
    const { pool, runs } = gatedPool(real);
    const timers = manualTimers();
    const { signature } = signatureOf(pool.metadata);
    const batcher = createDynamicBatcher({
      model: 'mlp',
      signature,
      config,
      pool,
      stats: createStatsRecorder('mlp', '1'),
      clock: manualClock(),
      timers,
      batching: true,
      tuning: { samplesPerSize: 1, minMsPerSize: 0, saturation: 0 },
    });
    const requests = Array.from({ length: 30 }, (_, i) => inputs({ input: randomFloats([1, 4], 200 + i) }));
    const pending = requests.map((request) => batcher.submit({ inputs: request, fetches: ['output'] }));
    expect(batcher.preferred()).toEqual([]);
    // Each run "takes" 1 ms up to 2 rows and 1 ms per row beyond (the hand-driven clock moves while it is held).
    for (let k = 0; k < 12; k++) {
      for (let spin = 0; runs.length <= k && spin < 1000; spin++) await nextTurn();
      if (runs.length <= k)
        throw new Error(
          `run ${k} never came: ${JSON.stringify(runs.map((run) => run.rows))}, ` +
            `preferred ${JSON.stringify(batcher.preferred())}`,
        );
      const rows = runs[k]?.rows ?? 0;
      timers.advanceUs(rows <= 2 ? 1000 : 1000 * rows);
      runs[k]?.open();
    }
    const results = await Promise.all(pending);
    // 1, 2, 4 and 8 rows timed once each, then batches of 2; the last request alone (it has waited past its delay).
    expect(runs.map((run) => run.rows)).toEqual([1, 2, 4, 8, 2, 2, 2, 2, 2, 2, 2, 1]);
    expect(batcher.preferred()).toEqual([2]);
    for (const [i, request] of requests.entries()) {
      expect(values(results[i]?.outputs.get('output'))).toEqual(
        values((await runDirect(bytes, request)).get('output')),
      );
    }
  });

  it('uses configured sizes as given and measures nothing', async () => {
    const real = await pools.open(bytes, { execution: 'inline' });
    const config = servingConfig({
      maxBatchSize: 8,
      maxQueueDelayUs: 1000,
      preferredBatchSizes: [2, 4],
      tunePreferredBatchSize: true,
    });
    const { signature } = signatureOf(real.metadata);
    const batcher = createDynamicBatcher({
      model: 'mlp',
      signature,
      config,
      pool: real,
      stats: createStatsRecorder('mlp', '1'),
      clock: manualClock(),
      timers: manualTimers(),
      batching: true,
    });
    expect(batcher.preferred()).toEqual([2, 4]);
  });
});

describe.each(['worker', 'inline'] as const)('a model loaded with tunePreferredBatchSize, %s sessions', (execution) => {
  it('serves concurrent requests while it measures, with answers equal to onnxruntime called directly', async () => {
    const bytes = buildCnn({ seed: 9 });
    const manager = createModelManager();
    try {
      const model = await manager.load(
        't1',
        'cnn',
        '1',
        bytes,
        servingConfig({
          execution,
          threadsPerInstance: 1,
          maxBatchSize: 8,
          maxQueueDelayUs: 500,
          tunePreferredBatchSize: true,
        }),
      );
      // Nothing measured before any traffic.
      expect(model.preferredBatchSizes).toEqual([]);
      await manager.activate('t1', 'cnn', '1');
      for (let round = 0; round < 3; round++) {
        const requests = Array.from({ length: 24 }, (_, i) =>
          inputs({ input: randomFloats([1, 3, 32, 32], 40 + i + 100 * round) }),
        );
        const results = await Promise.all(
          requests.map((request, i) => manager.get('t1', 'cnn').infer({ id: `r${i}`, inputs: request })),
        );
        for (const [i, request] of requests.entries()) {
          expect(values(results[i]?.outputs[0])).toEqual(values((await runDirect(bytes, request)).get('output')));
        }
      }
      expect(model.preferredBatchSizes.every((size) => [1, 2, 4, 8].includes(size))).toBe(true);
      // Explicit sizes are used as given; without batching there is nothing to prefer.
      const pinned = await manager.load(
        't1',
        'cnn',
        '2',
        bytes,
        servingConfig({ execution, maxBatchSize: 8, preferredBatchSizes: [2, 4], tunePreferredBatchSize: true }),
      );
      expect(pinned.preferredBatchSizes).toEqual([2, 4]);
      const single = await manager.load(
        't1',
        'cnn',
        '3',
        bytes,
        servingConfig({ execution, maxBatchSize: 0, tunePreferredBatchSize: true }),
      );
      expect(single.preferredBatchSizes).toEqual([]);
    } finally {
      await manager.close();
    }
  });
});
