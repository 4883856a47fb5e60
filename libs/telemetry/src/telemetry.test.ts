import { SpanKind, metrics, trace } from '@opentelemetry/api';
import { MetricReader, type DataPoint, type Histogram } from '@opentelemetry/sdk-metrics';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { createLogger, currentTraceId } from './logger.js';
import { initTelemetry } from './telemetry.js';
import { connectA, startA, startB } from './testing/services.js';

// Collects on demand: the test reads exactly what the SDK aggregated, with no export timer involved.
class ManualReader extends MetricReader {
  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

async function histogramPoints(
  reader: MetricReader,
  name: string,
): Promise<{ unit: string; points: DataPoint<Histogram>[] }> {
  const { resourceMetrics, errors } = await reader.collect();
  expect(errors).toEqual([]);
  const found = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).filter((m) => m.descriptor.name === name);
  expect(found, name).toHaveLength(1);
  return { unit: found[0]!.descriptor.unit, points: found[0]!.dataPoints as DataPoint<Histogram>[] };
}

describe('initTelemetry', () => {
  it('records rpc.server.call.duration and rpc.client.call.duration in seconds with rpc.* attributes', async () => {
    const reader = new ManualReader();
    const telemetry = initTelemetry({ serviceName: 'metrics-test', metricReader: reader });
    const b = await startB(createLogger('b', { level: 'silent' }));
    const a = await startA(b.port);
    const client = connectA(a.port);
    try {
      const started = process.hrtime.bigint();
      await client.unary('resolve', { key: 'm' });
      await client.unary('resolve', { key: 'n' });
      await client.unary('resolve', { key: 'missing' }).catch(() => undefined);
      const elapsed = Number(process.hrtime.bigint() - started) / 1e9;

      const server = await histogramPoints(reader, 'rpc.server.call.duration');
      expect(server.unit).toBe('s');
      const okLookups = server.points.find(
        (p) => p.attributes['rpc.service'] === 'test.v1.B' && p.attributes['rpc.grpc.status_code'] === grpc.status.OK,
      );
      expect(okLookups?.attributes).toEqual({
        'rpc.system': 'grpc',
        'rpc.service': 'test.v1.B',
        'rpc.method': 'Lookup',
        'rpc.grpc.status_code': 0,
      });
      expect(okLookups?.value.count).toBe(2);
      expect(okLookups?.value.sum).toBeGreaterThan(0);
      // Server time is within the wall time the caller measured around the three calls.
      expect(okLookups?.value.sum).toBeLessThan(elapsed);
      expect(okLookups?.value.buckets.boundaries).toEqual([
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
      ]);
      const notFound = server.points.filter((p) => p.attributes['rpc.grpc.status_code'] === grpc.status.NOT_FOUND);
      expect(notFound.map((p) => [p.attributes['rpc.service'], p.value.count])).toEqual(
        expect.arrayContaining([
          ['test.v1.A', 1],
          ['test.v1.B', 1],
        ]),
      );

      const clientSide = await histogramPoints(reader, 'rpc.client.call.duration');
      expect(clientSide.unit).toBe('s');
      const outer = clientSide.points.find(
        (p) => p.attributes['rpc.method'] === 'Resolve' && p.attributes['rpc.grpc.status_code'] === grpc.status.OK,
      );
      expect(outer?.value.count).toBe(2);
      // A's server time for Resolve nests inside the outer client's time for it.
      const serverResolve = server.points.find(
        (p) => p.attributes['rpc.method'] === 'Resolve' && p.attributes['rpc.grpc.status_code'] === grpc.status.OK,
      );
      expect(serverResolve!.value.sum).toBeLessThanOrEqual(outer!.value.sum!);
    } finally {
      client.close();
      await a.stop();
      await b.stop();
      await telemetry.shutdown();
    }
  });

  it('can be called again in one process: the latest call owns the globals, each keeps its own exporter', async () => {
    const first = new InMemorySpanExporter();
    const second = new InMemorySpanExporter();
    const one = initTelemetry({ serviceName: 'one', spanExporter: first });
    const two = initTelemetry({ serviceName: 'two', spanExporter: second });

    trace.getTracer('t').startSpan('global').end();
    one.tracer.startSpan('explicit-one').end();
    await one.forceFlush();
    await two.forceFlush();
    expect(first.getFinishedSpans().map((s) => s.name)).toEqual(['explicit-one']);
    expect(second.getFinishedSpans().map((s) => s.name)).toEqual(['global']);
    expect(second.getFinishedSpans()[0]!.resource.attributes['service.name']).toBe('two');

    // Shutting down the older one leaves the newer one registered.
    await one.shutdown();
    await one.shutdown();
    trace.getTracer('t').startSpan('after-one-shutdown').end();
    await two.forceFlush();
    expect(second.getFinishedSpans().map((s) => s.name)).toContain('after-one-shutdown');

    // Shutting down the global one unregisters it: later spans are no-ops, not errors.
    await two.shutdown();
    const span = trace.getTracer('t').startSpan('after-all');
    expect(span.isRecording()).toBe(false);
    span.end();
    expect(metrics.getMeterProvider().getMeter('x').createHistogram('h')).toBeDefined();
  });

  it('makes currentTraceId() and logger lines follow the active span, and omits them outside one', async () => {
    const telemetry = initTelemetry({ serviceName: 'log-test', spanExporter: new InMemorySpanExporter() });
    const lines: string[] = [];
    const logger = createLogger('log-test', { destination: { write: (line: string) => void lines.push(line) } });
    expect(currentTraceId()).toBeUndefined();
    logger.info('outside');
    const ids = telemetry.tracer.startActiveSpan('work', { kind: SpanKind.INTERNAL }, (span) => {
      logger.warn({ n: 1 }, 'inside');
      span.end();
      return span.spanContext();
    });
    const [outside, inside] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(outside).not.toHaveProperty('trace_id');
    expect(inside).toMatchObject({
      msg: 'inside',
      n: 1,
      level: 40,
      name: 'log-test',
      trace_id: ids.traceId,
      span_id: ids.spanId,
    });
    await telemetry.shutdown();
  });
});
