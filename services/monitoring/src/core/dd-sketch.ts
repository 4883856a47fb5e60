/**
 * DDSketch (Masson, Rim & Lee, VLDB 2019) with relative accuracy α.
 *
 * Why this sketch: windows are made of 1-second buckets that a query merges by the thousand, so
 * the sketch must merge exactly and cheaply (adding bin counts, unlike t-digest whose merges
 * drift with order); latencies span orders of magnitude, so the error must be relative (a
 * fixed-width HDR histogram needs a precision and range chosen up front); and any quantile it
 * returns is within α of the true value's magnitude, a bound the tests check directly. Its bins
 * are logarithmic: value v > 0 falls in bin ceil(log_γ v) with γ = (1+α)/(1-α), and the
 * representative 2γ^i/(γ+1) of bin i is within α of every value in it.
 */
export const DEFAULT_RELATIVE_ACCURACY = 0.01;

/** Values below this (latencies are in µs: a nanosecond) count as zero. */
const MIN_INDEXABLE = 1e-3;

export interface SketchMapping {
  readonly alpha: number;
  readonly gamma: number;
  /** Bin of a positive value. */
  index(value: number): number;
  /** The value that stands for a bin. */
  value(index: number): number;
}

export function createMapping(alpha = DEFAULT_RELATIVE_ACCURACY): SketchMapping {
  if (!(alpha > 0 && alpha < 1)) throw new RangeError(`relative accuracy must be in (0, 1), got ${alpha}`);
  const gamma = (1 + alpha) / (1 - alpha);
  const logGamma = Math.log(gamma);
  return {
    alpha,
    gamma,
    index: (v) => Math.ceil(Math.log(v) / logGamma),
    value: (i) => (2 * Math.pow(gamma, i)) / (gamma + 1),
  };
}

const defaultMapping = createMapping();

export class DDSketch {
  /** Bin index → count. Sparse: a 1-second bucket holds few distinct bins. */
  readonly bins = new Map<number, number>();
  zeroCount = 0;
  count = 0;
  sum = 0;
  max = 0;
  min = Number.POSITIVE_INFINITY;

  constructor(readonly mapping: SketchMapping = defaultMapping) {}

  /** Adds a non-negative value `times` times. */
  add(value: number, times = 1): void {
    if (!(value >= 0) || !Number.isFinite(value)) throw new RangeError(`sketch values must be finite and >= 0, got ${value}`);
    if (value < MIN_INDEXABLE) this.zeroCount += times;
    else {
      const i = this.mapping.index(value);
      this.bins.set(i, (this.bins.get(i) ?? 0) + times);
    }
    this.count += times;
    this.sum += value * times;
    if (value > this.max) this.max = value;
    if (value < this.min) this.min = value;
  }

  /** Adds every value of `other` (same mapping): the result is exactly the sketch of both inputs. */
  merge(other: DDSketch): void {
    if (other.count === 0) return;
    if (other.mapping.gamma !== this.mapping.gamma) throw new Error('cannot merge sketches of different accuracy');
    for (const [i, c] of other.bins) this.bins.set(i, (this.bins.get(i) ?? 0) + c);
    this.zeroCount += other.zeroCount;
    this.count += other.count;
    this.sum += other.sum;
    if (other.max > this.max) this.max = other.max;
    if (other.min < this.min) this.min = other.min;
  }

  /** The value at quantile q (0..1), within the relative accuracy; 0 for an empty sketch. */
  quantile(q: number): number {
    return this.quantiles([q])[0] ?? 0;
  }

  /** Several quantiles with one sort of the bins. */
  quantiles(qs: readonly number[]): number[] {
    if (this.count === 0) return qs.map(() => 0);
    const keys = [...this.bins.keys()].sort((a, b) => a - b);
    return qs.map((q) => {
      if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile must be in [0, 1], got ${q}`);
      // The rank of the lower-median convention used by the paper: floor(q (n - 1)).
      const rank = Math.floor(q * (this.count - 1));
      if (rank < this.zeroCount) return 0;
      let seen = this.zeroCount;
      for (const k of keys) {
        seen += this.bins.get(k) ?? 0;
        // Clamp to the exact extremes: never report beyond what was seen.
        if (seen > rank) return Math.min(this.max, Math.max(this.min, this.mapping.value(k)));
      }
      return this.max;
    });
  }

  get mean(): number {
    return this.count === 0 ? 0 : this.sum / this.count;
  }
}
