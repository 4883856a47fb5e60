// batchInfer: a dataset through a model over one ModelStreamInfer at a time. The server answers a
// stream's requests in the order they were sent, so each answer belongs to the oldest request
// still waiting. At most `window` requests are held between being read from the source and being
// written to the sink (sent, answered but waiting for an older one, or being retried one by one),
// so memory stays bounded whatever the dataset's size.
import { status } from '@grpc/grpc-js';
import type { inference } from '@quanta/contracts';
import { concatBatch, isDatatype, splitBatch, type Tensor } from '@quanta/tensor/core';
import type { CallOptions, QuantaClient } from '../client.js';
import { QuantaClientError } from '../errors.js';
import { backoffMs, DEFAULT_RETRY, neverSent, RETRY_POLICY, type RetryOptions } from '../retry.js';
import { inferRequest, outputTensors } from '../tensors.js';
import {
  fingerprintDifference,
  readCheckpoint,
  removeCheckpoint,
  writeCheckpoint,
  type Checkpoint,
  type CheckpointMark,
} from './checkpoint.js';
import type {
  BatchFailure,
  BatchProgress,
  BatchRecord,
  BatchSink,
  BatchSource,
  BatchSummary,
  ModelSignature,
  TensorSpec,
} from './types.js';

export interface BatchOptions {
  /** Model version; default the one the server serves. */
  readonly version?: string;
  /**
   * Requests held at once (in flight or waiting to be written); default: enough for
   * DEFAULT_WINDOW_ROWS records (64 requests of one record, at least 4 requests).
   */
  readonly window?: number;
  /**
   * Records stacked into one request along dim 0; default 1. A number needs a model whose inputs
   * and outputs all have a dynamic first dim, and no sequences. `'auto'` stacks up to
   * AUTO_BATCH_ROWS (at most the deployment's max batch size) where the server itself batches
   * along dim 0 (Triton's `max_batch_size` > 0, every first dim dynamic), else sends one record
   * per request.
   */
  readonly batchRows?: number | 'auto';
  /** Outputs to ask for; default all. */
  readonly outputs?: readonly string[];
  /** Where failed records go (id, code, message); without it they are only counted. */
  readonly errors?: BatchSink<BatchFailure>;
  /** The job stops (BatchError 'max-failures') once more records than this have failed; default no limit. */
  readonly maxFailures?: number;
  /** Checkpoint file: written as records complete, read by `resume`. */
  readonly checkpoint?: string;
  /** Continue from the checkpoint instead of starting afresh (none there: start afresh). */
  readonly resume?: boolean;
  /** How often the checkpoint is written, in ms; default 1000 (and always at the end). */
  readonly checkpointIntervalMs?: number;
  /** What identifies the job (input file, options): a resume with a different one is refused. */
  readonly fingerprint?: Readonly<Record<string, unknown>>;
  /** Stops the job: the checkpoint is written and the promise rejects with BatchError 'aborted'. */
  readonly signal?: AbortSignal;
  /** Told as records complete, at most every `progressIntervalMs` (default 200). */
  readonly onProgress?: (progress: BatchProgress) => void;
  readonly progressIntervalMs?: number;
  /** Backoff of a stream that failed on a transient error; its `maxAttempts` counts failures in a row. */
  readonly retry?: RetryOptions;
  /** Metadata for every call (e.g. `traceparent`). */
  readonly metadata?: Readonly<Record<string, string>>;
}

/** A job that could not finish: `summary` tells what was done; a checkpoint (if any) was written. */
export class BatchError extends Error {
  override readonly name = 'BatchError';

