import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { buildMlp } from '@quanta/onnx';
import type { Telemetry } from '@quanta/telemetry';
import { recordSpans, type RecordedTelemetry } from '@quanta/telemetry/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../testing/harness.js';
import { startHarness } from '../testing/harness.js';

// Spans stay in memory: every finished span, as the SDK hands it over.
let recorded: RecordedTelemetry;
type ReadableSpan = Awaited<ReturnType<RecordedTelemetry['finishedSpans']>>[number];
let telemetry: Telemetry;
let h: Harness;
let token: string;

beforeAll(async () => {
  recorded = recordSpans({ serviceName: 'inference' });
  telemetry = recorded.telemetry;
  h = await startHarness();
  await h.deploy('acme', 'mlp', '1', buildMlp());
  token = await h.token('acme', ['infer', 'models:read']);
});
afterAll(async () => {
  await h.close();
  await telemetry.shutdown();
});

async function serverSpan(name: string): Promise<ReadableSpan> {
  let found: ReadableSpan | undefined;
  await expect
    .poll(async () => {
      const finished = await recorded.finishedSpans();
      found = finished.find((s) => s.kind === SpanKind.SERVER && s.name === name);
      return found;
    })
    .toBeDefined();
  return found!;
}

describe('REST requests are spans', () => {
  it("a REST infer is a SERVER span named after its route, continuing the caller's traceparent", async () => {
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const parent = 'b7ad6b7169203331';
    const response = await fetch(`${h.server.http.url}/v2/models/mlp/infer`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        traceparent: `00-${traceId}-${parent}-01`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }),
    });
    expect(response.status).toBe(200);
    await response.arrayBuffer();
    const span = await serverSpan('POST /v2/models/{model}[/versions/{version}]/infer');
    expect(span.spanContext().traceId).toBe(traceId);
    expect(span.parentSpanContext?.spanId).toBe(parent);
    expect(span.attributes).toMatchObject({
      'http.request.method': 'POST',
      'url.path': '/v2/models/mlp/infer',
      'http.response.status_code': 200,
    });
    expect(span.status.code).not.toBe(SpanStatusCode.ERROR);
  });

  it("a sampled request's batch and run are its children; an unsampled one's make no spans", async () => {
    const infer = async (traceId: string, flags: string): Promise<void> => {
      const response = await fetch(`${h.server.http.url}/v2/models/mlp/infer`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          traceparent: `00-${traceId}-b7ad6b7169203331-${flags}`,
          'content-type': 'application/json',
        },
        body: JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }),
      });
      expect(response.status).toBe(200);
      await response.arrayBuffer();
    };
    const unsampled = '1af7651916cd43dd8448eb211c80319c';
    const sampled = '2af7651916cd43dd8448eb211c80319c';
    await infer(unsampled, '00');
    await infer(sampled, '01');
    const names = async (traceId: string): Promise<string[]> =>
      (await recorded.finishedSpans())
        .filter((s) => s.spanContext().traceId === traceId)
        .map((s) => s.name)
        .sort();
    await expect.poll(() => names(sampled)).toContain('onnxruntime.run');
    expect(await names(sampled)).toEqual(expect.arrayContaining(['inference.batch', 'onnxruntime.run']));
    expect(await names(unsampled)).toEqual([]);
  });

  it('a request without a traceparent starts its own trace; a 404 is not an error', async () => {
    const response = await fetch(`${h.server.http.url}/v2/models/nope/config`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(response.status).toBe(404);
    await response.arrayBuffer();
    const span = await serverSpan('GET /v2/models/{model}[/versions/{version}]/config');
    expect(span.parentSpanContext).toBeUndefined();
    expect(span.attributes['http.response.status_code']).toBe(404);
    expect(span.status.code).not.toBe(SpanStatusCode.ERROR);
  });
});
