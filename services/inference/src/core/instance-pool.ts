import type * as ort from 'onnxruntime-node';
import { inlineInstance } from './inline-instance.js';
import { sessionOptions, type Feed, type Instance, type RunOptions, type SessionMetadata } from './instance.js';
import type { ModelBytes, ServingConfig } from './types.js';
import { WORKER_RUNS_IN_FLIGHT, workerInstance } from './worker-instance.js';

// `instanceCount` onnxruntime sessions of one model version. A run goes to the least loaded
// instance with room (one run at a time inline, WORKER_RUNS_IN_FLIGHT in a worker), or waits (FIFO)
// for one; the dynamic batcher never starts more runs than the pool has slots, so the wait only
// matters for warm-up, direct callers and a worker being replaced.
//
// Where a session runs (ServingConfig.execution):
// - 'worker' (default): each instance's session lives in a worker thread of its own
//   (worker-instance.ts), so that the event loop keeps taking requests while a batch runs and
//   instances run in parallel. A worker that dies is replaced (see `died` below).
// - 'inline': the sessions run on the event loop (inline-instance.ts).
// - 'auto' is decided by the loader (loaded-model.ts chooseExecution), never seen here: it passes
//   'worker' or 'inline', and may add an inline lane to a worker pool (`addInlineLane`).
//
// The inline lane: one more session, on the event loop, for the runs that would only wait for the
// hand-off to a worker. A run takes it when the caller says nothing else of the model waits
// (`RunOptions.alone`), no other run is in flight, and the run is expected to end within
// INLINE_LANE_MAX_NS (from the nanoseconds per input element of recent runs, timed in the worker
// or on the lane itself). Under load every run goes to the workers, which keep the loop free.
//
// Inputs given as staged feeds are copied into each instance's reusable input buffers
// (buffer-pool.ts).

export interface InstancePool {
  /** The model's inputs and outputs as onnxruntime reports them. */
  readonly metadata: SessionMetadata;
  readonly size: number;
  /**
   * Runs that may be in flight at once: `size` for inline sessions; for worker sessions
   * WORKER_RUNS_IN_FLIGHT per instance, so that a worker finds its next batch waiting in its
   * message queue when one ends instead of idling until the event loop answers and sends another.
   */
  readonly slots: number;
  /**
   * True when run() fills RunOptions.timing with onnxruntime's own time: worker sessions. An inline
   * session does not: onnxruntime-node defers session.run to a setImmediate, so its time on the
   * event loop includes whatever else the loop runs first (under load, other requests' decoding).
   */
  readonly timesRuns: boolean;
  run(
    feeds: Record<string, Feed>,
    fetches: readonly string[],
    options?: RunOptions,
  ): Promise<ort.InferenceSession.ReturnType>;
  /**
   * Releases every session once its current run has finished (and ends their worker threads),
   * and drops the input buffers.
   */
  release(): Promise<void>;
  /** Input buffers created so far and free now, over all instances (for tests and diagnostics). */
  inputBuffers(): { allocated: number; free: number };
  /**
   * Adds an inline session beside worker sessions (see the file comment); `nsPerElement` is a
   * first estimate of a run's cost (undefined: none until a worker run is timed).
   */
  addInlineLane(nsPerElement: number | undefined): Promise<void>;
  /** Runs that took the inline lane so far (for tests and diagnostics). */
  laneRuns(): number;
}

/**
 * A run on the inline lane blocks the event loop: never for longer than this (expected). It is
 * taken only while nothing else of the model waits or runs, so what waits behind it is an arrival
 * during the run (which then goes to a worker) and other models' requests.
 */
export const INLINE_LANE_MAX_NS = 2_000_000;
/** Weight of the latest run in the lane's cost estimate. */
const LANE_ESTIMATE_WEIGHT = 0.2;

/** Elements of every feed (BYTES included): what a run's cost is estimated from. */
export function feedElements(feeds: Record<string, Feed>): number {
  let total = 0;
  for (const feed of Object.values(feeds)) {
    let elements = 1;
    for (const dim of feed.dims) elements *= dim;
    total += elements;
  }
  return total;
}

