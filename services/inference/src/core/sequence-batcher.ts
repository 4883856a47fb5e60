import { allocData, type Tensor } from '@quanta/tensor';
import type { Clock } from './clock.js';
import type { BatchJob, JobResult } from './dynamic-batcher.js';
import type { DimSymbols } from './signature.js';
import { InferError, type InferRequest, type ModelSignature, type TensorSpec } from './types.js';

// Triton's sequence batcher, reduced to what a stateful ONNX model needs: per sequence id the
// server keeps the state outputs of the last call and feeds them back as the state inputs of the
// next one (input <- output pairs from the deployment). Requests of one sequence run strictly in
// order, one at a time; different sequences run side by side (each alone, never merged).
//
// Zero state at START, for a state input the client did not send: a fixed dim keeps its size; a
// dynamic dim whose symbol (e.g. `N`) also names a dim of one of the request's other inputs takes
// that dim's size (h [1,N,8] next to x [T,N,4] gets N = x.shape[1]); any other dynamic dim is 1.

export interface SequenceBatcherOptions {
  readonly model: string;
  readonly signature: ModelSignature;
  readonly symbols: DimSymbols;
  readonly state: readonly { readonly input: string; readonly output: string }[];
  /** 0: 60 000. */
  readonly idleTimeoutMs: number;
  readonly clock: Clock;
  readonly submit: (job: BatchJob) => Promise<JobResult>;
}

export interface SequenceBatcher {
  readonly stateInputs: ReadonlySet<string>;
  infer(request: InferRequest, outputs: readonly string[]): Promise<JobResult>;
  /** Sequences whose state is held. */
  size(): number;
  /** Whether sequence `id` is held (started and neither ended nor idled out). */
  holds(id: string): boolean;
  /** Requests waiting behind an earlier request of their sequence (not yet handed to the batcher). */
  waiting(): number;
  /** Drops the state of sequences idle for longer than the timeout. */
  sweep(): void;
  /** Resolves once no sequence has a request queued or running; stops the idle sweep. */
  drain(): Promise<void>;
}

interface SequenceRecord {
  state: Map<string, Tensor> | undefined;
  tail: Promise<void>;
  pending: number;
  lastUsed: number;
}

export const DEFAULT_SEQUENCE_IDLE_TIMEOUT_MS = 60_000;

export function zeroStateShape(
  spec: TensorSpec,
  symbols: DimSymbols,
  inputs: ReadonlyMap<string, Tensor>,
  stateInputs: ReadonlySet<string>,
): number[] {
  const own = symbols.get(spec.name) ?? [];
  return (spec.shape ?? []).map((dim, axis) => {
    if (dim >= 0) return dim;
    const symbol = own[axis];
    if (symbol !== undefined) {
      for (const [name, tensor] of inputs) {
        if (stateInputs.has(name)) continue;
        const at = symbols.get(name)?.indexOf(symbol) ?? -1;
        const size = at >= 0 ? tensor.shape[at] : undefined;
        if (size !== undefined) return size;
      }
    }
    return 1;
  });
}

function zeroTensor(spec: TensorSpec, shape: number[]): Tensor {
  const count = shape.reduce((a, b) => a * b, 1);
  if (spec.datatype === 'BYTES')
    return { name: spec.name, datatype: 'BYTES', shape, data: Array.from({ length: count }, () => new Uint8Array(0)) };
  return { name: spec.name, datatype: spec.datatype, shape, data: allocData(spec.datatype, count) } as Tensor;
}

/** What the dynamic batcher needs of a request to queue it: deadline, cancellation, priority, timeout. */
function queueing(request: InferRequest): Omit<BatchJob, 'inputs' | 'fetches'> {
  return {
    deadline: request.deadline,
    signal: request.signal,
    priority: request.priority,
    timeoutUs: request.timeoutUs,
  };
}

