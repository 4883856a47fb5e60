import { LSTM_NAMES, buildLstm, buildMlp } from '@quanta/onnx';
import { createTensor, numberToFloat16Bits } from '@quanta/tensor';
import type { Tensor } from '@quanta/tensor';
import { describe, expect, it } from 'vitest';
import { createModelManager } from './model-manager.js';
import { chooseRoute, compareOutputs, createShadowRunner, takesShadow } from './traffic.js';
import type { InferRequest, InferResult } from './types.js';
import { inputs, randomFloats, servingConfig } from '../testing/core.js';

const named = (name: string, tensor: Tensor): Tensor => ({ ...tensor, name });
const fp32 = (name: string, shape: number[], values: number[]): Tensor =>
  named(name, createTensor('FP32', shape, Float32Array.from(values)));
const request = (sequence?: string): InferRequest => ({
  id: '',
  inputs: new Map(),
  ...(sequence === undefined ? {} : { sequence: { id: sequence, start: false, end: false } }),
});

describe('traffic split', () => {
  it('keeps every request of a sequence on one side, and splits sequences near the weight', () => {
    const traffic = { canary: { version: '2', percent: 25 } };
    let canary = 0;
    for (let s = 0; s < 2000; s++) {
      const first = chooseRoute(traffic, request(`seq-${s}`), () => 0);
      // The draw never matters for a sequence: only its id does.
      expect(chooseRoute(traffic, request(`seq-${s}`), () => 0.999)).toBe(first);
      if (first === 'canary') canary++;
    }
    expect(Math.abs(canary / 20 - 25)).toBeLessThan(5);
    expect(chooseRoute(traffic, request(), () => 0.2)).toBe('canary');
    expect(chooseRoute(traffic, request(), () => 0.3)).toBe('primary');
    expect(chooseRoute(undefined, request(), () => 0)).toBe('primary');
  });

  it('gives shadows their percent, 0 meaning every request, and never a sequence', () => {
    expect(takesShadow({ shadow: { version: '2', percent: 0 } }, request(), () => 0.999)).toBe(true);
    expect(takesShadow({ shadow: { version: '2', percent: 25 } }, request(), () => 0.3)).toBe(false);
    expect(takesShadow({ shadow: { version: '2', percent: 25 } }, request(), () => 0.2)).toBe(true);
    expect(takesShadow({ shadow: { version: '2', percent: 100 } }, request('s'), () => 0)).toBe(false);
  });
});

describe('output comparison', () => {
  it('takes the max abs error over outputs and top-1 agreement per row', () => {
    const primary = [fp32('logits', [2, 3], [0.1, 0.7, 0.2, 0.9, 0.05, 0.05]), fp32('score', [2], [1, 2])];
    const shadow = [fp32('score', [2], [1.5, 2]), fp32('logits', [2, 3], [0.1, 0.6, 0.3, 0.1, 0.8, 0.1])];
    const c = compareOutputs(primary, shadow);
    expect(c.maxAbsError).toBeCloseTo(0.8, 6);
    // [2] of two classes is class-shaped too: one row, both arg-max 1.
    expect([c.top1Rows, c.top1AgreedRows]).toEqual([3, 2]);
  });

  it('counts a missing or reshaped output as Infinity, and reads FP16 as numbers', () => {
    expect(compareOutputs([fp32('y', [2], [1, 2])], []).maxAbsError).toBe(Infinity);
    expect(compareOutputs([fp32('y', [2], [1, 2])], [fp32('y', [1, 2], [1, 2])]).maxAbsError).toBe(Infinity);
    const half = (values: number[]): Tensor =>
      named('h', createTensor('FP16', [values.length], Uint16Array.from(values, numberToFloat16Bits)));
    expect(compareOutputs([half([1, 2])], [half([1, 2.5])]).maxAbsError).toBe(0.5);
    expect(compareOutputs([fp32('s', [1], [3])], [fp32('s', [1], [3])])).toEqual({
      maxAbsError: 0,
      top1Rows: 0,
      top1AgreedRows: 0,
    });
  });
});

describe('shadow runner', () => {
  it('drops copies beyond its bound instead of queueing them, and runs the rest on the shadow version', async () => {
    const manager = createModelManager();
    try {
      await manager.load('acme', 'mlp', '1', buildMlp({ seed: 1 }), servingConfig());
      const shadow = await manager.load('acme', 'mlp', '2', buildMlp({ seed: 2 }), servingConfig());
      const x = inputs({ input: randomFloats([1, 4], 3, 'input') });
      const primary: InferResult = await manager.get('acme', 'mlp', '1').infer({ id: 'r', inputs: x });
      const runner = createShadowRunner(4);
      for (let i = 0; i < 10; i++) runner.run(shadow, { id: `r${i}`, inputs: x }, primary);
      expect([runner.inFlight(), runner.dropped()]).toEqual([4, 6]);
      while (runner.inFlight() > 0) await new Promise((resolve) => setTimeout(resolve, 5));
      expect(shadow.stats().inferenceCount).toBe(4n);
    } finally {
      await manager.close();
    }
  });
  it('keeps each sequence on the version holding its state when the weight changes mid-sequence', async () => {
    const manager = createModelManager();
    const config = servingConfig({
      sequenceState: [
        { input: LSTM_NAMES.h, output: LSTM_NAMES.hn },
        { input: LSTM_NAMES.c, output: LSTM_NAMES.cn },
      ],
    });
    try {
      await manager.load('acme', 'lstm', '1', buildLstm({ seed: 3 }), config);
      await manager.load('acme', 'lstm', '2', buildLstm({ seed: 4 }), config);
      const weight = (percent: number): Promise<void> =>
        manager.activate('acme', 'lstm', '1', { keepPrevious: true, traffic: { canary: { version: '2', percent } } });
      const x = inputs({ x: randomFloats([1, 1, 4], 5) });
      const step = async (id: string, start: boolean, end: boolean): Promise<string> => {
        const routed = manager.route('acme', 'lstm', { id, inputs: x, sequence: { id, start, end } });
        return (await routed.model.infer({ id, inputs: x, sequence: { id, start, end } })).version;
      };
      await weight(50);
      const ids = Array.from({ length: 40 }, (_, i) => `s${i}`);
      const first = new Map<string, string>();
      for (const id of ids) first.set(id, await step(id, true, false));
      expect(new Set(first.values())).toEqual(new Set(['1', '2']));
      // The weight swings both ways mid-sequence: every sequence goes on where its state is.
      for (const percent of [99, 1]) {
        await weight(percent);
        for (const id of ids) expect(await step(id, false, percent === 1)).toBe(first.get(id));
      }
      // Sequences that start now follow the new weight (1%: the primary, bar the ids that hash to 0).
      const fresh = await Promise.all(ids.map((id) => step(`new-${id}`, true, true)));
      expect(fresh.filter((v) => v === '1').length).toBeGreaterThan(30);
    } finally {
      await manager.close();
    }
  });
});
