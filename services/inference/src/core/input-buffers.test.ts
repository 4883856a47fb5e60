import { afterEach, describe, expect, it } from 'vitest';
import { OnnxDataType, buildCnn, encodeModel } from '@quanta/onnx';
import { tensorFromOrt, tensorFromRaw, type Tensor } from '@quanta/tensor';
import { InputBuffers, type StagedFeed } from './buffer-pool.js';
import { inputs, openedPools, randomFloats, runDirect, servingConfig, values } from '../testing/core.js';
import { WORKER_RUNS_IN_FLIGHT } from './worker-instance.js';

// The instances' reusable input buffers (buffer-pool.ts): staged feeds are copied once into a
// buffer of the instance's own, which is reused from run to run, never shared by two runs at once,
// never seen by a request, and dropped on release.

const cnn = buildCnn();
// y = Identity(x): onnxruntime may hand back the input's memory as the output.
const identity = encodeModel({
  graph: {
    name: 'identity',
    nodes: [{ opType: 'Identity', inputs: ['x'], outputs: ['y'] }],
    initializers: [],
    inputs: [{ name: 'x', dataType: OnnxDataType.FLOAT, shape: ['N', 4] }],
    outputs: [{ name: 'y', dataType: OnnxDataType.FLOAT, shape: ['N', 4] }],
  },
});

const pools = openedPools();
afterEach(() => pools.releaseAll());

const pool: typeof pools.open = (bytes, overrides) => pools.open(bytes, overrides);

/** The tensor's bytes at byte offset `offset` (1: misaligned for FP32) of a buffer of their own. */
function bytesAt(tensor: Tensor, offset: number): Uint8Array {
  const data = tensor.data as Float32Array;
  const bytes = new Uint8Array(new ArrayBuffer(offset + data.byteLength), offset, data.byteLength);
  bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return bytes;
}

function staged(parts: readonly Tensor[], offset: number): StagedFeed {
  const first = parts[0];
  if (first === undefined) throw new Error('no parts');
  const rows = parts.reduce((sum, part) => sum + (part.shape[0] ?? 0), 0);
  return { type: 'float32', dims: [rows, ...first.shape.slice(1)], parts: parts.map((part) => bytesAt(part, offset)) };
}

/** onnxruntime's output for the parts stacked, called directly on each. */
async function expected(bytes: Uint8Array, input: string, parts: readonly Tensor[]): Promise<number[]> {
  const each = await Promise.all(
    parts.map(async (part) => values((await runDirect(bytes, inputs({ [input]: part }))).get('output'))),
  );
  return each.flat();
}

