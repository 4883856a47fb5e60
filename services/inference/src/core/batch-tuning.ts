// Which batch size to prefer, measured on the model's own traffic. Batching amortises per-run
// costs, but past some size a model can get slower per row (its activations outgrow the caches),
// and a dynamic batcher that always fills the largest batch the queue allows then serves less
// than it could. Measuring live rather than at load covers models with dynamic dims (only
// requests say what they are) and measures the runs under the load they actually share the
// machine with. The measurements behind this are in docs/decisions/inference-batch-tuning.md.
//
// The tuner explores: it asks the batcher for batches of 1, 2, 4, … maxRows rows in turn, each
// while the queue holds enough rows for it, and times each size's runs by onnxruntime's own time
// (in the worker thread: not the hand-off, nor the wait behind the batch ahead), at least
// `samplesPerSize` runs and `minMsPerSize` of them; then it prefers the largest size whose rows per
// second (from its fastest run: noise only adds time) is within `tolerance` of the best: the
// largest, because the costs outside onnxruntime (staging, the hand-off, answering) are per batch.
// It explores again `reexploreMs` later. A size that `missesPerSize` batches in a row fall short
// of is skipped: at that concurrency it does not happen.
// A preference matters only while onnxruntime is the bottleneck: the tuner applies (and explores)
// once the instances ran onnxruntime at least `saturation` of a `windowMs` window, and stops only
// after `calmWindows` windows in a row below two thirds of that (a GC pause or one slow window
// does not drop it; a choice younger than `reexploreMs` survives such a lull). When the
// event loop is the bottleneck (a small model, many small requests) the instances idle between
// batches, and capping batches would only add per-batch work to the loop, so batches grow as
// the queue allows.
// When the best size timed is the largest one the queue reached, a larger one might be better
// still: then nothing is preferred (batches grow as the queue allows) and the sizes are timed
// again `retryMs` later, once the load may have grown. (At concurrency 1 every batch has one row:
// preferring 1 there would keep batches at one row when the load rises.)

export interface BatchTiming {
  /** Rows per run. */
  readonly batchSize: number;
  /** The fastest timed run, in nanoseconds. */
  readonly bestRunNs: number;
  /** Rows per second at that speed. */
  readonly rowsPerSecond: number;
}

/** The sizes explored: powers of two below the max, and the max. */
export function candidateSizes(maxBatchSize: number): number[] {
  const sizes: number[] = [];
  for (let size = 1; size < maxBatchSize; size *= 2) sizes.push(size);
  if (maxBatchSize >= 1) sizes.push(maxBatchSize);
  return sizes;
}

/** The largest batch size whose rows/s is within `tolerance` of the best. */
export function preferredOf(timings: readonly BatchTiming[], tolerance = 0.05): number {
  const best = Math.max(...timings.map((t) => t.rowsPerSecond));
  const chosen = [...timings]
    .sort((a, b) => b.batchSize - a.batchSize)
    .find((t) => t.rowsPerSecond >= best * (1 - tolerance));
  return chosen?.batchSize ?? 1;
}

export interface BatchTunerOptions {
  readonly maxRows: number;
  /** Monotonic nanoseconds (the batcher's clock). */
  readonly nowNs: () => bigint;
  /** Timed runs per size: at least this many… Default 5. */
  readonly samplesPerSize?: number;
  /** …and at least this much onnxruntime time in all (short runs are noisy). Default 10 ms. */
  readonly minMsPerSize?: number;
  /** Batches in a row with fewer rows than the size being timed before it is skipped. Default 20. */
  readonly missesPerSize?: number;
  /** How long a choice stands before the sizes are timed again. Default 60 000 ms. */
  readonly reexploreMs?: number;
  /** How long "no choice" (the best was the largest size reached) stands. Default 1000 ms. */
  readonly retryMs?: number;
  /** Default 0.05. */
  readonly tolerance?: number;
  /** Instances whose runs are recorded (onnxruntime's busy time is judged against all of them). Default 1. */
  readonly instances?: number;
  /** The window over which onnxruntime's busy share is judged. Default 250 ms. */
  readonly windowMs?: number;
  /** The busy share from which a preference applies; 0: always. Default 0.75. */
  readonly saturation?: number;
  /** Windows in a row below RELEASE_FRACTION of `saturation` before a preference stops applying. Default 4. */
  readonly calmWindows?: number;
  /** Told each time the sizes have been timed: the choice, or undefined for none. */
  readonly onChoice?: (preferred: number | undefined, timings: readonly BatchTiming[]) => void;
}

export interface BatchTuner {
  /**
   * The batch size the batcher should prefer now (while exploring, the size being timed);
   * undefined: none (not chosen yet, or onnxruntime is not the bottleneck).
   */
  target(): number | undefined;
  /** The last choice; undefined before the first exploration ends. */
  chosen(): number | undefined;
  /** A batch of `rows` rows ran in `runNs` (every batch, so that the busy share is known). */
  record(rows: number, runNs: bigint): void;
}

