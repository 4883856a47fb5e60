import { Writable } from 'node:stream';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from './logger.js';
import type { Telemetry } from './telemetry.js';
import { connectA, startA, startB, type Started, type TestClient } from './testing/services.js';
import { recordSpans, type RecordedTelemetry } from './testing/spans.js';

const logLines: Record<string, unknown>[] = [];
const logSink = new Writable({
  write(chunk: Buffer, _encoding, done) {
    for (const line of chunk.toString('utf8').split('\n')) if (line) logLines.push(JSON.parse(line));
    done();
  },
});

let recorded: RecordedTelemetry;
let telemetry: Telemetry;
let b: Started;
let a: Started;
let client: TestClient;

beforeAll(async () => {
  recorded = recordSpans({ serviceName: 'trace-test', serviceVersion: '1.2.3' });
  telemetry = recorded.telemetry;
  b = await startB(createLogger('service-b', { destination: logSink }));
  a = await startA(b.port);
  client = connectA(a.port);
});

afterAll(async () => {
  client.close();
  await a.stop();
  await b.stop();
  await telemetry.shutdown();
});

beforeEach(() => {
  recorded.exporter.reset();
  logLines.length = 0;
});

function finishedSpans(): Promise<ReadableSpan[]> {
  return recorded.finishedSpans();
}

function only(spans: ReadableSpan[], name: string, kind: SpanKind): ReadableSpan {
  const found = spans.filter((s) => s.name === name && s.kind === kind);
  expect(found, `${SpanKind[kind]} span ${name}`).toHaveLength(1);
  return found[0]!;
}

function all(spans: ReadableSpan[], name: string, kind: SpanKind): ReadableSpan[] {
  return spans.filter((s) => s.name === name && s.kind === kind);
}

const parentId = (span: ReadableSpan): string | undefined => span.parentSpanContext?.spanId;
const spanId = (span: ReadableSpan): string => span.spanContext().spanId;
const traceId = (span: ReadableSpan): string => span.spanContext().traceId;
const ns = (t: [number, number]): number => t[0] * 1e9 + t[1];
const CLOCK_SLACK_NS = 1.5e6;

