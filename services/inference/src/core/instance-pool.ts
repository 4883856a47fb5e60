import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { ortTypedArray } from '@quanta/tensor';
import { onnxruntimeUrl, sessionWorkerUrl } from './session-worker.js';
import type { ModelBytes, ServingConfig } from './types.js';

// `instanceCount` onnxruntime sessions of one model version. A run goes to the least loaded
// instance with room (one run at a time inline, WORKER_RUNS_IN_FLIGHT in a worker), or waits (FIFO)
// for one; the dynamic batcher never starts more runs than the pool has slots, so the wait only
// matters for warm-up, direct callers and a worker being replaced.
//
// Where a session runs (ServingConfig.execution):
// - 'worker' (default): each instance's session lives in a worker thread of its own. onnxruntime-node
//   runs a model synchronously on the calling thread, so only there does the event loop keep
//   decoding requests (and batches keep forming) while a batch runs, and do instances run in
//   parallel. Outputs come back by transfer.
// - 'inline': the sessions run on the event loop.
// - 'auto' is decided by the loader (loaded-model.ts chooseExecution), never seen here: it passes
//   'worker' or 'inline'.
//
// Staged feeds (what the dynamic batcher sends): a numeric input given as the bytes of its parts
// (one request's raw bytes, or each request's of a batch), which the instance copies once, straight
// into an input buffer of its own, and which goes to the worker by transfer and comes back with the
// reply (transfer again). An instance runs one batch at a time, so its few buffers are reused from
// run to run: in steady state a request allocates no large ArrayBuffer here (onnxruntime's outputs
// aside), which is what keeps V8's external memory, and with it its full GCs, down. Inline, a lone
// part already aligned is used as it is (no copy), others are copied into the instance's buffer.
// A buffer is only taken for a run and given back once that run is over (the worker has returned
// it), and never reaches a request: an output that would share it is copied out.

export type SessionMetadata = Pick<ort.InferenceSession, 'inputMetadata' | 'outputMetadata'>;

/** A numeric input as the bytes of its parts, stacked along axis 0 in this order (see the header). */
export interface StagedFeed {
  readonly type: ort.Tensor.Type;
  readonly dims: readonly number[];
  /** Little-endian element bytes; only read, never kept after the run. */
  readonly parts: readonly Uint8Array[];
}

export type Feed = ort.Tensor | StagedFeed;

const isStaged = (feed: Feed): feed is StagedFeed => 'parts' in feed;

type ArrayOf = new (buffer: ArrayBuffer, byteOffset: number, length: number) => ort.Tensor.DataType & ArrayBufferView;

/** The typed array onnxruntime-node takes for a numeric type (float16 as Uint16Array bits), and its element size. */
function arrayOf(type: ort.Tensor.Type): { readonly array: ArrayOf; readonly size: number } {
  const array = ortTypedArray(type);
  if (array === undefined) throw new Error(`a staged feed must be numeric, not ${type}`);
  return { array, size: array.BYTES_PER_ELEMENT };
}

/** Free input buffers an instance keeps (the smallest go first beyond this). */
const MAX_FREE_BUFFERS = 4;

/**
 * The input buffers of one instance. A buffer is taken for one run and given back after it, so
 * two runs never share one; the instance runs one batch at a time, so a handful suffice.
 */
export class InputBuffers {
  private free: ArrayBuffer[] = [];
  /** ArrayBuffers created so far (for tests and diagnostics). */
  allocated = 0;

  /** A buffer of at least `bytes` bytes, reused when one is free (power-of-two sizes, so that batches of a few rows more or less share one). */
  take(bytes: number): ArrayBuffer {
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const size = this.free[i]?.byteLength ?? 0;
      if (size >= bytes && (best < 0 || size < (this.free[best]?.byteLength ?? 0))) best = i;
    }
    if (best >= 0) return this.free.splice(best, 1)[0] as ArrayBuffer;
    this.allocated++;
    return new ArrayBuffer(bytes <= 64 ? 64 : 2 ** Math.ceil(Math.log2(bytes)));
  }

  /** Back after its run; a detached buffer (transferred and not returned) is dropped. */
  give(buffer: ArrayBuffer): void {
    if (buffer.byteLength === 0) return;
    this.free.push(buffer);
    if (this.free.length > MAX_FREE_BUFFERS) {
      this.free.sort((a, b) => a.byteLength - b.byteLength);
      this.free.shift();
    }
  }

  /** Buffers free now. */
  held(): number {
    return this.free.length;
  }

  clear(): void {
    this.free = [];
  }
}

