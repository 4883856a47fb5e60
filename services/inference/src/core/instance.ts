import type * as ort from 'onnxruntime-node';
import type { InputBuffers, StagedFeed } from './buffer-pool.js';
import type { ServingConfig } from './types.js';

// One onnxruntime session of a model version, as the instance pool sees it: inline
// (inline-instance.ts) or in a worker thread (worker-instance.ts).

export type SessionMetadata = Pick<ort.InferenceSession, 'inputMetadata' | 'outputMetadata'>;

export type Feed = ort.Tensor | StagedFeed;

export const isStaged = (feed: Feed): feed is StagedFeed => 'parts' in feed;

export interface RunOptions {
  /**
   * The feeds' buffers belong to the caller alone and are not used after the run: a pool may take
   * them over.
   */
  readonly ownedInputs?: boolean;
  /**
   * Filled in once the run is over: how long onnxruntime itself ran (the rest of the wait is the
   * hand-off and, in a worker, the run ahead of it).
   */
  readonly timing?: RunTiming;
  /**
   * Nothing else of the model waits or runs besides this run: a pool with an inline lane may run
   * it on the event loop (see InstancePool.addInlineLane).
   */
  readonly alone?: boolean;
}

export interface RunTiming {
  /** Nanoseconds in session.run, on the thread that ran it; -1 until known. */
  ranNs: bigint;
}

/** One session, in this thread or in a worker. */
export interface Instance {
  readonly metadata: SessionMetadata;
  readonly buffers: InputBuffers;
  run(
    feeds: Record<string, Feed>,
    fetches: readonly string[],
    options: RunOptions | undefined,
  ): Promise<ort.InferenceSession.ReturnType>;
  release(): Promise<void>;
}

export function sessionOptions(config: ServingConfig): ort.InferenceSession.SessionOptions {
  const threads = config.threadsPerInstance ?? 0;
  return {
    executionProviders: [...(config.executionProviders ?? ['cpu'])],
    ...(threads > 0 ? { intraOpNumThreads: threads } : {}),
  };
}