describe('client -> A -> B', () => {
  it('puts all four spans in one trace, B under A’s client span under A’s server span', async () => {
    const reply = (await client.unary('resolve', { key: 'abc' })) as { value: string; traceIdInHandler: string };
    expect(reply.value).toBe('ABC');

    const spans = await finishedSpans();
    expect(spans).toHaveLength(4);
    const outer = only(spans, 'test.v1.A/Resolve', SpanKind.CLIENT);
    const serverA = only(spans, 'test.v1.A/Resolve', SpanKind.SERVER);
    const clientAB = only(spans, 'test.v1.B/Lookup', SpanKind.CLIENT);
    const serverB = only(spans, 'test.v1.B/Lookup', SpanKind.SERVER);

    const trace = traceId(outer);
    expect(trace).toMatch(/^[0-9a-f]{32}$/);
    for (const span of [serverA, clientAB, serverB]) expect(traceId(span)).toBe(trace);
    expect(reply.traceIdInHandler).toBe(trace);

    expect(parentId(outer)).toBeUndefined();
    expect(parentId(serverA)).toBe(spanId(outer));
    // The crux: the handler ran inside A's server span, so its outgoing call is that span's child.
    expect(parentId(clientAB)).toBe(spanId(serverA));
    expect(parentId(serverB)).toBe(spanId(clientAB));
    expect(serverA.parentSpanContext?.isRemote).toBe(true);
    expect(serverB.parentSpanContext?.isRemote).toBe(true);

    expect(serverB.attributes).toEqual({
      'rpc.system': 'grpc',
      'rpc.service': 'test.v1.B',
      'rpc.method': 'Lookup',
      'rpc.grpc.status_code': grpc.status.OK,
    });
    expect(outer.attributes).toEqual({
      'rpc.system': 'grpc',
      'rpc.service': 'test.v1.A',
      'rpc.method': 'Resolve',
      'rpc.grpc.status_code': grpc.status.OK,
    });
    for (const span of spans) expect(span.status.code).toBe(SpanStatusCode.UNSET);
    expect(serverB.resource.attributes['service.name']).toBe('trace-test');
    expect(serverB.resource.attributes['service.version']).toBe('1.2.3');
    // Nesting in time: each child lies within its parent (up to the SDK's per-span clock anchoring,
    // which is Date.now(), so 1 ms apart at most).
    expect(ns(serverA.startTime)).toBeGreaterThanOrEqual(ns(outer.startTime) - CLOCK_SLACK_NS);
    expect(ns(clientAB.endTime)).toBeLessThanOrEqual(ns(serverA.endTime) + CLOCK_SLACK_NS);
    expect(ns(serverA.endTime)).toBeLessThanOrEqual(ns(outer.endTime) + CLOCK_SLACK_NS);
  });

  it('records NOT_FOUND from B as rpc.grpc.status_code=5 and status ERROR on every span of the call', async () => {
    const error = (await client.unary('resolve', { key: 'missing' }).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(error.code).toBe(grpc.status.NOT_FOUND);
    expect(error.details).toBe('key "missing" not found');

    const spans = await finishedSpans();
    expect(spans).toHaveLength(4);
    const serverB = only(spans, 'test.v1.B/Lookup', SpanKind.SERVER);
    expect(serverB.attributes['rpc.grpc.status_code']).toBe(5);
    expect(serverB.status).toEqual({ code: SpanStatusCode.ERROR, message: 'NOT_FOUND: key "missing" not found' });
    for (const span of spans) {
      expect(span.attributes['rpc.grpc.status_code']).toBe(grpc.status.NOT_FOUND);
      expect(span.status.code).toBe(SpanStatusCode.ERROR);
    }
    expect(new Set(spans.map(traceId)).size).toBe(1);
  });

  it('logs inside B’s handler with the server span’s trace_id and span_id', async () => {
    await client.unary('resolve', { key: 'logged' });
    const spans = await finishedSpans();
    const serverB = only(spans, 'test.v1.B/Lookup', SpanKind.SERVER);

    expect(logLines).toHaveLength(1);
    const line = logLines[0]!;
    expect(line).toMatchObject({ name: 'service-b', msg: 'lookup', key: 'logged', level: 30 });
    expect(line['trace_id']).toBe(traceId(serverB));
    expect(line['span_id']).toBe(spanId(serverB));
  });

  it('gives a client-streaming call one span per side, covering every message, with B calls as children', async () => {
    const reply = await client.clientStream('collect', [{ key: 'x' }, { key: 'y' }, { key: 'z' }]);
    expect(reply).toEqual({ values: ['X', 'Y', 'Z'] });
    const spans = await finishedSpans();
    expect(spans).toHaveLength(2 + 3 * 2);
    const outer = only(spans, 'test.v1.A/Collect', SpanKind.CLIENT);
    const serverA = only(spans, 'test.v1.A/Collect', SpanKind.SERVER);
    expect(parentId(serverA)).toBe(spanId(outer));
    const calls = all(spans, 'test.v1.B/Lookup', SpanKind.CLIENT);
    expect(calls).toHaveLength(3);
    for (const call of calls) expect(parentId(call)).toBe(spanId(serverA));
    for (const server of all(spans, 'test.v1.B/Lookup', SpanKind.SERVER)) {
      expect(calls.map(spanId)).toContain(parentId(server));
    }
    expect(new Set(spans.map(traceId)).size).toBe(1);
  });

  it('gives a server-streaming call one span per side that ends after the last message', async () => {
    const replies = await client.serverStream('expand', { key: 'k' });
    expect(replies.map((r) => (r as { value: string }).value)).toEqual(['K1', 'K2']);
    const spans = await finishedSpans();
    expect(spans).toHaveLength(2 + 2 * 2);
    const serverA = only(spans, 'test.v1.A/Expand', SpanKind.SERVER);
    const calls = all(spans, 'test.v1.B/Lookup', SpanKind.CLIENT);
    expect(calls).toHaveLength(2);
    for (const call of calls) {
      expect(parentId(call)).toBe(spanId(serverA));
      expect(ns(call.endTime)).toBeLessThanOrEqual(ns(serverA.endTime) + CLOCK_SLACK_NS);
    }
    expect(serverA.attributes['rpc.grpc.status_code']).toBe(grpc.status.OK);
  });

  it('gives a bidi call one span per side; lookups made per received message are its children', async () => {
    const replies = await client.bidi('chat', [{ key: 'p' }, { key: 'q' }]);
    expect(replies.map((r) => (r as { value: string }).value)).toEqual(['P', 'Q']);
    const spans = await finishedSpans();
    expect(spans).toHaveLength(2 + 2 * 2);
    const outer = only(spans, 'test.v1.A/Chat', SpanKind.CLIENT);
    const serverA = only(spans, 'test.v1.A/Chat', SpanKind.SERVER);
    expect(parentId(serverA)).toBe(spanId(outer));
    for (const call of all(spans, 'test.v1.B/Lookup', SpanKind.CLIENT)) expect(parentId(call)).toBe(spanId(serverA));
  });

  it('continues a trace started by the caller and keeps separate calls in separate traces', async () => {
    await telemetry.tracer.startActiveSpan('caller', async (caller) => {
      await client.unary('resolve', { key: 'one' });
      caller.end();
    });
    await client.unary('resolve', { key: 'two' });
    const spans = await finishedSpans();
    const callerSpan = only(spans, 'caller', SpanKind.INTERNAL);
    const outers = all(spans, 'test.v1.A/Resolve', SpanKind.CLIENT);
    expect(outers).toHaveLength(2);
    const [first, second] = outers as [ReadableSpan, ReadableSpan];
    expect(parentId(first)).toBe(spanId(callerSpan));
    expect(traceId(first)).toBe(traceId(callerSpan));
    expect(parentId(second)).toBeUndefined();
    expect(traceId(second)).not.toBe(traceId(first));
  });
});