/** Copies a staged feed's parts into a buffer from `buffers`; returns the view for onnxruntime. */
function stage(
  feed: StagedFeed,
  buffers: InputBuffers,
): { data: ort.Tensor.DataType & ArrayBufferView; buffer: ArrayBuffer } {
  const { array, size } = arrayOf(feed.type);
  let bytes = 0;
  for (const part of feed.parts) bytes += part.byteLength;
  const buffer = buffers.take(bytes);
  const target = new Uint8Array(buffer, 0, bytes);
  let offset = 0;
  for (const part of feed.parts) {
    target.set(part, offset);
    offset += part.byteLength;
  }
  return { data: new array(buffer, 0, bytes / size), buffer };
}

export interface RunOptions {
  /** The feeds' buffers belong to the caller alone and are not used after the run: a pool may take them over. */
  readonly ownedInputs?: boolean;
  /** Filled in once the run is over: how long onnxruntime itself ran (the rest of the wait is the hand-off and, in a worker, the run ahead of it). */
  readonly timing?: RunTiming;
}

export interface RunTiming {
  /** Nanoseconds in session.run, on the thread that ran it; -1 until known. */
  ranNs: bigint;
}

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
  /** Releases every session once its current run has finished (and ends their worker threads), and drops the input buffers. */
  release(): Promise<void>;
  /** Input buffers created so far and free now, over all instances (for tests and diagnostics). */
  inputBuffers(): { allocated: number; free: number };
}

/** One session, in this thread or in a worker. */
interface Instance {
  readonly metadata: SessionMetadata;
  readonly buffers: InputBuffers;
  run(
    feeds: Record<string, Feed>,
    fetches: readonly string[],
    options: RunOptions | undefined,
  ): Promise<ort.InferenceSession.ReturnType>;
  release(): Promise<void>;
}

/** An output that shares memory with one of `buffers` (an identity output, say) is copied out. */
function unshared(
  results: ort.InferenceSession.ReturnType,
  buffers: readonly ArrayBuffer[],
): ort.InferenceSession.ReturnType {
  if (buffers.length === 0) return results;
  const shares = (tensor: ort.Tensor): boolean =>
    ArrayBuffer.isView(tensor.data) && buffers.includes(tensor.data.buffer as ArrayBuffer);
  if (!Object.values(results).some(shares)) return results;
  const copied: Record<string, ort.Tensor> = {};
  for (const [name, tensor] of Object.entries(results)) {
    copied[name] = shares(tensor)
      ? new ort.Tensor(tensor.type, (tensor.data as Uint8Array).slice() as ort.Tensor.DataType, tensor.dims)
      : tensor;
  }
  return copied;
}

function sessionOptions(config: ServingConfig): ort.InferenceSession.SessionOptions {
  const threads = config.threadsPerInstance ?? 0;
  return {
    executionProviders: [...(config.executionProviders ?? ['cpu'])],
    ...(threads > 0 ? { intraOpNumThreads: threads } : {}),
  };
}

async function inlineInstance(bytes: ModelBytes, options: ort.InferenceSession.SessionOptions): Promise<Instance> {
  const session =
    bytes instanceof Uint8Array
      ? await ort.InferenceSession.create(bytes, options)
      : await ort.InferenceSession.create(bytes.path, options);
  const buffers = new InputBuffers();
  return {
    metadata: { inputMetadata: session.inputMetadata, outputMetadata: session.outputMetadata },
    buffers,
    async run(feeds, fetches) {
      const ortFeeds: Record<string, ort.Tensor> = {};
      const taken: ArrayBuffer[] = [];
      try {
        for (const [name, feed] of Object.entries(feeds)) {
          if (!isStaged(feed)) {
            ortFeeds[name] = feed;
            continue;
          }
          const lone = feed.parts.length === 1 ? feed.parts[0] : undefined;
          const { array, size } = arrayOf(feed.type);
          if (lone !== undefined && lone.byteOffset % size === 0) {
            // The request's own bytes, aligned: onnxruntime reads them where they are.
            ortFeeds[name] = new ort.Tensor(
              feed.type,
              new array(lone.buffer as ArrayBuffer, lone.byteOffset, lone.byteLength / size),
              feed.dims,
            );
            continue;
          }
          const staged = stage(feed, buffers);
          taken.push(staged.buffer);
          ortFeeds[name] = new ort.Tensor(feed.type, staged.data, feed.dims);
        }
        return unshared(await session.run(ortFeeds, [...fetches]), taken);
      } finally {
        for (const buffer of taken) buffers.give(buffer);
      }
    },
    release: () => {
      buffers.clear();
      return session.release();
    },
  };
}

