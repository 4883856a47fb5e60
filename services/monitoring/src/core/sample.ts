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
  /** How the deployment routed it: 'primary', 'canary' or 'shadow' ('' counts as 'primary'). */
  readonly route: string;
  readonly cacheHit: boolean;
  readonly cacheMiss: boolean;
  /** A shadow record's comparison with the primary's answer; undefined for other records. */
  readonly shadow: ShadowSample | undefined;
}

/** The parts of a ShadowComparison the windows add up. */
export interface ShadowSample {
  /** At least 0; Infinity for outputs missing or reshaped on one side. */
  readonly maxAbsError: number;
  readonly top1Rows: number;
  readonly top1AgreedRows: number;
}

/**
 * How far ahead of the server's clock a record may be (clock skew between hosts): the ingest
 * refuses records further ahead, and the window store keeps that many spare ring slots for them.
 */
export const MAX_FUTURE_MS = 5 * 60_000;
