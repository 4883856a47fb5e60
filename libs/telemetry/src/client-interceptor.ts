import { SpanKind, context, metrics, propagation, trace } from '@opentelemetry/api';
import * as grpc from '@grpc/grpc-js';
import { metadataSetter } from './metadata-carrier.js';
import { ATTR_RPC_GRPC_STATUS_CODE, INSTRUMENTATION_SCOPE, rpcNameFromPath } from './rpc-attributes.js';
import { rpcInstruments, secondsSince } from './rpc-metrics.js';
import type { InterceptorOptions } from './server-interceptor.js';
import { setGrpcStatus } from './span-status.js';

/**
 * A grpc-js client interceptor: one CLIENT span per call (covering the whole stream for streaming calls),
 * a child of the context active when the call is made; W3C `traceparent` (and `baggage`) injected into the
 * call's metadata; `rpc.client.call.duration` recorded when the status arrives. The response callbacks run
 * in the caller's context, so code continuing in a callback keeps its trace.
 */
export function createClientInterceptor(options: InterceptorOptions = {}): grpc.Interceptor {
  return (callOptions, nextCall) => {
    const startNs = process.hrtime.bigint();
    const rpc = rpcNameFromPath(callOptions.method_definition.path);
    const tracer = options.tracer ?? trace.getTracer(INSTRUMENTATION_SCOPE);
    const meter = options.meter ?? metrics.getMeter(INSTRUMENTATION_SCOPE);
    // grpc-js runs interceptors synchronously inside the client method, so this is the caller's context.
    const parent = context.active();
    const span = tracer.startSpan(rpc.spanName, { kind: SpanKind.CLIENT, attributes: rpc.attributes }, parent);
    const spanContext = trace.setSpan(parent, span);
    let ended = false;

    const finish = (code: grpc.status, details: string | undefined): void => {
      if (ended) return;
      ended = true;
      setGrpcStatus(span, code, details);
      span.end();
      rpcInstruments(meter).clientDuration.record(secondsSince(startNs), {
        ...rpc.attributes,
        [ATTR_RPC_GRPC_STATUS_CODE]: code,
      });
    };

    const listener = new grpc.ListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        context.with(parent, next, undefined, metadata);
      })
      .withOnReceiveMessage((message, next) => {
        context.with(parent, next, undefined, message);
      })
      .withOnReceiveStatus((status, next) => {
        finish(status.code, status.details);
        context.with(parent, next, undefined, status);
      })
      .build();

    const requester = new grpc.RequesterBuilder()
      .withStart((metadata, _listener, next) => {
        propagation.inject(spanContext, metadata, metadataSetter);
        next(metadata, listener);
      })
      .build();

    return new grpc.InterceptingCall(nextCall(callOptions), requester);
  };
}
