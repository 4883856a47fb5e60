import type { Datatype, Tensor } from '@quanta/tensor/core';

/** An input or output of the served model, as ModelMetadata gives it (-1: any size). */
export interface TensorSpec {
  readonly name: string;
  readonly datatype: Datatype;
  readonly shape: readonly number[];
}

/** The served model's signature, asked once before a job starts. */
export interface ModelSignature {
  readonly name: string;
  /** The version the server answered for; '' when it serves the latest. */
  readonly version: string;
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
}

/**
 * One record of a dataset: a request's worth of inputs (dim 0 of each tensor is its rows, usually
 * 1), tied to the id the dataset gives it (or its position).
 */
export interface BatchRecord {
  readonly id: string;
  readonly inputs: readonly Tensor[];
  /** Stateful models: the sequence the record belongs to. A sequence's records are contiguous. */
  readonly sequenceId?: string;
  /** A record the source could not read (a bad CSV cell): it goes to the errors file, not to the server. */
  readonly error?: string;
}

/** A record's outputs, in input order. `index` is the record's position in the dataset (0-based). */
export interface BatchResult {
  readonly id: string;
  readonly index: number;
  readonly outputs: readonly Tensor[];
}

/** A record that failed: the gRPC status name (null where it is not known) and the message. */
export interface BatchFailure {
  readonly id: string;
  readonly index: number;
  readonly code: string | null;
  readonly message: string;
}

/** Where the records come from: read lazily, in a fixed order (a resumed job reads it again). */
export interface BatchSource {
  /** The records in order; `model` gives the input names and datatypes the files may leave out. */
  records(model: ModelSignature): AsyncIterable<BatchRecord>;
  /** The number of records when the source knows it (after records() started). */
  total?(): number | undefined;
  /** How much of the source has been read, 0..1, when the source can tell (bytes read of a file). */
  fraction?(): number | undefined;
}

/**
 * Where results go, in input order. A sink is resumable: `sync` makes what was written durable
 * and returns a JSON position; `open` with earlier positions truncates the output back to the
 * latest of them it can honour and says which (its index), or -1 to start afresh.
 */
export interface BatchSink<T = BatchResult> {
  open(positions: readonly unknown[]): Promise<number>;
  write(item: T): Promise<void>;
  /** A record that failed (`rows` of input): sinks that keep rows aligned with the input fill them. */
  fail?(failure: BatchFailure, rows: number): Promise<void>;
  sync(): Promise<unknown>;
  /** Whether an older position must be kept beside `latest` (encrypted streams lag a segment). */
  retain?(position: unknown, latest: unknown): boolean;
  /** Finishes the output (an .npz is assembled, an encrypted stream is sealed). */
  close(): Promise<void>;
  /** Releases files after a failure or a stop, leaving what `sync` made durable for a resume. */
  abort(): Promise<void>;
}

export interface BatchProgress {
  /** Records done (written or failed), this run and the run resumed from. */
  readonly records: number;
  readonly failures: number;
  readonly elapsedMs: number;
  /** Records done in this run. */
  readonly recordsThisRun: number;
  /** Records in the dataset, when the source knows. */
  readonly total: number | undefined;
  /** Fraction of the source read, when the source knows. */
  readonly fraction: number | undefined;
}

export interface BatchSummary {
  readonly model: string;
  readonly version: string;
  /** Records done in all, the resumed run's included. */
  readonly records: number;
  /** Records written to the output. */
  readonly succeeded: number;
  readonly failures: number;
  /** Records skipped because a checkpoint had them done. */
  readonly resumedFrom: number;
  readonly requests: number;
  readonly wallSeconds: number;
  /** Records of this run per second of wall time. */
  readonly recordsPerSecond: number;
  /** Request latency, send to answer, over a sample of this run's requests. */
  readonly latencyMs: { readonly p50: number; readonly p99: number };
  /** Why the job ended early: a stop asked by the caller, or too many failures. */
  readonly stopped?: 'aborted' | 'max-failures';
}
