import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { currentTraceId } from '@quanta/telemetry';
import type { Logger } from 'pino';
import { DomainError, type ErrorCode } from './errors.js';

export interface ErrorStatus {
  code: grpc.status;
  details: string;
  metadata: grpc.Metadata;
}

/**
 * The status a client gets for an error thrown by a handler. A DomainError is sent as it is, its
 * details as trailers; anything else is a bug: it is logged with its stack and the trace id, and the client gets only
 * INTERNAL with the trace id (or a fresh error id when no span is active) to quote.
 */
export function toErrorStatus(error: unknown, logger: Logger, method: string): ErrorStatus {
  if (error instanceof DomainError) {
    const metadata = new grpc.Metadata();
    for (const [key, value] of Object.entries(error.details)) metadata.set(key, value);
    return { code: grpcStatusOf(error.code), details: error.message, metadata };
  }
  const traceId = currentTraceId();
  const reference = traceId !== undefined ? `trace id ${traceId}` : `error id ${randomBytes(8).toString('hex')}`;
  logger.error({ err: error, rpc: method, trace_id: traceId, reference }, `unhandled error in ${method}`);
  return { code: grpc.status.INTERNAL, details: `internal error (${reference})`, metadata: new grpc.Metadata() };
}

/** The gRPC status code of a domain error code. */
export function grpcStatusOf(code: ErrorCode): grpc.status {
  return grpc.status[code];
}

/** The domain error code of a gRPC status code (UNKNOWN for a number outside the table). */
export function errorCodeOf(status: grpc.status): ErrorCode {
  return (grpc.status[status] as ErrorCode | undefined) ?? 'UNKNOWN';
}
