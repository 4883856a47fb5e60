import { describe, expect, it } from 'vitest';
import { randomSmall } from './random-pool.js';

describe('randomSmall', () => {
  it('never hands out the same bytes twice, across refills', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 3 * (4096 / 12) + 7; i++) {
      const nonce = randomSmall(12);
      expect(nonce.length).toBe(12);
      seen.add(nonce.toString('hex'));
    }
    expect(seen.size).toBe(3 * (4096 / 12) + 7);
  });

  it('returns copies the pool does not change later, and serves large requests directly', () => {
    const a = randomSmall(16);
    const copy = Buffer.from(a);
    for (let i = 0; i < 600; i++) randomSmall(16);
    expect(a.equals(copy)).toBe(true);
    expect(randomSmall(1000).length).toBe(1000);
    // Roughly uniform bytes (a zeroed or constant pool would fail this by far).
    const big = Buffer.concat(Array.from({ length: 2000 }, () => randomSmall(16)));
    const ones = [...big].reduce((n, b) => n + (b.toString(2).split('1').length - 1), 0);
    expect(Math.abs(ones / (big.length * 8) - 0.5)).toBeLessThan(0.01);
  });
});
