// Input summaries for drift detection: the fixed binning of monitoring's InputSummary, an
// accumulator that inference (sampled requests) and the CLI (.npy files) fill the same way, merging,
// and the population stability index monitoring computes against a baseline.
import type { monitoring as pb } from '@quanta/contracts';
import type { Tensor } from '@quanta/tensor/core';
import { bfloat16BitsToNumber, float16BitsToNumber } from '@quanta/tensor/core';

/** Bins run from -BIN_LIMIT to BIN_LIMIT; the outermost hold everything beyond. */
export const BIN_LIMIT = 160;
/** Bin 0 holds |x| below this. */
export const BIN_ZERO = 1e-6;
/** Bins per power of two. */
export const BINS_PER_OCTAVE = 4;
const BIN_COUNT = 2 * BIN_LIMIT + 1;
/**
 * Values beyond ±MOMENT_LIMIT (±infinity among them) enter sum, sum_squares, min and max as
 * ±MOMENT_LIMIT, so those stay finite (a summary with an infinite sum is rejected); the bins and
 * the count take them as they are.
 */
export const MOMENT_LIMIT = 1e100;
/** PSI's floor on a share, so that an empty group does not make it infinite. */
export const PSI_SHARE_FLOOR = 1e-4;
/** PSI's groups: deciles of the baseline. */
export const PSI_GROUPS = 10;

/**
 * The bin of a value: 0 for |x| < 1e-6, else sign(x) · (1 + floor(4 · log2(|x| / 1e-6))) capped
 * at ±160; ±infinity goes to ±160. NaN has no bin (the caller counts it in `nan_count`): NaN.
 */
export function binIndex(x: number): number {
  if (Number.isNaN(x)) return Number.NaN;
  const a = Math.abs(x);
  if (a < BIN_ZERO) return 0;
  const i = a === Infinity ? BIN_LIMIT : Math.min(BIN_LIMIT, 1 + Math.floor(BINS_PER_OCTAVE * Math.log2(a / BIN_ZERO)));
  return x < 0 ? -i : i;
}

/** The smallest |x| that goes to bin ±index (index ≥ 1): 1e-6 · 2^((index - 1) / 4). */
export function binLowerMagnitude(index: number): number {
  const i = Math.abs(index);
  return i === 0 ? 0 : BIN_ZERO * 2 ** ((i - 1) / BINS_PER_OCTAVE);
}

const clampMoment = (x: number): number => (x > MOMENT_LIMIT ? MOMENT_LIMIT : x < -MOMENT_LIMIT ? -MOMENT_LIMIT : x);

/** Who an InputSummary is about (every field but the statistics). */
export type SummaryLabels = Pick<pb.InputSummary, 'tenant' | 'model' | 'version' | 'deployment' | 'input' | 'time'>;

/**
 * The statistics of one input's values: count, sum, sum of squares, extremes, NaNs and the fixed
 * bins (dense, so adding a value is one array increment). Summaries merge into it by adding.
 */
export class InputAccumulator {
  count = 0;
  sum = 0;
  sumSquares = 0;
  min = Infinity;
  max = -Infinity;
  nanCount = 0;
  /** Counts by bin, bin i at i + BIN_LIMIT. */
  readonly bins = new Float64Array(BIN_COUNT);

  addValue(x: number): void {
    if (Number.isNaN(x)) {
      this.nanCount++;
      return;
    }
    const i = binIndex(x);
    this.bins[i + BIN_LIMIT]!++;
    this.count++;
    const m = clampMoment(x);
    this.sum += m;
    this.sumSquares += m * m;
    if (m < this.min) this.min = m;
    if (m > this.max) this.max = m;
  }

  /**
   * Adds a tensor's values, at most `limit` of them spread evenly over the tensor (so a large
   * image is sampled across its whole extent, not only its first rows); returns how many it took.
   * Every numeric datatype is read (FP16 and BF16 decoded, BOOL as 0 and 1, 64-bit integers as the
   * nearest double); BYTES has no values to summarize and takes none.
   */
  addTensor(tensor: Tensor, limit = Infinity): number {
    if (tensor.datatype === 'BYTES') return 0;
    const n = tensor.data.length;
    const take = Math.min(n, Math.max(0, Math.floor(limit)));
    if (take === 0) return 0;
    // Element k of the sample: every element, or one per stride from a random phase (repeated
    // samples of same-shaped tensors do not always read the same elements).
    const stride = take === n ? 1 : n / take;
    const phase = take === n ? 0 : Math.random() * stride;
    const last = n - 1;
    switch (tensor.datatype) {
      case 'FP16':
      case 'BF16': {
        const decode = tensor.datatype === 'FP16' ? float16BitsToNumber : bfloat16BitsToNumber;
        for (let k = 0; k < take; k++)
          this.addValue(decode(tensor.data[Math.min(last, Math.floor(phase + k * stride))]!));
        break;
      }
      case 'INT64':
      case 'UINT64':
        for (let k = 0; k < take; k++)
          this.addValue(Number(tensor.data[Math.min(last, Math.floor(phase + k * stride))]!));
        break;
      default: {
        const data: ArrayLike<number> = tensor.data;
        for (let k = 0; k < take; k++) this.addValue(data[Math.min(last, Math.floor(phase + k * stride))]!);
      }
    }
    return take;
  }

  /** Merges a summary in (its labels are ignored). */
  addSummary(s: pb.InputSummary): void {
    const count = Number(s.count);
    this.nanCount += Number(s.nanCount);
    if (count === 0) return;
    this.count += count;
    this.sum += s.sum;
    this.sumSquares += s.sumSquares;
    if (s.min < this.min) this.min = s.min;
    if (s.max > this.max) this.max = s.max;
    for (const b of s.bins) {
      const i = Math.max(-BIN_LIMIT, Math.min(BIN_LIMIT, b.index));
      this.bins[i + BIN_LIMIT]! += Number(b.count);
    }
  }

