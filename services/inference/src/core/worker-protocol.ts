import type * as ort from 'onnxruntime-node';
import type { SessionMetadata } from './instance.js';

// The messages between a worker instance (worker-instance.ts, the parent) and its session worker
// thread (session-worker-main.ts). Numeric tensor data travels as a typed array whose ArrayBuffer is
// transferred: outputs always; inputs when the parent may give them away.

/** The worker thread's `workerData`. */
export interface SessionWorkerData {
  /** The model's bytes, or the path of its file. */
  readonly model: Uint8Array | string;
  readonly options: ort.InferenceSession.SessionOptions;
}

export interface WireTensor {
  readonly name: string;
  readonly type: ort.Tensor.Type;
  readonly dims: readonly number[];
  readonly data: ort.Tensor.DataType;
  /**
   * One of the parent's input buffers: once the run is over, the worker sends its ArrayBuffer
   * back in `inputs` (transferred again) for the parent to reuse; no output shares memory with it.
   */
  readonly returned?: boolean;
}

/** Parent -> worker. */
export type ToWorker =
  | {
      readonly kind: 'run';
      readonly id: number;
      readonly feeds: readonly WireTensor[];
      readonly fetches: readonly string[];
    }
  | { readonly kind: 'release' };

/** Worker -> parent: 'ready' or 'failed' once, at start; then 'done' or 'error' per run, 'released' at the end. */
export type FromWorker =
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
      /** Nanoseconds in session.run. */
      readonly ranNs: bigint;
    }
  | { readonly kind: 'error'; readonly id: number; readonly message: string; readonly inputs: readonly ArrayBuffer[] }
  | { readonly kind: 'released' };
