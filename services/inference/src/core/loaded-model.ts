import { statSync } from 'node:fs';
import type { Logger } from 'pino';
import type * as ort from 'onnxruntime-node';
import { TensorError, allocData, tensorToOrt, type Tensor } from '@quanta/tensor';
import { monotonicNs, type Clock } from './clock.js';
import { createDynamicBatcher, type DynamicBatcher, type JobResult } from './dynamic-batcher.js';
import type { CallerLimiter, CallerPermit } from './caller-limits.js';
import {
  INLINE_LANE_MAX_NS,
  createInstancePool,
  feedElements,
  type InstancePool,
  type InstancePoolHooks,
} from './instance-pool.js';
import { levelOf } from './priority-queue.js';
import { createResponseCache, type ResponseCache } from './response-cache.js';
import { createSequenceBatcher, type SequenceBatcher } from './sequence-batcher.js';
import { SignatureError, signatureOf, type DimSymbols } from './signature.js';
import { createStatsRecorder, failureReasonOf, type StatsRecorder } from './stats.js';
import {
  InferError,
  type InferObserver,
  type InferRequest,
  type InferResult,
  type LoadedModel,
  type ModelBytes,
  type ModelSignature,
  type ModelState,
  type ServingConfig,
} from './types.js';
import { validateRequest } from './validate.js';

// One loaded model version: its sessions, its batcher (dynamic, or sequence in front of it) and
// its statistics. The manager decides which version is current; this only serves and drains.

export interface LoadedModelOptions {
  readonly tenant: string;
  readonly name: string;
  readonly version: string;
  readonly bytes: ModelBytes;
  readonly config: ServingConfig;
  readonly clock: Clock;
  readonly logger?: Logger | undefined;
  readonly observer?: InferObserver | undefined;
  /** The version requests should go to once this one stops taking them (the current one), if any. */
  readonly redirect: () => LoadedModel | undefined;
  /** Called when unload starts, so the manager stops handing this version out. */
  readonly onUnload: (model: LoadedModel) => void;
  /** Called once the sessions are released. */
  readonly onReleased: (model: LoadedModel) => void;
  /** The caller limits of the model's deployment, shared by its versions (caller-limits.ts). */
  readonly limiter?: CallerLimiter | undefined;
}

export function toInferError(model: string, error: unknown): InferError {
  if (error instanceof InferError) return error;
  if (error instanceof TensorError) return new InferError('INVALID_ARGUMENT', `model "${model}": ${error.message}`);
  return new InferError('INTERNAL', `model "${model}": ${error instanceof Error ? error.message : String(error)}`);
}

function checkSequenceState(signature: ModelSignature, config: ServingConfig): void {
  for (const pair of config.sequenceState) {
    const input = signature.inputs.find((spec) => spec.name === pair.input);
    const output = signature.outputs.find((spec) => spec.name === pair.output);
    if (input === undefined) {
      throw new SignatureError(
        `sequence state input "${pair.input}" is not an input of the model; its inputs are: ` +
          signature.inputs.map((s) => s.name).join(', '),
      );
    }
    if (output === undefined) {
      throw new SignatureError(
        `sequence state output "${pair.output}" is not an output of the model; its outputs are: ` +
          signature.outputs.map((s) => s.name).join(', '),
      );
    }
    if (input.datatype !== output.datatype) {
      throw new SignatureError(
        `sequence state "${pair.input}" <- "${pair.output}": ` +
          `the input is ${input.datatype} but the output is ${output.datatype}`,
      );
    }
  }
}

/**
 * Zero-filled inputs for the warm-up (and the timing of 'auto'): dynamic dims become 1. `guessed`
 * tells whether a dynamic dim after dim 0 was involved, since such a run may fail where real
 * inputs would not.
 */
interface WarmUpFeeds {
  readonly feeds: Record<string, ort.Tensor>;
  readonly guessed: boolean;
}

function warmUpFeeds(signature: ModelSignature): WarmUpFeeds {
  let guessed = false;
  const feeds: Record<string, ort.Tensor> = {};
  for (const spec of signature.inputs) {
    const shape = (spec.shape ?? []).map((dim, axis) => {
      if (dim >= 0) return dim;
      if (axis > 0) guessed = true;
      return 1;
    });
    const count = shape.reduce((a, b) => a * b, 1);
    const tensor: Tensor =
      spec.datatype === 'BYTES'
        ? { name: spec.name, datatype: 'BYTES', shape, data: Array.from({ length: count }, () => new Uint8Array(0)) }
        : ({ name: spec.name, datatype: spec.datatype, shape, data: allocData(spec.datatype, count) } as Tensor);
    feeds[spec.name] = tensorToOrt(tensor, { name: spec.name, role: 'input' });
  }
  return { feeds, guessed };
}

