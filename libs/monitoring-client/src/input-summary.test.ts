import type { monitoring as pb } from '@quanta/contracts';
import { createTensor, numberToBfloat16Bits, numberToFloat16Bits } from '@quanta/tensor/core';
import { describe, expect, it } from 'vitest';
import {
  BIN_LIMIT,
  InputAccumulator,
  MOMENT_LIMIT,
  binIndex,
  binLowerMagnitude,
  mergeSummaries,
  populationStabilityIndex,
  psiGroups,
  psiVerdict,
} from './input-summary.js';

const LABELS = { tenant: 't', model: 'm', version: '1', deployment: 'd', input: 'x', time: new Date(0) };

/** A small deterministic generator (mulberry32), so failures reproduce. */
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

/** Normal values by Box–Muller. */
function normals(n: number, mean: number, sd: number, seed: number): Float64Array {
  const r = rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const u = 1 - r();
    out[i] = mean + sd * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
  }
  return out;
}

function accumulate(values: ArrayLike<number>): InputAccumulator {
  const acc = new InputAccumulator();
  for (let i = 0; i < values.length; i++) acc.addValue(values[i]!);
  return acc;
}

/**
 * The textbook PSI on raw values, computed without any bins: the baseline's deciles from its
 * sorted values, open at both ends, shares floored at 1e-4.
 */
function referencePsi(window: Float64Array, baseline: Float64Array): number {
  const sorted = Float64Array.from(baseline).sort();
  const cuts = Array.from({ length: 9 }, (_, k) => sorted[Math.floor(((k + 1) * sorted.length) / 10)]!);
  const share = (values: Float64Array): number[] => {
    const counts = new Array<number>(10).fill(0);
    for (const v of values) {
      let g = 0;
      while (g < 9 && v >= cuts[g]!) g++;
      counts[g]!++;
    }
    return counts.map((c) => Math.max(1e-4, c / values.length));
  };
  const a = share(window);
  const b = share(baseline);
  return a.reduce((sum, ai, g) => sum + (ai - b[g]!) * Math.log(ai / b[g]!), 0);
}

describe('the fixed binning', () => {
  it('puts values where the InputSummary comment says', () => {
    expect(binIndex(0)).toBe(0);
    expect(binIndex(-0)).toBe(0);
    expect(binIndex(9.99e-7)).toBe(0);
    expect(binIndex(1e-6)).toBe(1);
    expect(binIndex(-1e-6)).toBe(-1);
    expect(binIndex(2e-6)).toBe(5); // one octave: four bins up
    expect(binIndex(-2e-6)).toBe(-5);
    expect(binIndex(1)).toBe(1 + Math.floor(4 * Math.log2(1e6)));
    expect(binIndex(1e6)).toBe(160);
    expect(binIndex(5e7)).toBe(BIN_LIMIT);
    expect(binIndex(-5e7)).toBe(-BIN_LIMIT);
    expect(binIndex(Infinity)).toBe(BIN_LIMIT);
    expect(binIndex(-Infinity)).toBe(-BIN_LIMIT);
    expect(binIndex(Number.NaN)).toBeNaN();
  });

  it('has bins about 19% wide: each lower edge goes to its bin, just below it to the one before', () => {
    for (let index = 2; index < BIN_LIMIT; index += 7) {
      const edge = binLowerMagnitude(index);
      expect(binIndex(edge * (1 + 1e-12))).toBe(index);
      expect(binIndex(edge * (1 - 1e-12))).toBe(index - 1);
      expect(binIndex(-edge * (1 + 1e-12))).toBe(-index);
      expect(binLowerMagnitude(index + 1) / edge).toBeCloseTo(2 ** 0.25, 12);
    }
  });
});

