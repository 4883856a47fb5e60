import { DiagLogLevel, context, diag, metrics, propagation, trace, type Meter, type Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  CompositePropagator,
  W3CBaggagePropagator,
  W3CTraceContextPropagator,
  setGlobalErrorHandler,
} from '@opentelemetry/core';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-grpc';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider, PeriodicExportingMetricReader, type IMetricReader } from '@opentelemetry/sdk-metrics';
import { BatchSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import type { Logger } from 'pino';
import { createLogger } from './logger.js';
import { INSTRUMENTATION_SCOPE } from './rpc-attributes.js';

export interface TelemetryOptions {
  readonly serviceName: string;
  readonly serviceVersion?: string;
  /** Where spans go; tests pass an InMemorySpanExporter. Default: OTLP gRPC when an endpoint is known, else none. */
  readonly spanExporter?: SpanExporter;
  /** Metric reader; tests pass one over an InMemoryMetricExporter. Default: OTLP gRPC when an endpoint is known. */
  readonly metricReader?: IMetricReader;
  /** OTLP gRPC endpoint (`http://host:4317`); default process.env.OTEL_EXPORTER_OTLP_ENDPOINT. */
  readonly otlpEndpoint?: string;
  /** How often metrics are pushed over OTLP (ms); default 60 000 (OTEL_METRIC_EXPORT_INTERVAL also applies). */
  readonly metricExportIntervalMillis?: number;
  /** Options for `telemetry.logger`. */
  readonly logLevel?: string;
  readonly logDestination?: NodeJS.WritableStream;
}

export interface Telemetry {
  readonly serviceName: string;
  readonly tracer: Tracer;
  readonly meter: Meter;
  readonly logger: Logger;
  /** Exports every finished span and the current metrics now; an export failure is logged, not thrown. */
  forceFlush(): Promise<void>;
  /** Flushes, then stops the providers; later spans from this instance are dropped. Safe to call twice. */
  shutdown(): Promise<void>;
}

let processWideInstalled = false;
let globalOwner: Telemetry | undefined;

// SDK diagnostics and background export failures go to the latest service's logger.
let sdkLogger: Logger | undefined;

function errorText(value: unknown): string {
  return value instanceof Error ? value.message : String(value);
}

// The context manager, propagator and SDK error reporting are the same for every service in a process:
// install them once.
function installProcessWide(): void {
  if (processWideInstalled) return;
  processWideInstalled = true;
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(
    new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }),
  );
  // Without these, a collector that is down or lacks a service fails silently in the background.
  setGlobalErrorHandler((error) => sdkLogger?.warn({ error: errorText(error) }, 'telemetry export failed'));
  const line =
    (level: 'error' | 'warn' | 'info' | 'debug') =>
    (message: string, ...args: unknown[]): void =>
      sdkLogger?.[level](args.length > 0 ? { details: args.map(errorText) } : {}, `opentelemetry: ${message}`);
  diag.setLogger(
    { error: line('error'), warn: line('warn'), info: line('info'), debug: line('debug'), verbose: line('debug') },
    { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true },
  );
}

/** OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER=none turn one signal's OTLP export off (Jaeger takes no metrics). */
function exporterDisabled(variable: 'OTEL_TRACES_EXPORTER' | 'OTEL_METRICS_EXPORTER'): boolean {
  return process.env[variable]?.trim().toLowerCase() === 'none';
}

function defaultSpanExporter(options: TelemetryOptions, endpoint: string | undefined): SpanExporter | undefined {
  if (options.spanExporter) return options.spanExporter;
  if (!endpoint || exporterDisabled('OTEL_TRACES_EXPORTER')) return undefined;
  return new OTLPTraceExporter({ url: endpoint });
}

function defaultMetricReader(options: TelemetryOptions, endpoint: string | undefined): IMetricReader | undefined {
  if (options.metricReader) return options.metricReader;
  if (!endpoint || exporterDisabled('OTEL_METRICS_EXPORTER')) return undefined;
  const intervalFromEnv = Number(process.env['OTEL_METRIC_EXPORT_INTERVAL']);
  return new PeriodicExportingMetricReader({
    exporter: new OTLPMetricExporter({ url: endpoint }),
    exportIntervalMillis:
      options.metricExportIntervalMillis ??
      (Number.isFinite(intervalFromEnv) && intervalFromEnv > 0 ? intervalFromEnv : 60_000),
  });
}

/**
 * Sets up OpenTelemetry for one service: resource (service.name, service.version), W3C tracecontext + baggage
 * propagation, AsyncLocalStorage context, a tracer provider with a batching span processor, a meter provider,
 * OTLP gRPC export when an endpoint is configured (nothing exported otherwise; spans are still created so
 * trace ids propagate and appear in logs).
 *
 * Safe to call more than once per process (tests, several services in one process): each call returns its
 * own providers, and the latest call becomes the global tracer/meter provider that interceptors without an
 * explicit tracer/meter use. Shutting down the global one unregisters it.
 */
export function initTelemetry(options: TelemetryOptions): Telemetry {
  const logger = createLogger(options.serviceName, {
    ...(options.logLevel ? { level: options.logLevel } : {}),
    ...(options.logDestination ? { destination: options.logDestination } : {}),
  });
  installProcessWide();
  sdkLogger = logger.child({ component: 'telemetry' });
  const resource = resourceFromAttributes({
    [ATTR_SERVICE_NAME]: options.serviceName,
    ...(options.serviceVersion ? { [ATTR_SERVICE_VERSION]: options.serviceVersion } : {}),
  });
  const endpoint = options.otlpEndpoint ?? (process.env['OTEL_EXPORTER_OTLP_ENDPOINT'] || undefined);
  const spanExporter = defaultSpanExporter(options, endpoint);
  const tracerProvider = new NodeTracerProvider({
    resource,
    spanProcessors: spanExporter ? [new BatchSpanProcessor(spanExporter)] : [],
  });
  const metricReader = defaultMetricReader(options, endpoint);
  const meterProvider = new MeterProvider({ resource, readers: metricReader ? [metricReader] : [] });

  // The API refuses a second registration unless the previous one is removed first.
  trace.disable();
  trace.setGlobalTracerProvider(tracerProvider);
  metrics.disable();
  metrics.setGlobalMeterProvider(meterProvider);

  // A collector that is down must not fail a service's shutdown: export errors are logged, not thrown.
  const settle = async (what: string, work: Promise<unknown>[]): Promise<void> => {
    for (const result of await Promise.allSettled(work)) {
      if (result.status === 'rejected') {
        const reasons: unknown[] = Array.isArray(result.reason) ? result.reason : [result.reason];
        logger.warn({ error: reasons.map(errorText).join('; ') }, `telemetry ${what}: export failed`);
      }
    }
  };
  let shutdownPromise: Promise<void> | undefined;
  const telemetry: Telemetry = {
    serviceName: options.serviceName,
    tracer: tracerProvider.getTracer(INSTRUMENTATION_SCOPE, options.serviceVersion),
    meter: meterProvider.getMeter(INSTRUMENTATION_SCOPE, options.serviceVersion),
    logger,
    forceFlush: () => settle('flush', [tracerProvider.forceFlush(), meterProvider.forceFlush()]),
    shutdown() {
      shutdownPromise ??= (async () => {
        if (globalOwner === telemetry) {
          trace.disable();
          metrics.disable();
          globalOwner = undefined;
        }
        await settle('shutdown', [tracerProvider.shutdown(), meterProvider.shutdown()]);
      })();
      return shutdownPromise;
    },
  };
  globalOwner = telemetry;
  return telemetry;
}
