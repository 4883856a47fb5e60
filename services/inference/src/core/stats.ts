import type { DurationStat, FailureReason, InferErrorCode, ModelStats, StageTimes } from './types.js';

// Triton's statistics for one model version. Per request (success only): queue and the three
// compute stages of the batch it ran in. Per execution: one entry under its batch size.
// inference_count counts rows (a request of dim0 = 3 is 3 inferences), execution_count runs.
// Failures are counted per reason too (Triton's metrics label them; its statistics do not).
// A response-cache hit is a success with no queue time and no execution: it counts in success,
// queue and cache_hit, not in inference_count or the compute stages (Triton's rules).

export interface ExecutionTimes {
  readonly computeInputNs: bigint;
  readonly computeInferNs: bigint;
  readonly computeOutputNs: bigint;
}

export interface StatsRecorder {
  success(totalNs: bigint, times: StageTimes, rows: number, at: number): void;
  failure(totalNs: bigint, reason: FailureReason): void;
  execution(batchSize: number, times: ExecutionTimes): void;
  /** A request answered from the response cache: its total time, and the lookup's. */
  cacheHit(totalNs: bigint, lookupNs: bigint, at: number): void;
  /** A request that missed the response cache: the lookup's and the insert's time. */
  cacheMiss(ns: bigint): void;
  snapshot(): ModelStats;
}

interface BatchEntry {
  computeInput: DurationStat;
  computeInfer: DurationStat;
  computeOutput: DurationStat;
}

const zero = (): DurationStat => ({ count: 0n, ns: 0n });
const add = (stat: DurationStat, ns: bigint): void => {
  stat.count += 1n;
  stat.ns += ns;
};
const copy = (stat: DurationStat): DurationStat => ({ count: stat.count, ns: stat.ns });

/**
 * Triton's failure reason for the core's error codes (its dynamic batcher's: a full queue or an
 * expired timeout is REJECTED).
 */
export function failureReasonOf(code: InferErrorCode): FailureReason {
  switch (code) {
    case 'RESOURCE_EXHAUSTED':
    case 'DEADLINE_EXCEEDED':
      return 'REJECTED';
    case 'CANCELLED':
      return 'CANCELED';
    case 'INTERNAL':
      return 'BACKEND';
    default:
      return 'OTHER';
  }
}

export function createStatsRecorder(name: string, version: string): StatsRecorder {
  let lastInference = 0;
  let inferenceCount = 0n;
  let executionCount = 0n;
  const success = zero();
  const fail = zero();
  const failures: Record<FailureReason, bigint> = { REJECTED: 0n, CANCELED: 0n, BACKEND: 0n, OTHER: 0n };
  const queue = zero();
  const computeInput = zero();
  const computeInfer = zero();
  const computeOutput = zero();
  const cacheHit = zero();
  const cacheMiss = zero();
  const batches = new Map<number, BatchEntry>();
  return {
    success(totalNs, times, rows, at) {
      add(success, totalNs);
      add(queue, times.queueNs);
      add(computeInput, times.computeInputNs);
      add(computeInfer, times.computeInferNs);
      add(computeOutput, times.computeOutputNs);
      inferenceCount += BigInt(rows);
      lastInference = Math.max(lastInference, at);
    },
    failure(totalNs, reason) {
      add(fail, totalNs);
      failures[reason] += 1n;
    },
    execution(batchSize, times) {
      executionCount += 1n;
      let entry = batches.get(batchSize);
      if (entry === undefined) {
        entry = { computeInput: zero(), computeInfer: zero(), computeOutput: zero() };
        batches.set(batchSize, entry);
      }
      add(entry.computeInput, times.computeInputNs);
      add(entry.computeInfer, times.computeInferNs);
      add(entry.computeOutput, times.computeOutputNs);
    },
    cacheHit(totalNs, lookupNs, at) {
      add(success, totalNs);
      add(queue, 0n);
      add(cacheHit, lookupNs);
      lastInference = Math.max(lastInference, at);
    },
    cacheMiss(ns) {
      add(cacheMiss, ns);
    },
    snapshot() {
      return {
        name,
        version,
        lastInference,
        inferenceCount,
        executionCount,
        success: copy(success),
        fail: copy(fail),
        failures: { ...failures },
        queue: copy(queue),
        computeInput: copy(computeInput),
        computeInfer: copy(computeInfer),
        computeOutput: copy(computeOutput),
        cacheHit: copy(cacheHit),
        cacheMiss: copy(cacheMiss),
        batches: [...batches.entries()]
          .sort(([a], [b]) => a - b)
          .map(([batchSize, entry]) => ({
            batchSize,
            computeInput: copy(entry.computeInput),
            computeInfer: copy(entry.computeInfer),
            computeOutput: copy(entry.computeOutput),
          })),
      };
    },
  };
}
