import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { InputBuffers, stage } from './buffer-pool.js';
import { isStaged, type Feed, type Instance, type RunTiming, type SessionMetadata } from './instance.js';
import type { ModelBytes } from './types.js';
import type { FromWorker, SessionWorkerData, ToWorker, WireTensor } from './worker-protocol.js';

// A session in a worker thread of its own ('worker'). onnxruntime-node runs a model synchronously
// on the calling thread, so only there does the event loop keep decoding requests (and batches
// keep forming) while a batch runs, and do instances run in parallel. Inputs go to the worker and
// outputs come back by transfer (worker-protocol.ts).

/**
 * Batches a worker-thread instance holds at once: the one running and the next, queued in its
 * message port. With one, the worker idles from the end of each run until the event loop (busy
 * decoding requests under load) takes the answer and sends the next batch.
 */
export const WORKER_RUNS_IN_FLIGHT = 2;

let cachedEntry: { readonly url: URL; readonly execArgv: string[] } | undefined;

/**
 * The session thread's entry, session-worker-main, next to this module: the compiled .js in
 * dist/, run as it is; from sources (tsx or vitest, where this module's URL ends in .ts) the .ts,
 * with tsx's hooks registered in the thread first. (`--import tsx` registers them on the main
 * thread only, under Node 20.)
 */
function sessionWorkerEntry(): { readonly url: URL; readonly execArgv: string[] } {
  if (cachedEntry !== undefined) return cachedEntry;
  if (!import.meta.url.endsWith('.ts'))
    return (cachedEntry = { url: new URL('./session-worker-main.js', import.meta.url), execArgv: [] });
  const tsx = import.meta.resolve('tsx/esm/api');
  const register = `import { register } from ${JSON.stringify(tsx)}; register();`;
  return (cachedEntry = {
    url: new URL('./session-worker-main.ts', import.meta.url),
    execArgv: ['--import', `data:text/javascript,${encodeURIComponent(register)}`],
  });
}

const liveWorkers = new Set<Worker>();

/** Session worker threads started and not yet exited, in this process (for tests and diagnostics). */
export function sessionWorkerCount(): number {
  return liveWorkers.size;
}

/**
 * Ends every session worker thread of this process as a crash would, without releasing it (for
 * tests: the pools respawn them).
 */
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
export async function workerInstance(
  bytes: ModelBytes,
  options: ort.InferenceSession.SessionOptions,
  onDeath?: (error: Error) => void,
): Promise<Instance> {
  const workerData: SessionWorkerData = { model: bytes instanceof Uint8Array ? bytes : bytes.path, options };
  const entry = sessionWorkerEntry();
  // Not the parent's flags: the worker needs none but the loader of its own .ts entry, if that.
  const worker = new Worker(entry.url, { execArgv: entry.execArgv, workerData });
  const post = (message: ToWorker, transfer?: ArrayBuffer[]): void =>
    transfer === undefined ? worker.postMessage(message) : worker.postMessage(message, transfer);
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
          post({ kind: 'run', id, feeds: wire.feeds, fetches }, wire.transfer);
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
          post({ kind: 'release' });
        });
      }
      await worker.terminate();
    },
  };
}