interface WireTensor {
  readonly name: string;
  readonly type: ort.Tensor.Type;
  readonly dims: readonly number[];
  readonly data: ort.Tensor.DataType;
  /** An instance's input buffer: the worker sends it back with the reply. */
  readonly returned?: boolean;
}

type FromWorker =
  | {
      readonly kind: 'ready';
      readonly inputMetadata: SessionMetadata['inputMetadata'];
      readonly outputMetadata: SessionMetadata['outputMetadata'];
    }
  | { readonly kind: 'failed'; readonly message: string }
  | {
      readonly kind: 'done';
      readonly id: number;
      readonly outputs: readonly WireTensor[];
      readonly inputs: readonly ArrayBuffer[];
      readonly ranNs: bigint;
    }
  | { readonly kind: 'error'; readonly id: number; readonly message: string; readonly inputs: readonly ArrayBuffer[] }
  | { readonly kind: 'released' };

const liveWorkers = new Set<Worker>();

/** Session worker threads started and not yet exited, in this process (for tests and diagnostics). */
export function sessionWorkerCount(): number {
  return liveWorkers.size;
}

/** Ends every session worker thread of this process as a crash would, without releasing it (for tests: the pools respawn them). */
export async function killSessionWorkers(): Promise<void> {
  await Promise.all([...liveWorkers].map((worker) => worker.terminate()));
}

/**
 * Feeds for the worker: every numeric buffer in the transfer list. Staged feeds are copied into
 * the instance's input buffers (which come back with the reply); other tensors are copied first
 * unless we may give them away.
 */
function wireFeeds(
  feeds: Record<string, Feed>,
  owned: boolean,
  buffers: InputBuffers,
): { feeds: WireTensor[]; transfer: ArrayBuffer[] } {
  const wire: WireTensor[] = [];
  const transfer: ArrayBuffer[] = [];
  for (const [name, tensor] of Object.entries(feeds)) {
    if (isStaged(tensor)) {
      const staged = stage(tensor, buffers);
      transfer.push(staged.buffer);
      wire.push({ name, type: tensor.type, dims: tensor.dims, data: staged.data, returned: true });
      continue;
    }
    let data = tensor.data;
    if (ArrayBuffer.isView(data)) {
      const whole =
        data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.buffer instanceof ArrayBuffer;
      // A view of a request's bytes (or of a pooled buffer) is copied: the caller keeps the original.
      if (!(owned && whole) || transfer.includes(data.buffer as ArrayBuffer)) data = data.slice();
      transfer.push(data.buffer as ArrayBuffer);
    }
    wire.push({ name, type: tensor.type, dims: tensor.dims, data });
  }
  return { feeds: wire, transfer };
}

/**
 * A session in a worker thread. `onDeath` is told once if the worker, after it started, ends or
 * fails other than by release(): its runs in flight have failed and later ones would.
 */
