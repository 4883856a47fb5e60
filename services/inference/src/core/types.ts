// The inference core's contract: what the gRPC (Triton) and REST (KServe v2) front ends, the
// registry sync and the CLI build against. The core knows nothing of gRPC or HTTP: it takes
// tensors from `@quanta/tensor`, runs them through onnxruntime sessions behind a dynamic batcher
// or a sequence batcher, and throws `InferError`s: DomainErrors whose `code` the front ends map to
// a gRPC status or an HTTP status.
import { DomainError, type DomainErrorOptions } from '@quanta/service-kit';
import type { Datatype, Tensor } from '@quanta/tensor';

/** Why a call failed, in the front ends' terms (gRPC status names; REST maps them to 4xx/5xx). */
export type InferErrorCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'UNAVAILABLE'
  | 'RESOURCE_EXHAUSTED'
  | 'DEADLINE_EXCEEDED'
  | 'CANCELLED'
  | 'FAILED_PRECONDITION'
  | 'INTERNAL';

/** A failure with a message that names the model, tensor and what is wrong. */
export class InferError extends DomainError {
  declare readonly code: InferErrorCode;
  /** `options.details` travel as gRPC trailers and HTTP headers (e.g. `retry-after-ms`). */
  constructor(code: InferErrorCode, message: string, options?: DomainErrorOptions) {
    super(code, message, options);
    this.name = 'InferError';
  }
}

/** One input or output as the model declares it; -1 is a dynamic dim. */
export interface TensorSpec {
  readonly name: string;
  readonly datatype: Datatype;
  /** null: the model declares no shape (any rank). */
  readonly shape: readonly number[] | null;
}

/** What a model takes and gives, read from its onnxruntime session. */
export interface ModelSignature {
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
  /**
   * True when every input and output has a dynamic dim 0 (so requests can be stacked along
   * axis 0). A model with a scalar or fixed-dim-0 input is served without batching.
   */
  readonly batchable: boolean;
}

/** What happens to the requests waiting at one priority level (Triton's ModelQueuePolicy). */
export interface QueuePolicy {
  /** Requests of the level that may wait before new ones get RESOURCE_EXHAUSTED; 0: no limit of its own. */
  readonly maxQueueSize: number;
  /** How long a request of the level may wait, in microseconds; 0: no limit (the request's own `timeout` applies). */
  readonly timeoutUs: number;
  /** True: a request whose timeout passed moves behind every level and still runs; false: DEADLINE_EXCEEDED. */
  readonly delayOnTimeout: boolean;
  /** True: the request's `timeout` parameter replaces timeoutUs. */
  readonly allowTimeoutOverride: boolean;
}

/** How much one caller (a token's subject, within its tenant) may ask of one deployment. */
export interface CallerLimits {
  /** Requests per second, a token bucket of that rate; 0: no limit. */
  readonly requestsPerSecond: number;
  /** The bucket's size; 0: one second's worth (at least 1). */
  readonly burst: number;
  /** Requests in flight at once (queued or running); 0: no limit. */
  readonly maxConcurrency: number;
}

