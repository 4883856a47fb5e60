import type { Logger } from 'pino';
import type * as ort from 'onnxruntime-node';
import { TensorError, allocData, tensorToOrt, type Tensor } from '@quanta/tensor';
import { monotonicNs, type Clock } from './clock.js';
import { createDynamicBatcher, type DynamicBatcher, type JobResult } from './dynamic-batcher.js';
import { createInstancePool, type InstancePool } from './instance-pool.js';
import { createSequenceBatcher, type SequenceBatcher } from './sequence-batcher.js';
import { SignatureError, signatureOf, type DimSymbols } from './signature.js';
import { createStatsRecorder, type StatsRecorder } from './stats.js';
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
      throw new SignatureError(`sequence state input "${pair.input}" is not an input of the model; its inputs are: ${signature.inputs.map((s) => s.name).join(', ')}`);
    }
    if (output === undefined) {
      throw new SignatureError(`sequence state output "${pair.output}" is not an output of the model; its outputs are: ${signature.outputs.map((s) => s.name).join(', ')}`);
    }
    if (input.datatype !== output.datatype) {
      throw new SignatureError(`sequence state "${pair.input}" <- "${pair.output}": the input is ${input.datatype} but the output is ${output.datatype}`);
    }
  }
}

/**
 * One run with zero-filled inputs so that the first request does not pay onnxruntime's lazy
 * initialisation. Dynamic dims become 1. Returns whether a guessed dim (a dynamic dim after dim 0)
 * was involved, since such a run may fail where real inputs would not.
 */
async function warmUp(pool: InstancePool, signature: ModelSignature): Promise<{ guessed: boolean }> {
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
  try {
    await pool.run(feeds, signature.outputs.map((spec) => spec.name));
  } catch (error: unknown) {
    if (!guessed) throw error;
  }
  return { guessed };
}

export interface LoadedModelHandle extends LoadedModel {
  /** Sequences whose state is held (0 for stateless models). */
  sequenceCount(): number;
}

export async function createLoadedModel(options: LoadedModelOptions): Promise<LoadedModelHandle> {
  const { tenant, name, version, config, clock, logger, observer } = options;
  const pool = await createInstancePool(options.bytes, config);
  let signature: ModelSignature;
  let symbols: DimSymbols;
  try {
    ({ signature, symbols } = signatureOf(pool.metadata));
    checkSequenceState(signature, config);
    const { guessed } = await warmUp(pool, signature);
    if (guessed) logger?.debug({ model: name, version }, 'warm-up used 1 for dynamic dims after dim 0');
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

  const validateOptions = sequences === undefined ? {} : { optionalInputs: sequences.stateInputs };
  let state: ModelState = 'READY';
  let unloading: Promise<void> | undefined;

  const observe = (request: InferRequest, outcome: { result?: InferResult; error?: InferError; totalNs: bigint }): void => {
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
        const error = new InferError('UNAVAILABLE', `model "${name}" version ${version} is ${state.toLowerCase()} and no other version is current`);
        observe(request, { error, totalNs: 0n });
        return Promise.reject(error);
      }
      const started = monotonicNs();
      const fail = (caught: unknown): never => {
        const error = toInferError(name, caught);
        const totalNs = monotonicNs() - started;
        stats.failure(totalNs);
        observe(request, { error, totalNs });
        throw error;
      };
      let outputs: string[];
      let pending: Promise<JobResult>;
      try {
        outputs = validateRequest(name, signature, request, validateOptions);
        pending = sequences
          ? sequences.infer(request, outputs)
          : batcher.submit({ inputs: request.inputs, fetches: outputs, deadline: request.deadline, signal: request.signal });
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
              if (tensor === undefined) throw new InferError('INTERNAL', `model "${name}" returned no output "${output}"`);
              return tensor.name === output ? tensor : { ...tensor, name: output };
            }),
            times: job.times,
            batchSize: job.batchSize,
          };
          const totalNs = monotonicNs() - started;
          stats.success(totalNs, job.times, job.rows, clock.now());
          observe(request, { result, totalNs });
          return result;
        } catch (caught: unknown) {
          return fail(caught);
        }
      }, fail);
    },
    stats: () => stats.snapshot(),
    sequenceCount: () => sequences?.size() ?? 0,
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