export function createSequenceBatcher(options: SequenceBatcherOptions): SequenceBatcher {
  const { model, signature, symbols, state, clock, submit } = options;
  const timeoutMs = options.idleTimeoutMs > 0 ? options.idleTimeoutMs : DEFAULT_SEQUENCE_IDLE_TIMEOUT_MS;
  const stateInputs = new Set(state.map((pair) => pair.input));
  const stateOutputs = state.map((pair) => pair.output);
  const specs = new Map(signature.inputs.map((spec) => [spec.name, spec]));
  const sequences = new Map<string, SequenceRecord>();
  let idleWaiters: (() => void)[] = [];

  const idle = (record: SequenceRecord): boolean => record.pending === 0 && clock.now() - record.lastUsed >= timeoutMs;
  const sweep = (): void => {
    for (const [id, record] of sequences) if (idle(record)) sequences.delete(id);
  };
  // The sweep only frees memory: expiry is also checked when a request arrives, so a test clock
  // needs no timer.
  const timer = setInterval(sweep, Math.min(Math.max(timeoutMs / 2, 10), 10_000));
  timer.unref();

  const settle = (): void => {
    if ([...sequences.values()].some((record) => record.pending > 0)) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const waiter of waiters) waiter();
  };

  const needsStart = (id: string, why: string): InferError =>
    new InferError(
      'INVALID_ARGUMENT',
      `inference request for sequence ${id} to model "${model}" ` +
        `must specify the START flag on the sequence's first request (${why})`,
    );

  async function step(
    id: string,
    record: SequenceRecord,
    request: InferRequest,
    outputs: readonly string[],
  ): Promise<JobResult> {
    const start = request.sequence?.start === true;
    let held: ReadonlyMap<string, Tensor>;
    if (start) {
      const zeros = new Map<string, Tensor>();
      for (const name of stateInputs) {
        const spec = specs.get(name);
        if (spec !== undefined && !request.inputs.has(name))
          zeros.set(name, zeroTensor(spec, zeroStateShape(spec, symbols, request.inputs, stateInputs)));
      }
      held = zeros;
    } else {
      if (record.state === undefined) throw needsStart(id, 'its state is gone: the sequence ended or idled out');
      held = record.state;
    }
    const inputs = new Map(request.inputs);
    for (const [name, tensor] of held) if (!inputs.has(name)) inputs.set(name, tensor);
    const fetches = [...new Set([...outputs, ...stateOutputs])];
    const result = await submit({ inputs, fetches, ...queueing(request) });
    const next = new Map<string, Tensor>();
    for (const pair of state) {
      const value = result.outputs.get(pair.output);
      if (value !== undefined) next.set(pair.input, { ...value, name: pair.input });
    }
    // After END the state is gone: a later request of this id must START again.
    record.state = request.sequence?.end === true ? undefined : next;
    const wanted = new Set(outputs);
    return { ...result, outputs: new Map([...result.outputs].filter(([name]) => wanted.has(name))) };
  }

  return {
    stateInputs,
    infer(request, outputs) {
      const control = request.sequence;
      if (control === undefined) {
        const missing = [...stateInputs].filter((name) => !request.inputs.has(name));
        if (missing.length > 0) {
          return Promise.reject(
            new InferError(
              'INVALID_ARGUMENT',
              `model "${model}" is stateful and the request lacks its state input(s) ${missing.join(', ')}: ` +
                'send sequence_id with sequence_start on the first request (the server then carries the state), ' +
                'or send the state inputs',
            ),
          );
        }
        return submit({ inputs: request.inputs, fetches: outputs, ...queueing(request) });
      }
      const { id } = control;
      let record = sequences.get(id);
      if (record !== undefined && idle(record)) {
        sequences.delete(id);
        record = undefined;
      }
      if (record === undefined) {
        if (!control.start) return Promise.reject(needsStart(id, 'the server holds no state for it'));
        record = { state: undefined, tail: Promise.resolve(), pending: 0, lastUsed: clock.now() };
        sequences.set(id, record);
      }
      const current = record;
      current.pending++;
      const run = current.tail.then(() => step(id, current, request, outputs));
      current.tail = run.then(
        () => undefined,
        () => undefined,
      );
      return run.finally(() => {
        current.pending--;
        current.lastUsed = clock.now();
        if (control.end && sequences.get(id) === current) sequences.delete(id);
        settle();
      });
    },
    size: () => sequences.size,
    holds(id) {
      const record = sequences.get(id);
      return record !== undefined && !idle(record);
    },
    waiting() {
      // Of a sequence's unfinished requests, one at most is in the batcher; the rest wait for it.
      let count = 0;
      for (const record of sequences.values()) if (record.pending > 1) count += record.pending - 1;
      return count;
    },
    sweep,
    drain() {
      clearInterval(timer);
      if (![...sequences.values()].some((record) => record.pending > 0)) return Promise.resolve();
      return new Promise<void>((resolve) => idleWaiters.push(resolve));
    },
  };
}
