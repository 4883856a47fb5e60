import { Metadata, status } from '@grpc/grpc-js';

/** A failed call: its gRPC status, the server's message, the method and how many attempts were made. */
export class QuantaClientError extends Error {
  override readonly name = 'QuantaClientError';

  constructor(
    readonly method: string,
    readonly code: status,
    readonly details: string,
    readonly attempts: number,
    readonly metadata: Metadata = new Metadata(),
    options?: { cause?: unknown },
  ) {
    super(
      `${method} ${status[code] ?? `code ${code}`}: ${details}${attempts > 1 ? ` (after ${attempts} attempts)` : ''}`,
      options,
    );
  }

  /** Wraps what grpc-js rejected with (a ServiceError, or anything else as UNKNOWN). */
  static from(method: string, error: unknown, attempts: number): QuantaClientError {
    if (error instanceof QuantaClientError) return error;
    const e = error as { code?: unknown; details?: unknown; metadata?: unknown; message?: unknown };
    if (typeof e.code === 'number') {
      const details = typeof e.details === 'string' ? e.details : typeof e.message === 'string' ? e.message : '';
      return new QuantaClientError(
        method,
        e.code,
        details,
        attempts,
        e.metadata instanceof Metadata ? e.metadata : undefined,
        { cause: error },
      );
    }
    return new QuantaClientError(
      method,
      status.UNKNOWN,
      error instanceof Error ? error.message : String(error),
      attempts,
      undefined,
      { cause: error },
    );
  }
}
