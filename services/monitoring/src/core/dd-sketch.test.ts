import { describe, expect, it } from 'vitest';
import { DDSketch, createMapping } from './dd-sketch.js';

/** mulberry32: a small seeded generator, so a failure is reproducible. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function normal(random: () => number): number {
  // Box-Muller
  const u = 1 - random();
  const v = random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

const QS = [0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1];

/** The exact quantile with the sketch's rank convention: sorted[floor(q (n - 1))]. */
function exact(sorted: readonly number[], q: number): number {
  return sorted[Math.floor(q * (sorted.length - 1))] ?? Number.NaN;
}

const distributions: Record<string, (r: () => number) => number> = {
  'uniform 0..10000 µs': (r) => r() * 10_000,
  'lognormal (µ=ln 2000, σ=1) µs': (r) => Math.exp(Math.log(2000) + normal(r)),
  'bimodal 300 µs / 40 ms': (r) => (r() < 0.8 ? 300 + 30 * normal(r) : 40_000 + 4000 * normal(r)),
  'wide: 1 µs .. 100 s log-uniform': (r) => Math.pow(10, 8 * r()),
};

describe('DDSketch', () => {
  for (const [name, draw] of Object.entries(distributions)) {
    it(`quantiles of ${name} are within 1% of the exact ones`, () => {
      const random = rng(name.length * 7919);
      const values = Array.from({ length: 50_000 }, () => Math.max(0, draw(random)));
      const sketch = new DDSketch();
      for (const v of values) sketch.add(v);
      const sorted = [...values].sort((a, b) => a - b);
      const got = sketch.quantiles(QS);
      QS.forEach((q, i) => {
        const want = exact(sorted, q);
        const err = Math.abs((got[i] ?? 0) - want) / want;
        expect(err, `q=${q}: sketch ${got[i]} exact ${want}`).toBeLessThanOrEqual(0.01 + 1e-12);
      });
      expect(sketch.count).toBe(values.length);
      expect(sketch.max).toBe(sorted[sorted.length - 1]);
      expect(sketch.mean).toBeCloseTo(values.reduce((a, b) => a + b, 0) / values.length, 6);
    });
  }

  it('merging per-second sketches gives the same answers as one sketch of everything', () => {
    const random = rng(42);
    const whole = new DDSketch();
    const merged = new DDSketch();
    for (let second = 0; second < 120; second++) {
      const part = new DDSketch();
      for (let i = 0; i < 200; i++) {
        const v = Math.exp(Math.log(500 + second * 10) + 0.5 * normal(random));
        part.add(v);
        whole.add(v);
      }
      merged.merge(part);
    }
    expect(merged.count).toBe(whole.count);
    expect(merged.quantiles(QS)).toEqual(whole.quantiles(QS));
    expect([...merged.bins.entries()].sort((a, b) => a[0] - b[0])).toEqual(
      [...whole.bins.entries()].sort((a, b) => a[0] - b[0]),
    );
  });

  it('a reset sketch answers exactly as a new one, in list and dense form, over other ranges', () => {
    const random = rng(9);
    const reused = new DDSketch();
    // Few values (list store), many (dense), a range far from the first, few again, zeros only.
    const rounds = [5, 2000, 3000, 20, 0, 700];
    rounds.forEach((n, round) => {
      const fresh = new DDSketch();
      reused.reset();
      const scale = round === 2 ? 1e7 : 300;
      for (let i = 0; i < n; i++) {
        const v = scale * Math.exp(normal(random));
        // Some values through merges of small sketches, as a query merges buckets.
        if (i % 3 === 0) {
          const part = new DDSketch();
          part.add(v);
          reused.merge(part);
        } else reused.add(v);
        fresh.add(v);
      }
      if (n === 0) {
        reused.add(0, 3);
        fresh.add(0, 3);
      }
      expect(reused.count).toBe(fresh.count);
      expect(reused.zeroCount).toBe(fresh.zeroCount);
      expect(reused.sum).toBe(fresh.sum);
      expect([reused.min, reused.max]).toEqual([fresh.min, fresh.max]);
      expect(reused.quantiles(QS)).toEqual(fresh.quantiles(QS));
      expect([...reused.bins.entries()].sort((a, b) => a[0] - b[0])).toEqual(
        [...fresh.bins.entries()].sort((a, b) => a[0] - b[0]),
      );
    });
    reused.reset();
    expect(reused.count).toBe(0);
    expect(reused.quantile(0.5)).toBe(0);
    expect(reused.bins.size).toBe(0);
  });

  it('counts zeros, answers 0 when empty, and refuses negative values', () => {
    const s = new DDSketch();
    expect(s.quantile(0.99)).toBe(0);
    s.add(0, 99);
    s.add(1000);
    expect(s.quantile(0.5)).toBe(0);
    expect(s.quantile(1)).toBe(1000);
    expect(() => s.add(-1)).toThrow(/>= 0/);
    expect(() => s.add(Number.NaN)).toThrow();
    expect(() => createMapping(1.5)).toThrow(/relative accuracy/);
  });
});
