import { readFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { buildMlp, buildScalarModel, encodeModel, OnnxDataType } from '@quanta/onnx';
import { createTensor } from '@quanta/tensor';
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
import type { ModelManager, ServingConfig } from './types.js';

// The dynamic batcher, driven through the manager with real onnxruntime sessions and real time.
// Merging is made deterministic by a long max queue delay and a batch that fills exactly (it then
// leaves the moment its last request arrives), or by requests submitted in the same tick as a lone
// one (nothing queued or running: it leaves on the next setImmediate with them). When batches
// leave under a busy instance, the queue size limit, deadlines and cancellation in the queue are
// tested with a hand-driven clock and gated instances in dynamic-batcher-policy.test.ts.

const LONG_DELAY_US = 10_000_000;

/** y = a + b over [N,4]: a batchable model with two inputs. */
const addModel = encodeModel({
  graph: {
    name: 'add',
    nodes: [{ opType: 'Add', inputs: ['a', 'b'], outputs: ['y'] }],
    initializers: [],
    inputs: [
      { name: 'a', dataType: OnnxDataType.FLOAT, shape: ['N', 4] },
      { name: 'b', dataType: OnnxDataType.FLOAT, shape: ['N', 4] },
    ],
    outputs: [{ name: 'y', dataType: OnnxDataType.FLOAT, shape: ['N', 4] }],
  },
});

/** t = Identity(s) over strings [N]. */
const echoModel = encodeModel({
  graph: {
    name: 'echo',
    nodes: [{ opType: 'Identity', inputs: ['s'], outputs: ['t'] }],
    initializers: [],
    inputs: [{ name: 's', dataType: OnnxDataType.STRING, shape: ['N'] }],
    outputs: [{ name: 't', dataType: OnnxDataType.STRING, shape: ['N'] }],
  },
});

const text = (...words: string[]): ReturnType<typeof createTensor> =>
  createTensor(
    'BYTES',
    [words.length],
    words.map((w) => new TextEncoder().encode(w)),
  );

let manager: ModelManager | undefined;
afterEach(async () => {
  await manager?.close();
  manager = undefined;
});

describe.each(['worker', 'inline'] as const)('dynamic batcher, %s sessions', (execution) => {
  const config = (overrides: Partial<ServingConfig>): ServingConfig => servingConfig({ execution, ...overrides });

  it('merges concurrent requests (one with dim0 = 2) and splits each one its exact rows', async () => {
    const bytes = buildMlp({ inputSize: 4, hiddenSizes: [32, 16], outputSize: 5, seed: 9 });
    manager = createModelManager();
    const model = await manager.load(
      't',
      'mlp',
      '1',
      bytes,
      config({ maxBatchSize: 8, maxQueueDelayUs: LONG_DELAY_US }),
    );
    const rows = [1, 2, 1, 3, 1];
    const requests = rows.map((n, i) => inputs({ input: randomFloats([n, 4], 200 + i) }));
    const results = await Promise.all(requests.map((request, i) => model.infer({ id: `r${i}`, inputs: request })));
    for (const [i, request] of requests.entries()) {
      const alone = await runDirect(bytes, request);
      expect(results[i]?.id).toBe(`r${i}`);
      expect(results[i]?.batchSize).toBe(8);
      expect(results[i]?.outputs[0]?.shape).toEqual([rows[i], 5]);
      expect(values(results[i]?.outputs[0])).toEqual(values(alone.get('output')));
    }
    const stats = model.stats();
    expect(stats.executionCount).toBe(1n);
    expect(stats.inferenceCount).toBe(8n);
    expect(stats.success.count).toBe(5n);
    expect(stats.batches.map((b) => ({ size: b.batchSize, count: b.computeInfer.count }))).toEqual([
      { size: 8, count: 1n },
    ]);
    expect(stats.queue.count).toBe(5n);
    expect(stats.computeInfer.ns).toBeGreaterThan(0n);
  });

  it('merges only requests whose non-batch dims match, first come first served', async () => {
    const path = ppocrClassifierPath();
    const bytes = await readFile(path);
    manager = createModelManager();
    // A 50 ms delay: the odd one out leaves alone once it has waited that long.
    const model = await manager.load('t', 'cls', '1', { path }, config({ maxBatchSize: 2, maxQueueDelayUs: 50_000 }));
    const wide = (seed: number): Map<string, ReturnType<typeof randomFloats>> =>
      inputs({ x: randomFloats([1, 3, 48, 192], seed) });
    const narrow = inputs({ x: randomFloats([1, 3, 48, 96], 3) });
    const requests = [wide(1), narrow, wide(2)];
    const results = await Promise.all(requests.map((request, i) => model.infer({ id: `r${i}`, inputs: request })));
    expect(results.map((r) => r.batchSize)).toEqual([2, 1, 2]);
    for (const [i, request] of requests.entries()) {
      const alone = await runDirect(bytes, request);
      expect(values(results[i]?.outputs[0])).toEqual(values([...alone.values()][0]));
    }
    const stats = model.stats();
    expect(stats.executionCount).toBe(2n);
    expect(stats.batches.map((b) => [b.batchSize, b.computeInfer.count])).toEqual([
      [1, 1n],
      [2, 1n],
    ]);
  });

  it('refuses a request larger than the max batch size', async () => {
    manager = createModelManager();
    const model = await manager.load('t', 'mlp', '1', buildMlp(), config({ maxBatchSize: 8 }));
    const error = await rejection(model.infer({ id: 'big', inputs: inputs({ input: randomFloats([9, 4], 1) }) }));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toBe('model "mlp": the request has batch size 9, more than the model\'s max batch size 8');
  });

  it('serves a scalar-input model alone per request even with maxBatchSize 8', async () => {
    const bytes = buildScalarModel();
    manager = createModelManager();
    const model = await manager.load(
      't',
      'scalar',
      '1',
      bytes,
      config({ maxBatchSize: 8, maxQueueDelayUs: LONG_DELAY_US }),
    );
    expect(model.signature.batchable).toBe(false);
    const requests = [3, 1, 5].map((n, i) =>
      inputs({
        x: createTensor(
          'FP32',
          [n],
          Float32Array.from({ length: n }, (_, k) => k + i),
        ),
        s: createTensor('FP32', [], Float32Array.of(i + 2)),
      }),
    );
    const results = await Promise.all(requests.map((request, i) => model.infer({ id: `r${i}`, inputs: request })));
    for (const [i, request] of requests.entries()) {
      const n = request.get('x')?.shape[0] ?? 0;
      // Hand computation: y = x * s, total = sum(y).
      const y = Array.from({ length: n }, (_, k) => (k + i) * (i + 2));
      expect(values(results[i]?.outputs[0])).toEqual(y);
      expect(results[i]?.outputs[1]?.shape).toEqual([]);
      expect(values(results[i]?.outputs[1])).toEqual([y.reduce((a, b) => a + b, 0)]);
      expect(values(results[i]?.outputs[1])).toEqual(values((await runDirect(bytes, request)).get('total')));
      expect(results[i]?.batchSize).toBe(1);
    }
    expect(model.stats().executionCount).toBe(3n);
  });

  it('merges two-input requests, and refuses inputs that disagree on dim 0', async () => {
    manager = createModelManager();
    const model = await manager.load(
      't',
      'add',
      '1',
      addModel,
      config({ maxBatchSize: 3, maxQueueDelayUs: LONG_DELAY_US }),
    );
    const requests = [1, 2].map((n, i) => inputs({ a: randomFloats([n, 4], i), b: randomFloats([n, 4], 10 + i) }));
    const results = await Promise.all(requests.map((request, i) => model.infer({ id: `r${i}`, inputs: request })));
    for (const [i, request] of requests.entries()) {
      const a = values(request.get('a'));
      const b = values(request.get('b'));
      // Hand computation in float32.
      expect(values(results[i]?.outputs[0])).toEqual(Array.from(Float32Array.from(a.map((x, k) => x + (b[k] ?? 0)))));
    }
    expect(model.stats().executionCount).toBe(1n);
    const error = await rejection(
      model.infer({ id: 'bad', inputs: inputs({ a: randomFloats([2, 4], 1), b: randomFloats([3, 4], 2) }) }),
    );
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toBe('model "add": the inputs disagree on the batch size (dim 0): a 2, b 3');
  });

  it('batches BYTES (string) tensors and refuses an element that is not UTF-8', async () => {
    manager = createModelManager();
    const model = await manager.load(
      't',
      'echo',
      '1',
      echoModel,
      config({ maxBatchSize: 3, maxQueueDelayUs: LONG_DELAY_US }),
    );
    expect(model.signature.inputs).toEqual([{ name: 's', datatype: 'BYTES', shape: [-1] }]);
    const [one, two] = await Promise.all([
      model.infer({ id: '1', inputs: inputs({ s: text('héllo') }) }),
      model.infer({ id: '2', inputs: inputs({ s: text('a', 'b') }) }),
    ]);
    const decode = (t: ReturnType<typeof createTensor> | undefined): string[] =>
      t?.datatype === 'BYTES' ? t.data.map((e) => new TextDecoder().decode(e)) : [];
    expect(decode(one?.outputs[0])).toEqual(['héllo']);
    expect(decode(two?.outputs[0])).toEqual(['a', 'b']);
    expect(one?.batchSize).toBe(3);
    const bad = createTensor('BYTES', [1], [Uint8Array.of(0xff, 0xfe)]);
    const error = await rejection(model.infer({ id: 'bad', inputs: inputs({ s: bad }) }));
    expect(error.message).toBe(
      'model "echo" input "s": BYTES element 0 is not valid UTF-8, which an onnxruntime string tensor needs',
    );
  });

  it('sends a lone request at once instead of waiting out a 10 s delay', async () => {
    const bytes = buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 3, seed: 4 });
    manager = createModelManager();
    const model = await manager.load(
      't',
      'mlp',
      '1',
      bytes,
      config({ maxBatchSize: 8, maxQueueDelayUs: LONG_DELAY_US }),
    );
    const request = inputs({ input: randomFloats([1, 4], 7) });
    const started = performance.now();
    const result = await model.infer({ id: 'lone', inputs: request });
    // Well under the delay even on a loaded machine (it would take 10 s without the fast path).
    expect(performance.now() - started).toBeLessThan(2000);
    expect(values(result.outputs[0])).toEqual(values((await runDirect(bytes, request)).get('output')));
    expect(result.batchSize).toBe(1);
    const stats = model.stats();
    expect(stats.executionCount).toBe(1n);
    expect(stats.batches.map((b) => [b.batchSize, b.computeInfer.count])).toEqual([[1, 1n]]);
    expect(stats.queue.ns).toBeLessThan(2_000_000_000n);
  });

  it('still merges the requests submitted in the same tick as a lone one', async () => {
    const bytes = buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 3, seed: 5 });
    manager = createModelManager();
    const model = await manager.load(
      't',
      'mlp',
      '1',
      bytes,
      config({ maxBatchSize: 8, maxQueueDelayUs: LONG_DELAY_US }),
    );
    const requests = [1, 2, 1].map((n, i) => inputs({ input: randomFloats([n, 4], 30 + i) }));
    const started = performance.now();
    const results = await Promise.all(requests.map((request, i) => model.infer({ id: `r${i}`, inputs: request })));
    expect(performance.now() - started).toBeLessThan(2000);
    for (const [i, request] of requests.entries()) {
      expect(results[i]?.batchSize).toBe(4);
      expect(values(results[i]?.outputs[0])).toEqual(values((await runDirect(bytes, request)).get('output')));
    }
    const stats = model.stats();
    expect(stats.executionCount).toBe(1n);
    expect(stats.batches.map((b) => [b.batchSize, b.computeInfer.count])).toEqual([[4, 1n]]);
  });

  it('forms batches under steady concurrent load', async () => {
    const bytes = buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 3, seed: 6 });
    manager = createModelManager();
    const model = await manager.load('t', 'mlp', '1', bytes, config({ maxBatchSize: 8, maxQueueDelayUs: 20_000 }));
    const request = inputs({ input: randomFloats([1, 4], 8) });
    const expected = values((await runDirect(bytes, request)).get('output'));
    const clients = 8;
    const rounds = 10;
    const client = async (c: number): Promise<void> => {
      for (let r = 0; r < rounds; r++) {
        const result = await model.infer({ id: `c${c}r${r}`, inputs: request });
        expect(values(result.outputs[0])).toEqual(expected);
      }
    };
    // Clients start one poll phase apart, so the first request is lone and the others are not.
    const running: Promise<void>[] = [];
    for (let c = 0; c < clients; c++) {
      running.push(client(c));
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    await Promise.all(running);
    const stats = model.stats();
    expect(stats.inferenceCount).toBe(BigInt(clients * rounds));
    expect(stats.success.count).toBe(BigInt(clients * rounds));
    // Far fewer runs than requests: most ran in batches of more than one.
    expect(stats.executionCount).toBeLessThan(BigInt((clients * rounds) / 2));
    expect(stats.batches.some((b) => b.batchSize > 1)).toBe(true);
  });
});
