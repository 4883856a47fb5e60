import { invalidArgument } from '@quanta/service-kit';

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
  if (!(alpha > 0 && alpha < 1)) throw invalidArgument(`relative accuracy must be in (0, 1), got ${alpha}`);
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

/** A sketch holding at most this many values keeps their bin keys in a list (most 1-second buckets). */
const LIST_MAX = 24;
/** Extra bins on each side when the dense store grows, so that neighbours do not regrow it. */
const SLACK = 16;

/**
 * Two stores, both exact: while the sketch has few values (a 1-second bucket with a couple of
 * requests) it keeps each value's bin key in a small list, cheaper than bins in memory and to
 * allocate; beyond that, dense counts in a Float64Array indexed by key − offset, so adding and
 * merging are array additions (no Map hashing, no per-bin allocation) and quantiles need no sort.
 */
export class DDSketch {
  /** List store: the bin key of each value, in arrival order (null once dense). */
  private keys: number[] | null = [];
  /** Dense store: counts[k - offset] for keys lo..hi (hi < lo: none yet). */
  private counts: Float64Array | null = null;
  /** A sketch that was reset once keeps its key list while dense, for the next reset. */
  private reused = false;
  private spareKeys: number[] | null = null;
  private offset = 0;
  private lo = 0;
  private hi = -1;
  zeroCount = 0;
  count = 0;
  sum = 0;
  max = 0;
  min = Number.POSITIVE_INFINITY;

  constructor(readonly mapping: SketchMapping = defaultMapping) {}

  /**
   * Empties the sketch and keeps its storage (the dense counts and the key list), so that one
   * sketch can take a merge after another without allocating: the same as a new sketch.
   */
  reset(): void {
    const counts = this.counts;
    if (counts !== null && this.hi >= this.lo) counts.fill(0, this.lo - this.offset, this.hi - this.offset + 1);
    this.reused = true;
    const keys = this.keys ?? this.spareKeys ?? [];
    keys.length = 0;
    this.keys = keys;
    this.lo = 0;
    this.hi = -1;
    this.zeroCount = 0;
    this.count = 0;
    this.sum = 0;
    this.max = 0;
    this.min = Number.POSITIVE_INFINITY;
  }

  /** Bin index → count, for inspection (built on demand). */
  get bins(): Map<number, number> {
    const out = new Map<number, number>();
    if (this.keys !== null) for (const k of this.keys) out.set(k, (out.get(k) ?? 0) + 1);
    else if (this.counts !== null) {
      for (let k = this.lo; k <= this.hi; k++) {
        const c = this.counts[k - this.offset] ?? 0;
        if (c > 0) out.set(k, c);
      }
    }
    return out;
  }

  /** Makes room for keys lo..hi in the dense store. */
  private ensure(lo: number, hi: number): Float64Array {
    let counts = this.counts;
    if (counts !== null && lo >= this.offset && hi < this.offset + counts.length) return counts;
    // Grow by at least half again on the side that needs it, so that growth is amortised.
    const grow = Math.max(SLACK, counts === null ? 0 : counts.length >> 1);
    const newLo = Math.min(
      lo - (counts !== null && lo < this.offset ? grow : SLACK),
      this.hi >= this.lo ? this.lo : lo,
    );
    const newHi = Math.max(
      hi + (counts !== null && hi >= this.offset + counts.length ? grow : SLACK),
      this.hi >= this.lo ? this.hi : hi,
    );
    const grown = new Float64Array(newHi - newLo + 1);
    if (counts !== null && this.hi >= this.lo)
      grown.set(counts.subarray(this.lo - this.offset, this.hi - this.offset + 1), this.lo - newLo);
    this.counts = counts = grown;
    this.offset = newLo;
    return counts;
  }

  private addDense(k: number, times: number): void {
    const counts = this.ensure(k, k);
    counts[k - this.offset] = (counts[k - this.offset] ?? 0) + times;
    if (this.hi < this.lo) this.lo = this.hi = k;
    else if (k < this.lo) this.lo = k;
    else if (k > this.hi) this.hi = k;
  }

  /** Moves the list store's keys into the dense store. */
  private densify(): void {
    const keys = this.keys;
    if (keys === null) return;
    this.keys = null;
    // Only a sketch that was reset keeps the list for its next reset (a stored one needs none).
    if (this.reused) this.spareKeys = keys;
    if (keys.length === 0) return;
    let lo = Infinity;
    let hi = -Infinity;
    for (const k of keys) {
      if (k < lo) lo = k;
      if (k > hi) hi = k;
    }
    this.ensure(lo, hi);
    for (const k of keys) this.addDense(k, 1);
  }

  /** Adds a non-negative value `times` times. */
  add(value: number, times = 1): void {
    if (!(value >= 0) || !Number.isFinite(value))
      throw invalidArgument(`sketch values must be finite and >= 0, got ${value}`);
    if (value < MIN_INDEXABLE) this.zeroCount += times;
    else {
      const k = this.mapping.index(value);
      const keys = this.keys;
      if (keys !== null && times === 1 && keys.length < LIST_MAX) keys.push(k);
      else {
        this.densify();
        this.addDense(k, times);
      }
    }
    this.count += times;
    this.sum += value * times;
    if (value > this.max) this.max = value;
    if (value < this.min) this.min = value;
  }

  /** Adds every value of `other` (same mapping): the result is exactly the sketch of both inputs. */
  merge(other: DDSketch): void {
    if (other.count === 0) return;
    if (other.mapping.gamma !== this.mapping.gamma)
      throw invalidArgument('cannot merge sketches of different accuracy');
    const keys = other.keys;
    if (keys !== null) {
      if (this.keys !== null && this.keys.length + keys.length <= LIST_MAX) for (const k of keys) this.keys.push(k);
      else {
        this.densify();
        for (const k of keys) this.addDense(k, 1);
      }
    } else if (other.counts !== null && other.hi >= other.lo) {
      this.densify();
      const counts = this.ensure(other.lo, other.hi);
      const src = other.counts;
      const shift = other.offset - this.offset;
      for (let i = other.lo - other.offset, end = other.hi - other.offset; i <= end; i++) {
        const c = src[i] ?? 0;
        if (c !== 0) counts[i + shift] = (counts[i + shift] ?? 0) + c;
      }
      if (this.hi < this.lo) {
        this.lo = other.lo;
        this.hi = other.hi;
      } else {
        if (other.lo < this.lo) this.lo = other.lo;
        if (other.hi > this.hi) this.hi = other.hi;
      }
    }
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

  /** Several quantiles in one pass over the bins (qs in any order). */
  quantiles(qs: readonly number[]): number[] {
    if (this.count === 0) return qs.map(() => 0);
    for (const q of qs) if (!(q >= 0 && q <= 1)) throw invalidArgument(`quantile must be in [0, 1], got ${q}`);
    this.densify();
    const counts = this.counts;
    return qs.map((q) => {
      // The rank of the lower-median convention used by the paper: floor(q (n - 1)).
      const rank = Math.floor(q * (this.count - 1));
      if (rank < this.zeroCount || counts === null) return 0;
      let seen = this.zeroCount;
      for (let k = this.lo; k <= this.hi; k++) {
        seen += counts[k - this.offset] ?? 0;
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
