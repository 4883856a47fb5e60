import { useInterceptor } from './grpc.js';
import { createProgram } from './program.js';

// With OTEL_EXPORTER_OTLP_ENDPOINT set, every call the CLI makes is a client span that roots its
// trace (so `quanta infer` shows in Jaeger with the services' spans under it). The SDK is loaded
// only then: it costs start-up time that a plain CLI call should not pay.
const endpoint = process.env['OTEL_EXPORTER_OTLP_ENDPOINT'];
const telemetry =
  endpoint !== undefined && endpoint !== '' && process.env['OTEL_TRACES_EXPORTER'] !== 'none'
    ? await (async () => {
        const { initTelemetry, createClientInterceptor } = await import('@quanta/telemetry');
        // Jaeger takes traces only; the CLI's own metrics are of no use to anyone.
        process.env['OTEL_METRICS_EXPORTER'] ??= 'none';
        const t = initTelemetry({
          serviceName: 'quanta-cli',
          serviceVersion: '0.1.0',
          logLevel: 'warn',
          logDestination: process.stderr,
        });
        useInterceptor(createClientInterceptor());
        return t;
      })()
    : undefined;

try {
  await createProgram().parseAsync(process.argv);
} finally {
  await telemetry?.shutdown();
}