async function workerInstance(
  bytes: ModelBytes,
  options: ort.InferenceSession.SessionOptions,
  onDeath?: (error: Error) => void,
): Promise<Instance> {
  const worker = new Worker(sessionWorkerUrl, {
    // The worker needs no loader (tsx) nor the parent's flags.
    execArgv: [],
    workerData: { ort: onnxruntimeUrl(), model: bytes instanceof Uint8Array ? bytes : bytes.path, options },
  });
  liveWorkers.add(worker);
  let started = false;
  let releasing = false;
  const calls = new Map<
    number,
    {
      resolve(result: ort.InferenceSession.ReturnType): void;
      reject(error: Error): void;
      timing?: RunTiming | undefined;
    }
  >();
  let nextId = 0;
  let ready: ((metadata: SessionMetadata) => void) | undefined;
  let failedStart: ((error: Error) => void) | undefined;
  let released: (() => void) | undefined;
  /** Set once the worker can take no more runs (it exited or failed); later runs fail with it. */
  let dead: Error | undefined;

  const fail = (error: Error): void => {
    const first = dead === undefined;
    dead ??= error;
    if (first && started && !releasing) onDeath?.(error);
    failedStart?.(error);
    for (const call of calls.values()) call.reject(error);
    calls.clear();
    released?.();
  };
  const buffers = new InputBuffers();
  worker.on('message', (message: FromWorker) => {
    switch (message.kind) {
      case 'ready':
        ready?.({ inputMetadata: message.inputMetadata, outputMetadata: message.outputMetadata });
        break;
      case 'failed':
        fail(new Error(message.message));
        break;
      case 'done': {
        for (const buffer of message.inputs) buffers.give(buffer);
        const call = calls.get(message.id);
        calls.delete(message.id);
        if (calls.size === 0) worker.unref();
        const results: Record<string, ort.Tensor> = {};
        for (const output of message.outputs)
          results[output.name] = new ort.Tensor(output.type, output.data, output.dims);
        if (call?.timing !== undefined) call.timing.ranNs = message.ranNs;
        call?.resolve(results);
        break;
      }
      case 'error': {
        for (const buffer of message.inputs) buffers.give(buffer);
        const call = calls.get(message.id);
        calls.delete(message.id);
        if (calls.size === 0) worker.unref();
        call?.reject(new Error(message.message));
        break;
      }
      case 'released':
        released?.();
        break;
    }
  });
  worker.on('error', (error: Error) => fail(new Error(`the onnxruntime worker thread failed: ${error.message}`)));
  worker.on('exit', (code) => {
    liveWorkers.delete(worker);
    fail(new Error(`the onnxruntime worker thread exited (code ${code})`));
  });

  let metadata: SessionMetadata;
  try {
    metadata = await new Promise<SessionMetadata>((resolve, reject) => {
      ready = resolve;
      failedStart = reject;
      if (dead !== undefined) reject(dead);
    });
  } catch (error: unknown) {
    await worker.terminate();
    throw error;
  } finally {
    ready = undefined;
    failedStart = undefined;
  }
  // Like an inline session, an idle worker does not keep the process alive; one with runs in
  // flight does.
  worker.unref();
  started = true;

  return {
    metadata,
    buffers,
    run(feeds, fetches, runOptions) {
      if (dead !== undefined) return Promise.reject(dead);
      const id = nextId++;
      const wire = wireFeeds(feeds, runOptions?.ownedInputs === true, buffers);
      return new Promise((resolve, reject) => {
        if (calls.size === 0) worker.ref();
        calls.set(id, { resolve, reject, timing: runOptions?.timing });
        try {
          worker.postMessage({ kind: 'run', id, feeds: wire.feeds, fetches }, wire.transfer);
        } catch (error: unknown) {
          // Data the structured clone refuses: this run fails, the worker goes on (the input
          // buffers were not transferred: they are free again).
          for (const buffer of wire.transfer)
            if (wire.feeds.some((f) => f.returned === true && (f.data as ArrayBufferView).buffer === buffer))
              buffers.give(buffer);
          calls.delete(id);
          if (calls.size === 0) worker.unref();
          throw error;
        }
      });
    },
    async release() {
      releasing = true;
      buffers.clear();
      if (dead === undefined) {
        await new Promise<void>((resolve) => {
          released = resolve;
          // Held while the session is released, as during a run.
          worker.ref();
          worker.postMessage({ kind: 'release' });
        });
      }
      await worker.terminate();
    },
  };
}

/**
 * Batches a worker-thread instance holds at once: the one running and the next, queued in its
 * message port. With one, the worker idles from the end of each run until the event loop (busy
 * decoding requests under load) takes the answer and sends the next batch.
 */
export const WORKER_RUNS_IN_FLIGHT = 2;

/** Attempts to replace a dead worker instance before its runs are left to fail; then it stays dead. */
const RESPAWN_ATTEMPTS = 3;

export interface InstancePoolHooks {
  /** A worker instance died (its runs in flight failed); `replaced` tells whether a new one took its place. */
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
  return {
    metadata: first.metadata,
    size,
    slots: size * depth,
    timesRuns: config.execution !== 'inline',
    async run(feeds, fetches, runOptions) {
      if (released !== undefined) throw new Error('the model version has been unloaded');
      busy++;
      let instance: Instance | undefined;
      try {
        instance = await acquire();
        return await instance.run(feeds, fetches, runOptions);
      } finally {
        busy--;
        if (instance !== undefined) giveBack(instance);
        if (busy === 0) idle?.();
      }
    },
    release() {
      released ??= (async () => {
        if (busy > 0) await new Promise<void>((resolve) => (idle = resolve));
        await Promise.allSettled(instances.map((s) => s.release()));
      })();
      return released;
    },
    inputBuffers: () => ({
      allocated: instances.reduce((sum, s) => sum + s.buffers.allocated, 0),
      free: instances.reduce((sum, s) => sum + s.buffers.held(), 0),
    }),
  };
}