/** A preference stops applying only below this fraction of the saturation share (hysteresis). */
const RELEASE_FRACTION = 2 / 3;

const msToNs = (ms: number): bigint => BigInt(Math.round(ms * 1e6));

export function createBatchTuner(options: BatchTunerOptions): BatchTuner {
  const sizes = candidateSizes(options.maxRows);
  const samples = options.samplesPerSize ?? 5;
  const minNs = msToNs(options.minMsPerSize ?? 10);
  const missLimit = options.missesPerSize ?? 20;
  const reexploreNs = msToNs(options.reexploreMs ?? 60_000);
  const retryNs = msToNs(options.retryMs ?? 1000);
  // Exploring: the index into sizes being timed; -1: using `choice` until exploreAgainAt.
  let index = 0;
  let misses = 0;
  let best = new Map<number, { bestRunNs: number; runs: number; totalNs: bigint }>();
  let choice: number | undefined;
  let exploreAgainAt = 0n;
  const saturation = options.saturation ?? 0.75;
  const windowNs = msToNs(options.windowMs ?? 250);
  const instances = BigInt(Math.max(1, options.instances ?? 1));
  const calmWindows = options.calmWindows ?? 4;
  let saturated = saturation <= 0;
  let calm = 0;
  let windowStart: bigint | undefined;
  let windowBusy = 0n;
  let lastRecord = 0n;

  const restart = (): void => {
    index = 0;
    misses = 0;
    best = new Map();
  };

  /** Adds a run to the busy share; true while onnxruntime is the bottleneck. */
  const busy = (runNs: bigint): boolean => {
    if (saturation <= 0) return true;
    const now = options.nowNs();
    lastRecord = now;
    windowStart ??= now;
    windowBusy += runNs;
    const elapsed = now - windowStart;
    if (elapsed >= windowNs) {
      const share = Number(windowBusy) / Number(elapsed * instances);
      windowStart = now;
      windowBusy = 0n;
      if (share >= saturation) {
        calm = 0;
        if (!saturated) {
          saturated = true;
          // A backlog begins: keep a choice younger than reexploreMs, or time the sizes anew
          // (what was measured while the instances idled says little about a backlog).
          if (choice === undefined || now >= exploreAgainAt) restart();
        }
      } else if (share < saturation * RELEASE_FRACTION) {
        // Hysteresis: a GC pause or a slow window does not drop the preference at once.
        if (saturated && ++calm >= calmWindows) saturated = false;
      } else {
        calm = 0;
      }
    }
    return saturated;
  };

  const finish = (): void => {
    const timings: BatchTiming[] = [];
    for (const [batchSize, { bestRunNs }] of best)
      timings.push({ batchSize, bestRunNs, rowsPerSecond: (batchSize * 1e9) / Math.max(1, bestRunNs) });
    timings.sort((a, b) => a.batchSize - b.batchSize);
    index = -1;
    // Nothing timed (every size skipped): keep what was chosen before, if anything.
    if (timings.length === 0) {
      exploreAgainAt = options.nowNs() + retryNs;
      return;
    }
    const fastest = timings.reduce((a, b) => (b.rowsPerSecond > a.rowsPerSecond ? b : a));
    const largestTimed = timings[timings.length - 1]?.batchSize ?? 0;
    const open = fastest.batchSize === largestTimed && largestTimed < options.maxRows;
    choice = open ? undefined : preferredOf(timings, options.tolerance);
    exploreAgainAt = options.nowNs() + (open ? retryNs : reexploreNs);
    options.onChoice?.(choice, timings);
  };

  const next = (): void => {
    index++;
    misses = 0;
    if (index >= sizes.length) finish();
  };

  return {
    target() {
      if (!saturated) return undefined;
      // No batch for a while: the backlog is gone, and so is the reason to prefer.
      if (saturation > 0 && options.nowNs() - lastRecord > 4n * windowNs) {
        saturated = false;
        windowStart = undefined;
        windowBusy = 0n;
        return undefined;
      }
      if (index < 0 && options.nowNs() >= exploreAgainAt) restart();
      return index < 0 ? choice : sizes[index];
    },
    chosen: () => choice,
    record(rows, runNs) {
      if (!busy(runNs)) return;
      const size = sizes[index];
      if (index < 0 || size === undefined) return;
      if (rows < size) {
        if (++misses >= missLimit) next();
        return;
      }
      // A single request of more rows than the size being timed says nothing about that size.
      if (rows > size) return;
      misses = 0;
      const seen = best.get(rows) ?? { bestRunNs: Number.POSITIVE_INFINITY, runs: 0, totalNs: 0n };
      const now = {
        bestRunNs: Math.min(seen.bestRunNs, Number(runNs)),
        runs: seen.runs + 1,
        totalNs: seen.totalNs + runNs,
      };
      best.set(rows, now);
      if (now.runs >= samples && now.totalNs >= minNs) next();
    },
  };
}