/** How a deployment asks one model version to be served (the registry's DeploymentSpec). */
export interface ServingConfig {
  /** Largest batch the dynamic batcher builds; 0 or 1: no batching. */
  readonly maxBatchSize: number;
  /** Longest a request waits for others to batch with, in microseconds; 0: none. */
  readonly maxQueueDelayUs: number;
  /**
   * Triton's `preferred_batch_size`: batch sizes (rows, each at most maxBatchSize) the batcher
   * prefers. When the queue holds enough compatible rows for one, the largest such batch leaves
   * at once, without waiting the delay (unlike Triton, also when more rows are queued and the
   * oldest has waited past the delay); with fewer rows than the smallest, the batcher waits the
   * delay and sends what it has (up to maxBatchSize). Empty or absent: none.
   */
  readonly preferredBatchSizes?: readonly number[];
  /**
   * True (and preferredBatchSizes empty): the batcher measures on live traffic which batch size
   * (1, 2, 4, … up to maxBatchSize) runs the most rows per second in onnxruntime, prefers the
   * largest one within 5% of the best, and measures again every minute (batch-tuning.ts).
   * Worker sessions only: an inline one cannot time onnxruntime alone (then batches fill up to
   * maxBatchSize, with a warning). Large batches can
   * be slower per row than small ones (caches), and filling the largest batch the queue allows is
   * then the wrong choice.
   */
  readonly tunePreferredBatchSize?: boolean;
  /** onnxruntime sessions per model version; at least 1. */
  readonly instanceCount: number;
  /** Requests that may wait before new ones get RESOURCE_EXHAUSTED; 0: no limit. */
  readonly maxQueueSize: number;
  /** Stateful models: input ← output carried between a sequence's requests. */
  readonly sequenceState: readonly { readonly input: string; readonly output: string }[];
  /** How long an idle sequence's state is kept, in ms; 0: 60 000. */
  readonly sequenceIdleTimeoutMs: number;
  /** onnxruntime intra-op threads per session; 0: onnxruntime's default. */
  readonly threadsPerInstance?: number;
  /** onnxruntime execution providers in order of preference; default ['cpu']. */
  readonly executionProviders?: readonly string[];
  /**
   * True: every request waits up to maxQueueDelayUs for others while an instance is free
   * (Triton's behaviour). Default false: a lone request (nothing of the model queued or running)
   * leaves at once, since nobody is there to batch with.
   */
  readonly loneRequestsWait?: boolean;
  /**
   * Where each instance's onnxruntime session runs: 'worker' (default), a worker thread per
   * instance, so that the event loop keeps taking requests while a batch runs and instances run
   * in parallel; 'inline', on the event loop itself (onnxruntime-node runs a model synchronously
   * on the calling thread); 'auto', decided at load (loaded-model.ts chooseExecution): inline when
   * onnxruntime's own time for one row is shorter than the hand-off to a worker and every dim but
   * the batch dim is fixed; worker sessions alone when one row runs longer than 2 ms
   * (INLINE_LANE_MAX_NS); otherwise worker sessions with an inline lane that takes a run while the
   * model is idle and the run is expected to end within 2 ms ('hybrid', instance-pool.ts).
   */
  readonly execution?: 'worker' | 'inline' | 'auto';
  /**
   * Bytes of responses kept per version to answer a repeated request (same inputs, same requested
   * outputs) without running the model, least recently used out first; 0 or absent: no cache.
   * Never for stateful models or requests of a sequence.
   */
  readonly responseCacheBytes?: number;
  /** Request priorities: the `priority` parameter, 1 (first out) to this; 0 or absent: one level. */
  readonly priorityLevels?: number;
  /** The level of a request that names none; 0 or absent: the lowest (priorityLevels). */
  readonly defaultPriorityLevel?: number;
  /** The queue policy of every level not in priorityQueuePolicies; absent: no limits, reject on timeout. */
  readonly defaultQueuePolicy?: QueuePolicy;
  /** Per-level queue policies, by level (1 to priorityLevels). */
  readonly priorityQueuePolicies?: Readonly<Record<number, QueuePolicy>>;
  /** Limits of every caller of the deployment; absent: none. */
  readonly callerLimits?: CallerLimits;
  /** Limits of named callers (the token's subject), instead of callerLimits. */
  readonly callerLimitOverrides?: Readonly<Record<string, CallerLimits>>;
}

/** How a deployment routed a request: to its primary, to its canary, or a shadow copy. */
export type TrafficRoute = 'primary' | 'canary' | 'shadow';

/** A canary's or a shadow's version and share of requests. */
export interface TrafficShare {
  readonly version: string;
  /** Canary: 1 to 99; shadow: 1 to 100, 0 meaning 100. */
  readonly percent: number;
}

/**
 * How a deployment splits the requests that name no version between its current (primary)
 * version and a canary, and which version gets shadow copies. Both versions are loaded beside
 * the primary under the same model name.
 */
export interface Traffic {
  readonly canary?: TrafficShare;
  readonly shadow?: TrafficShare;
}

/** Where a request that names no version goes (ModelManager.route). */
export interface Routed {
  readonly model: LoadedModel;
  readonly route: 'primary' | 'canary';
  /** The version that gets a copy of this request once the primary answered; undefined: none. */
  readonly shadow: LoadedModel | undefined;
}

