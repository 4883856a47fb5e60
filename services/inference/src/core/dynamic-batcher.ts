import { SpanStatusCode, context, trace, type Context, type Link } from '@opentelemetry/api';
import type * as ort from 'onnxruntime-node';
import type { Logger } from 'pino';
import { globalTracerLookup } from '@quanta/telemetry';
import {
  ORT_TYPE,
  TensorError,
  concatBatch,
  splitBatch,
  tensorBytes,
  tensorFromOrt,
  tensorToOrt,
  type FixedTensor,
  type Tensor,
} from '@quanta/tensor';
import { createBatchTuner, type BatchTunerOptions } from './batch-tuning.js';
import { systemTimers, type BatchTimer, type BatchTimers, type Clock } from './clock.js';
import type { InstancePool } from './instance-pool.js';
import type { Feed, RunTiming } from './instance.js';
import type { StatsRecorder } from './stats.js';
import { levelCount, levelOf, policyOf, queueTimeoutUs } from './priority-queue.js';
import {
  InferError,
  type CancelSignal,
  type ModelSignature,
  type QueuePolicy,
  type ServingConfig,
  type StageTimes,
} from './types.js';

// Triton's dynamic batcher for one model version: requests queue FIFO; a batch is the head
// request plus every later queued request whose inputs stack with it (same datatypes and same
// dims after dim 0), up to maxBatchSize rows. At most pool.slots batches are in flight: one per
// inline instance; two per worker instance (the one running and the next, waiting in the worker's
// message queue so that the worker does not idle until the event loop answers).
//
// When a batch leaves (Triton's policy, with a lone-request rule of our own):
// - while every slot is taken, requests only accumulate;
// - with a slot free, the batch leaves at once when it is full, when the oldest request has
//   already waited maxQueueDelayUs, or when waiting cannot grow it (the next compatible request
//   does not fit, or the model is draining); otherwise it waits only the rest of the oldest
//   request's delay (a request that waited behind a busy instance has used part of it already);
// - a lone request, one that arrives with nothing of this model queued or running, has nobody to
//   batch with: it leaves on the next setImmediate, with whatever arrived in the same tick or poll
//   phase, instead of waiting the delay (at concurrency 1, all of it). A request that was answered
//   does not count: only queued or running ones make the next one wait. `loneRequestsWait` turns
//   this off (Triton's behaviour: every request waits up to the delay).
// - preferred batch sizes (Triton's `preferred_batch_size`, configured, or one measured on live
//   traffic with tunePreferredBatchSize: see batch-tuning.ts): when the compatible rows queued
//   reach one, the largest such batch leaves at once, even with more rows queued or waiting past
//   the delay (the rest stay queued for the next free instance); with fewer rows than the
//   smallest, the rules above apply.
//
// Priorities (priority-queue.ts): the queue is ordered by level, then by arrival; a batch starts at
// the head (the oldest request of the highest level waiting) and takes compatible requests in that
// order. A request whose level's timeout passes is refused (DEADLINE_EXCEEDED), or, with
// delay_on_timeout, moved behind every level, where it still runs. Each level may also cap how many
// of its requests wait, beside the deployment's cap over all levels.

export interface BatchJob {
  /** Every input the model takes (state inputs included). */
  readonly inputs: ReadonlyMap<string, Tensor>;
  /** Outputs to fetch and hand back. */
  readonly fetches: readonly string[];
  readonly deadline?: number | undefined;
  readonly signal?: CancelSignal | undefined;
  /** The request's `priority` parameter (0 or absent: the default level). */
  readonly priority?: number | undefined;
  /** The request's `timeout` parameter in microseconds (its level's policy decides whether it applies). */
  readonly timeoutUs?: number | undefined;
}

export interface JobResult {
  readonly outputs: ReadonlyMap<string, Tensor>;
  readonly times: StageTimes;
  /** Rows of the batch it ran in (1 when not batching). */
  readonly batchSize: number;
  /** Rows this request counts for in inference_count. */
  readonly rows: number;
}

export interface DynamicBatcher {
  submit(job: BatchJob): Promise<JobResult>;
  /** Requests queued or running. */
  pending(): number;
  /** Requests queued, not yet taken into a batch. */
  queued(): number;
  /** Stops waiting for batches to fill and resolves once nothing is queued or running. */
  drain(): Promise<void>;
  /** The preferred batch sizes in effect: configured, or the one measured last (none before the first measurement). */
  preferred(): readonly number[];
}

