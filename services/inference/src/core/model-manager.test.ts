import { describe, expect, it } from 'vitest';
import { buildMlp } from '@quanta/onnx';
import { createModelManager } from './model-manager.js';
import { inputs, randomFloats, runDirect, servingConfig, values } from './test-helpers.js';

describe('model manager', () => {
  it('serves an MLP with the outputs onnxruntime gives directly', async () => {
    const bytes = buildMlp({ inputSize: 4, hiddenSizes: [16], outputSize: 3, seed: 7 });
    const manager = createModelManager();
    try {
      await manager.load('t1', 'mlp', '1', bytes, servingConfig());
      await manager.activate('t1', 'mlp', '1');
      const request = inputs({ input: randomFloats([2, 4], 11) });
      const result = await manager.get('t1', 'mlp').infer({ id: 'r1', inputs: request });
      const expected = await runDirect(bytes, request);
      expect(result.id).toBe('r1');
      expect(result.version).toBe('1');
      expect(result.outputs.map((t) => t.name)).toEqual(['output']);
      expect(result.outputs[0]?.shape).toEqual([2, 3]);
      expect(values(result.outputs[0])).toEqual(values(expected.get('output')));
      expect(manager.index('t1')).toEqual([{ tenant: 't1', name: 'mlp', version: '1', state: 'READY', reason: '' }]);
    } finally {
      await manager.close();
    }
  });
});
