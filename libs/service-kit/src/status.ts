import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { currentTraceId } from '@quanta/telemetry';
import type { Logger } from 'pino';
import { ServiceError } from './errors.js';

export interface ErrorStatus {
  code: grpc.status;
  details: string;
  metadata: grpc.Metadata;
}

/**
 * The status a client gets for an error thrown by a handler. A ServiceError is sent as it is;
 * anything else is a bug: it is logged with its stack and the trace id, and the client gets only
 * INTERNAL with the trace id (or a fresh error id when no span is active) to quote.
 */
export function toErrorStatus(error: unknown, logger: Logger, method: string): ErrorStatus {
  if (error instanceof ServiceError) {
    return { code: error.code, details: error.message, metadata: error.metadata ?? new grpc.Metadata() };
  }
  const traceId = currentTraceId();
  const reference = traceId !== undefined ? `trace id ${traceId}` : `error id ${randomBytes(8).toString('hex')}`;
  logger.error({ err: error, rpc: method, trace_id: traceId, reference }, `unhandled error in ${method}`);
  return { code: grpc.status.INTERNAL, details: `internal error (${reference})`, metadata: new grpc.Metadata() };
}