describe('InputAccumulator', () => {
  it('counts values, NaN apart, infinities in the outer bins with finite moments', () => {
    const acc = accumulate([1, 2, 3, Number.NaN, Infinity, -Infinity]);
    const s = acc.toSummary(LABELS);
    expect(s).toMatchObject({ ...LABELS, count: 5n, nanCount: 1n, min: -MOMENT_LIMIT, max: MOMENT_LIMIT });
    expect(Number.isFinite(s.sum) && Number.isFinite(s.sumSquares)).toBe(true);
    const bins = new Map(s.bins.map((b) => [b.index, b.count]));
    expect(bins.get(BIN_LIMIT)).toBe(1n);
    expect(bins.get(-BIN_LIMIT)).toBe(1n);
    expect(bins.get(binIndex(2))).toBe(1n);
    expect(s.bins.reduce((n, b) => n + b.count, 0n)).toBe(5n);
  });

  it('gives mean and population standard deviation', () => {
    const acc = accumulate([2, 4, 4, 4, 5, 5, 7, 9]);
    expect(acc.mean()).toBe(5);
    expect(acc.stddev()).toBeCloseTo(2, 12);
    expect(new InputAccumulator().toSummary(LABELS)).toMatchObject({ count: 0n, min: 0, max: 0, bins: [] });
  });

  it('reads every numeric datatype and skips BYTES', () => {
    const read = (t: Parameters<InputAccumulator['addTensor']>[0]): pb.InputSummary => {
      const acc = new InputAccumulator();
      acc.addTensor(t);
      return acc.toSummary(LABELS);
    };
    const sumOf = (t: Parameters<InputAccumulator['addTensor']>[0]): number => read(t).sum;
    expect(sumOf(createTensor('FP32', [3], Float32Array.from([1.5, -2, 4])))).toBe(3.5);
    expect(sumOf(createTensor('FP64', [2], Float64Array.from([1e-3, 2])))).toBeCloseTo(2.001, 12);
    const fp16 = Uint16Array.from([1.5, -0.25, 1000].map(numberToFloat16Bits));
    expect(sumOf(createTensor('FP16', [3], fp16))).toBe(1001.25);
    const bf16 = Uint16Array.from([2, -0.5].map(numberToBfloat16Bits));
    expect(sumOf(createTensor('BF16', [2], bf16))).toBe(1.5);
    expect(sumOf(createTensor('INT8', [2], Int8Array.from([-128, 127])))).toBe(-1);
    expect(sumOf(createTensor('UINT8', [2], Uint8Array.from([0, 255])))).toBe(255);
    expect(sumOf(createTensor('INT16', [1], Int16Array.from([-300])))).toBe(-300);
    expect(sumOf(createTensor('UINT16', [1], Uint16Array.from([60_000])))).toBe(60_000);
    expect(sumOf(createTensor('INT32', [1], Int32Array.from([-7])))).toBe(-7);
    expect(sumOf(createTensor('UINT32', [1], Uint32Array.from([4e9])))).toBe(4e9);
    expect(sumOf(createTensor('INT64', [2], BigInt64Array.from([-5n, 10n ** 12n])))).toBe(1e12 - 5);
    expect(sumOf(createTensor('UINT64', [1], BigUint64Array.from([7n])))).toBe(7);
    const bools = read(createTensor('BOOL', [4], Uint8Array.from([1, 0, 1, 1])));
    expect(bools).toMatchObject({ count: 4n, sum: 3, min: 0, max: 1 });
    const acc = new InputAccumulator();
    expect(acc.addTensor(createTensor('BYTES', [1], [new Uint8Array([1, 2])]))).toBe(0);
    expect(acc.isEmpty()).toBe(true);
  });

  it('takes at most `limit` values spread over the whole tensor', () => {
    // 0..999: an even spread of 100 has about the same mean, a prefix would not.
    const data = Float32Array.from({ length: 1000 }, (_, i) => i);
    const acc = new InputAccumulator();
    expect(acc.addTensor(createTensor('FP32', [1000], data), 100)).toBe(100);
    expect(acc.count).toBe(100);
    expect(Math.abs(acc.mean() - 499.5)).toBeLessThan(10);
    expect(acc.max).toBeGreaterThan(985);
    expect(acc.addTensor(createTensor('FP32', [1000], data), 0)).toBe(0);
  });
});

