import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { initTelemetry, type Telemetry, type TelemetryOptions } from '../telemetry.js';

/** Telemetry whose spans stay in memory, for tests that assert on the spans a call made. */
export interface RecordedTelemetry {
  readonly telemetry: Telemetry;
  readonly exporter: InMemorySpanExporter;
  /** Flushes the batch processor, then returns every span finished so far. */
  readonly finishedSpans: () => Promise<ReadableSpan[]>;
}

/** `initTelemetry(options)` with an in-memory span exporter. */
export function recordSpans(options: Omit<TelemetryOptions, 'spanExporter'>): RecordedTelemetry {
  const exporter = new InMemorySpanExporter();
  const telemetry = initTelemetry({ ...options, spanExporter: exporter });
  return {
    telemetry,
    exporter,
    finishedSpans: async () => {
      await telemetry.forceFlush();
      return exporter.getFinishedSpans();
    },
  };
}
