import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { onnxruntimeUrl, sessionWorkerUrl } from './session-worker.js';
import type { ModelBytes, ServingConfig } from './types.js';

// `instanceCount` onnxruntime sessions of one model version. A run goes to a free instance, or
// waits (FIFO) for one; the dynamic batcher never starts more runs than there are instances, so
// the wait only matters for warm-up and direct callers.
//
// Where a session runs (ServingConfig.execution):
// - 'worker' (default): each instance's session lives in a worker thread of its own. onnxruntime-node
//   runs a model synchronously on the calling thread, so only there does the event loop keep
//   decoding requests (and batches keep forming) while a batch runs, and do instances run in
//   parallel. Inputs are copied into the worker once (a merged batch, already a copy, is
//   transferred), outputs come back by transfer.
// - 'inline': the sessions run on the event loop.

export type SessionMetadata = Pick<ort.InferenceSession, 'inputMetadata' | 'outputMetadata'>;

export interface RunOptions {
  /** The feeds' buffers belong to the caller alone and are not used after the run: a pool may take them over. */
  readonly ownedInputs?: boolean;
}

export interface InstancePool {
  /** The model's inputs and outputs as onnxruntime reports them. */
  readonly metadata: SessionMetadata;
  readonly size: number;
  run(feeds: Record<string, ort.Tensor>, fetches: readonly string[], options?: RunOptions): Promise<ort.InferenceSession.ReturnType>;
  /** Releases every session once its current run has finished (and ends their worker threads). */
  release(): Promise<void>;
}

/** One session, in this thread or in a worker. */
interface Instance {
  readonly metadata: SessionMetadata;
  run(feeds: Record<string, ort.Tensor>, fetches: readonly string[], options: RunOptions | undefined): Promise<ort.InferenceSession.ReturnType>;
  release(): Promise<void>;
}

function sessionOptions(config: ServingConfig): ort.InferenceSession.SessionOptions {
  const threads = config.threadsPerInstance ?? 0;
  return {
    executionProviders: [...(config.executionProviders ?? ['cpu'])],
    ...(threads > 0 ? { intraOpNumThreads: threads } : {}),
  };
}

async function inlineInstance(bytes: ModelBytes, options: ort.InferenceSession.SessionOptions): Promise<Instance> {
  const session = bytes instanceof Uint8Array ? await ort.InferenceSession.create(bytes, options) : await ort.InferenceSession.create(bytes.path, options);
  return {
    metadata: { inputMetadata: session.inputMetadata, outputMetadata: session.outputMetadata },
    run: (feeds, fetches) => session.run(feeds, [...fetches]),
    release: () => session.release(),
  };
}

interface WireTensor {
  readonly name: string;
  readonly type: ort.Tensor.Type;
  readonly dims: readonly number[];
  readonly data: ort.Tensor.DataType;
}

type FromWorker =
  | { readonly kind: 'ready'; readonly inputMetadata: SessionMetadata['inputMetadata']; readonly outputMetadata: SessionMetadata['outputMetadata'] }
  | { readonly kind: 'failed'; readonly message: string }
  | { readonly kind: 'done'; readonly id: number; readonly outputs: readonly WireTensor[] }
  | { readonly kind: 'error'; readonly id: number; readonly message: string }
  | { readonly kind: 'released' };

let liveWorkers = 0;

/** Session worker threads started and not yet exited, in this process (for tests and diagnostics). */
export function sessionWorkerCount(): number {
  return liveWorkers;
}

/** Feeds for the worker: every numeric buffer in the transfer list, copied first unless we may give it away. */
function wireFeeds(feeds: Record<string, ort.Tensor>, owned: boolean): { feeds: WireTensor[]; transfer: ArrayBuffer[] } {
  const wire: WireTensor[] = [];
  const transfer: ArrayBuffer[] = [];
  for (const [name, tensor] of Object.entries(feeds)) {
    let data = tensor.data;
    if (ArrayBuffer.isView(data)) {
      const whole = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.buffer instanceof ArrayBuffer;
      // A view of a request's bytes (or of a pooled buffer) is copied: the caller keeps the original.
      if (!(owned && whole) || transfer.includes(data.buffer as ArrayBuffer)) data = data.slice();
      transfer.push(data.buffer as ArrayBuffer);
    }
    wire.push({ name, type: tensor.type, dims: tensor.dims, data });
  }
  return { feeds: wire, transfer };
}

