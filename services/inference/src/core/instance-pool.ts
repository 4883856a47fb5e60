import * as ort from 'onnxruntime-node';
import type { ModelBytes, ServingConfig } from './types.js';

// `instanceCount` onnxruntime sessions of one model version. A run goes to a free session, or
// waits (FIFO) for one; the dynamic batcher never starts more runs than there are sessions, so
// the wait only matters for warm-up and direct callers.

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
  /** Releases every session once its current run has finished. */
  release(): Promise<void>;
}

function sessionOptions(config: ServingConfig): ort.InferenceSession.SessionOptions {
  const threads = config.threadsPerInstance ?? 0;
  return {
    executionProviders: [...(config.executionProviders ?? ['cpu'])],
    ...(threads > 0 ? { intraOpNumThreads: threads } : {}),
  };
}

async function createSession(bytes: ModelBytes, options: ort.InferenceSession.SessionOptions): Promise<ort.InferenceSession> {
  return bytes instanceof Uint8Array ? ort.InferenceSession.create(bytes, options) : ort.InferenceSession.create(bytes.path, options);
}

export async function createInstancePool(bytes: ModelBytes, config: ServingConfig): Promise<InstancePool> {
  const size = Math.max(1, Math.floor(config.instanceCount));
  const options = sessionOptions(config);
  const settled = await Promise.allSettled(Array.from({ length: size }, () => createSession(bytes, options)));
  const sessions = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failure = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failure !== undefined) {
    await Promise.allSettled(sessions.map((s) => s.release()));
    throw failure.reason;
  }
  const first = sessions[0];
  if (first === undefined) throw new Error('no onnxruntime session was created');

  const free = [...sessions];
  const waiters: ((session: ort.InferenceSession) => void)[] = [];
  let busy = 0;
  let idle: (() => void) | undefined;

  const acquire = (): Promise<ort.InferenceSession> => {
    const session = free.pop();
    if (session !== undefined) return Promise.resolve(session);
    return new Promise((resolve) => waiters.push(resolve));
  };
  const giveBack = (session: ort.InferenceSession): void => {
    const waiter = waiters.shift();
    if (waiter !== undefined) waiter(session);
    else free.push(session);
  };

  let released: Promise<void> | undefined;
  return {
    metadata: { inputMetadata: first.inputMetadata, outputMetadata: first.outputMetadata },
    size,
    async run(feeds, fetches) {
      if (released !== undefined) throw new Error('the model version has been unloaded');
      busy++;
      const session = await acquire();
      try {
        return await session.run(feeds, [...fetches]);
      } finally {
        busy--;
        giveBack(session);
        if (busy === 0) idle?.();
      }
    },
    release() {
      released ??= (async () => {
        if (busy > 0) await new Promise<void>((resolve) => (idle = resolve));
        await Promise.allSettled(sessions.map((s) => s.release()));
      })();
      return released;
    },
  };
}
