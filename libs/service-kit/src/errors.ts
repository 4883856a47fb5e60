// The one error model of the services. Cores throw DomainErrors (through the factories below, or
// a subclass such as inference's InferError); they know nothing of gRPC or HTTP. Each transport
// has one mapper: gRPC handlers send `toErrorStatus` (status.ts), HTTP front ends answer
// `httpStatusOf` (http-errors.ts). Anything else a handler throws is a bug and becomes INTERNAL
// with a trace id. This module must not import a transport.

/** The canonical status names that gRPC, Google's APIs and our HTTP mapping share. */
export const ERROR_CODES = [
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface DomainErrorOptions {
  cause?: unknown;
  /**
   * Key/values that travel with the status: gRPC trailers, HTTP response headers (lower-case
   * names, e.g. `retry-after-ms`).
   */
  details?: Readonly<Record<string, string>>;
}

/**
 * An error a core or handler throws on purpose: its code and message reach the client as they
 * are, so the message says what was wrong with the request.
 */
export class DomainError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, string>>;

  constructor(code: ErrorCode, message: string, options?: DomainErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DomainError';
    this.code = code;
    this.details = options?.details ?? {};
  }
}

export function isDomainError(value: unknown): value is DomainError {
  return value instanceof DomainError;
}

const make =
  (code: ErrorCode) =>
  (message: string, options?: DomainErrorOptions): DomainError =>
    new DomainError(code, message, options);

export const invalidArgument = make('INVALID_ARGUMENT');
export const notFound = make('NOT_FOUND');
export const alreadyExists = make('ALREADY_EXISTS');
export const failedPrecondition = make('FAILED_PRECONDITION');
export const permissionDenied = make('PERMISSION_DENIED');
export const unauthenticated = make('UNAUTHENTICATED');
export const resourceExhausted = make('RESOURCE_EXHAUSTED');
export const unavailable = make('UNAVAILABLE');
export const internal = make('INTERNAL');
export const deadlineExceeded = make('DEADLINE_EXCEEDED');
export const aborted = make('ABORTED');
export const outOfRange = make('OUT_OF_RANGE');
export const unimplemented = make('UNIMPLEMENTED');
export const cancelled = make('CANCELLED');
export const dataLoss = make('DATA_LOSS');
