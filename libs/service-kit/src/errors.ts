import * as grpc from '@grpc/grpc-js';

/**
 * An error a handler throws on purpose: its status code and message reach the client as they are.
 * Anything else a handler throws becomes INTERNAL with a trace id (see `toStatus`).
 */
export class ServiceError extends Error {
  readonly code: grpc.status;
  readonly metadata: grpc.Metadata | undefined;

  constructor(code: grpc.status, message: string, options?: { cause?: unknown; metadata?: grpc.Metadata }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ServiceError';
    this.code = code;
    this.metadata = options?.metadata;
  }

  /** The status name, e.g. `NOT_FOUND`. */
  get codeName(): string {
    return grpc.status[this.code] ?? String(this.code);
  }
}

export function isServiceError(value: unknown): value is ServiceError {
  return value instanceof ServiceError;
}

const make =
  (code: grpc.status) =>
  (message: string, options?: { cause?: unknown; metadata?: grpc.Metadata }): ServiceError =>
    new ServiceError(code, message, options);

export const invalidArgument = make(grpc.status.INVALID_ARGUMENT);
export const notFound = make(grpc.status.NOT_FOUND);
export const alreadyExists = make(grpc.status.ALREADY_EXISTS);
export const failedPrecondition = make(grpc.status.FAILED_PRECONDITION);
export const permissionDenied = make(grpc.status.PERMISSION_DENIED);
export const unauthenticated = make(grpc.status.UNAUTHENTICATED);
export const resourceExhausted = make(grpc.status.RESOURCE_EXHAUSTED);
export const unavailable = make(grpc.status.UNAVAILABLE);
export const internal = make(grpc.status.INTERNAL);
export const deadlineExceeded = make(grpc.status.DEADLINE_EXCEEDED);
export const aborted = make(grpc.status.ABORTED);
export const outOfRange = make(grpc.status.OUT_OF_RANGE);
export const unimplemented = make(grpc.status.UNIMPLEMENTED);
export const cancelled = make(grpc.status.CANCELLED);
