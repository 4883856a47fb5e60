// The core throws InferErrors (DomainErrors), the tensor lib TensorErrors (always the caller's
// data). Both front ends see DomainErrors only: service-kit maps them to gRPC statuses, and REST
// to HTTP codes with `httpStatusOf`.
import { invalidArgument, isDomainError } from '@quanta/service-kit';
import { TensorError } from '@quanta/tensor';

/**
 * The DomainError for a TensorError; anything else comes back as it is (service-kit turns what is
 * not a DomainError into INTERNAL with a trace id and logs it, so no stack reaches a client).
 */
export function toDomainError(error: unknown): unknown {
  if (isDomainError(error)) return error;
  // By name as well: a second copy of @quanta/tensor (dist next to source) would defeat instanceof.
  if (error instanceof TensorError || (error instanceof Error && error.name === 'TensorError')) {
    return invalidArgument((error as Error).message);
  }
  return error;
}

/** Runs `fn`, rethrowing what it throws as a DomainError where it is one of ours. */
export async function mapErrors<T>(fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (error: unknown) {
    throw toDomainError(error);
  }
}