/** Attempts to replace a dead worker instance before its runs are left to fail; then it stays dead. */
const RESPAWN_ATTEMPTS = 3;

export interface InstancePoolHooks {
  /**
   * A worker instance died (its runs in flight failed); `replaced` tells whether a new one took
   * its place.
   */
  readonly onWorkerDeath?: (error: Error, replaced: Promise<boolean>) => void;
}

export async function createInstancePool(
  bytes: ModelBytes,
  config: ServingConfig,
  hooks: InstancePoolHooks = {},
): Promise<InstancePool> {
  const size = Math.max(1, Math.floor(config.instanceCount));
  const options = sessionOptions(config);
  if (config.execution === 'auto')
    throw new Error("an instance pool runs 'worker' or 'inline' sessions; the loader decides 'auto'");
  // Set below, once the pool's bookkeeping exists; a worker cannot die before it is created.
  let died: (instance: Instance, error: Error) => void = () => undefined;
  const spawnWorker = async (): Promise<Instance> => {
    const holder: { instance?: Instance } = {};
    const instance = await workerInstance(bytes, options, (error) => {
      if (holder.instance !== undefined) died(holder.instance, error);
    });
    holder.instance = instance;
    return instance;
  };
  const create = config.execution === 'inline' ? () => inlineInstance(bytes, options) : spawnWorker;
  const settled = await Promise.allSettled(Array.from({ length: size }, () => create()));
  const instances = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failure = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failure !== undefined) {
    await Promise.allSettled(instances.map((s) => s.release()));
    throw failure.reason;
  }
  const first = instances[0];
  if (first === undefined) throw new Error('no onnxruntime session was created');

  const depth = config.execution === 'inline' ? 1 : WORKER_RUNS_IN_FLIGHT;
  // Runs in flight per instance; a run goes to the least loaded instance with room.
  const inFlight = new Map<Instance, number>(instances.map((instance) => [instance, 0]));
  const waiters: { resolve(instance: Instance): void; reject(error: Error): void }[] = [];
  // Dead workers being replaced, and the last death (what runs fail with once none can come back).
  let respawning = 0;
  let lastDeath: Error | undefined;
  let busy = 0;
  let idle: (() => void) | undefined;

  const gone = (): Error =>
    new Error(
      `every onnxruntime worker of this model died and none could be restarted: ${lastDeath?.message ?? 'unknown'}`,
    );
  const leastLoaded = (): Instance | undefined => {
    let chosen: Instance | undefined;
    let load = depth;
    for (const [instance, runs] of inFlight) {
      if (runs < load) {
        chosen = instance;
        load = runs;
      }
    }
    return chosen;
  };
  const acquire = (): Promise<Instance> => {
    const instance = leastLoaded();
    if (instance === undefined) {
      if (inFlight.size === 0 && respawning === 0) return Promise.reject(gone());
      return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
    }
    inFlight.set(instance, (inFlight.get(instance) ?? 0) + 1);
    return Promise.resolve(instance);
  };
  /** Hands instances with room to waiting runs. */
  const wake = (): void => {
    while (waiters.length > 0) {
      const next = leastLoaded();
      if (next === undefined) return;
      inFlight.set(next, (inFlight.get(next) ?? 0) + 1);
      waiters.shift()?.resolve(next);
    }
  };
  const giveBack = (instance: Instance): void => {
    // A dead instance has left the map: its count is gone with it.
    const runs = inFlight.get(instance);
    if (runs !== undefined) inFlight.set(instance, runs - 1);
    wake();
  };

  let released: Promise<void> | undefined;
  // A dead worker leaves the rotation at once (runs go to the others, or wait) and a new one is
  // started in its place, a few times with backoff; the model keeps its state meanwhile.
  died = (instance, error) => {
    if (released !== undefined || !inFlight.has(instance)) return;
    inFlight.delete(instance);
    lastDeath = error;
    respawning++;
    const replaced = (async (): Promise<boolean> => {
      for (let attempt = 0; attempt < RESPAWN_ATTEMPTS; attempt++) {
        if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt));
        if (released !== undefined) return false;
        try {
          const fresh = await spawnWorker();
          if (released !== undefined) {
            await fresh.release();
            return false;
          }
          instances[instances.indexOf(instance)] = fresh;
          inFlight.set(fresh, 0);
          wake();
          return true;
        } catch {
          // Tried again after the backoff.
        }
      }
      return false;
    })().finally(() => {
      respawning--;
      // Nothing left to run on, and nothing coming: the waiting runs fail rather than hang.
      if (inFlight.size === 0 && respawning === 0) for (const waiter of waiters.splice(0)) waiter.reject(gone());
    });
    hooks.onWorkerDeath?.(error, replaced);
  };
  let lane: Instance | undefined;
  let laneNsPerElement: number | undefined;
  // The loader's first estimate was timed on warm-up feeds, whose made-up dims (1 for each dynamic
  // one) make the per-element cost of a real input look far higher: the first timed run replaces it.
  let laneEstimateTimed = false;
  let laneRuns = 0;
  const learn = (ranNs: bigint, elements: number): void => {
    if (ranNs < 0n || elements <= 0) return;
    const sample = Number(ranNs) / elements;
    laneNsPerElement =
      laneNsPerElement === undefined || !laneEstimateTimed
        ? sample
        : laneNsPerElement + LANE_ESTIMATE_WEIGHT * (sample - laneNsPerElement);
    laneEstimateTimed = true;
  };
  return {
    metadata: first.metadata,
    size,
    slots: size * depth,
    timesRuns: config.execution !== 'inline',
    async run(feeds, fetches, runOptions) {
      if (released !== undefined) throw new Error('the model version has been unloaded');
      const elements = lane === undefined ? 0 : feedElements(feeds);
      if (
        lane !== undefined &&
        runOptions?.alone === true &&
        busy === 0 &&
        laneNsPerElement !== undefined &&
        elements * laneNsPerElement <= INLINE_LANE_MAX_NS
      ) {
        // Nothing else runs or waits: the loop is idle, so its wall time is the run's.
        busy++;
        laneRuns++;
        const started = process.hrtime.bigint();
        try {
          return await lane.run(feeds, fetches, runOptions);
        } finally {
          const ranNs = process.hrtime.bigint() - started;
          learn(ranNs, elements);
          if (runOptions?.timing !== undefined) runOptions.timing.ranNs = ranNs;
          busy--;
          if (busy === 0) idle?.();
        }
      }
      busy++;
      let instance: Instance | undefined;
      const timing = lane === undefined ? undefined : (runOptions?.timing ?? { ranNs: -1n });
      try {
        instance = await acquire();
        const result = await instance.run(
          feeds,
          fetches,
          timing === undefined || timing === runOptions?.timing ? runOptions : { ...runOptions, timing },
        );
        if (timing !== undefined) learn(timing.ranNs, elements);
        return result;
      } finally {
        busy--;
        if (instance !== undefined) giveBack(instance);
        if (busy === 0) idle?.();
      }
    },
    release() {
      released ??= (async () => {
        if (busy > 0) await new Promise<void>((resolve) => (idle = resolve));
        await Promise.allSettled([...instances, ...(lane === undefined ? [] : [lane])].map((s) => s.release()));
      })();
      return released;
    },
    inputBuffers: () => ({
      allocated: instances.reduce((sum, s) => sum + s.buffers.allocated, 0),
      free: instances.reduce((sum, s) => sum + s.buffers.held(), 0),
    }),
    async addInlineLane(nsPerElement) {
      if (config.execution === 'inline') throw new Error('an inline pool needs no inline lane');
      if (lane !== undefined) return;
      const added = await inlineInstance(bytes, options);
      if (released !== undefined) {
        await added.release();
        return;
      }
      lane = added;
      laneNsPerElement ??= nsPerElement;
    },
    laneRuns: () => laneRuns,
  };
}
