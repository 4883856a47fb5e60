import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMlp } from '@quanta/onnx';
import { createTensor } from '@quanta/tensor';
import { createModelManager } from './model-manager.js';
import { inputs, randomFloats, servingConfig } from '../testing/core.js';
import { validateRequest } from './validate.js';
import { InferError, type InferRequest, type LoadedModel, type ModelManager } from './types.js';

// Every bad request fails alone, before it is queued, with INVALID_ARGUMENT and a message that
// names the model and the tensor. The signature comes from a real onnxruntime session.

let manager: ModelManager;
let model: LoadedModel;
beforeAll(async () => {
  manager = createModelManager();
  model = await manager.load(
    't',
    'mlp',
    '1',
    buildMlp({ inputSize: 4, outputSize: 3 }),
    servingConfig({ maxBatchSize: 8 }),
  );
});
afterAll(async () => {
  await manager.close();
});

async function message(request: Partial<InferRequest>): Promise<string> {
  try {
    await model.infer({ id: 'r', inputs: new Map(), ...request });
  } catch (error: unknown) {
    if (error instanceof InferError && error.code === 'INVALID_ARGUMENT') return error.message;
    throw error;
  }
  throw new Error('expected INVALID_ARGUMENT');
}

const good = (): Map<string, ReturnType<typeof randomFloats>> => inputs({ input: randomFloats([2, 4], 1) });

describe('request validation', () => {
  it('names a missing input with its datatype and shape', async () => {
    expect(await message({ inputs: new Map() })).toBe(
      'model "mlp" needs input "input" (FP32 [-1,4]), which the request lacks',
    );
  });

  it('names an unknown input and lists the model inputs', async () => {
    expect(await message({ inputs: new Map([...good(), ['extra', randomFloats([1], 1, 'extra')]]) })).toBe(
      'model "mlp" has no input "extra"; its inputs are: input',
    );
  });

  it('says the expected and the given datatype', async () => {
    const input = createTensor('FP64', [2, 4], new Float64Array(8));
    expect(await message({ inputs: inputs({ input }) })).toBe(
      'model "mlp" input "input": expected datatype FP32, got FP64',
    );
  });

  it('says the expected shape (-1 dynamic) for a wrong rank and for a fixed dim mismatch', async () => {
    expect(await message({ inputs: inputs({ input: randomFloats([4], 1) }) })).toBe(
      'model "mlp" input "input": expected shape [-1,4] (-1: any size), got [4]',
    );
    expect(await message({ inputs: inputs({ input: randomFloats([2, 5], 1) }) })).toBe(
      'model "mlp" input "input": expected shape [-1,4] (-1: any size), got [2,5]',
    );
  });

  it('names an unknown requested output and lists the outputs', async () => {
    expect(await message({ inputs: good(), outputs: ['logits'] })).toBe(
      'model "mlp" has no output "logits"; its outputs are: output',
    );
  });

  it('refuses an output requested twice', async () => {
    expect(await message({ inputs: good(), outputs: ['output', 'output'] })).toBe(
      'model "mlp": output "output" is requested more than once',
    );
  });

  it('counts each refusal as a failure and never runs it', () => {
    const stats = model.stats();
    expect(stats.fail.count).toBe(7n);
    // Nothing ran (the warm-up at load is not counted).
    expect(stats.executionCount).toBe(0n);
  });

  it('lets a stateful model omit its state inputs, and resolves the outputs to return', () => {
    const signature = {
      inputs: [
        { name: 'x', datatype: 'FP32' as const, shape: [-1, -1, 4] },
        { name: 'h', datatype: 'FP32' as const, shape: [1, -1, 8] },
      ],
      outputs: [
        { name: 'y', datatype: 'FP32' as const, shape: [-1, 1, -1, 8] },
        { name: 'hn', datatype: 'FP32' as const, shape: [1, -1, 8] },
      ],
      batchable: false,
    };
    const request = { id: 'r', inputs: inputs({ x: randomFloats([3, 1, 4], 1) }) };
    expect(validateRequest('lstm', signature, request, { optionalInputs: new Set(['h']) })).toEqual(['y', 'hn']);
    expect(
      validateRequest('lstm', signature, { ...request, outputs: ['hn'] }, { optionalInputs: new Set(['h']) }),
    ).toEqual(['hn']);
    expect(() => validateRequest('lstm', signature, request)).toThrow(
      'model "lstm" needs input "h" (FP32 [1,-1,8]), which the request lacks',
    );
  });
});
