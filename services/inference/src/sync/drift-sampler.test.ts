import type { monitoring as pb } from '@quanta/contracts';
import { createTensor } from '@quanta/tensor';
import type { Tensor } from '@quanta/tensor';
import { describe, expect, it } from 'vitest';
import type { InferRequest, LoadedModel } from '../core/types.js';
import { createDriftSampler } from './drift-sampler.js';

/** The fields of a loaded model the sampler reads. */
const model = (name: string, version = '1'): LoadedModel => ({ tenant: 'acme', name, version }) as LoadedModel;

function request(inputs: Record<string, Tensor>): InferRequest {
  return { id: 'r', inputs: new Map(Object.entries(inputs)) };
}

const fp32 = (values: number[]): Tensor => createTensor('FP32', [values.length], Float32Array.from(values));

describe('the drift sampler', () => {
  it('samples within a per-model budget of values per second, spread over the second', () => {
    const sent: pb.InputSummary[] = [];
    const now = { ms: 0 };
    const sampler = createDriftSampler({
      client: { summary: (s) => (sent.push(s), true) },
      valuesPerSecond: 1000,
      maxValuesPerInput: 100,
      now: () => now.ms,
    });
    const cifar = model('cifar');
    const x = fp32(Array.from({ length: 400 }, (_, i) => i));
    // 100 requests at once: the bucket holds a second's worth (1000 values), 100 per request.
    for (let i = 0; i < 100; i++) sampler.sample(cifar, request({ x }), 'prod');
    expect(sampler.stats()).toMatchObject({ sampledRequests: 10, values: 1000 });
    // Half a second later, half the budget is back; another model has its own.
    now.ms = 500;
    for (let i = 0; i < 100; i++) sampler.sample(cifar, request({ x }), 'prod');
    expect(sampler.stats()).toMatchObject({ sampledRequests: 15, values: 1500 });
    sampler.sample(model('bert'), request({ x }), '');
    expect(sampler.stats().values).toBe(1600);

    sampler.flush();
    expect(sent.map((s) => [s.model, s.version, s.deployment, s.input, s.count, s.tenant])).toEqual([
      ['cifar', '1', 'prod', 'x', 1500n, 'acme'],
      ['bert', '1', '', 'x', 100n, 'acme'],
    ]);
    // The sample is spread over the tensor (0..399), not its first 100 values.
    expect(sent[0]!.max).toBeGreaterThan(350);
    expect(sent[0]!.bins.reduce((n, b) => n + b.count, 0n)).toBe(1500n);
    // Nothing new: nothing sent; idle models are forgotten and start with a full budget again.
    sampler.flush();
    sampler.flush();
    expect(sent).toHaveLength(2);
    now.ms = 600;
    sampler.sample(cifar, request({ x }), 'prod');
    sampler.close();
    expect(sent.map((s) => s.count)).toEqual([1500n, 100n, 100n]);
  });

  it('shares a request budget among its inputs, skips BYTES, and takes every value of small tensors', () => {
    const sent: pb.InputSummary[] = [];
    const sampler = createDriftSampler({
      client: { summary: (s) => (sent.push(s), true) },
      valuesPerSecond: 10_000,
      maxValuesPerInput: 64,
      now: () => 0,
    });
    const inputs = {
      image: fp32(Array.from({ length: 1000 }, () => 0.5)),
      age: createTensor('INT64', [2], BigInt64Array.from([30n, 50n])),
      mask: createTensor('BOOL', [3], Uint8Array.from([1, 0, 1])),
      text: createTensor('BYTES', [1], [new Uint8Array([104, 105])]),
    };
    sampler.sample(model('m'), request(inputs), 'd');
    sampler.close();
    const by = new Map(sent.map((s) => [s.input, s]));
    expect([...by.keys()].sort()).toEqual(['age', 'image', 'mask']);
    expect(by.get('image')).toMatchObject({ count: 64n, min: 0.5, max: 0.5 });
    expect(by.get('age')).toMatchObject({ count: 2n, sum: 80 });
    expect(by.get('mask')).toMatchObject({ count: 3n, sum: 2 });
  });

  it('reads the values on a later turn of the event loop, not in the request path', async () => {
    const sent: pb.InputSummary[] = [];
    const sampler = createDriftSampler({ client: { summary: (s) => (sent.push(s), true) }, valuesPerSecond: 100 });
    const data = Float32Array.from([1, 2, 3]);
    sampler.sample(model('m'), request({ x: createTensor('FP32', [3], data) }), '');
    expect(sampler.stats()).toMatchObject({ sampledRequests: 1, values: 3 }); // the budget is settled at once
    data.fill(7); // not read yet: what the values are on the next turn is what is counted
    await new Promise((resolve) => setImmediate(resolve));
    data.fill(9);
    sampler.close();
    expect(sent[0]).toMatchObject({ count: 3n, sum: 21 });
  });

  it('does nothing at rate 0', () => {
    const sent: pb.InputSummary[] = [];
    const sampler = createDriftSampler({ client: { summary: (s) => (sent.push(s), true) }, valuesPerSecond: 0 });
    sampler.sample(model('m'), request({ x: fp32([1, 2, 3]) }), '');
    sampler.close();
    expect(sent).toEqual([]);
    expect(sampler.stats().values).toBe(0);
  });
});
