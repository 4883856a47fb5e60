import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { buildLstm, buildScalarModel } from '@quanta/onnx';
import { zeroStateShape } from './sequence-batcher.js';
import { SignatureError, signatureOf } from './signature.js';
import { inputs, randomFloats } from '../testing/core.js';

describe('signature from an onnxruntime session', () => {
  it(
    'maps symbolic dims to -1, keeps their symbols, ' +
      'and sees that the LSTM (time-major) does not batch on dim 0 with its state',
    async () => {
      const session = await ort.InferenceSession.create(buildLstm());
      try {
        const { signature, symbols } = signatureOf(session);
        expect(signature.inputs).toEqual([
          { name: 'x', datatype: 'FP32', shape: [-1, -1, 4] },
          { name: 'h', datatype: 'FP32', shape: [1, -1, 8] },
          { name: 'c', datatype: 'FP32', shape: [1, -1, 8] },
        ]);
        expect(signature.batchable).toBe(false);
        expect(symbols.get('x')).toEqual(['T', 'N', undefined]);
        // The zero state of a START takes N from x's dim 1; other dynamic dims would be 1.
        const h = signature.inputs[1];
        if (h === undefined) throw new Error('no h');
        expect(zeroStateShape(h, symbols, inputs({ x: randomFloats([5, 3, 4], 1) }), new Set(['h', 'c']))).toEqual([
          1, 3, 8,
        ]);
        expect(zeroStateShape(h, symbols, new Map(), new Set(['h', 'c']))).toEqual([1, 1, 8]);
      } finally {
        await session.release();
      }
    },
  );

  it('reads a scalar input as shape [] and the model as unbatchable', async () => {
    const session = await ort.InferenceSession.create(buildScalarModel());
    try {
      const { signature } = signatureOf(session);
      expect(signature.inputs[1]).toEqual({ name: 's', datatype: 'FP32', shape: [] });
      expect(signature.batchable).toBe(false);
    } finally {
      await session.release();
    }
  });

  // Our builders only write tensor inputs, so these two use metadata written by hand in the form
  // onnxruntime-node 1.30 reports it.
  it('refuses a non-tensor input with a reason', () => {
    const session = { inputMetadata: [{ name: 'seq', isTensor: false as const }], outputMetadata: [] };
    expect(() => signatureOf(session)).toThrow(SignatureError);
    expect(() => signatureOf(session)).toThrow(
      'input "seq" is not a tensor (a sequence, map or optional); only tensor inputs can be served',
    );
  });

  it('refuses a type that has no KServe datatype onnxruntime-node can feed', () => {
    const session = {
      inputMetadata: [{ name: 'q', isTensor: true as const, type: 'int4' as const, shape: [1] }],
      outputMetadata: [],
    };
    expect(() => signatureOf(session)).toThrow(
      'input "q" has onnxruntime type int4, which has no KServe datatype that onnxruntime-node can feed',
    );
  });
});