export interface DynamicBatcherOptions {
  readonly model: string;
  readonly signature: ModelSignature;
  readonly config: ServingConfig;
  readonly pool: InstancePool;
  readonly stats: StatsRecorder;
  /** Wall clock, for deadlines. */
  readonly clock: Clock;
  /** The queue delay's clock and timer; default the process's (tests pass a hand-driven one). */
  readonly timers?: BatchTimers | undefined;
  readonly logger?: Logger | undefined;
  /** False runs every request alone (stateful models, maxBatchSize <= 1, unbatchable signatures). */
  readonly batching: boolean;
  /** The tuner's settings (tests shorten them); used with config.tunePreferredBatchSize. */
  readonly tuning?: Partial<Omit<BatchTunerOptions, 'maxRows' | 'nowNs' | 'onChoice' | 'instances'>> | undefined;
}

interface Entry {
  readonly job: BatchJob;
  /** The request's trace context: the batch span is a child of the first request's, linked to the rest. */
  readonly context: Context;
  /**
   * Merge key: datatype and non-batch dims of every input; made when first compared (keyOf), since a
   * request that runs alone is never compared.
   */
  key: string | undefined;
  readonly rows: number;
  readonly enqueuedNs: bigint;
  /** Lone (see the header): leaves without waiting the delay once `released` (next setImmediate). */
  readonly lone: boolean;
  /** The request's priority level (1 first). */
  readonly level: number;
  readonly policy: QueuePolicy;
  /** Its place in the queue's order: its level, or past every level once its timeout delayed it. */
  rank: number;
  /** Wall-clock ms when its level's timeout passes; undefined: none (or already delayed). */
  timeoutAt: number | undefined;
  released: boolean;
  resolve(result: JobResult): void;
  reject(error: unknown): void;
  /**
   * Starts watching for the request's cancel, deadline and level timeout while it waits. A lone
   * request leaves on the next setImmediate and is checked when taken (`expired`), so it only
   * watches if it is still queued then.
   */
  watch(): void;
  cleanup(): void;
}

const MAX_TIMER_MS = 2 ** 31 - 1;
/** How long after a batch ended with requests waiting no batch counts as alone (RunOptions.alone). */
const ALONE_COOLDOWN_NS = 100_000_000n;
const tracer = globalTracerLookup('quanta-inference');

const keyOf = (entry: Entry): string => (entry.key ??= mergeKey(entry.job.inputs));

/** Links from a batch's span to the other requests merged into it (OpenTelemetry keeps 128). */
function linksOf(batch: readonly Entry[]): Link[] | undefined {
  if (batch.length < 2) return undefined;
  const links: Link[] = [];
  for (const entry of batch.slice(1, 129)) {
    const spanContext = trace.getSpanContext(entry.context);
    if (spanContext !== undefined) links.push({ context: spanContext });
  }
  return links;
}

function tensorKey(name: string, t: Tensor): string {
  let key = `${JSON.stringify(name)}:${t.datatype}:`;
  for (let i = 1; i < t.shape.length; i++) key += i === 1 ? `${t.shape[i]}` : `x${t.shape[i]}`;
  return key;
}

function mergeKey(inputs: ReadonlyMap<string, Tensor>): string {
  // Most models take one input: no entries array, no sort.
  if (inputs.size === 1) {
    for (const [name, t] of inputs) return tensorKey(name, t);
  }
  return [...inputs.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, t]) => tensorKey(name, t))
    .join('|');
}

