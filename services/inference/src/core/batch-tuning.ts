// Which batch size to prefer, measured on the model's own traffic. Batching amortises per-run
// costs, but past some size a model can get slower per row (its activations outgrow the caches:
// the PP-OCR classifier runs 1.5-1.7x slower per row at batch 64 than at 4 on this project's
// machines), and a dynamic batcher that always fills the largest batch the queue allows then
// serves less than it could. Measuring live rather than at load covers models with dynamic dims
// (the classifier takes [-1, 3, -1, -1]: only requests say what H and W are) and measures the
// runs under the load they actually share the machine with.
//
// The tuner explores: it asks the batcher for batches of 1, 2, 4, … maxRows rows in turn, each
// while the queue holds enough rows for it, and times `samplesPerSize` runs of each; then it
// prefers the smallest size whose rows per second (from its fastest run: noise only adds time)
// is within `tolerance` of the best, and explores again `reexploreMs` later. A size that
// `missesPerSize` batches in a row fall short of is skipped: at that concurrency it does not happen.

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

/** The smallest batch size whose rows/s is within `tolerance` of the best. */
export function preferredOf(timings: readonly BatchTiming[], tolerance = 0.05): number {
  const best = Math.max(...timings.map((t) => t.rowsPerSecond));
  const chosen = [...timings].sort((a, b) => a.batchSize - b.batchSize).find((t) => t.rowsPerSecond >= best * (1 - tolerance));
  return chosen?.batchSize ?? 1;
}

export interface BatchTunerOptions {
  readonly maxRows: number;
  /** Monotonic nanoseconds (the batcher's clock). */
  readonly nowNs: () => bigint;
  /** Timed runs per size. Default 5. */
  readonly samplesPerSize?: number;
  /** Batches in a row with fewer rows than the size being timed before it is skipped. Default 20. */
  readonly missesPerSize?: number;
  /** How long a choice stands before the sizes are timed again. Default 60 000 ms. */
  readonly reexploreMs?: number;
  /** Default 0.05. */
  readonly tolerance?: number;
  /** Told each time a choice is made. */
  readonly onChoice?: (preferred: number, timings: readonly BatchTiming[]) => void;
}

export interface BatchTuner {
  /** The batch size the batcher should prefer now (while exploring, the size being timed); undefined: none yet. */
  target(): number | undefined;
  /** The last choice; undefined before the first exploration ends. */
  chosen(): number | undefined;
  /** A batch of `rows` rows ran in `runNs`. */
  record(rows: number, runNs: bigint): void;
}

export function createBatchTuner(options: BatchTunerOptions): BatchTuner {
  const sizes = candidateSizes(options.maxRows);
  const samples = options.samplesPerSize ?? 5;
  const missLimit = options.missesPerSize ?? 20;
  const reexploreNs = BigInt(Math.round((options.reexploreMs ?? 60_000) * 1e6));
  // Exploring: the index into sizes being timed; -1: using `choice` until exploreAgainAt.
  let index = 0;
  let misses = 0;
  let best = new Map<number, { bestRunNs: number; runs: number }>();
  let choice: number | undefined;
  let exploreAgainAt = 0n;

  const finish = (): void => {
    const timings: BatchTiming[] = [];
    for (const [batchSize, { bestRunNs }] of best) timings.push({ batchSize, bestRunNs, rowsPerSecond: (batchSize * 1e9) / Math.max(1, bestRunNs) });
    timings.sort((a, b) => a.batchSize - b.batchSize);
    // Nothing timed (every size skipped): keep what was chosen before, if anything.
    if (timings.length > 0) {
      choice = preferredOf(timings, options.tolerance);
      options.onChoice?.(choice, timings);
    }
    index = -1;
    exploreAgainAt = options.nowNs() + reexploreNs;
  };

  const next = (): void => {
    index++;
    misses = 0;
    if (index >= sizes.length) finish();
  };

  return {
    target() {
      if (index < 0 && options.nowNs() >= exploreAgainAt) {
        index = 0;
        misses = 0;
        best = new Map();
      }
      return index < 0 ? choice : sizes[index];
    },
    chosen: () => choice,
    record(rows, runNs) {
      const size = sizes[index];
      if (index < 0 || size === undefined) return;
      if (rows < size) {
        if (++misses >= missLimit) next();
        return;
      }
      // A single request of more rows than the size being timed says nothing about that size.
      if (rows > size) return;
      misses = 0;
      const seen = best.get(rows) ?? { bestRunNs: Number.POSITIVE_INFINITY, runs: 0 };
      best.set(rows, { bestRunNs: Math.min(seen.bestRunNs, Number(runNs)), runs: seen.runs + 1 });
      if (seen.runs + 1 >= samples) next();
    },
  };
}