describe.each(['worker', 'inline'] as const)('input buffers, %s sessions', (execution) => {
  it('a staged feed gives the outputs onnxruntime gives directly, and one buffer serves run after run', async () => {
    const instances = await pool(cnn, { execution, instanceCount: 1 });
    for (let i = 0; i < 5; i++) {
      const parts = [randomFloats([2, 3, 32, 32], 10 + i), randomFloats([1, 3, 32, 32], 20 + i)];
      const feed = staged(parts, 1);
      const before = feed.parts.map((part) => Buffer.from(part));
      const results = await instances.run({ input: feed }, ['output']);
      const output = results['output'];
      expect(output?.dims).toEqual([3, 10]);
      expect(values(output === undefined ? undefined : tensorFromOrt(output))).toEqual(
        await expected(cnn, 'input', parts),
      );
      // The requests' bytes are only read.
      expect(feed.parts.map((part) => Buffer.from(part))).toEqual(before);
    }
    expect(instances.inputBuffers()).toEqual({ allocated: 1, free: 1 });
  });

  it('concurrent batches on two instances never share a buffer', async () => {
    const instances = await pool(cnn, { execution, instanceCount: 2 });
    const batches = [0, 1, 2, 3].map((i) => [
      randomFloats([2, 3, 32, 32], 30 + i),
      randomFloats([3, 3, 32, 32], 40 + i),
    ]);
    const results = await Promise.all(batches.map((parts) => instances.run({ input: staged(parts, 2) }, ['output'])));
    for (const [i, parts] of batches.entries()) {
      const output = results[i]?.['output'];
      expect(values(output === undefined ? undefined : tensorFromOrt(output))).toEqual(
        await expected(cnn, 'input', parts),
      );
    }
    // One buffer per run in flight (one per inline instance, two per worker: the one running and the
    // next), each reused by a later batch.
    expect(instances.slots).toBe(execution === 'inline' ? 2 : 2 * WORKER_RUNS_IN_FLIGHT);
    expect(instances.inputBuffers()).toEqual({
      allocated: Math.min(4, instances.slots),
      free: Math.min(4, instances.slots),
    });
  });

  it('an output onnxruntime makes over the input buffer is copied out: a later run does not change it', async () => {
    const instances = await pool(identity, { execution, instanceCount: 1 });
    const first = randomFloats([2, 4], 1);
    const answer = await instances.run({ x: staged([first], 1) }, ['y']);
    const y = answer['y'];
    const got = values(y === undefined ? undefined : tensorFromOrt(y));
    expect(got).toEqual(values(first));
    await instances.run({ x: staged([randomFloats([2, 4], 2)], 1) }, ['y']);
    expect(values(y === undefined ? undefined : tensorFromOrt(y))).toEqual(got);
  });

  it('release drops the buffers', async () => {
    const instances = await pool(cnn, { execution, instanceCount: 2 });
    await instances.run({ input: staged([randomFloats([1, 3, 32, 32], 3)], 1) }, ['output']);
    expect(instances.inputBuffers().free).toBe(1);
    await instances.release();
    expect(instances.inputBuffers().free).toBe(0);
  });

  it(
    'requests from misaligned raw bytes, batched through the manager, ' +
      'get what onnxruntime computes, and keep their bytes',
    async () => {
      const manager = pools.manager();
      const model = await manager.load(
        't',
        'cnn',
        '1',
        cnn,
        servingConfig({ execution, threadsPerInstance: 1, maxBatchSize: 8, maxQueueDelayUs: 10_000_000 }),
      );
      const tensors = [1, 2, 5].map((rows, i) => randomFloats([rows, 3, 32, 32], 50 + i));
      const raws = tensors.map((tensor) => bytesAt(tensor, 3));
      const copies = raws.map((raw) => Buffer.from(raw));
      const requests = raws.map((raw, i) =>
        inputs({ input: tensorFromRaw('FP32', tensors[i]?.shape ?? [], raw, { name: 'input' }) }),
      );
      const results = await Promise.all(requests.map((request, i) => model.infer({ id: `${i}`, inputs: request })));
      for (const [i, tensor] of tensors.entries()) {
        expect(results[i]?.batchSize).toBe(8);
        expect(values(results[i]?.outputs[0])).toEqual(await expected(cnn, 'input', [tensor]));
        expect(Buffer.from(raws[i] ?? new Uint8Array()).equals(copies[i] ?? Buffer.alloc(0))).toBe(true);
        // The request's own tensor still reads as its values.
        expect(values(requests[i]?.get('input'))).toEqual(values(tensor));
      }
    },
  );
});

describe('inline sessions', () => {
  it("use a lone aligned part where it is: no buffer, the request's memory unchanged", async () => {
    const instances = await pool(cnn, { execution: 'inline', instanceCount: 1 });
    const part = randomFloats([2, 3, 32, 32], 7);
    const feed = staged([part], 4);
    const results = await instances.run({ input: feed }, ['output']);
    const output = results['output'];
    expect(values(output === undefined ? undefined : tensorFromOrt(output))).toEqual(
      await expected(cnn, 'input', [part]),
    );
    expect(instances.inputBuffers()).toEqual({ allocated: 0, free: 0 });
  });
});

describe('InputBuffers', () => {
  it('reuses a given-back buffer big enough, and never hands out one that is taken', () => {
    const buffers = new InputBuffers();
    const a = buffers.take(1000);
    const b = buffers.take(1000);
    expect(b).not.toBe(a);
    expect(a.byteLength).toBeGreaterThanOrEqual(1000);
    buffers.give(a);
    expect(buffers.take(900)).toBe(a);
    // Too small for 5000: a new one.
    buffers.give(a);
    const c = buffers.take(5000);
    expect(c).not.toBe(a);
    expect(c.byteLength).toBeGreaterThanOrEqual(5000);
    expect(buffers.allocated).toBe(3);
  });

  it('takes the smallest that fits, drops detached buffers, keeps a few, and clears', () => {
    const buffers = new InputBuffers();
    const taken = [100, 1000, 10_000, 100_000, 1_000_000].map((size) => buffers.take(size));
    for (const buffer of taken) buffers.give(buffer);
    // The smallest went beyond the limit of four free buffers.
    expect(buffers.held()).toBe(4);
    expect(buffers.take(900)).toBe(taken[1]);
    const detached = buffers.take(50_000);
    structuredClone(detached, { transfer: [detached] });
    buffers.give(detached);
    expect(buffers.held()).toBe(2);
    buffers.clear();
    expect(buffers.held()).toBe(0);
  });
});
