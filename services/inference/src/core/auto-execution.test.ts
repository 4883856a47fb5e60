import { readFile } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';
import { afterEach, describe, expect, it } from 'vitest';
import { buildMlp } from '@quanta/onnx';
import {
  inputs,
  openedPools,
  ppocrClassifierPath,
  randomFloats,
  runDirect,
  servingConfig,
  values,
} from '../testing/core.js';
import { sessionWorkerCount } from './worker-instance.js';

// execution: 'auto': where the sessions run is decided at load, by timing onnxruntime against the
// hand-off to a worker thread.

const pools = openedPools();
afterEach(() => pools.releaseAll());

describe("execution 'auto'", () => {
  it(
    'runs a model of a few microseconds per row on the event loop, ' +
      'with the answers onnxruntime gives, and leaves no worker behind',
    async () => {
      const bytes = buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 3, seed: 21 });
      const workersBefore = sessionWorkerCount();
      const manager = pools.manager();
      const model = await manager.load(
        't',
        'mlp',
        '1',
        bytes,
        servingConfig({ execution: 'auto', threadsPerInstance: 1, maxBatchSize: 8, maxQueueDelayUs: 200 }),
      );
      // The MLP runs in a few µs; the round trip to a worker costs tens of µs at least.
      expect(model.execution).toBe('inline');
      expect(sessionWorkerCount()).toBe(workersBefore);
      await manager.activate('t', 'mlp', '1');
      const requests = Array.from({ length: 6 }, (_, i) => inputs({ input: randomFloats([1 + (i % 2), 4], 60 + i) }));
      const results = await Promise.all(
        requests.map((request, i) => manager.get('t', 'mlp').infer({ id: `${i}`, inputs: request })),
      );
      for (const [i, request] of requests.entries()) {
        expect(values(results[i]?.outputs[0])).toEqual(values((await runDirect(bytes, request)).get('output')));
      }
    },
  );

  it(
    'serves a model with dynamic dims after the batch dim from workers and an inline lane, ' +
      'with the answers onnxruntime gives alone and under load',
    async () => {
      // The PP-OCR classifier takes [-1, 3, -1, -1]: a request's H and W decide how long it runs, so
      // one timed run says little; workers take the load, the lane only runs expected-short ones.
      const bytes = await readFile(ppocrClassifierPath());
      const workersBefore = sessionWorkerCount();
      const manager = pools.manager();
      const model = await manager.load(
        't',
        'ocr',
        '1',
        bytes,
        servingConfig({ execution: 'auto', threadsPerInstance: 1, maxBatchSize: 4, maxQueueDelayUs: 500 }),
      );
      expect(model.execution).toBe('hybrid');
      expect(sessionWorkerCount()).toBe(workersBefore + 1);
      await manager.activate('t', 'ocr', '1');
      const lone = inputs({ x: randomFloats([1, 3, 48, 192], 9) });
      for (let i = 0; i < 3; i++) {
        const result = await manager.get('t', 'ocr').infer({ id: `lone-${i}`, inputs: lone });
        expect(values(result.outputs[0])).toEqual(values((await runDirect(bytes, lone)).values().next().value));
      }
      const burst = Array.from({ length: 8 }, (_, i) => inputs({ x: randomFloats([1, 3, 48, 192], 30 + i) }));
      const results = await Promise.all(
        burst.map((request, i) => manager.get('t', 'ocr').infer({ id: `burst-${i}`, inputs: request })),
      );
      for (const [i, request] of burst.entries()) {
        expect(values(results[i]?.outputs[0])).toEqual(values((await runDirect(bytes, request)).values().next().value));
      }
    },
  );

  it('reports the configured execution as it is', async () => {
    const bytes = buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 3, seed: 21 });
    const manager = pools.manager();
    expect((await manager.load('t', 'mlp', '1', bytes, servingConfig({ execution: 'worker' }))).execution).toBe(
      'worker',
    );
    expect((await manager.load('t', 'mlp', '2', bytes, servingConfig({ execution: 'inline' }))).execution).toBe(
      'inline',
    );
    expect((await manager.load('t', 'mlp', '3', bytes, servingConfig({}))).execution).toBe('worker');
  });

  describe('the inline lane of a worker pool', () => {
    const fetches = ['output'];
    const feed = (rows: number, seed: number): Record<string, ort.Tensor> => {
      const tensor = randomFloats([rows, 4], seed);
      return { input: new ort.Tensor('float32', tensor.data as Float32Array, [rows, 4]) };
    };

    it('takes a run marked alone on an idle pool, never one beside another, and answers the same', async () => {
      const bytes = buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 3, seed: 22 });
      const pool = await pools.open(bytes, { execution: 'worker' });
      await pool.addInlineLane(1);
      const direct = async (rows: number, seed: number): Promise<number[]> =>
        values((await runDirect(bytes, inputs({ input: randomFloats([rows, 4], seed) }))).get('output'));
      const asArray = (result: ort.InferenceSession.ReturnType): number[] =>
        Array.from(result['output']?.data as Float32Array);

      expect(asArray(await pool.run(feed(2, 1), fetches, { alone: true }))).toEqual(await direct(2, 1));
      expect(pool.laneRuns()).toBe(1);
      // Not marked alone: a worker runs it.
      expect(asArray(await pool.run(feed(2, 2), fetches))).toEqual(await direct(2, 2));
      expect(pool.laneRuns()).toBe(1);
      // Two at once: the first may take the lane, the second sees it busy and goes to the worker.
      const both = await Promise.all([
        pool.run(feed(1, 3), fetches, { alone: true }),
        pool.run(feed(1, 4), fetches, { alone: true }),
      ]);
      expect(both.map(asArray)).toEqual([await direct(1, 3), await direct(1, 4)]);
      expect(pool.laneRuns()).toBe(2);
    });

    it('leaves a run expected to be long to the workers, and learns the cost from timed runs', async () => {
      const bytes = buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 3, seed: 23 });
      const pool = await pools.open(bytes, { execution: 'worker' });
      // A first estimate that makes 4 elements cost 4 ms: over the lane's bound.
      await pool.addInlineLane(1_000_000);
      await pool.run(feed(1, 5), fetches, { alone: true });
      expect(pool.laneRuns()).toBe(0);
      // That worker run, timed, replaces the first estimate (made on warm-up sizes): microseconds per
      // element for a tiny MLP, so the next run takes the lane.
      await pool.run(feed(1, 6), fetches, { alone: true });
      expect(pool.laneRuns()).toBe(1);
    });
  });
});
