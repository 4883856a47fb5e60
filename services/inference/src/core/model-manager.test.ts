import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { buildCnn, buildLstm, buildMlp, LSTM_NAMES } from '@quanta/onnx';
import { createModelManager } from './model-manager.js';
import {
  inputs,
  ppocrClassifierPath,
  randomFloats,
  rejection,
  runDirect,
  servingConfig,
  values,
} from '../testing/core.js';
import { InferError, type InferObserver, type InferResult } from './types.js';

function thrown(fn: () => unknown): InferError {
  try {
    fn();
  } catch (error: unknown) {
    if (error instanceof InferError) return error;
    throw error;
  }
  throw new Error('expected a throw');
}

describe.each(['worker', 'inline'] as const)(
  'model manager, %s sessions: outputs equal onnxruntime called directly',
  (execution) => {
    it('serves an MLP', async () => {
      const bytes = buildMlp({ inputSize: 4, hiddenSizes: [16], outputSize: 3, seed: 7 });
      const manager = createModelManager();
      try {
        await manager.load('t1', 'mlp', '1', bytes, servingConfig({ execution }));
        await manager.activate('t1', 'mlp', '1');
        const request = inputs({ input: randomFloats([2, 4], 11) });
        const result = await manager.get('t1', 'mlp').infer({ id: 'r1', inputs: request });
        const expected = await runDirect(bytes, request);
        expect(result.id).toBe('r1');
        expect(result.model).toBe('mlp');
        expect(result.version).toBe('1');
        expect(result.batchSize).toBe(1);
        expect(result.outputs.map((t) => t.name)).toEqual(['output']);
        expect(result.outputs[0]?.shape).toEqual([2, 3]);
        expect(values(result.outputs[0])).toEqual(values(expected.get('output')));
        expect(manager.index('t1')).toEqual([{ tenant: 't1', name: 'mlp', version: '1', state: 'READY', reason: '' }]);
        const stats = manager.get('t1', 'mlp').stats();
        expect(stats.success.count).toBe(1n);
        expect(stats.executionCount).toBe(1n);
        expect(stats.lastInference).toBeGreaterThan(0);
      } finally {
        await manager.close();
      }
    });

    it('serves a CNN, with two instances and one thread each', async () => {
      const bytes = buildCnn({ seed: 3, softmax: true });
      const manager = createModelManager();
      try {
        const model = await manager.load(
          't1',
          'cnn',
          '1',
          bytes,
          servingConfig({ execution, instanceCount: 2, threadsPerInstance: 1, maxBatchSize: 4 }),
        );
        expect(model.signature).toEqual({
          inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 3, 32, 32] }],
          outputs: [{ name: 'output', datatype: 'FP32', shape: [-1, 10] }],
          batchable: true,
        });
        const requests = [0, 1, 2].map((seed) => inputs({ input: randomFloats([2, 3, 32, 32], 100 + seed) }));
        const results = await Promise.all(requests.map((request, i) => model.infer({ id: `r${i}`, inputs: request })));
        for (const [i, request] of requests.entries()) {
          const expected = await runDirect(bytes, request);
          expect(results[i]?.outputs[0]?.shape).toEqual([2, 10]);
          expect(values(results[i]?.outputs[0])).toEqual(values(expected.get('output')));
        }
      } finally {
        await manager.close();
      }
    });

    it('serves an LSTM called with its state inputs (no sequence batching configured)', async () => {
      const bytes = buildLstm({ seed: 5 });
      const manager = createModelManager();
      try {
        const model = await manager.load('t1', 'lstm', '1', bytes, servingConfig({ execution, maxBatchSize: 8 }));
        expect(model.signature.batchable).toBe(false);
        const request = inputs({
          x: randomFloats([5, 2, 4], 1),
          h: randomFloats([1, 2, 8], 2),
          c: randomFloats([1, 2, 8], 3),
        });
        const result = await model.infer({ id: 'r', inputs: request, outputs: [LSTM_NAMES.hn, LSTM_NAMES.output] });
        const expected = await runDirect(bytes, request);
        expect(result.outputs.map((t) => t.name)).toEqual(['hn', 'y']);
        expect(values(result.outputs[0])).toEqual(values(expected.get('hn')));
        expect(values(result.outputs[1])).toEqual(values(expected.get('y')));
      } finally {
        await manager.close();
      }
    });

    it('serves the real PP-OCR direction classifier (loaded from a path)', async () => {
      const path = ppocrClassifierPath();
      const manager = createModelManager();
      try {
        const model = await manager.load('t1', 'cls', '1', { path }, servingConfig({ execution, maxBatchSize: 4 }));
        expect(model.signature.inputs).toEqual([{ name: 'x', datatype: 'FP32', shape: [-1, 3, -1, -1] }]);
        expect(model.signature.batchable).toBe(true);
        const request = inputs({ x: randomFloats([2, 3, 48, 192], 9) });
        const result = await model.infer({ id: 'r', inputs: request });
        const expected = await runDirect(await readFile(path), request);
        const output = model.signature.outputs[0]?.name ?? '';
        expect(result.outputs[0]?.shape).toEqual([2, 2]);
        expect(values(result.outputs[0])).toEqual(values(expected.get(output)));
      } finally {
        await manager.close();
      }
    });
  },
);