  /** Merges another accumulator in. */
  addAccumulator(other: InputAccumulator): void {
    this.nanCount += other.nanCount;
    if (other.count === 0) return;
    this.count += other.count;
    this.sum += other.sum;
    this.sumSquares += other.sumSquares;
    if (other.min < this.min) this.min = other.min;
    if (other.max > this.max) this.max = other.max;
    for (let i = 0; i < BIN_COUNT; i++) this.bins[i]! += other.bins[i]!;
  }

  /** True when nothing (not even a NaN) was added. */
  isEmpty(): boolean {
    return this.count === 0 && this.nanCount === 0;
  }

  mean(): number {
    return this.count === 0 ? 0 : this.sum / this.count;
  }

  /** The population standard deviation. */
  stddev(): number {
    if (this.count === 0) return 0;
    const mean = this.sum / this.count;
    return Math.sqrt(Math.max(0, this.sumSquares / this.count - mean * mean));
  }

  /** The summary of what was added, with `labels`; min and max are 0 when no value was counted. */
  toSummary(labels: SummaryLabels): pb.InputSummary {
    const bins: pb.HistogramBin[] = [];
    for (let i = 0; i < BIN_COUNT; i++) {
      const c = this.bins[i]!;
      if (c > 0) bins.push({ index: i - BIN_LIMIT, count: BigInt(c) });
    }
    return {
      ...labels,
      count: BigInt(this.count),
      sum: this.sum,
      sumSquares: this.sumSquares,
      min: this.count === 0 ? 0 : this.min,
      max: this.count === 0 ? 0 : this.max,
      bins,
      nanCount: BigInt(this.nanCount),
    };
  }

  reset(): void {
    this.count = 0;
    this.sum = 0;
    this.sumSquares = 0;
    this.min = Infinity;
    this.max = -Infinity;
    this.nanCount = 0;
    this.bins.fill(0);
  }

  static of(summaries: Iterable<pb.InputSummary>): InputAccumulator {
    const acc = new InputAccumulator();
    for (const s of summaries) acc.addSummary(s);
    return acc;
  }
}

/** Summaries merged into one, with `labels` (the same as adding every value to one accumulator). */
export function mergeSummaries(summaries: Iterable<pb.InputSummary>, labels: SummaryLabels): pb.InputSummary {
  return InputAccumulator.of(summaries).toSummary(labels);
}

/**
 * The baseline's decile groups: upper bin indexes (inclusive) of contiguous runs of bins, each
 * holding about a tenth of the baseline's values (a bin holding more than a tenth is a group of
 * its own). Below the baseline's lowest bin and above its highest there is one more group each,
 * empty in the baseline, so that values beyond anything the baseline saw count as drift even for
 * an input whose baseline is a single value. The last upper is BIN_LIMIT.
 */
export function psiGroups(baseline: InputAccumulator): number[] {
  const total = baseline.count;
  const uppers: number[] = [];
  if (total === 0) return [BIN_LIMIT];
  let lowest = -1;
  let highest = -1;
  for (let i = 0; i < BIN_COUNT; i++) {
    if (baseline.bins[i]! > 0) {
      if (lowest < 0) lowest = i;
      highest = i;
    }
  }
  if (lowest > 0) uppers.push(lowest - 1 - BIN_LIMIT);
  let cum = 0;
  let next = 1;
  for (let i = lowest; i <= highest; i++) {
    const c = baseline.bins[i]!;
    if (c === 0) continue;
    cum += c;
    if (cum * PSI_GROUPS >= next * total || i === highest) {
      uppers.push(i - BIN_LIMIT);
      next = Math.floor((cum * PSI_GROUPS) / total) + 1;
    }
  }
  if (highest < BIN_COUNT - 1) uppers.push(BIN_LIMIT);
  return uppers;
}

/** Counts of an accumulator's bins per group (`uppers` from psiGroups). */
function groupCounts(acc: InputAccumulator, uppers: readonly number[]): number[] {
  const counts = new Array<number>(uppers.length).fill(0);
  let g = 0;
  for (let i = 0; i < BIN_COUNT; i++) {
    while (i - BIN_LIMIT > uppers[g]!) g++;
    counts[g]! += acc.bins[i]!;
  }
  return counts;
}

/**
 * The population stability index of `window` against `baseline`: Σ (a − b) · ln(a / b) over the
 * baseline's decile groups (psiGroups), a and b the window's and the baseline's shares of a group,
 * each floored at 1e-4. 0 when either holds no values. Below 0.1: stable; 0.1 to 0.25: a
 * moderate shift; above: a major one.
 */
export function populationStabilityIndex(window: InputAccumulator, baseline: InputAccumulator): number {
  if (window.count === 0 || baseline.count === 0) return 0;
  const uppers = psiGroups(baseline);
  const w = groupCounts(window, uppers);
  const b = groupCounts(baseline, uppers);
  let psi = 0;
  for (let g = 0; g < uppers.length; g++) {
    const a = Math.max(PSI_SHARE_FLOOR, w[g]! / window.count);
    const e = Math.max(PSI_SHARE_FLOOR, b[g]! / baseline.count);
    psi += (a - e) * Math.log(a / e);
  }
  return psi;
}

/** The words for a PSI: stable below 0.1, moderate to 0.25, major above. */
export function psiVerdict(psi: number): 'stable' | 'moderate' | 'major' {
  return psi < 0.1 ? 'stable' : psi <= 0.25 ? 'moderate' : 'major';
}
