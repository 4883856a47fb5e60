import { status, type ServiceError } from '@grpc/grpc-js';

/** An error the CLI reports as one line and exit code 1 (2 for usage errors). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

function isGrpcError(error: unknown): error is ServiceError {
  return error instanceof Error && typeof (error as Partial<ServiceError>).code === 'number' && 'details' in error;
}

/** Turns whatever a command threw into the line a person reads. */
export function describeError(error: unknown, address?: string): string {
  if (error instanceof CliError) return error.message;
  if (isGrpcError(error)) {
    const name = status[error.code] ?? `code ${error.code}`;
    if (error.code === status.UNAVAILABLE && address !== undefined) {
      const reason = /(ECONNREFUSED|ENOTFOUND|ETIMEDOUT|EHOSTUNREACH|ECONNRESET)/.exec(error.details)?.[1];
      return `cannot reach ${address}${reason ? ` (${reason})` : ''}: is the service running?`;
    }
    return `${name}: ${error.details}`;
  }
  return error instanceof Error ? error.message : String(error);
}