/** Triton's sequence parameters of one request. */
export interface SequenceControl {
  /** `sequence_id` (uint64 or string in Triton); kept as a string. */
  readonly id: string;
  readonly start: boolean;
  readonly end: boolean;
}

export interface InferRequest {
  /** Echoed in the response (Triton's `id`). */
  readonly id: string;
  /** The inputs by name; each Tensor's `name` equals its key. */
  readonly inputs: ReadonlyMap<string, Tensor>;
  /** Outputs to return, in this order; empty or undefined: all, in the model's order. */
  readonly outputs?: readonly string[];
  readonly sequence?: SequenceControl;
  /** Milliseconds since the epoch; a request still queued then fails DEADLINE_EXCEEDED without running. */
  readonly deadline?: number;
  /** Aborted when the caller goes away; a queued request is then dropped. */
  readonly signal?: CancelSignal;
  /** How the deployment routed it (monitoring's record route); absent: to the primary. */
  readonly route?: TrafficRoute;
  /** For a shadow copy: the primary's answer to the same request, which the shadow's is compared with. */
  readonly primary?: InferResult;
  /** Triton's `priority` parameter: 1 is the highest level; 0 or absent: the deployment's default level. */
  readonly priority?: number;
  /**
   * Triton's `timeout` parameter, in microseconds: how long the request may wait in the queue (its
   * level's policy decides whether it replaces the level's own timeout); absent or 0: none.
   */
  readonly timeoutUs?: number;
  /** Who asks, within the tenant (the token's subject): the key of the deployment's caller limits. */
  readonly caller?: string;
}

/**
 * What the core asks of a caller's cancellation: whether it happened, and an 'abort' listener. An
 * AbortSignal is one; so is service-kit's `ctx.cancellation`, which spares every gRPC request an
 * AbortController (costly in Node 20: see service-kit's CallContext).
 */