/**
 * One run so that the first request does not pay onnxruntime's lazy initialisation; a failure
 * counts only without guessed dims. With `lane`, the run is marked alone, so that an idle pool runs
 * it on its inline lane (if it is expected short), and a failure never counts: hybrid is chosen for
 * dynamic dims too, whose made-up sizes may not run (live runs warm the lane then).
 */
async function warmUp(
  pool: InstancePool,
  signature: ModelSignature,
  { feeds, guessed }: WarmUpFeeds,
  { lane = false }: { lane?: boolean } = {},
): Promise<void> {
  try {
    await pool.run(
      feeds,
      signature.outputs.map((spec) => spec.name),
      lane ? { alone: true } : undefined,
    );
  } catch (error: unknown) {
    if (!guessed && !lane) throw error;
  }
}

/** The model's size in bytes, in memory or on disk. */
function modelByteLength(bytes: ModelBytes): number {
  if (bytes instanceof Uint8Array) return bytes.byteLength;
  try {
    return statSync(bytes.path).size;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

/** Runs timed when choosing where 'auto' sessions run. */
const AUTO_TIMED_RUNS = 20;
/** The inline lane is a second copy of the model in memory: only for models up to this size. */
const AUTO_LANE_MAX_BYTES = 256 * 1024 * 1024;

type AutoChoice = 'worker' | 'inline' | 'hybrid';

/**
 * Where 'auto' sessions run, timed through `pool` (worker sessions, warmed up):
 * - inline, when onnxruntime's own time for one row (the median of AUTO_TIMED_RUNS) is shorter than
 *   the rest of the round trip to the worker, and every dim but the batch dim is fixed;
 * - worker sessions with an inline lane ('hybrid', instance-pool.ts), when a run costs more than the
 *   hand-off, or dims after the batch dim are dynamic or an input is BYTES (a run timed on the
 *   warm-up's made-up sizes says little): a run with nothing else queued goes inline while it is
 *   expected to take at most INLINE_LANE_MAX_NS, the rest to the workers;
 * - worker sessions alone when one row takes longer than INLINE_LANE_MAX_NS, or the model is too
 *   large to hold twice.
 */
async function chooseExecution(
  pool: InstancePool,
  signature: ModelSignature,
  { feeds }: WarmUpFeeds,
  modelBytes: number,
): Promise<{ execution: AutoChoice; ranNs: bigint; handOffNs: bigint; nsPerElement?: number; reason: string }> {
  const dynamic = signature.inputs.find(
    (spec) => spec.shape === null || spec.shape.slice(1).some((dim) => dim < 0) || spec.datatype === 'BYTES',
  );
  const fits = modelBytes <= AUTO_LANE_MAX_BYTES;
  const fetches = signature.outputs.map((spec) => spec.name);
  const ran: bigint[] = [];
  const handOff: bigint[] = [];
  try {
    for (let i = 0; i < AUTO_TIMED_RUNS; i++) {
      const timing = { ranNs: -1n };
      const started = monotonicNs();
      await pool.run(feeds, fetches, { timing });
      const wall = monotonicNs() - started;
      if (timing.ranNs < 0n)
        return { execution: 'worker', ranNs: -1n, handOffNs: -1n, reason: 'the sessions cannot time a run' };
      ran.push(timing.ranNs);
      handOff.push(wall > timing.ranNs ? wall - timing.ranNs : 0n);
    }
  } catch {
    // Made-up dynamic dims may not run; live runs teach the lane instead.
    if (dynamic !== undefined && fits)
      return {
        execution: 'hybrid',
        ranNs: -1n,
        handOffNs: -1n,
        reason: `input "${dynamic.name}" has dynamic dims or is BYTES and the warm-up sizes do not run`,
      };
    return { execution: 'worker', ranNs: -1n, handOffNs: -1n, reason: 'a timed run failed' };
  }
  const median = (values: bigint[]): bigint =>
    values.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))[values.length >> 1] ?? 0n;
  const ranNs = median(ran);
  const handOffNs = median(handOff);
  const elements = feedElements(feeds);
  const nsPerElement = elements > 0 ? Number(ranNs) / elements : undefined;
  if (ranNs > BigInt(INLINE_LANE_MAX_NS))
    return { execution: 'worker', ranNs, handOffNs, reason: 'a run is long enough to hold the event loop up' };
  if (dynamic === undefined && ranNs < handOffNs)
    return { execution: 'inline', ranNs, handOffNs, reason: 'a run costs less than the hand-off to a worker' };
  if (!fits)
    return { execution: 'worker', ranNs, handOffNs, reason: 'the model is too large to hold a second session' };
  return {
    execution: 'hybrid',
    ranNs,
    handOffNs,
    ...(nsPerElement === undefined ? {} : { nsPerElement }),
    reason:
      dynamic === undefined
        ? 'a run costs more than the hand-off: workers under load, inline while idle'
        : `input "${dynamic.name}" has dynamic dims or is BYTES: workers, and inline while idle for short runs`,
  };
}

