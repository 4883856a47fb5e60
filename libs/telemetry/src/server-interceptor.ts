import {
  ROOT_CONTEXT,
  SpanKind,
  context,
  metrics,
  propagation,
  trace,
  type Attributes,
  type Context,
  type Histogram,
  type Meter,
  type MeterProvider,
  type Span,
  type SpanOptions,
  type Tracer,
} from '@opentelemetry/api';
import * as grpc from '@grpc/grpc-js';
import { globalTracerLookup } from './global-tracer.js';
import { metadataGetter } from './metadata-carrier.js';
import { ATTR_RPC_GRPC_STATUS_CODE, INSTRUMENTATION_SCOPE, rpcNameFromPath } from './rpc-attributes.js';
import { rpcInstruments } from './rpc-metrics.js';
import { setGrpcStatus } from './span-status.js';

const DEADLINE_SLACK_MS = 50;

export interface InterceptorOptions {
  /** Defaults to the global tracer provider's tracer, looked up per call (so a later initTelemetry takes effect). */
  readonly tracer?: Tracer;
  /** Defaults to the global meter provider's meter, looked up per call. */
  readonly meter?: Meter;
}

/** What every call of one method shares: made on its first call, not per call. */
interface MethodTelemetry {
  readonly spanName: string;
  readonly spanOptions: SpanOptions;
  /** Metric attributes (rpc.* and the status code), by status code. */
  readonly byCode: Attributes[];
}

const methods = new Map<string, MethodTelemetry>();

function methodTelemetry(path: string): MethodTelemetry {
  let method = methods.get(path);
  if (method === undefined) {
    // rpcNameFromPath bounds its own cache; this one follows it (only registered methods get here).
    const rpc = rpcNameFromPath(path);
    method = { spanName: rpc.spanName, spanOptions: { kind: SpanKind.SERVER, attributes: rpc.attributes }, byCode: [] };
    if (methods.size < 10_000) methods.set(path, method);
  }
  return method;
}

function statusAttributes(method: MethodTelemetry, code: grpc.status): Attributes {
  let attributes = method.byCode[code];
  if (attributes === undefined) {
    attributes = { ...method.spanOptions.attributes, [ATTR_RPC_GRPC_STATUS_CODE]: code };
    const known: number = code;
    if (known >= 0 && known <= 16) method.byCode[code] = attributes;
  }
  return attributes;
}

// The global providers' tracer and histogram, looked up again only when a provider is replaced
// (initTelemetry, or metrics.disable(): both change what getMeterProvider() returns).
const currentTracer = globalTracerLookup(INSTRUMENTATION_SCOPE);
let globalMeterProvider: MeterProvider | undefined;
let globalHistogram: Histogram | undefined;

function currentHistogram(): Histogram {
  const provider = metrics.getMeterProvider();
  if (provider !== globalMeterProvider || globalHistogram === undefined) {
    globalMeterProvider = provider;
    globalHistogram = rpcInstruments(provider.getMeter(INSTRUMENTATION_SCOPE)).serverDuration;
  }
  return globalHistogram;
}

type DownstreamListener = Parameters<grpc.ServerInterceptingCall['start']>[0];
type StatusObject = Parameters<grpc.ServerInterceptingCall['sendStatus']>[0];

/**
 * One call seen by the interceptor. A subclass rather than listener/responder builders: grpc-js copies
 * a responder's functions, so those need closures per call; overriding `start` and `sendStatus` needs
 * none, and the inbound events go through one small listener object.
 */
class TelemetryServerCall extends grpc.ServerInterceptingCall {
  readonly #startMs = performance.now();
  readonly #method: MethodTelemetry;
  readonly #tracer: Tracer;
  readonly #histogram: Histogram;
  #span: Span | undefined = undefined;
  #context: Context = ROOT_CONTEXT;
  #ended = false;

  constructor(
    next: grpc.ServerInterceptingCallInterface,
    method: MethodTelemetry,
    tracer: Tracer,
    histogram: Histogram,
  ) {
    super(next);
    this.#method = method;
    this.#tracer = tracer;
    this.#histogram = histogram;
  }

  override start(listener: DownstreamListener): void {
    super.start(new SpanListener(this, listener));
  }

  override sendStatus(status: StatusObject): void {
    this.finish(status.code, status.details);
    super.sendStatus(status);
  }

  /** The span's context, the span started (from the caller's traceparent) at the request metadata. */
  enter(metadata: grpc.Metadata | undefined): Context {
    if (!this.#span)
      this.#startSpan(
        metadata === undefined ? ROOT_CONTEXT : propagation.extract(ROOT_CONTEXT, metadata, metadataGetter),
      );
    return this.#context;
  }

  #startSpan(parent: Context): void {
    this.#span = this.#tracer.startSpan(this.#method.spanName, this.#method.spanOptions, parent);
    this.#context = trace.setSpan(parent, this.#span);
  }

  finish(code: grpc.status, details: string | undefined): void {
    if (this.#ended) return;
    this.#ended = true;
    if (!this.#span) this.#startSpan(ROOT_CONTEXT);
    if (this.#span) {
      setGrpcStatus(this.#span, code, details);
      this.#span.end();
    }
    this.#histogram.record((performance.now() - this.#startMs) / 1000, statusAttributes(this.#method, code));
  }

  cancelled(): void {
    // grpc-js also reports "cancel" after a status it sent itself; finish() ignores it when a status
    // already went through us. Otherwise the deadline timer or the client ended the call.
    // A client whose own deadline timer fires resets the stream a moment before ours would: count a
    // cancel that close to the deadline as the deadline.
    if (this.#ended) return;
    const deadline = this.getDeadline();
    const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
    const expired = Number.isFinite(deadlineMs) && deadlineMs - Date.now() <= DEADLINE_SLACK_MS;
    this.finish(
      expired ? grpc.status.DEADLINE_EXCEEDED : grpc.status.CANCELLED,
      expired ? 'deadline exceeded' : 'cancelled by the client',
    );
  }
}

// Module functions, not closures: context.with runs them with these arguments.
const deliverMetadata = (next: DownstreamListener, metadata: grpc.Metadata): void => next.onReceiveMetadata(metadata);
const deliverMessage = (next: DownstreamListener, message: unknown): void => next.onReceiveMessage(message);
const deliverHalfClose = (next: DownstreamListener): void => next.onReceiveHalfClose();

/** Passes every inbound event on inside the server span's context. */
class SpanListener implements DownstreamListener {
  readonly #call: TelemetryServerCall;
  readonly #next: DownstreamListener;

  constructor(call: TelemetryServerCall, next: DownstreamListener) {
    this.#call = call;
    this.#next = next;
  }

  onReceiveMetadata(metadata: grpc.Metadata): void {
    context.with(this.#call.enter(metadata), deliverMetadata, undefined, this.#next, metadata);
  }

  onReceiveMessage(message: unknown): void {
    context.with(this.#call.enter(undefined), deliverMessage, undefined, this.#next, message);
  }

  onReceiveHalfClose(): void {
    context.with(this.#call.enter(undefined), deliverHalfClose, undefined, this.#next);
  }

  onCancel(): void {
    this.#call.cancelled();
    this.#next.onCancel();
  }
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
  const { tracer, meter } = options;
  const histogram = meter === undefined ? undefined : rpcInstruments(meter).serverDuration;
  return (methodDescriptor, call) =>
    new TelemetryServerCall(
      call,
      methodTelemetry(methodDescriptor.path),
      tracer ?? currentTracer(),
      histogram ?? currentHistogram(),
    );
}