describe('model manager: versions, lookups and failures', () => {
  it('says what is not loaded, per tenant and version', async () => {
    const manager = createModelManager();
    try {
      await manager.load('t1', 'mlp', '3', buildMlp({ seed: 3 }), servingConfig());
      await manager.load('t1', 'mlp', '4', buildMlp({ seed: 4 }), servingConfig());
      expect(thrown(() => manager.get('t2', 'mlp'))).toMatchObject({
        code: 'NOT_FOUND',
        message: 'model "mlp" is not loaded for this tenant',
      });
      expect(thrown(() => manager.get('t1', 'mlp', '7'))).toMatchObject({
        code: 'NOT_FOUND',
        message: 'model "mlp" has no version 7 loaded; loaded: 3, 4',
      });
      expect(thrown(() => manager.get('t1', 'mlp')).message).toBe(
        'model "mlp" has no current version; loaded: 3, 4 (none activated)',
      );
      expect(manager.get('t1', 'mlp', '3').version).toBe('3');
      await manager.activate('t1', 'mlp', '4', { keepPrevious: true });
      expect(manager.get('t1', 'mlp').version).toBe('4');
      expect(manager.get('t1', 'mlp', '').version).toBe('4');
      expect(manager.find('t1', 'nope')).toBeUndefined();
      expect((await rejection(manager.activate('t1', 'mlp', '9'))).message).toBe(
        'model "mlp" has no version 9 loaded; loaded: 3, 4',
      );
      await manager.unload('t1', 'mlp', '3');
      expect(manager.index()).toEqual([{ tenant: 't1', name: 'mlp', version: '4', state: 'READY', reason: '' }]);
      await manager.unload('t1', 'mlp');
      expect(manager.index()).toEqual([]);
      expect(thrown(() => manager.get('t1', 'mlp')).message).toBe('model "mlp" is not loaded for this tenant');
    } finally {
      await manager.close();
    }
  });

  it('records failed loads in the index, with the reason', async () => {
    const manager = createModelManager();
    try {
      const error = await rejection(manager.load('t1', 'junk', '1', new Uint8Array([1, 2, 3, 4]), servingConfig()));
      expect(error.message).toMatch(/^model "junk" version 1 failed to load: /);
      const badState = await rejection(
        manager.load(
          't1',
          'lstm',
          '1',
          buildLstm(),
          servingConfig({ sequenceState: [{ input: 'hidden', output: 'hn' }] }),
        ),
      );
      expect(badState.message).toBe(
        'model "lstm" version 1 failed to load: ' +
          'sequence state input "hidden" is not an input of the model; its inputs are: x, h, c',
      );
      manager.markFailed('t2', 'other', '5', 'digest mismatch');
      const index = manager.index();
      expect(index.map(({ tenant, name, version, state }) => ({ tenant, name, version, state }))).toEqual([
        { tenant: 't1', name: 'junk', version: '1', state: 'FAILED' },
        { tenant: 't1', name: 'lstm', version: '1', state: 'FAILED' },
        { tenant: 't2', name: 'other', version: '5', state: 'FAILED' },
      ]);
      expect(index[0]?.reason).toBe(error.message.replace('model "junk" version 1 failed to load: ', ''));
      expect(index[2]?.reason).toBe('digest mismatch');
      expect(manager.index('t2')).toHaveLength(1);
      // A later successful load of the version clears the failure.
      await manager.load('t1', 'junk', '1', buildMlp(), servingConfig());
      expect(manager.index('t1')[0]).toEqual({ tenant: 't1', name: 'junk', version: '1', state: 'READY', reason: '' });
    } finally {
      await manager.close();
    }
  });

  it('tells the observer about every request and survives an observer that throws', async () => {
    const seen: { id: string; ok: boolean; code?: string }[] = [];
    const observer: InferObserver = {
      onRequest(model, request, outcome) {
        seen.push({
          id: request.id,
          ok: outcome.result !== undefined,
          ...(outcome.error ? { code: outcome.error.code } : {}),
        });
        expect(outcome.totalNs).toBeGreaterThan(0n);
        expect(model.name).toBe('mlp');
        throw new Error('observer bug');
      },
    };
    const manager = createModelManager({ observer });
    try {
      const model = await manager.load('t1', 'mlp', '1', buildMlp(), servingConfig());
      await model.infer({ id: 'good', inputs: inputs({ input: randomFloats([1, 4], 1) }) });
      await rejection(model.infer({ id: 'bad', inputs: new Map() }));
      expect(seen).toEqual([
        { id: 'good', ok: true },
        { id: 'bad', ok: false, code: 'INVALID_ARGUMENT' },
      ]);
      expect(model.stats().fail.count).toBe(1n);
      expect(model.stats().success.count).toBe(1n);
    } finally {
      await manager.close();
    }
  });

  it('swaps v1 for v2 under 250 requests in flight with no failure, then releases v1', async () => {
    const v1 = buildMlp({ seed: 1 });
    const v2 = buildMlp({ seed: 2 });
    const manager = createModelManager();
    try {
      const config = servingConfig({ maxBatchSize: 8, maxQueueDelayUs: 2000, instanceCount: 2 });
      await manager.load('t1', 'mlp', '1', v1, config);
      await manager.activate('t1', 'mlp', '1');
      await manager.load('t1', 'mlp', '2', v2, config);
      const old = manager.get('t1', 'mlp');
      const request = inputs({ input: randomFloats([1, 4], 42) });
      const expected = new Map([
        ['1', values((await runDirect(v1, request)).get('output'))],
        ['2', values((await runDirect(v2, request)).get('output'))],
      ]);
      const inflight: Promise<InferResult>[] = [];
      for (let i = 0; i < 150; i++) inflight.push(manager.get('t1', 'mlp').infer({ id: `a${i}`, inputs: request }));
      const switching = manager.activate('t1', 'mlp', '2');
      expect(old.state).toBe('UNLOADING');
      // Requests that got the old version before the switch, and ones arriving during its drain.
      for (let i = 0; i < 50; i++) inflight.push(old.infer({ id: `b${i}`, inputs: request }));
      for (let i = 0; i < 50; i++) inflight.push(manager.get('t1', 'mlp', '1').infer({ id: `c${i}`, inputs: request }));
      const results = await Promise.allSettled(inflight);
      await switching;
      const failures = results.filter((r) => r.status === 'rejected');
      expect(failures).toEqual([]);
      const byVersion = { '1': 0, '2': 0 };
      for (const settled of results) {
        if (settled.status !== 'fulfilled') continue;
        const version = settled.value.version as '1' | '2';
        byVersion[version]++;
        expect(values(settled.value.outputs[0])).toEqual(expected.get(version));
      }
      expect(byVersion['1']).toBe(150);
      expect(byVersion['2']).toBe(100);
      expect(old.state).toBe('UNAVAILABLE');
      expect(manager.index()).toEqual([{ tenant: 't1', name: 'mlp', version: '2', state: 'READY', reason: '' }]);
      expect(manager.find('t1', 'mlp', '1')).toBeUndefined();
      // The released version still forwards a late request to the current one.
      expect((await old.infer({ id: 'late', inputs: request })).version).toBe('2');
    } finally {
      await manager.close();
    }
  });

  it('refuses loads once closed', async () => {
    const manager = createModelManager();
    await manager.load('t1', 'mlp', '1', buildMlp(), servingConfig());
    const loading = manager.load('t1', 'mlp', '2', buildMlp(), servingConfig());
    await manager.close();
    expect((await rejection(loading)).message).toBe('the model manager is closed');
    expect((await rejection(manager.load('t1', 'mlp', '3', buildMlp(), servingConfig()))).code).toBe('UNAVAILABLE');
    expect(manager.index()).toEqual([]);
  });

  it(
    'reloads a current version in place: new requests reach the new sessions, ' + 'queued ones finish on the old',
    async () => {
      const first = buildMlp({ seed: 1 });
      const second = buildMlp({ seed: 2 });
      const manager = createModelManager();
      try {
        const config = servingConfig({ maxBatchSize: 4, maxQueueDelayUs: 1000 });
        const old = await manager.load('t1', 'mlp', '1', first, config);
        await manager.activate('t1', 'mlp', '1');
        const request = inputs({ input: randomFloats([1, 4], 5) });
        const queued = old.infer({ id: 'q', inputs: request });
        const fresh = await manager.load('t1', 'mlp', '1', second, config);
        expect(manager.get('t1', 'mlp')).toBe(fresh);
        const [before, after] = await Promise.all([
          queued,
          manager.get('t1', 'mlp').infer({ id: 'n', inputs: request }),
        ]);
        expect(values(before.outputs[0])).toEqual(values((await runDirect(first, request)).get('output')));
        expect(values(after.outputs[0])).toEqual(values((await runDirect(second, request)).get('output')));
        await old.unload();
        expect(old.state).toBe('UNAVAILABLE');
        expect(manager.index()).toEqual([{ tenant: 't1', name: 'mlp', version: '1', state: 'READY', reason: '' }]);
      } finally {
        await manager.close();
      }
    },
  );

  it('unloads the current version: queued requests finish, later ones are told it is gone', async () => {
    const manager = createModelManager();
    try {
      const model = await manager.load(
        't1',
        'mlp',
        '1',
        buildMlp(),
        servingConfig({ maxBatchSize: 8, maxQueueDelayUs: 10_000_000 }),
      );
      await manager.activate('t1', 'mlp', '1');
      const request = inputs({ input: randomFloats([1, 4], 5) });
      const queued = [model.infer({ id: 'a', inputs: request }), model.infer({ id: 'b', inputs: request })];
      const unloading = manager.unload('t1', 'mlp', '1');
      expect(manager.index()).toEqual([{ tenant: 't1', name: 'mlp', version: '1', state: 'UNLOADING', reason: '' }]);
      expect(thrown(() => manager.get('t1', 'mlp')).code).toBe('NOT_FOUND');
      const late = await rejection(model.infer({ id: 'c', inputs: request }));
      expect(late).toMatchObject({
        code: 'UNAVAILABLE',
        message: 'model "mlp" version 1 is unloading and no other version is current',
      });
      expect((await Promise.all(queued)).map((r) => r.batchSize)).toEqual([2, 2]);
      await unloading;
      expect(model.state).toBe('UNAVAILABLE');
      expect(manager.index()).toEqual([]);
    } finally {
      await manager.close();
    }
  });
});
