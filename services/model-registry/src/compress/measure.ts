import { cpus } from 'node:os';
import type { registry as pb } from '@quanta/contracts';
import * as ort from 'onnxruntime-node';

/** Inputs of one session run. */
export type Feeds = Record<string, ort.Tensor>;

/** Called with how much of a step is done, 0 to 1; may throw to stop (a cancelled call). */
export type StepProgress = (fraction: number) => void;

/** Sums over every element of one output, across samples. */
interface OutputSums {
  maxAbs: number;
  sumAbs: number;
  count: number;
  dot: number;
  normBefore: number;
  normAfter: number;
  /** Rows compared by arg-max, and those that agreed; undefined once a sample's output is not [N, C], C > 1. */
  rows: number | undefined;
  agreed: number;
}

/**
 * A run's onnxruntime overhead is that of a model load away; each run yields to the event loop first (`session.run`
 * does).
 */
export function openSession(model: Uint8Array): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(model, { graphOptimizationLevel: 'all' });
}

function numbers(tensor: ort.Tensor): ArrayLike<number> {
  const data = tensor.data;
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) return Array.from(data, Number);
  if (Array.isArray(data)) throw new Error(`output of type ${tensor.type} has no numbers to compare`);
  return data;
}

function argmaxRows(values: ArrayLike<number>, rows: number, columns: number): number[] {
  const result: number[] = [];
  for (let r = 0; r < rows; r += 1) {
    let best = 0;
    for (let c = 1; c < columns; c += 1) if (values[r * columns + c]! > values[r * columns + best]!) best = c;
    result.push(best);
  }
  return result;
}

/**
 * Runs both models on every sample and compares each output: max and mean absolute error, cosine
 * similarity of all elements as one vector, and for outputs shaped like class scores ([N, C] with
 * C > 1 on every sample) the share of rows whose arg-max agrees.
 */
export async function compareOutputs(
  before: ort.InferenceSession,
  after: ort.InferenceSession,
  samples: readonly Feeds[],
  progress: StepProgress,
): Promise<pb.OutputAccuracy[]> {
  const sums = new Map<string, OutputSums>(
    before.outputNames.map((name) => [
      name,
      { maxAbs: 0, sumAbs: 0, count: 0, dot: 0, normBefore: 0, normAfter: 0, rows: 0, agreed: 0 },
    ]),
  );
  for (const [index, feeds] of samples.entries()) {
    const expected = await before.run(feeds);
    const actual = await after.run(feeds);
    for (const [name, s] of sums) {
      const a = expected[name];
      const b = actual[name];
      if (a === undefined || b === undefined) throw new Error(`output "${name}" is missing from a run`);
      if (a.dims.join(',') !== b.dims.join(','))
        throw new Error(
          `output "${name}" has shape [${b.dims.join(', ')}] after compression, [${a.dims.join(', ')}] before`,
        );
      const x = numbers(a);
      const y = numbers(b);
      for (let i = 0; i < x.length; i += 1) {
        const p = x[i]!;
        const q = y[i]!;
        const diff = Math.abs(p - q);
        // NaN compares false: a NaN on either side makes the error infinite rather than hiding it.
        if (!(diff <= s.maxAbs)) s.maxAbs = Number.isNaN(diff) ? Infinity : diff;
        s.sumAbs += diff;
        s.dot += p * q;
        s.normBefore += p * p;
        s.normAfter += q * q;
      }
      s.count += x.length;
      if (s.rows !== undefined && a.dims.length === 2 && a.dims[1]! > 1) {
        const rows = a.dims[0]!;
        const columns = a.dims[1]!;
        const top = argmaxRows(x, rows, columns);
        const topAfter = argmaxRows(y, rows, columns);
        s.rows += rows;
        s.agreed += top.filter((c, r) => c === topAfter[r]).length;
      } else s.rows = undefined;
    }
    progress((index + 1) / samples.length);
  }
  return [...sums].map(([name, s]) => {
    const norms = Math.sqrt(s.normBefore) * Math.sqrt(s.normAfter);
    // Two all-zero outputs are the same vector; one all-zero output shares no direction with the other.
    const cosine = norms === 0 ? (s.normBefore === s.normAfter ? 1 : 0) : s.dot / norms;
    return {
      name,
      maxAbsError: s.maxAbs,
      meanAbsError: s.count === 0 ? 0 : s.sumAbs / s.count,
      cosine: Math.min(1, cosine),
      ...(s.rows === undefined || s.rows === 0 ? {} : { top1Agreement: s.agreed / s.rows }),
    };
  });
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** How long latency is timed per batch size: enough runs for a stable median, bounded in time. */
export interface TimingBudget {
  readonly warmupRuns: number;
  readonly maxRuns: number;
  readonly minRuns: number;
  readonly maxMs: number;
}

export const DEFAULT_TIMING: TimingBudget = { warmupRuns: 3, maxRuns: 50, minRuns: 5, maxMs: 2000 };

/**
 * The p50 latency of one session run of each model at each batch size. Runs alternate between
 * the two models so that both see the same machine load.
 */
export async function compareLatency(
  before: ort.InferenceSession,
  after: ort.InferenceSession,
  batches: readonly { batchSize: number; feeds: Feeds }[],
  progress: StepProgress,
  budget: TimingBudget = DEFAULT_TIMING,
): Promise<pb.CompressionLatency[]> {
  const results: pb.CompressionLatency[] = [];
  for (const [index, { batchSize, feeds }] of batches.entries()) {
    for (let i = 0; i < budget.warmupRuns; i += 1) {
      await before.run(feeds);
      await after.run(feeds);
    }
    const timesBefore: number[] = [];
    const timesAfter: number[] = [];
    const start = performance.now();
    while (
      timesBefore.length < budget.maxRuns &&
      (timesBefore.length < budget.minRuns || performance.now() - start < budget.maxMs)
    ) {
      for (const [session, times] of [
        [before, timesBefore],
        [after, timesAfter],
      ] as const) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        const t0 = performance.now();
        await session.run(feeds);
        times.push(performance.now() - t0);
      }
      progress((index + Math.min(1, timesBefore.length / budget.maxRuns)) / batches.length);
    }
    results.push({
      batchSize,
      p50BeforeMs: median(timesBefore),
      p50AfterMs: median(timesAfter),
      runs: timesBefore.length,
    });
  }
  return results;
}

/** The runtime and machine the figures come from. */
export function measuredOn(): string {
  const cpu = cpus();
  return (
    `onnxruntime-node ${ort.env.versions.common ?? ''} (CPU execution provider) on ` +
    `${cpu[0]?.model.trim() ?? 'an unknown CPU'}, ${cpu.length} CPUs`
  );
}
