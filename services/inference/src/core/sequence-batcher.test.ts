import { afterEach, describe, expect, it } from 'vitest';
import { buildLstm, LSTM_NAMES } from '@quanta/onnx';
import { concatBatch, createTensor, type Tensor } from '@quanta/tensor';
import { createModelManager } from './model-manager.js';
import { inputs, manualClock, randomFloats, rejection, runDirect, servingConfig, values } from '../testing/core.js';
import type { InferResult, LoadedModel, ModelManager } from './types.js';

// The sequence batcher on the built LSTM: x [T,N,4], h/c [1,N,8] -> y [T,1,N,8], hn/cn [1,N,8].
// Expected values: one onnxruntime run over the whole sequence, and runs chunk by chunk with the
// state carried by hand.

const STATE = [
  { input: LSTM_NAMES.h, output: LSTM_NAMES.hn },
  { input: LSTM_NAMES.c, output: LSTM_NAMES.cn },
];

function output(result: InferResult, name: string): Tensor {
  const tensor = result.outputs.find((t) => t.name === name);
  if (tensor === undefined) throw new Error(`no output ${name}`);
  return tensor;
}

/** Rows [from, to) of x along its time axis (axis 0). */
function timeSlice(x: Tensor, from: number, to: number): Tensor {
  if (x.datatype !== 'FP32') throw new Error('FP32 only');
  const row = x.shape.slice(1).reduce((a, b) => a * b, 1);
  return createTensor('FP32', [to - from, ...x.shape.slice(1)], x.data.slice(from * row, to * row));
}

const bytes = buildLstm({ seed: 21 });
let manager: ModelManager | undefined;
afterEach(async () => {
  await manager?.close();
  manager = undefined;
});

async function loadLstm(clock = manualClock(), idleMs = 0): Promise<LoadedModel> {
  manager = createModelManager({ clock });
  return manager.load('t', 'lstm', '1', bytes, servingConfig({ sequenceState: STATE, sequenceIdleTimeoutMs: idleMs }));
}