export interface CancelSignal {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/** Nanoseconds spent in each stage, as Triton's statistics count them. */
export interface StageTimes {
  readonly queueNs: bigint;
  readonly computeInputNs: bigint;
  readonly computeInferNs: bigint;
  readonly computeOutputNs: bigint;
}

export interface InferResult {
  readonly id: string;
  readonly model: string;
  readonly version: string;
  /** The requested outputs (named), in request order, exactly this request's rows. */
  readonly outputs: readonly Tensor[];
  readonly times: StageTimes;
  /** Size of the batch this request ran in (1 when alone or unbatched). */
  readonly batchSize: number;
  /** With a response cache: 'hit' (answered from it, nothing ran) or 'miss' (it ran); absent without one. */
  readonly cache?: 'hit' | 'miss';
}

export interface DurationStat {
  count: bigint;
  ns: bigint;
}

/**
 * Why a request failed, as Triton's `nv_inference_request_failure` counter labels it: REJECTED
 * (the queue was full, or the request's deadline passed while it waited), CANCELED (the caller
 * went away), BACKEND (onnxruntime failed to run it) or OTHER (bad inputs, the model unloading).
 */
export type FailureReason = 'REJECTED' | 'CANCELED' | 'BACKEND' | 'OTHER';
export const FAILURE_REASONS: readonly FailureReason[] = ['REJECTED', 'CANCELED', 'BACKEND', 'OTHER'];

/** Triton's InferStatistics and InferBatchStatistics for one model version. */
export interface ModelStats {
  readonly name: string;
  readonly version: string;
  /** ms since the epoch of the last inference; 0: none yet. */
  readonly lastInference: number;
  readonly inferenceCount: bigint;
  readonly executionCount: bigint;
  readonly success: DurationStat;
  readonly fail: DurationStat;
  /** `fail.count` by reason (they add up to it). */
  readonly failures: Readonly<Record<FailureReason, bigint>>;
  readonly queue: DurationStat;
  readonly computeInput: DurationStat;
  readonly computeInfer: DurationStat;
  readonly computeOutput: DurationStat;
  /** Response-cache hits, and the time to look them up. */
  readonly cacheHit: DurationStat;
  /** Response-cache misses, and the time to look them up and insert the answer. */
  readonly cacheMiss: DurationStat;
  /** Per batch size: how many executions, and their compute times. */
  readonly batches: readonly {
    readonly batchSize: number;
    readonly computeInput: DurationStat;
    readonly computeInfer: DurationStat;
    readonly computeOutput: DurationStat;
  }[];
}

export type ModelState = 'LOADING' | 'READY' | 'UNLOADING' | 'UNAVAILABLE' | 'FAILED';

/** One version of one model, loaded: its sessions, batcher and statistics. */
export interface LoadedModel {
  readonly tenant: string;
  readonly name: string;
  readonly version: string;
  readonly signature: ModelSignature;
  readonly config: ServingConfig;
  /**
   * Where its sessions run: the config's execution, or what 'auto' chose at load ('hybrid': worker
   * sessions, and an inline one for short runs while nothing else is queued).
   */
  readonly execution: 'worker' | 'inline' | 'hybrid';
  /**
   * The preferred batch sizes in effect: the config's, or the one measured on live traffic (none
   * before the first measurement).
   */
  readonly preferredBatchSizes: readonly number[];
  readonly state: ModelState;
  infer(request: InferRequest): Promise<InferResult>;
  stats(): ModelStats;
  /**
   * Requests waiting to run, now: queued in the batcher, or behind an earlier request of their
   * sequence (Triton's pending request count). Not those running.
   */
  pendingRequests(): number;
  /** How long loading took: sessions opened, warm-up run, and the 'auto' timing. */
  readonly loadNs: bigint;
  /** Stops taking requests, lets queued and running ones finish, then releases the sessions. */
  unload(): Promise<void>;
}

/** Where a model's bytes come from when it is loaded. */
export type ModelBytes = Uint8Array | { readonly path: string };

/** Hooks the core calls after every request (monitoring records, metrics); must not throw. */
export interface InferObserver {
  onRequest(
    model: LoadedModel,
    request: InferRequest,
    outcome: { result?: InferResult; error?: InferError; totalNs: bigint },
  ): void;
}

/** What one entry of RepositoryIndex shows. */
export interface RepositoryEntry {
  readonly tenant: string;
  readonly name: string;
  readonly version: string;
  readonly state: ModelState;
  readonly reason: string;
}

/**
 * Every model this replica serves, per tenant. Each (tenant, name) has at most one *current*
 * version, which requests without a version reach; `activate` switches it atomically, and the
 * version it replaces drains (queued and running requests finish) before its sessions are released.
 */
export interface ModelManager {
  /** Opens sessions for a version, runs one warm-up, and keeps it (not yet current). */
  load(tenant: string, name: string, version: string, bytes: ModelBytes, config: ServingConfig): Promise<LoadedModel>;
  /**
   * Makes a loaded version the current one for (tenant, name); drains and unloads the previous
   * current one unless `keepPrevious`. `traffic` (the canary and the shadow, versions already loaded)
   * replaces the model's in the same step, so requests see the new current version and split together;
   * absent: none.
   */
  activate(
    tenant: string,
    name: string,
    version: string,
    options?: { keepPrevious?: boolean; traffic?: Traffic },
  ): Promise<void>;
  /** Drains and unloads one version, or every version of the model when `version` is undefined. */
  unload(tenant: string, name: string, version?: string): Promise<void>;
  /** The version `version` ('' or undefined: the current one) or a NOT_FOUND InferError. */
  get(tenant: string, name: string, version?: string): LoadedModel;
  /** Like get, but undefined when absent. */
  find(tenant: string, name: string, version?: string): LoadedModel | undefined;
  /**
   * The version a request that names none goes to: the current one, or the canary for its share
   * of requests (by sequence id for a sequence; a sequence under way stays with the version that
   * holds its state), with the shadow that gets a copy (see `activate`'s traffic). A NOT_FOUND
   * InferError as `get`.
   */
  route(tenant: string, name: string, request: InferRequest): Routed;
  /** Every model of the tenant (or of all tenants when undefined), with failures remembered. */
  index(tenant?: string): RepositoryEntry[];
  /** Records a failed load so that RepositoryIndex and ModelReady tell the truth. */
  markFailed(tenant: string, name: string, version: string, reason: string): void;
  /** Drains and unloads everything. */
  close(): Promise<void>;
}
