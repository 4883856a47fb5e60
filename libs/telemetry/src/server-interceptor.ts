import {
  ROOT_CONTEXT,
  SpanKind,
  context,
  metrics,
  propagation,
  trace,
  type Context,
  type Meter,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import * as grpc from '@grpc/grpc-js';
import { metadataGetter } from './metadata-carrier.js';
import { ATTR_RPC_GRPC_STATUS_CODE, INSTRUMENTATION_SCOPE, rpcNameFromPath } from './rpc-attributes.js';
import { rpcInstruments, secondsSince } from './rpc-metrics.js';
import { setGrpcStatus } from './span-status.js';

const DEADLINE_SLACK_MS = 50;

export interface InterceptorOptions {
  /** Defaults to the global tracer provider's tracer, looked up per call (so a later initTelemetry takes effect). */
  readonly tracer?: Tracer;
  /** Defaults to the global meter provider's meter, looked up per call. */
  readonly meter?: Meter;
}

/**
 * A grpc-js server interceptor that gives every incoming call one SERVER span (unary and streaming alike),
 * continues the trace from the `traceparent` metadata and records `rpc.server.call.duration`.
 *
 * Every inbound event (metadata, each message, half-close) is passed on inside the span's context. grpc-js
 * invokes the handler from one of those events (unary/server-streaming: half-close; client-streaming/bidi:
 * metadata) and delivers streamed requests from them, so the handler and everything it awaits run with the
 * server span active: a client call made from the handler becomes its child.
 *
 * Put it FIRST in `new grpc.Server({ interceptors: [...] })`: grpc-js nests the first interceptor innermost,
 * so it sees the request metadata before the others (whose async work then inherits the span context) and
 * sees every status, including one an outer interceptor (auth) sends.
 */
export function createServerInterceptor(options: InterceptorOptions = {}): grpc.ServerInterceptor {
  return (methodDescriptor, call) => {
    const startNs = process.hrtime.bigint();
    const rpc = rpcNameFromPath(methodDescriptor.path);
    const tracer = options.tracer ?? trace.getTracer(INSTRUMENTATION_SCOPE);
    const meter = options.meter ?? metrics.getMeter(INSTRUMENTATION_SCOPE);
    let span: Span | undefined;
    let spanContext: Context = ROOT_CONTEXT;
    let ended = false;

    const startSpan = (parent: Context): void => {
      span = tracer.startSpan(rpc.spanName, { kind: SpanKind.SERVER, attributes: rpc.attributes }, parent);
      spanContext = trace.setSpan(parent, span);
    };

    const finish = (code: grpc.status, details: string | undefined): void => {
      if (ended) return;
      ended = true;
      if (!span) startSpan(ROOT_CONTEXT);
      if (span) {
        setGrpcStatus(span, code, details);
        span.end();
      }
      rpcInstruments(meter).serverDuration.record(secondsSince(startNs), {
        ...rpc.attributes,
        [ATTR_RPC_GRPC_STATUS_CODE]: code,
      });
    };

    const listener = new grpc.ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        if (!span) startSpan(propagation.extract(ROOT_CONTEXT, metadata, metadataGetter));
        context.with(spanContext, next, undefined, metadata);
      })
      .withOnReceiveMessage((message, next) => {
        context.with(spanContext, next, undefined, message);
      })
      .withOnReceiveHalfClose((next) => {
        context.with(spanContext, next);
      })
      .withOnCancel(() => {
        // grpc-js also reports "cancel" after a status it sent itself; finish() ignores it when a status
        // already went through us. Otherwise the deadline timer or the client ended the call.
        // A client whose own deadline timer fires resets the stream a moment before ours would: count a
        // cancel that close to the deadline as the deadline.
        const deadline = call.getDeadline();
        const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
        const expired = Number.isFinite(deadlineMs) && deadlineMs - Date.now() <= DEADLINE_SLACK_MS;
        finish(
          expired ? grpc.status.DEADLINE_EXCEEDED : grpc.status.CANCELLED,
          expired ? 'deadline exceeded' : 'cancelled by the client',
        );
      })
      .build();

    const responder = new grpc.ResponderBuilder()
      .withStart((next) => {
        next(listener);
      })
      .withSendStatus((status, next) => {
        finish(status.code, status.details);
        next(status);
      })
      .build();

    return new grpc.ServerInterceptingCall(call, responder);
  };
}
