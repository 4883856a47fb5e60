import { isSpanContextValid, trace } from '@opentelemetry/api';
import { pino, type DestinationStream, type Logger } from 'pino';

export interface LoggerOptions {
  /** pino level; defaults to QUANTA_LOG_LEVEL or `info`. */
  readonly level?: string;
  /** Where JSON lines go; defaults to stdout. Tests pass a stream to capture lines. */
  readonly destination?: NodeJS.WritableStream | DestinationStream;
}

/** The active span's ids in the names log pipelines (and Jaeger/Grafana links) expect. */
function traceFields(): { trace_id?: string; span_id?: string } {
  const spanContext = trace.getActiveSpan()?.spanContext();
  if (!spanContext || !isSpanContextValid(spanContext)) return {};
  return { trace_id: spanContext.traceId, span_id: spanContext.spanId };
}

/** A pino JSON logger whose every line carries `trace_id` and `span_id` of the span active when it is written. */
export function createLogger(name: string, options: LoggerOptions = {}): Logger {
  const level = options.level ?? process.env['QUANTA_LOG_LEVEL'] ?? 'info';
  const pinoOptions = { name, level, mixin: traceFields };
  return options.destination ? pino(pinoOptions, options.destination) : pino(pinoOptions);
}

/** The trace id of the active span, or undefined outside any (valid) span. */
export function currentTraceId(): string | undefined {
  return traceFields().trace_id;
}
