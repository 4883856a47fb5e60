// The public shape of compression: methods, options and the result a caller reports.

export type CompressMethod = 'int8-weights' | 'int8-dynamic' | 'fp16' | 'prune';

export const COMPRESS_METHODS: readonly CompressMethod[] = ['int8-weights', 'int8-dynamic', 'fp16', 'prune'];

export interface CompressOptions {
  readonly method: CompressMethod;
  /**
   * Fraction of weights set to zero by magnitude, 0 < s < 1: required for 'prune', optional for
   * 'int8-weights' (prune, then quantize).
   */
  readonly sparsity?: number;
}

export interface OpCount {
  readonly op: string;
  readonly count: number;
}

export interface LeftOp {
  readonly op: string;
  readonly count: number;
  readonly reason: string;
}

export interface CompressResult {
  /** The rewritten ModelProto. */
  readonly model: Uint8Array;
  readonly sizeBefore: number;
  readonly sizeAfter: number;
  /** Nodes whose weights (or, for int8-dynamic, whose computation) were rewritten, by op type. */
  readonly rewritten: readonly OpCount[];
  /** What stays float32, by op type and reason: nodes not rewritten, and parts (biases) of rewritten ones. */
  readonly left: readonly LeftOp[];
  /** The method's parameters, for lineage. */
  readonly parameters: Readonly<Record<string, string>>;
}
