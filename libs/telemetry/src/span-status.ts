import { SpanStatusCode, type Span } from '@opentelemetry/api';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { ATTR_RPC_GRPC_STATUS_CODE } from './rpc-attributes.js';

/** Records the gRPC status on a span: the numeric code as an attribute, ERROR (with the details) when not OK. */
export function setGrpcStatus(span: Span, code: GrpcStatus, details: string | undefined): void {
  span.setAttribute(ATTR_RPC_GRPC_STATUS_CODE, code);
  if (code !== GrpcStatus.OK) {
    const name = GrpcStatus[code] ?? String(code);
    span.setStatus({ code: SpanStatusCode.ERROR, message: details ? `${name}: ${details}` : name });
  }
}