describe('sequence batcher', () => {
  it(
    'carries the state across 3 chunks: equal to one run over the whole sequence and to state ' + 'carried by hand',
    async () => {
      const model = await loadLstm();
      const n = 2;
      const x = randomFloats([9, n, 4], 77);
      const chunks = [timeSlice(x, 0, 3), timeSlice(x, 3, 6), timeSlice(x, 6, 9)];
      const results: InferResult[] = [];
      for (const [i, chunk] of chunks.entries()) {
        results.push(
          await model.infer({
            id: `chunk${i}`,
            inputs: inputs({ x: chunk }),
            sequence: { id: '42', start: i === 0, end: i === chunks.length - 1 },
          }),
        );
      }
      // One run over all 9 steps from zero state.
      const zero = (): Tensor => createTensor('FP32', [1, n, 8], new Float32Array(n * 8));
      const whole = await runDirect(bytes, inputs({ x, h: zero(), c: zero() }));
      const served = concatBatch(results.map((r) => output(r, 'y')));
      expect(values(served)).toEqual(values(whole.get('y')));
      expect(values(output(results[2] as InferResult, 'hn'))).toEqual(values(whole.get('hn')));
      expect(values(output(results[2] as InferResult, 'cn'))).toEqual(values(whole.get('cn')));
      // Chunk by chunk with hn/cn carried by hand.
      let h = zero();
      let c = zero();
      for (const [i, chunk] of chunks.entries()) {
        const step = await runDirect(bytes, inputs({ x: chunk, h, c }));
        expect(values(output(results[i] as InferResult, 'y'))).toEqual(values(step.get('y')));
        h = step.get('hn') ?? h;
        c = step.get('cn') ?? c;
      }
      // END dropped the state: the id must START again.
      const after = await rejection(
        model.infer({
          id: 'after',
          inputs: inputs({ x: chunks[0] as Tensor }),
          sequence: { id: '42', start: false, end: false },
        }),
      );
      expect(after.code).toBe('INVALID_ARGUMENT');
      expect(after.message).toMatch(/^inference request for sequence 42 to model "lstm" must specify the START flag/);
    },
  );

  it('keeps sequences apart and runs each strictly in order when sent all at once', async () => {
    const model = await loadLstm();
    const xs = [randomFloats([6, 1, 4], 1), randomFloats([6, 1, 4], 2)];
    const pending: Promise<InferResult>[] = [];
    for (let step = 0; step < 3; step++) {
      for (const [s, x] of xs.entries()) {
        pending.push(
          model.infer({
            id: `s${s}-${step}`,
            inputs: inputs({ x: timeSlice(x, step * 2, step * 2 + 2) }),
            sequence: { id: `seq${s}`, start: step === 0, end: step === 2 },
            outputs: ['hn'],
          }),
        );
      }
    }
    const results = await Promise.all(pending);
    for (const [s, x] of xs.entries()) {
      const zero = createTensor('FP32', [1, 1, 8], new Float32Array(8));
      const whole = await runDirect(bytes, inputs({ x, h: zero, c: zero }));
      const last = results[4 + s] as InferResult;
      expect(last.outputs.map((t) => t.name)).toEqual(['hn']);
      expect(values(last.outputs[0])).toEqual(values(whole.get('hn')));
    }
  });

  it('uses state inputs the client sends with START instead of zeros', async () => {
    const model = await loadLstm();
    const x = randomFloats([2, 1, 4], 5);
    const h = randomFloats([1, 1, 8], 6);
    const c = randomFloats([1, 1, 8], 7);
    const served = await model.infer({
      id: 'r',
      inputs: inputs({ x, h, c }),
      sequence: { id: '1', start: true, end: false },
    });
    const direct = await runDirect(bytes, inputs({ x, h, c }));
    expect(values(output(served, 'cn'))).toEqual(values(direct.get('cn')));
  });

  it('drops the state of a sequence idle past its timeout', async () => {
    const clock = manualClock();
    const model = await loadLstm(clock, 5_000);
    const x = inputs({ x: randomFloats([1, 1, 4], 1) });
    await model.infer({ id: 'a', inputs: x, sequence: { id: 'idle', start: true, end: false } });
    clock.advance(4_000);
    await model.infer({ id: 'b', inputs: x, sequence: { id: 'idle', start: false, end: false } });
    clock.advance(5_001);
    const error = await rejection(
      model.infer({ id: 'c', inputs: x, sequence: { id: 'idle', start: false, end: false } }),
    );
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toBe(
      'inference request for sequence idle to model "lstm" ' +
        "must specify the START flag on the sequence's first request (the server holds no state for it)",
    );
  });

  it('asks for sequence control when the state inputs are missing, and serves requests that send them', async () => {
    const model = await loadLstm();
    const x = randomFloats([1, 1, 4], 1);
    const error = await rejection(model.infer({ id: 'r', inputs: inputs({ x }) }));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toBe(
      'model "lstm" is stateful and the request lacks its state input(s) h, c: ' +
        'send sequence_id with sequence_start on the first request (the server then carries the state), ' +
        'or send the state inputs',
    );
    const h = randomFloats([1, 1, 8], 2);
    const c = randomFloats([1, 1, 8], 3);
    const served = await model.infer({ id: 'r', inputs: inputs({ x, h, c }), outputs: ['cn'] });
    expect(values(served.outputs[0])).toEqual(values((await runDirect(bytes, inputs({ x, h, c }))).get('cn')));
    const unknown = await rejection(
      model.infer({ id: 'r', inputs: inputs({ x }), sequence: { id: '99', start: false, end: false } }),
    );
    expect(unknown.message).toMatch(/^inference request for sequence 99 to model "lstm" must specify the START flag/);
  });
  it('counts the requests waiting behind an earlier one of their sequence as pending', async () => {
    const model = await loadLstm();
    const x = randomFloats([2, 1, 4], 5);
    const sent = [0, 1, 2].map((i) =>
      model.infer({ id: `q${i}`, inputs: inputs({ x }), sequence: { id: '9', start: i === 0, end: i === 2 } }),
    );
    // One at a time per sequence: the first goes on to the batcher, the other two wait for it.
    expect(model.pendingRequests()).toBe(2);
    await Promise.all(sent);
    expect(model.pendingRequests()).toBe(0);
  });
});
