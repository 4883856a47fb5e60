/** One accepted inference record, in the units the windows keep (µs as numbers, ms since epoch). */
export interface Sample {
  readonly tenant: string;
  readonly model: string;
  readonly version: string;
  readonly statusCode: number;
  readonly queueUs: number;
  readonly computeUs: number;
  readonly totalUs: number;
  readonly batchSize: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly timeMs: number;
}

/**
 * How far ahead of the server's clock a record may be (clock skew between hosts): the ingest
 * refuses records further ahead, and the window store keeps that many spare ring slots for them.
 */
export const MAX_FUTURE_MS = 5 * 60_000;