/** A batch's numeric input, staged: each request's bytes in batch order (stacking checked as concatBatch does). */
function stagedBatch(batch: readonly Entry[], name: string, first: Tensor, type: ort.Tensor.Type): Feed {
  const parts: Uint8Array[] = [];
  let rows = 0;
  for (const [index, entry] of batch.entries()) {
    const part = entry.job.inputs.get(name);
    if (part === undefined) continue;
    // Requests merge only under equal keys (datatype and dims after dim 0), so this holds unless a
    // caller broke the contract: fail as concatBatch would rather than stack the wrong bytes.
    const stacks =
      part.datatype === first.datatype &&
      part.shape.length === first.shape.length &&
      part.shape.every((dim, i) => i === 0 || dim === first.shape[i]);
    if (!stacks) {
      throw new TensorError(
        `input ${JSON.stringify(name)}: batch part ${index} (${part.datatype} [${part.shape.join(',')}]) ` +
          `does not stack with part 0 (${first.datatype} [${first.shape.join(',')}]) along axis 0`,
        'shape',
        name,
      );
    }
    rows += part.shape[0] ?? 0;
    parts.push(tensorBytes(part as FixedTensor));
  }
  return { type, dims: [rows, ...first.shape.slice(1)], parts };
}

export function createDynamicBatcher(options: DynamicBatcherOptions): DynamicBatcher {
  const { model, config, pool, stats, clock, batching } = options;
  const timers = options.timers ?? systemTimers;
  const nowNs = (): bigint => timers.nowNs();
  const maxRows = batching ? Math.max(1, config.maxBatchSize) : 1;
  // Only sizes a batch can have; a batch of maxRows leaves at once anyway.
  const configured = (config.preferredBatchSizes ?? []).filter(
    (size) => Number.isInteger(size) && size >= 1 && size <= maxRows,
  );
  const preferred = new Set(configured.filter((size) => size < maxRows));
  // The choice is logged at info when it changes (timings recur every minute, or every second while open).
  let logged: number | undefined | null = null;
  const tunes = maxRows > 1 && config.tunePreferredBatchSize === true && configured.length === 0;
  if (tunes && !pool.timesRuns) {
    options.logger?.info(
      { model },
      'preferred batch size not tuned: inline sessions cannot time onnxruntime alone ' +
        '(batches fill up to the max batch size)',
    );
  }
  const tuner =
    tunes && pool.timesRuns
      ? createBatchTuner({
          instances: pool.size,
          ...options.tuning,
          maxRows,
          nowNs,
          onChoice: (size, timings) => {
            const fields = {
              model,
              preferredBatchSize: size ?? 'none',
              rowsPerSecond: Object.fromEntries(timings.map((t) => [t.batchSize, Math.round(t.rowsPerSecond)])),
            };
            if (size === logged) options.logger?.debug(fields, 'measured the preferred batch size');
            else options.logger?.info(fields, 'measured the preferred batch size');
            logged = size;
          },
        })
      : undefined;
  /** Whether a batch of `size` rows is preferred now; `tuned` is the tuner's size of the moment. */
  const prefers = (size: number, tuned: number | undefined): boolean =>
    tuner === undefined ? preferred.has(size) : size === tuned && size < maxRows;
  const delayNs = BigInt(Math.max(0, Math.floor(config.maxQueueDelayUs))) * 1000n;
  const slots = pool.slots;
  const queue: Entry[] = [];
  let running = 0;
  let draining = false;
  let delayTimer: BatchTimer | undefined;
  let idleWaiters: (() => void)[] = [];
  // Until when no batch counts as alone: requests were waiting when a batch ended (see pump).
  let contendedUntil = 0n;
  // Only a batching queue with a delay holds requests; elsewhere every request leaves at once anyway.
  const holds = maxRows > 1 && delayNs > 0n;

  const releaseLone = (entry: Entry): void => {
    entry.released = true;
    pump();
    // Not taken after all (the model began draining, say): it waits, so it watches for its end.
    if (queue.includes(entry)) entry.watch();
  };

  const notifyIdle = (): void => {
    if (queue.length > 0 || running > 0) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const waiter of waiters) waiter();
  };

  const remove = (entry: Entry): boolean => {
    const at = queue.indexOf(entry);
    if (at < 0) return false;
    queue.splice(at, 1);
    entry.cleanup();
    return true;
  };

  const levels = levelCount(config);
  const pastDeadline = (entry: Entry, now: number): boolean =>
    entry.job.deadline !== undefined && entry.job.deadline <= now;
  const pastTimeout = (entry: Entry, now: number): boolean => entry.timeoutAt !== undefined && entry.timeoutAt <= now;
  /**
   * Whether a queued request must leave without running: cancelled (a lone request does not listen
   * for it in the instant it waits), its deadline, or a timeout its level refuses on.
   */
  const expired = (entry: Entry, now: number): boolean =>
    entry.job.signal?.aborted === true ||
    pastDeadline(entry, now) ||
    (pastTimeout(entry, now) && !entry.policy.delayOnTimeout);
  const deadlineError = (): InferError =>
    new InferError('DEADLINE_EXCEEDED', `model "${model}": the request's deadline passed while it waited in the queue`);
  const expiredError = (entry: Entry): InferError =>
    entry.job.signal?.aborted === true
      ? new InferError('CANCELLED', `model "${model}": the request was cancelled while queued`)
      : pastDeadline(entry, clock.now())
        ? deadlineError()
        : new InferError(
            'DEADLINE_EXCEEDED',
            `model "${model}": the request's queue timeout (priority level ${entry.level}) passed while it waited; ` +
              'the deadline exceeded before it ran',
          );

  const expire = (entry: Entry): void => {
    entry.cleanup();
    entry.reject(expiredError(entry));
  };

  /** Puts an entry after every queued one of its rank or a higher one (FIFO within a rank). */
  const enqueue = (entry: Entry): void => {
    let at = queue.length;
    while (at > 0 && queue[at - 1]!.rank > entry.rank) at--;
    if (at === queue.length) queue.push(entry);
    else queue.splice(at, 0, entry);
  };

  /** Requests of `level` waiting now (only counted where the level has a cap). */
  const waitingAt = (level: number): number => {
    let n = 0;
    for (const entry of queue) if (entry.level === level) n++;
    return n;
  };

  /** Takes a batch's entries out of the queue, keeping the others in order. */
  const removeTaken = (batch: readonly Entry[]): void => {
    // Usual case: the batch is the queue's first entries.
    let prefix = 0;
    while (prefix < batch.length && queue[prefix] === batch[prefix]) prefix++;
    if (prefix === batch.length) {
      queue.splice(0, prefix);
      return;
    }
    const chosen = new Set(batch);
    let kept = 0;
    for (const entry of queue) if (!chosen.has(entry)) queue[kept++] = entry;
    queue.length = kept;
  };

  /** The batch to run now on a free instance, or undefined (then a timer or an arrival pumps again). */
  const takeBatch = (): Entry[] | undefined => {
    // Expired requests leave without running (their timers usually got them first).
    let head = queue[0];
    if (head === undefined) return undefined;
    // One clock read for the whole look at the queue.
    const now = clock.now();
    while (head !== undefined && expired(head, now)) {
      queue.shift();
      expire(head);
      head = queue[0];
    }
    if (head === undefined) return undefined;
    if (maxRows <= 1) {
      queue.shift();
      return [head];
    }
    const batch = [head];
    let rows = head.rows;
    // The tuner's size (being timed, or chosen) stands in for configured ones.
    const tuned = tuner?.target();
    // Entries in the largest preferred-size batch seen so far (0: none reached).
    let preferredLength = prefers(rows, tuned) ? 1 : 0;
    // True when a compatible request is queued that does not fit: waiting cannot grow this batch.
    let blocked = false;
    for (let i = 1; i < queue.length && rows < maxRows; i++) {
      const entry = queue[i];
      if (entry === undefined || keyOf(entry) !== keyOf(head)) continue;
      if (expired(entry, now)) {
        queue.splice(i--, 1);
        expire(entry);
        continue;
      }
      // FIFO: a compatible request that does not fit ends the batch rather than being skipped.
      if (rows + entry.rows > maxRows) {
        blocked = true;
        break;
      }
      batch.push(entry);
      rows += entry.rows;
      if (prefers(rows, tuned)) preferredLength = batch.length;
    }
    if (preferredLength > 0) {
      // A preferred size is reached: the largest preferred batch leaves now. Unlike Triton, also
      // when the oldest request has waited past the delay: a backlog is when the size matters most.
      batch.length = preferredLength;
    } else if (rows < maxRows && !blocked && !draining) {
      if (head.lone) {
        // A lone head waits only for its setImmediate (releaseLone pumps then), never the delay.
        if (!head.released) return undefined;
      } else {
        // The delay counts from the oldest request's arrival, time behind a busy instance included.
        const left = delayNs - (nowNs() - head.enqueuedNs);
        if (left > 0n) {
          delayTimer = timers.setTimer(pump, left);
          return undefined;
        }
      }
    }
    removeTaken(batch);
    return batch;
  };

  function pump(): void {
    delayTimer?.cancel();
    delayTimer = undefined;
    while (running < slots) {
      const batch = takeBatch();
      if (batch === undefined) break;
      // Nothing else of the model waits or runs, and none waited when a batch last ended within
      // ALONE_COOLDOWN_NS: the pool may run it inline (instance-pool.ts). A model under load often
      // finds its queue empty for an instant; its runs belong in the workers, where they do not hold
      // the event loop up while more requests arrive.
      const alone = running === 0 && queue.length === 0 && (contendedUntil === 0n || nowNs() >= contendedUntil);
      running++;
      const done = (settle: () => void): void => {
        // The instance counts as free before the answers go out, so that a request sent in
        // reaction to one (same process, same tick) does not find this batch still running.
        running--;
        if (queue.length > 0) contendedUntil = nowNs() + ALONE_COOLDOWN_NS;
        settle();
        pump();
      };
      execute(batch, alone).then(done, (error: unknown) =>
        // Only a failure outside execute's own try (the tracer) lands here; the batch still ends.
        done(() => {
          const failure = new InferError(
            'INTERNAL',
            `model "${model}" failed to run a batch of ${batch.length}: ` +
              (error instanceof Error ? error.message : String(error)),
          );
          for (const entry of batch) entry.reject(failure);
        }),
      );
    }
    notifyIdle();
  }

  /** Runs a batch; never rejects. The returned function answers its requests. */
  async function execute(batch: readonly Entry[], alone: boolean): Promise<() => void> {
    for (const entry of batch) entry.cleanup();
    const started = nowNs();
    const batchRows = batching ? batch.reduce((sum, entry) => sum + entry.rows, 0) : 1;
    const first = batch[0];
    if (first === undefined) return () => undefined;
    // Spans only under a recording parent (or none, as a root): a request whose span is not recorded
    // (not sampled, or no tracing SDK) would get children that are not recorded either, and making
    // them costs every request.
    const parent = trace.getSpan(first.context);
    const span =
      parent === undefined || parent.isRecording()
        ? tracer().startSpan(
            'inference.batch',
            {
              attributes: { 'quanta.model': model, 'quanta.batch_size': batchRows, 'quanta.requests': batch.length },
              links: linksOf(batch),
            },
            first.context,
          )
        : undefined;
    const spanContext = span === undefined ? undefined : trace.setSpan(first.context, span);
    try {
      const single = batch.length === 1;
      const feeds: Record<string, Feed> = {};
      for (const [name, own] of first.job.inputs) {
        const type = own.datatype === 'BYTES' ? undefined : ORT_TYPE[own.datatype];
        if (type !== undefined) {
          // Numeric: the requests' bytes go to the instance as they are, which copies them once
          // into an input buffer of its own (see buffer-pool.ts), stacked when batched.
          feeds[name] = single
            ? { type, dims: own.shape, parts: [tensorBytes(own as FixedTensor)] }
            : stagedBatch(batch, name, own, type);
          continue;
        }
        let merged = own;
        if (!single) {
          const parts: Tensor[] = [];
          for (const entry of batch) {
            const part = entry.job.inputs.get(name);
            if (part !== undefined) parts.push(part);
          }
          merged = concatBatch(parts, { name, role: 'input' });
        }
        feeds[name] = tensorToOrt(merged, { name, role: 'input' });
      }
      const fetches = single ? first.job.fetches : [...new Set(batch.flatMap((entry) => entry.job.fetches))];
      const inputDone = nowNs();
      const run =
        spanContext === undefined
          ? undefined
          : tracer().startSpan(
              'onnxruntime.run',
              { attributes: { 'quanta.model': model, 'quanta.batch_size': batchRows } },
              spanContext,
            );
      let results: ort.InferenceSession.ReturnType;
      const timing: RunTiming = { ranNs: -1n };
      try {
        // A merged BYTES batch is ours (concatBatch's): the pool may hand it over rather than copy it.
        const options = { ownedInputs: !single, timing, alone };
        results = await (spanContext === undefined || run === undefined
          ? pool.run(feeds, fetches, options)
          : context.with(trace.setSpan(spanContext, run), () => pool.run(feeds, fetches, options)));
      } finally {
        run?.end();
      }
      const inferDone = nowNs();
      // compute_infer is onnxruntime's own time where the pool knows it; the hand-off to a worker
      // and the wait behind the batch ahead of it there count as compute_input.
      const wall = inferDone - inputDone;
      const ran = timing.ranNs >= 0n && timing.ranNs <= wall ? timing.ranNs : wall;
      const handOff = wall - ran;
      tuner?.record(batchRows, ran);
      if (single) {
        // One request: its outputs are onnxruntime's, no split.
        const outputs = new Map<string, Tensor>();
        for (const name of fetches) {
          const value = results[name];
          if (value === undefined) throw new Error(`onnxruntime returned no output "${name}"`);
          outputs.set(name, tensorFromOrt(value, { name, role: 'output' }));
        }
        const outputDone = nowNs();
        const exec = {
          computeInputNs: inputDone - started + handOff,
          computeInferNs: ran,
          computeOutputNs: outputDone - inferDone,
        };
        stats.execution(batchRows, exec);
        span?.end();
        return () =>
          first.resolve({
            outputs,
            times: { queueNs: started - first.enqueuedNs, ...exec },
            batchSize: batchRows,
            rows: first.rows,
          });
      }
      const split = new Map<string, Tensor[]>();
      const rowsOf = batch.map((entry) => entry.rows);
      for (const name of fetches) {
        const value = results[name];
        if (value === undefined) throw new Error(`onnxruntime returned no output "${name}"`);
        split.set(name, splitBatch(tensorFromOrt(value, { name, role: 'output' }), rowsOf, { name, role: 'output' }));
      }
      const outputDone = nowNs();
      const exec = {
        computeInputNs: inputDone - started + handOff,
        computeInferNs: ran,
        computeOutputNs: outputDone - inferDone,
      };
      stats.execution(batchRows, exec);
      span?.end();
      return () => {
        batch.forEach((entry, index) => {
          const outputs = new Map<string, Tensor>();
          for (const name of entry.job.fetches) {
            const part = split.get(name)?.[index];
            if (part !== undefined) outputs.set(name, part);
          }
          entry.resolve({
            outputs,
            times: { queueNs: started - entry.enqueuedNs, ...exec },
            batchSize: batchRows,
            rows: entry.rows,
          });
        });
      };
    } catch (error: unknown) {
      const failure =
        error instanceof InferError
          ? error
          : error instanceof TensorError
            ? new InferError('INVALID_ARGUMENT', `model "${model}": ${error.message}`)
            : new InferError(
                'INTERNAL',
                `model "${model}" failed to run a batch of ${batch.length}: ` +
                  (error instanceof Error ? error.message : String(error)),
              );
      if (failure.code === 'INTERNAL')
        options.logger?.error({ err: error, model, batch: batch.length }, 'inference run failed');
      span?.setStatus({ code: SpanStatusCode.ERROR, message: failure.message });
      span?.end();
      return () => {
        for (const entry of batch) entry.reject(failure);
      };
    }
  }

  return {
    submit(job) {
      if (draining) {
        return Promise.reject(new InferError('UNAVAILABLE', `model "${model}" is unloading and takes no new requests`));
      }
      if (job.signal?.aborted === true) {
        return Promise.reject(
          new InferError('CANCELLED', `model "${model}": the request was cancelled before it was queued`),
        );
      }
      if (job.deadline !== undefined && job.deadline <= clock.now()) return Promise.reject(deadlineError());
      let rows = 1;
      if (batching) {
        let dim0: number | undefined;
        let disagree = false;
        for (const tensor of job.inputs.values()) {
          const d = tensor.shape[0] ?? 1;
          if (dim0 === undefined) dim0 = d;
          else if (d !== dim0) disagree = true;
        }
        if (disagree) {
          return Promise.reject(
            new InferError(
              'INVALID_ARGUMENT',
              `model "${model}": the inputs disagree on the batch size (dim 0): ` +
                [...job.inputs].map(([name, t]) => `${name} ${t.shape[0] ?? 1}`).join(', '),
            ),
          );
        }
        rows = dim0 ?? 1;
        if (rows > maxRows) {
          return Promise.reject(
            new InferError(
              'INVALID_ARGUMENT',
              `model "${model}": the request has batch size ${rows}, more than the model's max batch size ${maxRows}`,
            ),
          );
        }
      }
      let level: number;
      try {
        level = levelOf(model, config, job.priority);
      } catch (error: unknown) {
        return Promise.reject(error instanceof Error ? error : new InferError('INTERNAL', String(error)));
      }
      const policy = policyOf(config, level);
      if (config.maxQueueSize > 0 && queue.length >= config.maxQueueSize) {
        return Promise.reject(
          new InferError(
            'RESOURCE_EXHAUSTED',
            `model "${model}": the queue is full (${config.maxQueueSize} requests waiting); retry later`,
          ),
        );
      }
      if (policy.maxQueueSize > 0 && waitingAt(level) >= policy.maxQueueSize) {
        return Promise.reject(
          new InferError(
            'RESOURCE_EXHAUSTED',
            `model "${model}": the queue of priority level ${level} is full ` +
              `(${policy.maxQueueSize} requests waiting); retry later`,
          ),
        );
      }
      const timeoutUs = queueTimeoutUs(policy, job.timeoutUs);
      const arrivedNs = nowNs();
      // Nothing queued and nothing running: nobody to batch with (see the header).
      const lone = holds && config.loneRequestsWait !== true && queue.length === 0 && running === 0;
      return new Promise<JobResult>((resolve, reject) => {
        let timer: NodeJS.Timeout | undefined;
        /** Arms the timer for the earlier of the deadline and the level's timeout (both wall-clock ms). */
        const arm = (): void => {
          clearTimeout(timer);
          timer = undefined;
          const due = Math.min(job.deadline ?? Infinity, entry.timeoutAt ?? Infinity);
          // A time beyond setTimeout's range (about 24.8 days) is only checked at dispatch.
          if (due - clock.now() >= MAX_TIMER_MS) return;
          timer = setTimeout(onTimer, Math.max(0, due - clock.now()));
          timer.unref();
        };
        const onTimer = (): void => {
          const now = clock.now();
          if (!queue.includes(entry)) return;
          if (pastTimeout(entry, now) && entry.policy.delayOnTimeout && !pastDeadline(entry, now)) {
            // Delayed: behind every level, in the order their timeouts passed; it still runs.
            remove(entry);
            entry.timeoutAt = undefined;
            entry.rank = levels + 1;
            job.signal?.addEventListener('abort', onAbort, { once: true });
            enqueue(entry);
            arm();
          } else if (pastDeadline(entry, now) || pastTimeout(entry, now)) {
            if (remove(entry)) entry.reject(expiredError(entry));
          } else {
            // A timer may fire a little before the wall clock reaches its time.
            arm();
            return;
          }
          pump();
        };
        const onAbort = (): void => {
          if (remove(entry))
            entry.reject(new InferError('CANCELLED', `model "${model}": the request was cancelled while queued`));
          pump();
        };
        const entry: Entry = {
          job,
          context: context.active(),
          key: batching ? undefined : '',
          rows,
          enqueuedNs: arrivedNs,
          lone,
          level,
          policy,
          rank: level,
          timeoutAt: timeoutUs > 0 ? clock.now() + timeoutUs / 1000 : undefined,
          released: false,
          resolve,
          reject,
          watch() {
            job.signal?.addEventListener('abort', onAbort, { once: true });
            if (job.deadline !== undefined || entry.timeoutAt !== undefined) arm();
          },
          cleanup() {
            clearTimeout(timer);
            job.signal?.removeEventListener('abort', onAbort);
          },
        };
        enqueue(entry);
        if (lone) setImmediate(releaseLone, entry);
        else entry.watch();
        pump();
      });
    },
    pending: () => queue.length + running,
    queued: () => queue.length,
    preferred() {
      if (tuner === undefined) return configured;
      const chosen = tuner.chosen();
      return chosen === undefined ? [] : [chosen];
    },
    drain() {
      draining = true;
      pump();
      if (queue.length === 0 && running === 0) return Promise.resolve();
      return new Promise<void>((resolve) => idleWaiters.push(resolve));
    },
  };
}