export interface LoadedModelHandle extends LoadedModel {
  /** Sequences whose state is held (0 for stateless models). */
  sequenceCount(): number;
  /** Whether this version holds sequence `id`'s state (false for stateless models). */
  holdsSequence(id: string): boolean;
}

export async function createLoadedModel(options: LoadedModelOptions): Promise<LoadedModelHandle> {
  const { tenant, name, version, config, clock, logger, observer } = options;
  const loadStarted = monotonicNs();
  const auto = config.execution === 'auto';
  let execution: 'worker' | 'inline' | 'hybrid' = config.execution === 'inline' ? 'inline' : 'worker';
  const hooks: InstancePoolHooks = {
    onWorkerDeath(error, replaced) {
      logger?.error(
        { err: error, model: name, version },
        'an onnxruntime worker died; its runs in flight failed, starting a new one',
      );
      void replaced.then((ok) => {
        if (ok) logger?.info({ model: name, version }, 'the onnxruntime worker was replaced');
        else
          logger?.error(
            { model: name, version },
            'the onnxruntime worker could not be replaced (or the model was unloaded)',
          );
      });
    },
  };
  let pool = await createInstancePool(options.bytes, { ...config, execution }, hooks);
  let signature: ModelSignature;
  let symbols: DimSymbols;
  try {
    ({ signature, symbols } = signatureOf(pool.metadata));
    checkSequenceState(signature, config);
    const warm = warmUpFeeds(signature);
    await warmUp(pool, signature, warm);
    if (warm.guessed) logger?.debug({ model: name, version }, 'warm-up used 1 for dynamic dims after dim 0');
    if (auto) {
      const choice = await chooseExecution(pool, signature, warm, modelByteLength(options.bytes));
      const timed =
        choice.ranNs >= 0n ? { ranUs: Number(choice.ranNs) / 1000, handOffUs: Number(choice.handOffNs) / 1000 } : {};
      logger?.info(
        { model: name, version, execution: choice.execution, ...timed, reason: choice.reason },
        'chose where the sessions run',
      );
      if (choice.execution === 'inline') {
        const inline = await createInstancePool(options.bytes, { ...config, execution: 'inline' });
        await pool.release();
        pool = inline;
        execution = 'inline';
        await warmUp(pool, signature, warm);
      } else if (choice.execution === 'hybrid') {
        await pool.addInlineLane(choice.nsPerElement);
        execution = 'hybrid';
        // The lane's own first run (its session's lazy initialisation) where the warm-up sizes run.
        await warmUp(pool, signature, warm, { lane: true });
      }
    }
  } catch (error: unknown) {
    await pool.release();
    throw error;
  }

  const stateful = config.sequenceState.length > 0;
  const batching = !stateful && signature.batchable && config.maxBatchSize > 1;
  const stats: StatsRecorder = createStatsRecorder(name, version);
  const batcher: DynamicBatcher = createDynamicBatcher({
    model: name,
    signature,
    config,
    pool,
    stats,
    clock,
    logger,
    batching,
  });
  const sequences: SequenceBatcher | undefined = stateful
    ? createSequenceBatcher({
        model: name,
        signature,
        symbols,
        state: config.sequenceState,
        idleTimeoutMs: config.sequenceIdleTimeoutMs,
        clock,
        submit: (job) => batcher.submit(job),
      })
    : undefined;

  // Never for stateful models: an answer there depends on the sequence's state (response-cache.ts).
  const cache: ResponseCache | undefined =
    !stateful && (config.responseCacheBytes ?? 0) > 0 ? createResponseCache(config.responseCacheBytes!) : undefined;
  const noTimes = { queueNs: 0n, computeInputNs: 0n, computeInferNs: 0n, computeOutputNs: 0n };

  const loadNs = monotonicNs() - loadStarted;
  const validateOptions = sequences === undefined ? {} : { optionalInputs: sequences.stateInputs };
  let state: ModelState = 'READY';
  let unloading: Promise<void> | undefined;

  const observe = (
    request: InferRequest,
    outcome: { result?: InferResult; error?: InferError; totalNs: bigint },
  ): void => {
    if (observer === undefined) return;
    try {
      observer.onRequest(model, request, outcome);
    } catch (error: unknown) {
      logger?.warn({ err: error, model: name, version }, 'inference observer threw; ignored');
    }
  };

  const model: LoadedModelHandle = {
    tenant,
    name,
    version,
    signature,
    config,
    execution,
    get preferredBatchSizes() {
      return batching ? batcher.preferred() : [];
    },
    get state() {
      return state;
    },
    // A plain promise chain, not an async function: this runs for every request.
    infer(request) {
      if (state !== 'READY') {
        // A request that raced an activate goes to the version that replaced this one.
        const current = options.redirect();
        if (current !== undefined && current !== model && current.state === 'READY') return current.infer(request);
        const error = new InferError(
          'UNAVAILABLE',
          `model "${name}" version ${version} is ${state.toLowerCase()} and no other version is current`,
        );
        observe(request, { error, totalNs: 0n });
        return Promise.reject(error);
      }
      const started = monotonicNs();
      let permit: CallerPermit | undefined;
      const fail = (caught: unknown): never => {
        const error = toInferError(name, caught);
        const totalNs = monotonicNs() - started;
        permit?.release(totalNs);
        stats.failure(totalNs, failureReasonOf(error.code));
        observe(request, { error, totalNs });
        throw error;
      };
      let outputs: string[];
      let pending: Promise<JobResult>;
      let cacheKey: string | undefined;
      let lookupNs = 0n;
      try {
        // Before anything else: a caller over its limits takes no queue place (caller-limits.ts). A
        // shadow copy is the deployment's own traffic, not the caller's.
        if (request.route !== 'shadow') permit = options.limiter?.admit(name, request.caller ?? '');
        outputs = validateRequest(name, signature, request, validateOptions);
        if (cache !== undefined && request.sequence === undefined) {
          // A bad priority is refused whether or not the answer is cached (the batcher checks it too).
          levelOf(name, config, request.priority);
          cacheKey = cache.keyOf(request.inputs, outputs);
          const hit = cache.get(cacheKey);
          lookupNs = monotonicNs() - started;
          if (hit !== undefined) {
            const result: InferResult = {
              id: request.id,
              model: name,
              version,
              outputs: hit,
              times: noTimes,
              batchSize: 1,
              cache: 'hit',
            };
            const totalNs = monotonicNs() - started;
            permit?.release(totalNs);
            stats.cacheHit(totalNs, lookupNs, clock.now());
            observe(request, { result, totalNs });
            return Promise.resolve(result);
          }
        }
        pending = sequences
          ? sequences.infer(request, outputs)
          : batcher.submit({
              inputs: request.inputs,
              fetches: outputs,
              deadline: request.deadline,
              signal: request.signal,
              priority: request.priority,
              timeoutUs: request.timeoutUs,
            });
      } catch (caught: unknown) {
        return Promise.reject(toInferError(name, caught)).catch(fail);
      }
      return pending.then((job) => {
        try {
          const result: InferResult = {
            id: request.id,
            model: name,
            version,
            outputs: outputs.map((output) => {
              const tensor = job.outputs.get(output);
              if (tensor === undefined)
                throw new InferError('INTERNAL', `model "${name}" returned no output "${output}"`);
              return tensor.name === output ? tensor : { ...tensor, name: output };
            }),
            times: job.times,
            batchSize: job.batchSize,
            ...(cacheKey === undefined ? {} : { cache: 'miss' as const }),
          };
          if (cache !== undefined && cacheKey !== undefined) {
            const inserting = monotonicNs();
            cache.set(cacheKey, result.outputs);
            stats.cacheMiss(lookupNs + monotonicNs() - inserting);
          }
          const totalNs = monotonicNs() - started;
          permit?.release(totalNs);
          stats.success(totalNs, job.times, job.rows, clock.now());
          observe(request, { result, totalNs });
          return result;
        } catch (caught: unknown) {
          return fail(caught);
        }
      }, fail);
    },
    stats: () => stats.snapshot(),
    pendingRequests: () => batcher.queued() + (sequences?.waiting() ?? 0),
    loadNs,
    sequenceCount: () => sequences?.size() ?? 0,
    holdsSequence: (id) => sequences?.holds(id) ?? false,
    unload() {
      unloading ??= (async () => {
        state = 'UNLOADING';
        options.onUnload(model);
        await sequences?.drain();
        await batcher.drain();
        await pool.release();
        state = 'UNAVAILABLE';
        options.onReleased(model);
      })();
      return unloading;
    },
  };
  return model;
}
