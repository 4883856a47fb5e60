import { ROOT_CONTEXT, context } from '@opentelemetry/api';
import { monitoring as pb } from '@quanta/contracts';
import type { ClientTlsOptions, TokenSource } from '@quanta/service-kit';
import { createClient } from '@quanta/service-kit';

/** What the caller fills; the client supplies nothing but defaults for the counts. */
export type IngestRecord = pb.InferenceRecord;
/** An input summary for drift detection (see input-summary.ts), sent beside the records. */
export type IngestSummary = pb.InputSummary;

export interface IngestClientOptions {
  /** The monitoring service, e.g. `127.0.0.1:9003`. */
  readonly address: string;
  /** A token with the `monitoring:write` scope, or `admin` (Ingest carries records of every tenant). */
  readonly token: TokenSource;
  readonly tls?: ClientTlsOptions;
  /** Records kept while monitoring is slow or down; beyond this, new records are dropped. Default 10 000. */
  readonly maxBuffered?: number;
  /** Input summaries kept while monitoring is slow or down; beyond this, new ones are dropped. Default 1000. */
  readonly maxBufferedSummaries?: number;
  /** Records per message of the stream. Default 500. */
  readonly batchSize?: number;
  /** A send starts when this many records wait. Default: batchSize. */
  readonly flushSize?: number;
  /** …or when the oldest waiting record is this old, in ms. Default 1000. */
  readonly flushIntervalMs?: number;
  /** Deadline of one send, in ms: a hung monitoring cannot hold the buffer longer. Default 10 000. */
  readonly sendTimeoutMs?: number;
  /** Longest wait between reconnection attempts, in ms. Default 2000 (grpc-js's own is 2 minutes). */
  readonly maxReconnectBackoffMs?: number;
  /** Told about each failed send (for logs); never throws into the caller. */
  readonly onError?: (error: Error) => void;
  /** Told after each send, failed or not, with the counts as they stand (metrics, tests). */
  readonly onSent?: (stats: IngestClientStats) => void;
}

export interface IngestClientStats {
  /** Records handed to `record()`. */
  readonly recorded: number;
  /** Records the server accepted. */
  readonly accepted: number;
  /** Records the server rejected as invalid. */
  readonly rejected: number;
  /** Records dropped because the buffer was full. */
  readonly droppedFull: number;
  /** Records lost in sends that failed (monitoring down or too slow). */
  readonly droppedFailed: number;
  /** Records waiting in the buffer now (at most maxBuffered; with inFlight, at most twice that in memory). */
  readonly buffered: number;
  /** Records in the send under way. */
  readonly inFlight: number;
  readonly failedSends: number;
  /** Input summaries handed to `summary()`. */
  readonly summaries: number;
  readonly summariesAccepted: number;
  readonly summariesRejected: number;
  /** Summaries dropped because their buffer was full or their send failed. */
  readonly summariesDropped: number;
}

export interface IngestClient {
  /**
   * Queues one record and returns at once: true if it was queued, false if the buffer was full
   * and it was dropped (counted). Never blocks, never throws for a slow or absent server.
   */
  record(record: IngestRecord): boolean;
  /**
   * Queues one input summary, sent with the next batch (at the latest after flushIntervalMs); the
   * same guarantees as `record`: false when its buffer was full and it was dropped.
   */
  summary(summary: IngestSummary): boolean;
  /** Sends everything buffered now; resolves when that send (and any under way) has finished. */
  flush(): Promise<void>;
  stats(): IngestClientStats;
  /** Flushes (within the send timeout), then closes the channel; later records are dropped. */
  close(): Promise<void>;
}

/**
 * An ingest client for the inference service: records are buffered and sent in batches off the
 * caller's path, one Ingest call at a time. When monitoring is slow or down the buffer fills and
 * new records are dropped and counted, so the caller never waits and memory stays bounded; the
 * channel reconnects by itself.
 */
