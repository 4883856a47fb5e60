// One error model for both front ends: the core throws InferErrors (a gRPC status name and a
// message), the tensor lib TensorErrors (always the caller's data), service-kit ServiceErrors
// (auth, our own checks). gRPC sends them as statuses; REST maps the same statuses to HTTP.
import * as grpc from '@grpc/grpc-js';
import { ServiceError, isServiceError } from '@quanta/service-kit';
import { TensorError } from '@quanta/tensor';
import { InferError } from '../core/types.js';

/**
 * The ServiceError for an InferError or TensorError; anything else comes back as it is (service-kit
 * turns it into INTERNAL with a trace id and logs it, so no stack reaches a client).
 */
export function toServiceError(error: unknown): unknown {
  if (isServiceError(error)) return error;
  if (error instanceof InferError) return new ServiceError(grpc.status[error.code], error.message);
  // By name as well: a second copy of @quanta/tensor (dist next to source) would defeat instanceof.
  if (error instanceof TensorError || (error instanceof Error && error.name === 'TensorError')) {
    return new ServiceError(grpc.status.INVALID_ARGUMENT, (error as Error).message);
  }
  return error;
}

/** Runs `fn`, rethrowing what it throws as a ServiceError where it is one of ours. */
export async function mapErrors<T>(fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (error: unknown) {
    throw toServiceError(error);
  }
}

const HTTP_STATUS: Partial<Record<grpc.status, number>> = {
  [grpc.status.INVALID_ARGUMENT]: 400,
  [grpc.status.FAILED_PRECONDITION]: 400,
  [grpc.status.OUT_OF_RANGE]: 400,
  [grpc.status.UNAUTHENTICATED]: 401,
  [grpc.status.PERMISSION_DENIED]: 403,
  [grpc.status.NOT_FOUND]: 404,
  [grpc.status.ALREADY_EXISTS]: 409,
  [grpc.status.ABORTED]: 409,
  [grpc.status.RESOURCE_EXHAUSTED]: 429,
  // 499 is nginx's "client closed request": nobody reads it, but logs tell it apart from a 500.
  [grpc.status.CANCELLED]: 499,
  [grpc.status.UNIMPLEMENTED]: 501,
  [grpc.status.UNAVAILABLE]: 503,
  [grpc.status.DEADLINE_EXCEEDED]: 504,
};

/** The HTTP status of a gRPC status code (500 for INTERNAL, UNKNOWN and anything unlisted). */
export function httpStatusOf(code: grpc.status): number {
  return HTTP_STATUS[code] ?? 500;
}
