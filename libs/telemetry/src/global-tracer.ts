import { trace, type Tracer, type TracerProvider } from '@opentelemetry/api';

/**
 * The global tracer provider's tracer for `scope`, looked up again only when the provider is
 * replaced (initTelemetry, or trace.disable(): both change what getTracerProvider() returns). For
 * code that starts spans on every request: getTracer on the API's proxy provider makes a new tracer
 * object per call, while one taken from it before an SDK is registered still finds the SDK later.
 */
export function globalTracerLookup(scope: string): () => Tracer {
  let provider: TracerProvider | undefined;
  let tracer: Tracer | undefined;
  return () => {
    const current = trace.getTracerProvider();
    if (current !== provider || tracer === undefined) {
      provider = current;
      tracer = current.getTracer(scope);
    }
    return tracer;
  };
}
