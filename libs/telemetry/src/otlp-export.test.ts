import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { MetricReader } from '@opentelemetry/sdk-metrics';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from './logger.js';
import { initTelemetry, type Telemetry } from './telemetry.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './testing/otlp-receiver.js';
import { connectA, startA, startB, type Started, type TestClient } from './testing/services.js';

// Metrics stay in process here: this receiver only speaks the trace service.
class UnexportedMetrics extends MetricReader {
  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

function captureLines(): { lines: Record<string, unknown>[]; destination: NodeJS.WritableStream } {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, destination };
}

describe('OTLP gRPC export', () => {
  let receiver: OtlpReceiver;
  let telA: Telemetry;
  let telB: Telemetry;
  let a: Started;
  let b: Started;
  let client: TestClient;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    const otlpEndpoint = `http://127.0.0.1:${receiver.port}`;
    telA = initTelemetry({
      serviceName: 'svc-a',
      serviceVersion: '0.0.1',
      otlpEndpoint,
      metricReader: new UnexportedMetrics(),
    });
    telB = initTelemetry({ serviceName: 'svc-b', otlpEndpoint, metricReader: new UnexportedMetrics() });
    b = await startB(createLogger('b', { level: 'silent' }), telB);
    a = await startA(b.port, { tracer: telA.tracer, meter: telA.meter });
    client = connectA(a.port, { tracer: telA.tracer, meter: telA.meter });
  });

  afterAll(async () => {
    client.close();
    await a.stop();
    await b.stop();
    await telA.shutdown();
    await telB.shutdown();
    await receiver.stop();
  });

  it('delivers the spans of client -> A -> B with trace ids, names, parents and service.name intact', async () => {
    await client.unary('resolve', { key: 'otlp' });
    const missing = await client.unary('resolve', { key: 'missing' }).catch((e: grpc.ServiceError) => e);
    expect((missing as grpc.ServiceError).code).toBe(grpc.status.NOT_FOUND);
    // forceFlush resolves once the Export RPC has been answered, so the receiver has them all.
    await telA.forceFlush();
    await telB.forceFlush();

    expect(receiver.requests).toBeGreaterThanOrEqual(2);
    expect(receiver.spans).toHaveLength(8);
    const traces = new Map<string, ReceivedSpan[]>();
    for (const span of receiver.spans) traces.set(span.traceId, [...(traces.get(span.traceId) ?? []), span]);
    expect(traces.size).toBe(2);

    for (const spans of traces.values()) {
      expect(spans).toHaveLength(4);
      const find = (name: string, kind: string): ReceivedSpan => {
        const found = spans.filter((s) => s.name === name && s.kind === kind);
        expect(found).toHaveLength(1);
        return found[0]!;
      };
      const outer = find('test.v1.A/Resolve', 'SPAN_KIND_CLIENT');
      const serverA = find('test.v1.A/Resolve', 'SPAN_KIND_SERVER');
      const clientAB = find('test.v1.B/Lookup', 'SPAN_KIND_CLIENT');
      const serverB = find('test.v1.B/Lookup', 'SPAN_KIND_SERVER');
      expect(outer.traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(outer.spanId).toMatch(/^[0-9a-f]{16}$/);
      expect(outer.parentSpanId).toBe('');
      expect(serverA.parentSpanId).toBe(outer.spanId);
      expect(clientAB.parentSpanId).toBe(serverA.spanId);
      expect(serverB.parentSpanId).toBe(clientAB.spanId);
      expect([outer, serverA, clientAB].map((s) => s.serviceName)).toEqual(['svc-a', 'svc-a', 'svc-a']);
      expect(serverB.serviceName).toBe('svc-b');
      expect(serverB.attributes).toMatchObject({
        'rpc.system': 'grpc',
        'rpc.service': 'test.v1.B',
        'rpc.method': 'Lookup',
      });
    }

    const failedB = receiver.spans.find(
      (s) => s.name === 'test.v1.B/Lookup' && s.kind === 'SPAN_KIND_SERVER' && s.statusCode === 'STATUS_CODE_ERROR',
    );
    expect(failedB).toBeDefined();
    // int64 attribute values arrive as strings with `longs: String`.
    expect(failedB!.attributes['rpc.grpc.status_code']).toBe('5');
  });

  describe('configured from the environment', () => {
    const saved = { ...process.env };
    afterAll(() => {
      for (const key of ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_METRICS_EXPORTER']) {
        if (saved[key] === undefined) delete process.env[key];
        else process.env[key] = saved[key];
      }
    });

    it('exports spans to OTEL_EXPORTER_OTLP_ENDPOINT, and OTEL_METRICS_EXPORTER=none keeps metrics off', async () => {
      process.env['OTEL_EXPORTER_OTLP_ENDPOINT'] = `http://127.0.0.1:${receiver.port}`;
      process.env['OTEL_METRICS_EXPORTER'] = 'none';
      const { lines, destination } = captureLines();
      const telemetry = initTelemetry({ serviceName: 'from-env', logDestination: destination });
      telemetry.meter.createCounter('calls').add(1);
      const span = telemetry.tracer.startSpan('env-span');
      span.end();
      await telemetry.forceFlush();
      await telemetry.shutdown();
      const received = receiver.spans.filter((s) => s.name === 'env-span');
      expect(received).toHaveLength(1);
      expect(received[0]!.spanId).toBe(span.spanContext().spanId);
      expect(received[0]!.serviceName).toBe('from-env');
      // This receiver has no metrics service: an attempted metrics export would have logged a failure.
      expect(lines.filter((l) => l['level'] === 40)).toEqual([]);
    });

    it('logs, rather than throws, when the collector rejects an export (Jaeger has no metrics service)', async () => {
      process.env['OTEL_EXPORTER_OTLP_ENDPOINT'] = `http://127.0.0.1:${receiver.port}`;
      delete process.env['OTEL_METRICS_EXPORTER'];
      const { lines, destination } = captureLines();
      const telemetry = initTelemetry({ serviceName: 'no-metrics-service', logDestination: destination });
      telemetry.meter.createCounter('calls').add(1);
      telemetry.tracer.startSpan('still-exported').end();
      await expect(telemetry.forceFlush()).resolves.toBeUndefined();
      await expect(telemetry.shutdown()).resolves.toBeUndefined();
      expect(receiver.spans.filter((s) => s.name === 'still-exported')).toHaveLength(1);
      const warning = lines.find((l) => l['msg'] === 'telemetry export failed');
      expect(warning).toMatchObject({ level: 40, component: 'telemetry', name: 'no-metrics-service' });
      expect(warning!['error']).toMatch(/metrics export failed.*UNIMPLEMENTED/);
    });
  });
});
