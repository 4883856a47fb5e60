import { status } from '@grpc/grpc-js';

/**
 * When a failed call may be sent again:
 * - `never`: retrying cannot help or could do harm;
 * - `idempotent`: only for methods in IDEMPOTENT_METHODS (reads), whatever the server did;
 * - `idempotent-or-unsent`: for reads, and for any other method when the call never left this
 *   client (no connection, name not resolved), so the server cannot have acted on it.
 */
export type RetryRule = 'never' | 'idempotent' | 'idempotent-or-unsent';

/** Per status code: whether a failure is retried, and why (temporal's grpc-retry.ts in spirit). */
export const RETRY_POLICY: Readonly<Record<status, { readonly rule: RetryRule; readonly reason: string }>> = {
  [status.OK]: { rule: 'never', reason: 'not a failure' },
  [status.CANCELLED]: {
    rule: 'never',
    reason: 'the caller (or the server shutting down) cancelled it: retrying would undo the cancellation',
  },
  [status.UNKNOWN]: { rule: 'never', reason: 'the outcome is unknown: the server may have acted on it' },
  [status.INVALID_ARGUMENT]: { rule: 'never', reason: 'the same request fails the same way' },
  [status.DEADLINE_EXCEEDED]: { rule: 'never', reason: "the call's deadline covers every attempt, and it has passed" },
  [status.NOT_FOUND]: { rule: 'never', reason: 'the thing asked for does not exist; a retry does not create it' },
  [status.ALREADY_EXISTS]: {
    rule: 'never',
    reason: 'the thing exists, perhaps made by an earlier attempt: the caller decides',
  },
  [status.PERMISSION_DENIED]: { rule: 'never', reason: 'the token lacks a scope; the same token is refused again' },
  [status.RESOURCE_EXHAUSTED]: {
    rule: 'never',
    reason:
      'a message over the size limit fails again, and retrying into a quota or an overloaded server makes it worse; ' +
      'unless the server says when to retry (`retry-after-ms`: a caller limit refused it before it ran)',
  },
  [status.FAILED_PRECONDITION]: {
    rule: 'never',
    reason: 'the system must change first (a model not READY, a key that may not be used)',
  },
  [status.ABORTED]: {
    rule: 'idempotent',
    reason: 'a concurrency conflict: a read may simply run again, a write must be re-decided by the caller',
  },
  [status.OUT_OF_RANGE]: { rule: 'never', reason: 'the same request is out of range again' },
  [status.UNIMPLEMENTED]: { rule: 'never', reason: 'the server does not have this method' },
  [status.INTERNAL]: {
    rule: 'never',
    reason: 'a server bug or a broken stream: the server may have acted on it, and it would likely fail again',
  },
  [status.UNAVAILABLE]: {
    rule: 'idempotent-or-unsent',
    reason:
      'transient (a restart, a dropped connection): a read is safe to repeat; ' +
      'a write (ModelInfer advances sequence state and is counted) only when it was never sent',
  },
  [status.DATA_LOSS]: { rule: 'never', reason: 'unrecoverable data loss or corruption' },
  [status.UNAUTHENTICATED]: {
    rule: 'never',
    reason: 'the token is missing, bad or expired; give a token function that refreshes it',
  },
};

/**
 * Methods (`/package.Service/Method`) that only read, so running one twice does no harm. Writes
 * that happen to be idempotent (SetAlias, Delete*) are left out on purpose: between two attempts
 * someone else may have changed the same thing, and a retry would silently undo their change.
 * ModelInfer is not here: stateful models (LSTM sequences) advance per call and monitoring counts
 * every request.
 */
export const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set([
  ...[
    'ServerLive',
    'ServerReady',
    'ModelReady',
    'ServerMetadata',
    'ModelMetadata',
    'ModelStatistics',
    'RepositoryIndex',
  ].map((m) => `/inference.GRPCInferenceService/${m}`),
  ...[
    'GetModel',
    'ListModels',
    'GetVersion',
    'ListVersions',
    'DownloadVersion',
    'GetDeployment',
    'ListDeployments',
    'WatchDeployments',
  ].map((m) => `/quanta.registry.v1.RegistryService/${m}`),
  ...['GetKey', 'ListKeys', 'GetJwks', 'Verify', 'ListAuditEvents'].map((m) => `/quanta.crypto.v1.CryptoService/${m}`),
  ...[
    'GetModelStats',
    'GetTimeSeries',
    'TopModels',
    'GetAlertRule',
    'ListAlertRules',
    'ListAlerts',
    'WatchAlerts',
    'GetHealthBoard',
  ].map((m) => `/quanta.monitoring.v1.MonitoringService/${m}`),
  '/grpc.health.v1.Health/Check',
  '/grpc.health.v1.Health/Watch',
]);

export interface RetryOptions {
  /** Attempts in all, the first included; 1 turns retries off. Default 4. */
  readonly maxAttempts?: number;
  /** Wait before the second attempt, in ms; default 100. */
  readonly initialBackoffMs?: number;
  /** Longest wait between attempts, in ms; default 2000. */
  readonly maxBackoffMs?: number;
  /** Growth of the wait per attempt; default 2. */
  readonly multiplier?: number;
}

export const DEFAULT_RETRY: Required<RetryOptions> = {
  maxAttempts: 4,
  initialBackoffMs: 100,
  maxBackoffMs: 2000,
  multiplier: 2,
};

/**
 * grpc-js fails a call with these details when its load balancer found no connection or the name
 * did not resolve: the request was never written to any server.
 */
const UNSENT = /No connection established|Name resolution failed/;

/** Did the call fail before it reached any server? */
export function neverSent(error: { code: number; details?: string }): boolean {
  return error.code === (status.UNAVAILABLE as number) && UNSENT.test(error.details ?? '');
}

/** Trailing metadata a failed call came back with (grpc-js's Metadata has this `get`). */
interface MetadataLike {
  get(key: string): readonly (string | Buffer)[];
}

/**
 * The server's `retry-after-ms` trailer of a RESOURCE_EXHAUSTED: how long to wait before trying
 * again (Quanta's caller limits send it with a request they refused before it ran); undefined
 * without one.
 */
export function retryAfterMs(error: { code: number; metadata?: MetadataLike | undefined }): number | undefined {
  if (error.code !== (status.RESOURCE_EXHAUSTED as number)) return undefined;
  const value = error.metadata?.get('retry-after-ms')[0];
  if (value === undefined) return undefined;
  const ms = Number(value.toString());
  return Number.isFinite(ms) && ms >= 0 ? ms : undefined;
}

/**
 * Whether a failure of `method` with this error may be retried (attempts and deadline aside). A
 * RESOURCE_EXHAUSTED that says when to retry was refused before it ran, so any method may be sent
 * again, once that time has passed.
 */
export function isRetryable(
  method: string,
  error: { code: number; details?: string; metadata?: MetadataLike | undefined },
): boolean {
  if (retryAfterMs(error) !== undefined) return true;
  const rule = RETRY_POLICY[error.code as status]?.rule ?? 'never';
  if (rule === 'never') return false;
  if (IDEMPOTENT_METHODS.has(method)) return true;
  return rule === 'idempotent-or-unsent' && neverSent(error);
}

/** The wait before attempt `attempt + 1` (attempt ≥ 1): exponential, with jitter between half and all of it. */
export function backoffMs(
  attempt: number,
  options: Required<RetryOptions>,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(options.maxBackoffMs, options.initialBackoffMs * options.multiplier ** (attempt - 1));
  // Jitter spreads the retries of many clients that failed together (a restart) over time.
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