describe('merging summaries', () => {
  it('is the same as adding every value to one accumulator, however the values are split', () => {
    const r = rng(7);
    for (let trial = 0; trial < 50; trial++) {
      const n = 1 + Math.floor(r() * 2000);
      const values = Array.from({ length: n }, () => {
        const u = r();
        if (u < 0.01) return Number.NaN;
        if (u < 0.02) return u < 0.015 ? Infinity : -Infinity;
        return (r() - 0.5) * 10 ** (r() * 14 - 7);
      });
      const whole = accumulate(values).toSummary(LABELS);
      // Split into 1-6 random parts, merged in a shuffled order.
      const parts = 1 + Math.floor(r() * 6);
      const pieces: number[][] = Array.from({ length: parts }, () => []);
      for (const v of values) pieces[Math.floor(r() * parts)]!.push(v);
      const summaries = pieces.map((p) => accumulate(p).toSummary({ ...LABELS, input: 'piece' }));
      summaries.sort(() => r() - 0.5);
      const merged = mergeSummaries(summaries, LABELS);
      const byIndex = (s: pb.InputSummary): [number, bigint][] =>
        s.bins.map((b) => [b.index, b.count] as [number, bigint]).sort((a, b) => a[0] - b[0]);
      expect(byIndex(merged)).toEqual(byIndex(whole));
      expect(merged.count).toBe(whole.count);
      expect(merged.nanCount).toBe(whole.nanCount);
      expect(merged.min).toBe(whole.min);
      expect(merged.max).toBe(whole.max);
      // Sums agree up to rounding, relative to the magnitudes added (±1e100 for the infinities).
      const magnitude = values.reduce((m, v) => (Number.isNaN(v) ? m : m + Math.min(MOMENT_LIMIT, Math.abs(v))), 0);
      expect(Math.abs(merged.sum - whole.sum)).toBeLessThanOrEqual(1e-12 * magnitude);
      expect(merged.input).toBe('x');
    }
  });

  it('is associative and has the empty summary as identity', () => {
    const a = accumulate(normals(500, 0, 1, 1)).toSummary(LABELS);
    const b = accumulate(normals(300, 5, 2, 2)).toSummary(LABELS);
    const c = accumulate(normals(200, -3, 0.1, 3)).toSummary(LABELS);
    const empty = new InputAccumulator().toSummary(LABELS);
    const left = mergeSummaries([mergeSummaries([a, b], LABELS), c], LABELS);
    const right = mergeSummaries([a, mergeSummaries([empty, b, c], LABELS)], LABELS);
    expect(new Map(left.bins.map((x) => [x.index, x.count]))).toEqual(
      new Map(right.bins.map((x) => [x.index, x.count])),
    );
    expect([left.count, left.min, left.max]).toEqual([right.count, right.min, right.max]);
    expect(left.sum).toBeCloseTo(right.sum, 9);
  });
});

describe('the population stability index', () => {
  it('equals the direct formula when every value sits in its own bin', () => {
    // Ten values an octave apart, a tenth of the baseline each: every decile is one bin.
    const levels = Array.from({ length: 10 }, (_, k) => 2 ** k);
    const baseline = new InputAccumulator();
    const window = new InputAccumulator();
    const windowCounts = [50, 120, 80, 100, 300, 0, 90, 60, 100, 100];
    levels.forEach((v, k) => {
      for (let i = 0; i < 1000; i++) baseline.addValue(v);
      for (let i = 0; i < windowCounts[k]!; i++) window.addValue(v);
    });
    const total = windowCounts.reduce((a, b) => a + b, 0);
    const direct = windowCounts.reduce((sum, c) => {
      const a = Math.max(1e-4, c / total);
      return sum + (a - 0.1) * Math.log(a / 0.1);
    }, 0);
    expect(populationStabilityIndex(window, baseline)).toBeCloseTo(direct, 12);
    // Ten groups plus the two empty edges.
    expect(psiGroups(baseline)).toHaveLength(12);
  });

  it('agrees with the textbook PSI on raw deciles for normal distributions', () => {
    const base = normals(200_000, 3, 1, 11);
    const baseline = accumulate(base);
    for (const [shift, seed] of [
      [0, 12],
      [0.1, 13],
      [0.3, 14],
      [0.6, 15],
      [1, 16],
    ] as const) {
      const win = normals(50_000, 3 + shift, 1, seed);
      const ours = populationStabilityIndex(accumulate(win), baseline);
      const reference = referencePsi(win, base);
      // Bins are about 19% wide, so decile edges move a little: close, not equal.
      expect(Math.abs(ours - reference)).toBeLessThan(0.01 + 0.2 * reference);
    }
  });

  it('is about 0 for the same distribution and large for a shifted one', () => {
    const baseline = accumulate(normals(100_000, 0, 1, 21));
    const same = populationStabilityIndex(accumulate(normals(20_000, 0, 1, 22)), baseline);
    const shifted = populationStabilityIndex(accumulate(normals(20_000, 1, 1, 23)), baseline);
    const wider = populationStabilityIndex(accumulate(normals(20_000, 0, 3, 24)), baseline);
    expect(same).toBeLessThan(0.02);
    expect(psiVerdict(same)).toBe('stable');
    expect(shifted).toBeGreaterThan(0.25);
    expect(psiVerdict(shifted)).toBe('major');
    expect(wider).toBeGreaterThan(0.25);
    expect(psiVerdict(0.2)).toBe('moderate');
  });

  it('sees a constant input move (the edge groups), and is 0 without values', () => {
    const baseline = accumulate(new Array<number>(1000).fill(1));
    expect(populationStabilityIndex(accumulate(new Array<number>(500).fill(1)), baseline)).toBe(0);
    const moved = populationStabilityIndex(accumulate(new Array<number>(500).fill(3)), baseline);
    expect(moved).toBeGreaterThan(5);
    expect(populationStabilityIndex(new InputAccumulator(), baseline)).toBe(0);
    expect(populationStabilityIndex(baseline, new InputAccumulator())).toBe(0);
  });
});
