import type { IngestClient } from '@quanta/monitoring-client';
import { InputAccumulator } from '@quanta/monitoring-client';
import type { Tensor } from '@quanta/tensor';
import type { InferRequest, LoadedModel } from '../core/types.js';

export interface DriftSamplerOptions {
  /** Where the summaries go (queued, never waited for). */
  readonly client: Pick<IngestClient, 'summary'>;
  /** Input values sampled per second per model version and deployment (a token bucket); 0: none. */
  readonly valuesPerSecond: number;
  /** Most values taken from one input of one request (spread over the tensor). Default 1024. */
  readonly maxValuesPerInput?: number;
  /** How often the summaries are handed to the client, in ms. Default 5000. */
  readonly flushIntervalMs?: number;
  /** Milliseconds, monotonic enough for a token bucket; default performance.now. */
  readonly now?: () => number;
}

export interface DriftSamplerStats {
  /** Requests whose inputs were sampled. */
  readonly sampledRequests: number;
  /** Values taken from them. */
  readonly values: number;
  /** Summaries handed to the ingest client. */
  readonly summaries: number;
}

export interface DriftSampler {
  /** Samples a finished request's inputs when the model's budget allows; O(1) when it does not. */
  sample(model: LoadedModel, request: InferRequest, deployment: string): void;
  /** Hands every non-empty summary to the client now and starts new ones. */
  flush(): void;
  stats(): DriftSamplerStats;
  /** Flushes and stops the timer. */
  close(): void;
}

/** One (tenant, model, version, deployment): its budget and an accumulator per input. */
interface ModelState {
  readonly tenant: string;
  readonly model: string;
  readonly version: string;
  readonly deployment: string;
  tokens: number;
  refilledMs: number;
  readonly inputs: Map<string, InputAccumulator>;
  /** Whether anything was added since the last flush (an idle state is dropped at a flush). */
  touched: boolean;
  /** The map of its model that holds it, to drop it from. */
  readonly owner: Map<string, ModelState>;
}

/** Values to take from one input of a sampled request, after the request has been answered. */
interface PendingSample {
  readonly state: ModelState;
  readonly input: string;
  readonly tensor: Tensor;
  readonly limit: number;
}

/**
 * Samples the inputs of finished requests into per-input summaries for drift detection, off the
 * request path: a request is sampled only while its model's token bucket (valuesPerSecond, a
 * second's worth of burst) has values left, at most maxValuesPerInput per input, so the cost per
 * request is bounded and, summed over a second, at most valuesPerSecond values per model whatever
 * the traffic. A timer hands the summaries to the ingest client every flushIntervalMs; the client
 * queues them (dropping when monitoring is away), so nothing here ever waits.
 */
export function createDriftSampler(options: DriftSamplerOptions): DriftSampler {
  const rate = options.valuesPerSecond;
  if (!(rate >= 0)) throw new RangeError(`valuesPerSecond must be >= 0, got ${rate}`);
  const perInput = options.maxValuesPerInput ?? 1024;
  if (!(perInput >= 1)) throw new RangeError(`maxValuesPerInput must be >= 1, got ${perInput}`);
  const now = options.now ?? (() => performance.now());
  const byModel = new WeakMap<LoadedModel, Map<string, ModelState>>();
  const states = new Set<ModelState>();
  const counts = { sampledRequests: 0, values: 0, summaries: 0 };
  /** Sampled inputs not yet read: reading happens on a later turn of the event loop (`drain`). */
  let pending: PendingSample[] = [];
  let drainQueued = false;

  /** Reads the pending samples' values into their accumulators. */
  function drain(): void {
    drainQueued = false;
    const work = pending;
    pending = [];
    for (const p of work) {
      let acc = p.state.inputs.get(p.input);
      if (acc === undefined) p.state.inputs.set(p.input, (acc = new InputAccumulator()));
      acc.addTensor(p.tensor, p.limit);
    }
  }

  function stateOf(model: LoadedModel, deployment: string): ModelState {
    let perDeployment = byModel.get(model);
    if (perDeployment === undefined) byModel.set(model, (perDeployment = new Map<string, ModelState>()));
    let state = perDeployment.get(deployment);
    if (state === undefined) {
      state = {
        tenant: model.tenant,
        model: model.name,
        version: model.version,
        deployment,
        tokens: rate,
        refilledMs: now(),
        inputs: new Map(),
        touched: false,
        owner: perDeployment,
      };
      perDeployment.set(deployment, state);
      states.add(state);
    }
    return state;
  }

  function flush(): void {
    drain();
    const time = new Date();
    for (const state of states) {
      if (!state.touched) {
        // Idle for a whole interval: forgotten (an unloaded version's state goes this way).
        states.delete(state);
        state.owner.delete(state.deployment);
        continue;
      }
      state.touched = false;
      for (const [input, acc] of state.inputs) {
        if (acc.isEmpty()) continue;
        const { tenant, model, version, deployment } = state;
        options.client.summary(acc.toSummary({ tenant, model, version, deployment, input, time }));
        counts.summaries++;
        acc.reset();
      }
    }
  }

  const timer = rate > 0 ? setInterval(flush, options.flushIntervalMs ?? 5000) : undefined;
  timer?.unref(); // never keeps the process alive

  return {
    sample(model, request, deployment) {
      if (rate === 0) return;
      const state = stateOf(model, deployment);
      const t = now();
      state.tokens = Math.min(rate, state.tokens + ((t - state.refilledMs) * rate) / 1000);
      state.refilledMs = t;
      if (state.tokens < 1) return;
      const share = Math.max(1, Math.min(perInput, Math.floor(state.tokens / Math.max(1, request.inputs.size))));
      // Only the budget is settled here; the values are read after the answer has gone (the
      // request's tensors are its own and are not reused), so the request never waits for them.
      let taken = 0;
      for (const [input, tensor] of request.inputs) {
        if (tensor.datatype === 'BYTES') continue;
        const limit = Math.min(share, tensor.data.length);
        if (limit === 0) continue;
        pending.push({ state, input, tensor, limit });
        taken += limit;
      }
      if (taken === 0) return;
      if (!drainQueued) {
        drainQueued = true;
        setImmediate(drain);
      }
      state.tokens -= taken;
      state.touched = true;
      counts.sampledRequests++;
      counts.values += taken;
    },
    flush,
    stats: () => ({ ...counts }),
    close() {
      if (timer !== undefined) clearInterval(timer);
      flush();
    },
  };
}
