import { describe, expect, it } from 'vitest';
import { createTensor, type Tensor } from '@quanta/tensor';
import { createResponseCache } from './response-cache.js';
import { inputs, randomFloats } from '../testing/core.js';

// The response cache's key and its byte bound (the serving side is in server/serving-protection.test.ts).

const output = (n: number, seed: number): Tensor => ({ ...randomFloats([1, n], seed), name: 'output' });

describe('response cache', () => {
  it('keys on every input name, datatype, shape and byte, and on the requested outputs', () => {
    const cache = createResponseCache(1 << 20);
    const x = randomFloats([2, 4], 1);
    const base = cache.keyOf(inputs({ input: x }), ['output']);
    expect(cache.keyOf(inputs({ input: randomFloats([2, 4], 1) }), ['output'])).toBe(base);
    const flipped = Float32Array.from(x.data as Float32Array);
    flipped[7] = flipped[7]! + 1e-6;
    const variants = [
      cache.keyOf(inputs({ input: createTensor('FP32', [2, 4], flipped) }), ['output']),
      cache.keyOf(inputs({ input: createTensor('FP32', [4, 2], x.data as Float32Array) }), ['output']),
      cache.keyOf(inputs({ input: createTensor('INT32', [2, 4], new Int32Array((x.data as Float32Array).buffer)) }), [
        'output',
      ]),
      cache.keyOf(inputs({ other: x }), ['output']),
      cache.keyOf(inputs({ input: x }), ['output', 'logits']),
      cache.keyOf(inputs({ input: x }), []),
    ];
    expect(new Set([base, ...variants]).size).toBe(variants.length + 1);
    // BYTES elements are framed: ["ab", "c"] is not ["a", "bc"].
    const text = (parts: string[]): Tensor =>
      createTensor(
        'BYTES',
        [parts.length],
        parts.map((p) => new TextEncoder().encode(p)),
      );
    expect(cache.keyOf(inputs({ s: text(['ab', 'c']) }), [])).not.toBe(
      cache.keyOf(inputs({ s: text(['a', 'bc']) }), []),
    );
  });

  it('keeps its own copy of the outputs', () => {
    const cache = createResponseCache(1 << 20);
    const answer = output(4, 3);
    const kept = Float32Array.from(answer.data as Float32Array);
    cache.set('k', [answer]);
    (answer.data as Float32Array).fill(0);
    expect(Array.from(cache.get('k')![0]!.data as Float32Array)).toEqual(Array.from(kept));
  });

  it('drops the least recently used entries to stay within its bytes, and never keeps one too large', () => {
    // Each entry: 1 KiB of outputs plus its overhead; three fit, four do not.
    const cache = createResponseCache(3 * 1024 + 3 * 300);
    cache.set('a', [output(256, 1)]);
    cache.set('b', [output(256, 2)]);
    cache.set('c', [output(256, 3)]);
    expect(cache.size()).toBe(3);
    expect(cache.get('a')).toBeDefined(); // a is now the most recently used
    cache.set('d', [output(256, 4)]);
    expect(cache.get('b')).toBeUndefined();
    expect(['a', 'c', 'd'].map((k) => cache.get(k) !== undefined)).toEqual([true, true, true]);
    expect(cache.bytes()).toBeLessThanOrEqual(3 * 1024 + 3 * 300);
    cache.set('huge', [output(4096, 5)]);
    expect(cache.get('huge')).toBeUndefined();
    expect(cache.size()).toBe(3);
  });
});
