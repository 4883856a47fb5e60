import { numberToFloat16Bits } from '@quanta/tensor';
import { describe, expect, it } from 'vitest';
import { createRng } from '../rng.js';
import { pruneByMagnitude, quantizeInt8, toFloat16 } from './weight-math.js';

describe('weight arithmetic', () => {
  it('toFloat16 agrees with @quanta/tensor on every range, ties and edges included', () => {
    const rng = createRng(9);
    const values: number[] = [
      0,
      -0,
      1,
      -1,
      65504,
      65519.99,
      65520,
      1e6,
      -1e6,
      6.1e-5,
      6.0e-8,
      1e-9,
      Infinity,
      -Infinity,
      Number.NaN,
      1 + 2 ** -11,
      1 + 3 * 2 ** -11,
      2047.5,
      2048.5,
    ];
    for (let i = 0; i < 20000; i++) values.push((rng() * 2 - 1) * 10 ** (rng() * 14 - 9));
    const w = Float32Array.from(values);
    const half = toFloat16(w);
    w.forEach((x, i) => expect(half[i], `${x}`).toBe(numberToFloat16Bits(x)));
  });

  it('quantizeInt8 keeps one scale per channel and zeros exact', () => {
    const w = Float32Array.from([1, -0.5, 0, 0.25, 10, -20, 0, 5]);
    const q = quantizeInt8(w, [2, 4], 0);
    expect([...q.scales]).toEqual([Math.fround(1 / 127), Math.fround(20 / 127)]);
    expect([...q.values]).toEqual([127, -64, 0, 32, 64, -127, 0, 32]);
    const columns = quantizeInt8(w, [2, 4], 1);
    expect(columns.scales).toHaveLength(4);
  });

  it('pruneByMagnitude breaks ties by position and keeps the count exact', () => {
    expect([...pruneByMagnitude(Float32Array.from([1, -1, 1, 2, -3, 1]), 0.5)]).toEqual([0, 0, 0, 2, -3, 1]);
  });
});