export function createIngestClient(options: IngestClientOptions): IngestClient {
  const maxBuffered = options.maxBuffered ?? 10_000;
  const batchSize = options.batchSize ?? 500;
  const flushSize = options.flushSize ?? batchSize;
  const flushIntervalMs = options.flushIntervalMs ?? 1000;
  const sendTimeoutMs = options.sendTimeoutMs ?? 10_000;
  const maxBackoff = options.maxReconnectBackoffMs ?? 2000;
  const maxSummaries = options.maxBufferedSummaries ?? 1000;
  if (maxBuffered < 1 || batchSize < 1 || flushSize < 1)
    throw new RangeError('maxBuffered, batchSize and flushSize must be at least 1');

  const client = createClient(pb.MonitoringServiceClient, options.address, {
    token: options.token,
    ...(options.tls === undefined ? {} : { tls: options.tls }),
    channelOptions: {
      'grpc.initial_reconnect_backoff_ms': Math.min(200, maxBackoff),
      'grpc.max_reconnect_backoff_ms': maxBackoff,
    },
  });

  let buffer: IngestRecord[] = [];
  let summaries: IngestSummary[] = [];
  let inFlight = 0;
  let sending: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  let pumpQueued = false;
  const counts = {
    recorded: 0,
    accepted: 0,
    rejected: 0,
    droppedFull: 0,
    droppedFailed: 0,
    failedSends: 0,
    summaries: 0,
    summariesAccepted: 0,
    summariesRejected: 0,
    summariesDropped: 0,
  };

  function sendOnce(records: IngestRecord[], inputSummaries: IngestSummary[]): Promise<void> {
    return new Promise<void>((resolve) => {
      const stream = client.ingest({ deadline: new Date(Date.now() + sendTimeoutMs) }, (error, reply) => {
        if (error !== null) {
          counts.failedSends++;
          counts.droppedFailed += records.length;
          counts.summariesDropped += inputSummaries.length;
          options.onError?.(error);
        } else {
          counts.accepted += Number(reply.accepted);
          counts.rejected += Number(reply.rejected);
          counts.summariesAccepted += Number(reply.summariesAccepted);
          counts.summariesRejected += Number(reply.summariesRejected);
        }
        resolve();
      });
      // The summaries ride with the first message (a few per input every few seconds: small).
      for (let i = 0; i < Math.max(1, records.length); i += batchSize)
        stream.write({ records: records.slice(i, i + batchSize), inputSummaries: i === 0 ? inputSummaries : [] });
      stream.end();
    });
  }

  /** Sends until the buffer is below the flush size; one call at a time. */
  function pump(force: boolean): Promise<void> {
    if (sending !== undefined) return sending;
    if ((buffer.length === 0 && summaries.length === 0) || (!force && buffer.length < flushSize))
      return Promise.resolve();
    const records = buffer;
    const taken = summaries;
    buffer = [];
    summaries = [];
    inFlight = records.length;
    // Off the caller's trace: the ingest call must not become a child of the request that filled
    // the buffer (traces link to monitoring, they do not contain it).
    sending = context
      .with(ROOT_CONTEXT, () => sendOnce(records, taken))
      .then(() => {
        inFlight = 0;
        sending = undefined;
        options.onSent?.({ ...counts, buffered: buffer.length, inFlight });
        if (buffer.length >= flushSize && !closed) return pump(false);
        return undefined;
      });
    return sending;
  }

  function schedule(): void {
    if (timer !== undefined || closed) return;
    timer = setTimeout(() => {
      timer = undefined;
      void pump(true).then(() => {
        if (buffer.length > 0 || summaries.length > 0) schedule();
      });
    }, flushIntervalMs);
    timer.unref(); // a pending flush never keeps the process alive
  }

  return {
    record(record) {
      counts.recorded++;
      if (closed || buffer.length >= maxBuffered) {
        counts.droppedFull++;
        return false;
      }
      buffer.push(record);
      if (buffer.length >= flushSize && sending === undefined) {
        if (!pumpQueued) {
          // Next turn: the caller's code runs on, the send happens after it.
          pumpQueued = true;
          setImmediate(() => {
            pumpQueued = false;
            void pump(false);
          });
        }
      } else schedule();
      return true;
    },
    summary(summary) {
      counts.summaries++;
      if (closed || summaries.length >= maxSummaries) {
        counts.summariesDropped++;
        return false;
      }
      summaries.push(summary);
      schedule();
      return true;
    },
    async flush() {
      while (sending !== undefined || buffer.length > 0 || summaries.length > 0) {
        if (sending !== undefined) await sending;
        else await pump(true);
      }
    },
    stats: () => ({ ...counts, buffered: buffer.length, inFlight }),
    async close() {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      if (!closed) {
        closed = true;
        if (sending !== undefined) await sending;
        if (buffer.length > 0 || summaries.length > 0) await pump(true);
      }
      client.close();
    },
  };
}