  constructor(
    message: string,
    readonly reason: 'aborted' | 'max-failures' | 'stream' | 'usage',
    readonly summary: BatchSummary | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const STREAM_METHOD = '/inference.GRPCInferenceService/ModelStreamInfer';
const LATENCY_SAMPLES = 8192;
const MAX_MARKS = 256;

/** At most `max` marks, the first and the last kept, dropping those closest to their neighbours. */
function thin(marks: CheckpointMark[], max: number): CheckpointMark[] {
  const kept = [...marks];
  while (kept.length > max) {
    let drop = 1;
    for (let i = 2; i < kept.length - 1; i++) {
      if (kept[i + 1]!.records - kept[i - 1]!.records < kept[drop + 1]!.records - kept[drop - 1]!.records) drop = i;
    }
    kept.splice(drop, 1);
  }
  return kept;
}

type Outcome = { readonly outputs: readonly Tensor[] } | { readonly code: string | null; readonly message: string };

interface Pending {
  /** Index of the first record. */
  readonly first: number;
  readonly records: readonly BatchRecord[];
  /** Dim 0 of each record, to split a stacked answer. */
  readonly counts: readonly number[];
  readonly request: inference.ModelInferRequest | undefined;
  /** Part of a sequence: never sent twice. */
  readonly sequence: boolean;
  /** Records replayed to rebuild a sequence's state on resume: their outputs are not written again. */
  readonly replay: boolean;
  /** Sequence flags of its one record. */
  readonly start: boolean;
  readonly end: boolean;
  sentAt: number;
  outcomes: Outcome[] | undefined;
}

function signatureOf(meta: inference.ModelMetadataResponse, model: string): ModelSignature {
  const spec = (t: inference.ModelMetadataResponse_TensorMetadata): TensorSpec => {
    if (!isDatatype(t.datatype))
      throw new Error(`model "${model}" declares "${t.name}" with unknown datatype "${t.datatype}"`);
    return { name: t.name, datatype: t.datatype, shape: t.shape.map(Number) };
  };
  return { name: meta.name || model, version: '', inputs: meta.inputs.map(spec), outputs: meta.outputs.map(spec) };
}

/** Triton's sequence parameters: a numeric id travels as int64 (as tritonclient sends it), any other as a string. */
export function sequenceParameters(id: string, start: boolean, end: boolean): Record<string, inference.InferParameter> {
  const numeric = /^[1-9]\d*$/.test(id) && BigInt(id) <= 0x7fff_ffff_ffff_ffffn;
  return {
    sequence_id: {
      parameterChoice: numeric ? { $case: 'int64Param', value: BigInt(id) } : { $case: 'stringParam', value: id },
    },
    sequence_start: { parameterChoice: { $case: 'boolParam', value: start } },
    sequence_end: { parameterChoice: { $case: 'boolParam', value: end } },
  };
}

const rowsOf = (record: BatchRecord): number => record.inputs[0]?.shape[0] ?? 1;

/** Whether `record` stacks with `first` along dim 0: the same inputs, datatypes and trailing dims. */
function stacks(first: BatchRecord, record: BatchRecord): boolean {
  if (record.error !== undefined || record.inputs.length !== first.inputs.length) return false;
  return first.inputs.every((a, i) => {
    const b = record.inputs[i]!;
    return (
      a.name === b.name &&
      a.datatype === b.datatype &&
      a.shape.length > 0 &&
      a.shape.length === b.shape.length &&
      a.shape.every((d, k) => k === 0 || d === b.shape[k])
    );
  });
}

/** A bounded uniform sample (reservoir), for latency quantiles over any number of requests. */
function reservoir(size: number): { add(value: number): void; quantile(q: number): number } {
  const values: number[] = [];
  let seen = 0;
  return {
    add(value) {
      seen += 1;
      if (values.length < size) values.push(value);
      else {
        const slot = Math.floor(Math.random() * seen);
        if (slot < size) values[slot] = value;
      }
    },
    quantile(q) {
      if (values.length === 0) return 0;
      const sorted = [...values].sort((a, b) => a - b);
      return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
    },
  };
}

/** An iterator that can look one record ahead (a sequence ends where the next record's id differs). */
function lookahead(iterator: AsyncIterator<BatchRecord>): {
  peek(): Promise<BatchRecord | undefined>;
  next(): Promise<BatchRecord | undefined>;
} {
  let held: Promise<IteratorResult<BatchRecord>> | undefined;
  const fetch = (): Promise<IteratorResult<BatchRecord>> => (held ??= iterator.next());
  return {
    async peek() {
      const r = await fetch();
      return r.done === true ? undefined : r.value;
    },
    async next() {
      const r = await fetch();
      held = undefined;
      return r.done === true ? undefined : r.value;
    },
  };
}

const round = (n: number, digits: number): number => Number(n.toFixed(digits));

/**
 * Runs every record of `source` through `model` and writes each record's outputs to `sink` in
 * input order. Records the server rejects go to `options.errors` and the job goes on; a stream
 * that fails on a transient error (UNAVAILABLE, ABORTED) is opened again and the requests it left
 * unanswered are sent again (never those of a sequence, which would advance its state twice: the
 * job stops and a resume replays the sequence). With `checkpoint`, a stopped or crashed job
 * continues with `resume` where its outputs were last made durable, with no record written twice
 * or left out.
 */
/** The most records `batchRows: 'auto'` stacks into one request. */
export const AUTO_BATCH_ROWS = 32;

/** Records the default window holds in flight. */
export const DEFAULT_WINDOW_ROWS = 64;

/**
 * How many records `'auto'` stacks: only where the server batches along dim 0 itself (its
 * configuration says `max_batch_size` > 0) and every input and output has a dynamic first dim, so
 * dim 0 is the batch and stacking cannot change an answer.
 */
async function autoBatchRows(
  client: QuantaClient,
  model: string,
  version: string,
  signature: { inputs: readonly { shape: readonly number[] }[]; outputs: readonly { shape: readonly number[] }[] },
  call: CallOptions,
): Promise<number> {
  if ([...signature.inputs, ...signature.outputs].some((t) => t.shape[0] !== -1)) return 1;
  let maxBatch = 0;
  try {
    maxBatch = (await client.inference.modelConfig({ name: model, version }, call)).config?.maxBatchSize ?? 0;
  } catch (error: unknown) {
    // A server without Triton's ModelConfig says nothing about dim 0: one record per request.
    if (!(error instanceof QuantaClientError && error.code === status.UNIMPLEMENTED)) throw error;
  }
  return maxBatch > 0 ? Math.min(AUTO_BATCH_ROWS, maxBatch) : 1;
}

export async function batchInfer(
  client: QuantaClient,
  model: string,
  source: BatchSource,
  sink: BatchSink,
  options: BatchOptions = {},
): Promise<BatchSummary> {
  const asked = options.batchRows ?? 1;
  if (options.window !== undefined && (!Number.isSafeInteger(options.window) || options.window < 1))
    throw new BatchError(`window must be a whole number ≥ 1, got ${options.window}`, 'usage', undefined);
  if (asked !== 'auto' && (!Number.isSafeInteger(asked) || asked < 1)) {
    throw new BatchError(`batchRows must be a whole number ≥ 1 or "auto", got ${asked}`, 'usage', undefined);
  }
  const version = options.version ?? '';
  const call: CallOptions = options.metadata === undefined ? {} : { metadata: options.metadata };
  const retry: Required<RetryOptions> = { ...DEFAULT_RETRY, ...options.retry };

  const metadata = await client.inference.modelMetadata({ name: model, version }, call);
  const signature = {
    ...signatureOf(metadata, model),
    version: metadata.versions.length === 1 ? metadata.versions[0]! : version,
  };
  const batchRows = asked === 'auto' ? await autoBatchRows(client, model, version, signature, call) : asked;
  // Records held, not requests, bound the memory: stacked requests get a shorter window.
  const window = options.window ?? Math.max(4, Math.ceil(DEFAULT_WINDOW_ROWS / batchRows));
  const fingerprint = { model, version, batchRows, outputs: options.outputs ?? [], ...options.fingerprint };
  if (batchRows > 1) {
    const fixed = [...signature.inputs, ...signature.outputs].find((t) => t.shape[0] !== -1);
    if (fixed !== undefined) {
      throw new BatchError(
        `batchRows ${batchRows} stacks records along dim 0, but "${fixed.name}" of model "${model}" has shape ` +
          `[${fixed.shape.join(',')}], whose first dim is not dynamic: use batchRows 1`,
        'usage',
        undefined,
      );
    }
  }

  // Resume: the latest mark both outputs can honour.
  let marks: CheckpointMark[] = [];
  let mark: CheckpointMark = {
    records: 0,
    replayFrom: 0,
    succeeded: 0,
    failures: 0,
    sink: undefined,
    errors: undefined,
  };
  const saved: Checkpoint | undefined =
    options.resume === true && options.checkpoint !== undefined ? await readCheckpoint(options.checkpoint) : undefined;
  if (saved !== undefined) {
    const difference = fingerprintDifference(saved.fingerprint, fingerprint);
    if (difference !== undefined) {
      throw new BatchError(
        `the checkpoint ${options.checkpoint} is of another job (${difference}); start afresh without resume`,
        'usage',
        undefined,
      );
    }
  }
  // A job started afresh drops an old checkpoint first: a crash before its first checkpoint must
  // not leave a checkpoint that describes outputs this job has already cut back.
  if (saved === undefined && options.checkpoint !== undefined) await removeCheckpoint(options.checkpoint);
  const savedMarks = saved?.marks ?? [];
  const chosen = await sink.open(savedMarks.map((m) => m.sink));
  if (chosen >= 0 && savedMarks[chosen] !== undefined) {
    mark = savedMarks[chosen];
    marks = savedMarks.slice(0, chosen + 1);
  } else marks = [];
  if (options.errors !== undefined) {
    const resumeErrors = chosen >= 0 && mark.errors !== undefined;
    const at = await options.errors.open(resumeErrors ? [mark.errors] : []);
    if (resumeErrors && at !== 0)
      throw new BatchError('the errors file is shorter than the checkpoint says: it was changed', 'usage', undefined);
  }
  const resumedFrom = mark.records;

  const started = performance.now();
  const latency = reservoir(LATENCY_SAMPLES);
  let committed = mark.records; // records written or failed, in order
  let succeeded = mark.succeeded;
  let failures = mark.failures;
  let requests = 0;
  let openSequenceStart: number | undefined = mark.replayFrom < mark.records ? mark.replayFrom : undefined;
  let stopped: 'aborted' | 'max-failures' | undefined;
  let lastCheckpoint = performance.now();
  let lastProgress = 0;

  const summary = (): BatchSummary => {
    const wallSeconds = (performance.now() - started) / 1000;
    return {
      model,
      version: signature.version,
      records: committed,
      succeeded,
      failures,
      resumedFrom,
      requests,
      wallSeconds: round(wallSeconds, 3),
      recordsPerSecond: round(wallSeconds > 0 ? (committed - resumedFrom) / wallSeconds : 0, 1),
      latencyMs: { p50: round(latency.quantile(0.5), 3), p99: round(latency.quantile(0.99), 3) },
      ...(stopped === undefined ? {} : { stopped }),
    };
  };

  const iterator = lookahead(source.records(signature)[Symbol.asyncIterator]());
  // Skip what is done; records of a sequence still open at the mark are sent again to rebuild its state.
  for (let i = 0; i < mark.replayFrom; i++) {
    if ((await iterator.next()) === undefined)
      throw new BatchError(`the input has fewer records (${i}) than the checkpoint has done`, 'usage', undefined);
  }
  let nextIndex = mark.replayFrom;
  let previousSequence: string | undefined; // of the record read last, to set sequence_start

  const progress = (force: boolean): void => {
    if (options.onProgress === undefined) return;
    const now = performance.now();
    if (!force && now - lastProgress < (options.progressIntervalMs ?? 200)) return;
    lastProgress = now;
    options.onProgress({
      records: committed,
      failures,
      elapsedMs: now - started,
      recordsThisRun: committed - resumedFrom,
      total: source.total?.(),
      fraction: source.fraction?.(),
    });
  };

  // A stop ends the stream at once: what was answered and written is checkpointed, the rest is sent again on resume.
  const controller = new AbortController();
  // Requests between being read and being written, oldest first; `awaiting` are those sent on the current stream.
  const held: Pending[] = [];
  const awaiting: Pending[] = [];
  const slotWaiters: (() => void)[] = [];
  const wake = (): void => {
    for (const w of slotWaiters.splice(0)) w();
  };
  const slot = (): Promise<void> =>
    held.length < window || stopped !== undefined ? Promise.resolve() : new Promise<void>((r) => slotWaiters.push(r));
  const retries = new Set<Promise<void>>();

  const checkpointNow = async (complete: boolean): Promise<void> => {
    if (options.checkpoint === undefined) return;
    const sinkAt = await sink.sync();
    const errorsAt = await options.errors?.sync();
    const latest: CheckpointMark = {
      records: committed,
      replayFrom: openSequenceStart ?? committed,
      succeeded,
      failures,
      sink: sinkAt,
      errors: errorsAt,
    };
    const keep = sink.retain === undefined ? [] : marks.filter((m, i) => i === 0 || sink.retain!(m.sink, sinkAt));
    marks = thin([...keep, latest], MAX_MARKS);
    await writeCheckpoint(options.checkpoint, {
      format: 'quanta-batch-checkpoint',
      version: 1,
      fingerprint,
      marks,
      complete,
    });
    lastCheckpoint = performance.now();
  };

  // A resumed job records at once where its outputs were cut back to, so a crash from here on never
  // meets a mark past them.
  if (saved !== undefined) await checkpointNow(false);

  let committing = false;
  /** Writes the answered requests at the head of `held`, in order. */
  const commit = async (): Promise<void> => {
    if (committing) return;
    committing = true;
    try {
      // After too many failures nothing more is written: the job ends on the record that went over.
      while (held[0]?.outcomes !== undefined && stopped !== 'max-failures') {
        const p = held.shift()!;
        wake();
        p.records.forEach((record, k) => {
          if (record.sequenceId !== undefined) {
            if (p.start) openSequenceStart = p.first + k;
            if (p.end) openSequenceStart = undefined;
          }
        });
        for (const [k, outcome] of p.outcomes!.entries()) {
          const index = p.first + k;
          const record = p.records[k]!;
          if (!p.replay) {
            if ('outputs' in outcome) {
              await sink.write({ id: record.id, index, outputs: outcome.outputs });
              succeeded += 1;
            } else {
              failures += 1;
              await sink.fail?.({ id: record.id, index, code: outcome.code, message: outcome.message }, rowsOf(record));
              await options.errors?.write({ id: record.id, index, code: outcome.code, message: outcome.message });
            }
            committed = index + 1;
          }
          // The record that goes over the limit is the last one written, even inside a stacked request.
          if (options.maxFailures !== undefined && failures > options.maxFailures && stopped === undefined) {
            stopped = 'max-failures';
            wake();
            controller.abort();
            break;
          }
        }
        progress(false);
        if (performance.now() - lastCheckpoint >= (options.checkpointIntervalMs ?? 1000)) await checkpointNow(false);
      }
    } finally {
      committing = false;
    }
  };

  /** Reads the next request's records from the source (several when they stack), or undefined at the end. */
  const nextPending = async (): Promise<Pending | undefined> => {
    const first = await iterator.next();
    if (first === undefined) return undefined;
    const index = nextIndex;
    const replay = index < mark.records;
    if (first.error !== undefined) {
      nextIndex += 1;
      previousSequence = first.sequenceId;
      const outcomes: Outcome[] = [{ code: 'INVALID_ARGUMENT', message: first.error }];
      return {
        first: index,
        records: [first],
        counts: [1],
        request: undefined,
        sequence: false,
        replay,
        start: false,
        end: false,
        sentAt: 0,
        outcomes,
      };
    }
    if (first.sequenceId !== undefined) {
      const start = index === mark.replayFrom || previousSequence !== first.sequenceId;
      const after = await iterator.peek();
      const end = after === undefined || after.sequenceId !== first.sequenceId;
      previousSequence = first.sequenceId;
      nextIndex += 1;
      const request = inferRequest(model, first.inputs.map(specOf), {
        version,
        id: first.id,
        outputs: options.outputs ?? [],
        parameters: sequenceParameters(first.sequenceId, start, end),
      });
      return {
        first: index,
        records: [first],
        counts: [rowsOf(first)],
        request,
        sequence: true,
        replay,
        start,
        end,
        sentAt: 0,
        outcomes: undefined,
      };
    }
    previousSequence = undefined;
    const records = [first];
    // Replayed records are only those of a sequence; the rest start at the mark.
    while (records.length < batchRows) {
      const after = await iterator.peek();
      if (after === undefined || after.sequenceId !== undefined || !stacks(first, after)) break;
      records.push((await iterator.next())!);
    }
    nextIndex += records.length;
    const counts = records.map(rowsOf);
    const inputs =
      records.length === 1
        ? first.inputs
        : first.inputs.map((t, i) => ({ ...concatBatch(records.map((r) => r.inputs[i]!)), name: t.name }));
    const request = inferRequest(model, inputs.map(specOf), { version, id: first.id, outputs: options.outputs ?? [] });
    return {
      first: index,
      records,
      counts,
      request,
      sequence: false,
      replay,
      start: false,
      end: false,
      sentAt: 0,
      outcomes: undefined,
    };
  };

  let sourceError: unknown;
  let sourceDone = false;
  // Requests read for a stream that had ended before they could be sent: the next stream sends them.
  const orphans: Pending[] = [];
  // The source read in progress: a new stream waits for its dead predecessor's read before it reads.
  let reading: Promise<unknown> = Promise.resolve();

  /** The requests of one stream: first those a failed stream left unanswered, then new ones while `live.value`. */
  async function* produce(live: { value: boolean }): AsyncGenerator<inference.ModelInferRequest> {
    await reading;
    for (const p of [...awaiting.splice(0), ...orphans.splice(0)]) {
      p.sentAt = performance.now();
      awaiting.push(p);
      requests += 1;
      yield p.request!;
    }
    while (stopped === undefined && !sourceDone && live.value) {
      await slot();
      if (stopped !== undefined || !live.value) return;
      let p: Pending | undefined;
      try {
        const read = nextPending();
        reading = read.catch(() => undefined);
        p = await read;
      } catch (error: unknown) {
        sourceError = error;
        throw error;
      }
      if (p === undefined) {
        sourceDone = true;
        return;
      }
      held.push(p);
      if (p.request === undefined) {
        await commit();
        continue;
      }
      if (!live.value) {
        orphans.push(p);
        return;
      }
      p.sentAt = performance.now();
      awaiting.push(p);
      requests += 1;
      yield p.request;
    }
  }

  /** A failed request's records, one unary ModelInfer each: successes kept, failures told with their status. */
  const retryOneByOne = (p: Pending, message: string): void => {
    if (p.sequence) {
      // Sent again, a sequence's request would advance its state twice.
      p.outcomes = [{ code: null, message }];
      return;
    }
    const work = (async () => {
      const outcomes: Outcome[] = [];
      for (const record of p.records) {
        try {
          const reply = await client.inference.modelInfer(
            inferRequest(model, record.inputs.map(specOf), { version, id: record.id, outputs: options.outputs ?? [] }),
            call,
          );
          outcomes.push({ outputs: [...outputTensors(reply).values()] });
        } catch (error: unknown) {
          const e = QuantaClientError.from('/inference.GRPCInferenceService/ModelInfer', error, 1);
          outcomes.push({ code: status[e.code] ?? String(e.code), message: e.details });
        }
        requests += 1;
      }
      p.outcomes = outcomes;
      await commit();
    })();
    retries.add(work);
    void work.finally(() => retries.delete(work));
  };

  const answer = (p: Pending, reply: inference.ModelStreamInferResponse): void => {
    latency.add(performance.now() - p.sentAt);
    const response = reply.inferResponse;
    if (reply.errorMessage !== '' || response === undefined) {
      retryOneByOne(p, reply.errorMessage || 'the server answered without a response');
      return;
    }
    const outputs = [...outputTensors(response).values()];
    if (p.records.length === 1) {
      p.outcomes = [{ outputs }];
      return;
    }
    const total = p.counts.reduce((a, b) => a + b, 0);
    const bad = outputs.find((t) => t.shape[0] !== total);
    if (bad !== undefined) {
      retryOneByOne(p, `output "${bad.name ?? ''}" has ${bad.shape[0]} rows for ${total} input rows`);
      return;
    }
    const parts = outputs.map((t) => splitBatch(t, p.counts));
    p.outcomes = p.counts.map((_, k) => ({
      outputs: parts.map((split, o) => ({ ...split[k]!, name: outputs[o]!.name })),
    }));
  };

  const onAbort = (): void => {
    stopped ??= 'aborted';
    wake();
    controller.abort();
  };
  if (options.signal?.aborted === true) onAbort();
  options.signal?.addEventListener('abort', onAbort, { once: true });

  try {
    let failuresInRow = 0;
    for (;;) {
      const live = { value: true };
      let answered = 0;
      try {
        const stream = client.inference.modelStreamInfer(produce(live), { ...call, signal: controller.signal });
        for await (const reply of stream) {
          const p = awaiting.shift();
          if (p === undefined) throw new Error('ModelStreamInfer answered more responses than requests were sent');
          answered += 1;
          answer(p, reply);
          await commit();
          if (stopped !== undefined) break;
        }
        if (sourceError !== undefined) throw asError(sourceError);
        if (stopped !== undefined) break;
        if (awaiting.length > 0)
          throw new QuantaClientError(
            STREAM_METHOD,
            status.UNAVAILABLE,
            'the stream ended with requests unanswered',
            1,
          );
        break;
      } catch (error: unknown) {
        live.value = false;
        if (sourceError !== undefined) throw asError(sourceError);
        if (stopped !== undefined) break;
        const e = QuantaClientError.from(STREAM_METHOD, error, 1);
        failuresInRow = answered > 0 ? 1 : failuresInRow + 1;
        const transient = RETRY_POLICY[e.code]?.rule !== 'never' && e.code !== status.OK;
        const safe = neverSent(e) || !awaiting.some((p) => p.sequence);
        if (!transient || !safe || failuresInRow >= retry.maxAttempts) {
          const why = !safe && transient ? ' (a sequence had requests in flight: resume to replay it)' : '';
          throw new BatchError(
            `ModelStreamInfer failed: ${status[e.code] ?? e.code}: ${e.details}${why}`,
            'stream',
            undefined,
            { cause: e },
          );
        }
        await new Promise((r) => setTimeout(r, backoffMs(failuresInRow, retry)));
      }
    }
    while (retries.size > 0) await Promise.all([...retries]);
    await commit();
    if (stopped === undefined && (held.length > 0 || !sourceDone))
      throw new Error('batch job ended with records unwritten');
    await checkpointNow(stopped === undefined);
    progress(true);
    if (stopped !== undefined) {
      await sink.abort();
      await options.errors?.abort();
      const s = summary();
      throw new BatchError(
        stopped === 'aborted'
          ? `stopped after ${committed} records`
          : `stopped: ${failures} records failed, more than the ${options.maxFailures} allowed`,
        stopped,
        s,
      );
    }
    await sink.close();
    await options.errors?.close();
    return summary();
  } catch (error: unknown) {
    if (error instanceof BatchError && error.summary !== undefined) throw error;
    // What is written and durable stays so; a resume continues from the last checkpoint.
    await sink.abort().catch(() => undefined);
    await options.errors?.abort().catch(() => undefined);
    if (error instanceof BatchError)
      throw new BatchError(error.message, error.reason, summary(), { cause: error.cause });
    throw error;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
}

const asError = (error: unknown): Error => (error instanceof Error ? error : new Error(String(error)));

/** A tensor as the SDK's request builder takes it (typed arrays are passed on, not copied). */
function specOf(tensor: Tensor): { name: string; data: never; shape: number[]; datatype: Tensor['datatype'] } {
  return { name: tensor.name ?? '', data: tensor.data as never, shape: [...tensor.shape], datatype: tensor.datatype };
}