async function workerInstance(bytes: ModelBytes, options: ort.InferenceSession.SessionOptions): Promise<Instance> {
  const worker = new Worker(sessionWorkerUrl, {
    // The worker needs no loader (tsx) nor the parent's flags.
    execArgv: [],
    workerData: { ort: onnxruntimeUrl(), model: bytes instanceof Uint8Array ? bytes : bytes.path, options },
  });
  liveWorkers++;
  const calls = new Map<number, { resolve(result: ort.InferenceSession.ReturnType): void; reject(error: Error): void }>();
  let nextId = 0;
  let ready: ((metadata: SessionMetadata) => void) | undefined;
  let failedStart: ((error: Error) => void) | undefined;
  let released: (() => void) | undefined;
  /** Set once the worker can take no more runs (it exited or failed); later runs fail with it. */
  let dead: Error | undefined;

  const fail = (error: Error): void => {
    dead ??= error;
    failedStart?.(error);
    for (const call of calls.values()) call.reject(error);
    calls.clear();
    released?.();
  };
  worker.on('message', (message: FromWorker) => {
    switch (message.kind) {
      case 'ready':
        ready?.({ inputMetadata: message.inputMetadata, outputMetadata: message.outputMetadata });
        break;
      case 'failed':
        fail(new Error(message.message));
        break;
      case 'done': {
        const call = calls.get(message.id);
        calls.delete(message.id);
        if (calls.size === 0) worker.unref();
        const results: Record<string, ort.Tensor> = {};
        for (const output of message.outputs) results[output.name] = new ort.Tensor(output.type, output.data, output.dims);
        call?.resolve(results);
        break;
      }
      case 'error': {
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
    liveWorkers--;
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

  return {
    metadata,
    run(feeds, fetches, runOptions) {
      if (dead !== undefined) return Promise.reject(dead);
      const id = nextId++;
      const wire = wireFeeds(feeds, runOptions?.ownedInputs === true);
      return new Promise((resolve, reject) => {
        if (calls.size === 0) worker.ref();
        calls.set(id, { resolve, reject });
        try {
          worker.postMessage({ kind: 'run', id, feeds: wire.feeds, fetches }, wire.transfer);
        } catch (error: unknown) {
          // Data the structured clone refuses: this run fails, the worker goes on.
          calls.delete(id);
          if (calls.size === 0) worker.unref();
          throw error;
        }
      });
    },
    async release() {
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

export async function createInstancePool(bytes: ModelBytes, config: ServingConfig): Promise<InstancePool> {
  const size = Math.max(1, Math.floor(config.instanceCount));
  const options = sessionOptions(config);
  const create = config.execution === 'inline' ? inlineInstance : workerInstance;
  const settled = await Promise.allSettled(Array.from({ length: size }, () => create(bytes, options)));
  const instances = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failure = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failure !== undefined) {
    await Promise.allSettled(instances.map((s) => s.release()));
    throw failure.reason;
  }
  const first = instances[0];
  if (first === undefined) throw new Error('no onnxruntime session was created');

  const free = [...instances];
  const waiters: ((instance: Instance) => void)[] = [];
  let busy = 0;
  let idle: (() => void) | undefined;

  const acquire = (): Promise<Instance> => {
    const instance = free.pop();
    if (instance !== undefined) return Promise.resolve(instance);
    return new Promise((resolve) => waiters.push(resolve));
  };
  const giveBack = (instance: Instance): void => {
    const waiter = waiters.shift();
    if (waiter !== undefined) waiter(instance);
    else free.push(instance);
  };

  let released: Promise<void> | undefined;
  return {
    metadata: first.metadata,
    size,
    async run(feeds, fetches, runOptions) {
      if (released !== undefined) throw new Error('the model version has been unloaded');
      busy++;
      const instance = await acquire();
      try {
        return await instance.run(feeds, fetches, runOptions);
      } finally {
        busy--;
        giveBack(instance);
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
  };
}
