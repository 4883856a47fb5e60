import { readFile } from 'node:fs/promises';
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

  it('keeps a model with dynamic dims after the batch dim in a worker, whatever one timed run says', async () => {
    // The PP-OCR classifier takes [-1, 3, -1, -1]: a request's H and W decide how long it runs.
    const bytes = await readFile(ppocrClassifierPath());
    const manager = pools.manager();
    const model = await manager.load(
      't',
      'ocr',
      '1',
      bytes,
      servingConfig({ execution: 'auto', threadsPerInstance: 1 }),
    );
    expect(model.execution).toBe('worker');
    await manager.activate('t', 'ocr', '1');
    const request = inputs({ x: randomFloats([1, 3, 48, 192], 9) });
    const result = await manager.get('t', 'ocr').infer({ id: 'x', inputs: request });
    expect(values(result.outputs[0])).toEqual(values((await runDirect(bytes, request)).values().next().value));
  });

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
});
