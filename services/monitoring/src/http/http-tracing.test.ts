import { SpanKind } from '@opentelemetry/api';
import type { Telemetry } from '@quanta/telemetry';
import { recordSpans, type RecordedTelemetry } from '@quanta/telemetry/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../testing/harness.js';
import { startHarness } from '../testing/harness.js';

// Spans stay in memory: every finished span, as the SDK hands it over.
let recorded: RecordedTelemetry;
let telemetry: Telemetry;
let h: Harness;

beforeAll(async () => {
  recorded = recordSpans({ serviceName: 'monitoring' });
  telemetry = recorded.telemetry;
  h = await startHarness();
});
afterAll(async () => {
  await h.close();
  await telemetry.shutdown();
});

describe('HTTP requests are spans', () => {
  it("one SERVER span per request, named after its page, continuing the caller's traceparent", async () => {
    const traceId = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
    const parent = '1122334455667788';
    const token = await h.token('acme', ['monitoring:read']);
    const res = await fetch(`${h.server.http.url}api/overview?window=60`, {
      headers: { authorization: `Bearer ${token}`, traceparent: `00-${traceId}-${parent}-01` },
    });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    await expect
      .poll(async () => {
        const finished = await recorded.finishedSpans();
        return finished.find((s) => s.kind === SpanKind.SERVER && s.name === 'GET /api/overview');
      })
      .toBeDefined();
    const span = recorded.exporter.getFinishedSpans().find((s) => s.name === 'GET /api/overview')!;
    expect(span.spanContext().traceId).toBe(traceId);
    expect(span.parentSpanContext?.spanId).toBe(parent);
    expect(span.attributes).toMatchObject({ 'http.route': '/api/overview', 'http.response.status_code': 200 });
  });
});
