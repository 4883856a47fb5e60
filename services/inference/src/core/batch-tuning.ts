import type * as ort from 'onnxruntime-node';
import { ORT_TYPE, allocData } from '@quanta/tensor';
import { monotonicNs } from './clock.js';
import type { Feed, InstancePool } from './instance-pool.js';
import type { ModelSignature } from './types.js';

// Which batch size to prefer, measured at load through the model's own instances (the path a
// batch takes: each row's bytes staged into the instance's input buffer, the hand-off to its
// worker, onnxruntime, the outputs back). Batching amortises per-run costs, but past some size a
// model can get slower per row (its activations outgrow the caches: the PP-OCR classifier runs
// 1.5-1.7x slower per row at batch 64 than at 4 on this project's machines), and a dynamic
// batcher that always fills the largest batch the queue allows then serves less than it could.

export interface BatchTiming {
  /** Rows per run. */
  readonly batchSize: number;
  /** The fastest of the timed runs, in nanoseconds. */
  readonly bestRunNs: number;
  /** Rows per second at that speed. */
  readonly rowsPerSecond: number;
}

export type BatchTuning =
  | { readonly tuned: true; readonly preferred: number; readonly timings: readonly BatchTiming[] }
  | { readonly tuned: false; readonly reason: string };

export interface BatchTuningOptions {
  /** Largest batch to try (the deployment's max batch size). */
  readonly maxBatchSize: number;
  /** Timed runs per size: at least this many, and at least minMsPerSize of them. Default 3. */
  readonly minRuns?: number;
  /** Default 20 ms. */
  readonly minMsPerSize?: number;
  /** Stop trying larger sizes once the sweep has taken this long (ms). Default 3000. */
  readonly budgetMs?: number;
  /** The smallest size within this fraction of the best rows/s is preferred. Default 0.05. */
  readonly tolerance?: number;
}

/** The sizes tried: powers of two below the max, and the max. */
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

/** A deterministic row of each numeric input (floats in [0, 1), zeros otherwise), as the bytes a request would send. */
interface SampleRow {
  readonly type: ort.Tensor.Type;
  readonly row: Uint8Array;
  readonly itemDims: readonly number[];
}

function sampleRows(signature: ModelSignature): Map<string, SampleRow> | string {
  const rows = new Map<string, SampleRow>();
  for (const spec of signature.inputs) {
    if (spec.datatype === 'BYTES') return `input "${spec.name}" is BYTES`;
    if (spec.shape === null) return `input "${spec.name}" declares no shape`;
    const itemDims = spec.shape.slice(1);
    if (itemDims.some((dim) => dim < 0)) return `input "${spec.name}" has a dynamic dim after the batch dim ([${spec.shape.join(',')}]), so one size cannot stand for the requests`;
    const count = itemDims.reduce((a, b) => a * b, 1);
    const type = ORT_TYPE[spec.datatype];
    if (type === undefined) return `input "${spec.name}" is ${spec.datatype}, which onnxruntime does not take`;
    const data = allocData(spec.datatype, count) as ArrayBufferView & ArrayLike<number | bigint | boolean>;
    if (data instanceof Float32Array || data instanceof Float64Array) {
      // A fixed sequence, not Math.random: the same model gets the same inputs every load.
      let x = 0x9e3779b9;
      for (let i = 0; i < count; i++) {
        x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
        (data as Float32Array)[i] = x / 2 ** 32;
      }
    }
    rows.set(spec.name, { type, row: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), itemDims });
  }
  return rows;
}

/**
 * Times batches of 1, 2, 4, … maxBatchSize rows through `pool` and picks the preferred size.
 * Models it cannot time fairly (BYTES inputs, dynamic dims after the batch dim) are not tuned.
 */
export async function tuneBatchSize(pool: InstancePool, signature: ModelSignature, options: BatchTuningOptions): Promise<BatchTuning> {
  if (!signature.batchable || options.maxBatchSize <= 1) return { tuned: false, reason: 'the model is not batched' };
  const rows = sampleRows(signature);
  if (typeof rows === 'string') return { tuned: false, reason: rows };
  const minRuns = options.minRuns ?? 3;
  const minNs = (options.minMsPerSize ?? 20) * 1e6;
  const budgetNs = (options.budgetMs ?? 3000) * 1e6;
  const fetches = signature.outputs.map((spec) => spec.name);
  const sweepStart = monotonicNs();
  const timings: BatchTiming[] = [];
  for (const batchSize of candidateSizes(options.maxBatchSize)) {
    if (timings.length > 0 && Number(monotonicNs() - sweepStart) > budgetNs) break;
    const feeds: Record<string, Feed> = {};
    for (const [name, { type, row, itemDims }] of rows) {
      feeds[name] = { type, dims: [batchSize, ...itemDims], parts: Array.from({ length: batchSize }, () => row) };
    }
    // One untimed run: onnxruntime plans memory for a new shape on its first run.
    await pool.run(feeds, fetches);
    let best = Number.POSITIVE_INFINITY;
    let runs = 0;
    const started = monotonicNs();
    while (runs < minRuns || Number(monotonicNs() - started) < minNs) {
      const t0 = monotonicNs();
      await pool.run(feeds, fetches);
      best = Math.min(best, Number(monotonicNs() - t0));
      runs++;
      // A size whose runs alone overrun the budget is timed once.
      if (Number(monotonicNs() - sweepStart) > budgetNs) break;
    }
    timings.push({ batchSize, bestRunNs: best, rowsPerSecond: (batchSize * 1e9) / Math.max(1, best) });
  }
  return { tuned: true, preferred: preferredOf(timings, options.tolerance), timings };
}
