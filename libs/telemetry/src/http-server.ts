import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  context,
  propagation,
  trace,
  type Span,
  type TextMapGetter,
  type Tracer,
} from '@opentelemetry/api';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { INSTRUMENTATION_SCOPE } from './rpc-attributes.js';

// OpenTelemetry's HTTP semantic conventions (stable names).
export const ATTR_HTTP_REQUEST_METHOD = 'http.request.method';
export const ATTR_HTTP_RESPONSE_STATUS_CODE = 'http.response.status_code';
export const ATTR_HTTP_ROUTE = 'http.route';
export const ATTR_URL_PATH = 'url.path';
export const ATTR_URL_SCHEME = 'url.scheme';

export interface HttpTracingOptions {
  /** Defaults to the global tracer provider's tracer, looked up per request (so a later initTelemetry takes effect). */
  readonly tracer?: Tracer;
}

export type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

/** Reads W3C `traceparent`/`tracestate`/`baggage` from request headers (node lower-cases their names). */
const headersGetter: TextMapGetter<IncomingHttpHeaders> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key.toLowerCase()],
};

/** The span of each response under way, for the one shared 'close' listener (no closure per request). */
const spans = new WeakMap<ServerResponse, Span>();

function onClose(this: ServerResponse): void {
  const span = spans.get(this);
  if (span === undefined) return;
  spans.delete(this);
  if (this.writableFinished) {
    span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, this.statusCode);
    // Server spans are errors for 5xx only: a 4xx is the client's mistake, answered as designed.
    if (this.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: `HTTP ${this.statusCode}` });
  } else {
    span.setStatus({ code: SpanStatusCode.ERROR, message: 'the connection closed before the response was sent' });
  }
  span.end();
}

/**
 * Wraps a node:http request listener so that every request is one SERVER span, a child of the
 * caller's W3C `traceparent` header when it has one, and the listener (with everything it awaits:
 * gRPC calls through the client interceptor, logs) runs inside that span's context. The span is
 * named after the method until the listener names its route (setHttpRoute), and ends when the
 * response is sent or the connection closes.
 */
export function traceHttpRequests(listener: RequestListener, options: HttpTracingOptions = {}): RequestListener {
  return (req, res) => {
    const tracer = options.tracer ?? trace.getTracer(INSTRUMENTATION_SCOPE);
    const parent = propagation.extract(ROOT_CONTEXT, req.headers, headersGetter);
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    const span = tracer.startSpan(
      method,
      {
        kind: SpanKind.SERVER,
        attributes: {
          [ATTR_HTTP_REQUEST_METHOD]: method,
          [ATTR_URL_PATH]: query < 0 ? url : url.slice(0, query),
          [ATTR_URL_SCHEME]: 'encrypted' in req.socket ? 'https' : 'http',
        },
      },
      parent,
    );
    spans.set(res, span);
    res.once('close', onClose);
    context.with(trace.setSpan(parent, span), listener, undefined, req, res);
  };
}

/**
 * Names the current HTTP server span after the route that matched (`/v2/models/{model}/infer`):
 * its name becomes `METHOD route`, as OpenTelemetry's HTTP conventions ask (a low-cardinality name).
 */
export function setHttpRoute(method: string, route: string): void {
  const span = trace.getActiveSpan();
  if (span === undefined) return;
  span.updateName(`${method} ${route}`);
  span.setAttribute(ATTR_HTTP_ROUTE, route);
}
