import { once } from 'node:events';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { setHttpRoute, traceHttpRequests } from './http-server.js';
import { createLogger } from './logger.js';
import type { Telemetry } from './telemetry.js';
import { connectB, startB, type Started, type TestClient } from './testing/services.js';
import { recordSpans, type RecordedTelemetry } from './testing/spans.js';

const quiet = new Writable({ write: (_chunk, _encoding, done) => done() });

let recorded: RecordedTelemetry;
let telemetry: Telemetry;
let b: Started;
let clientB: TestClient;
let server: Server;
let port = 0;

beforeAll(async () => {
  recorded = recordSpans({ serviceName: 'http-trace-test' });
  telemetry = recorded.telemetry;
  b = await startB(createLogger('service-b', { destination: quiet }));
  clientB = connectB(b.port);
  // GET /lookup/{key}: calls B.Lookup after an await (the context must survive it); /fail is a 500.
  server = createServer(
    traceHttpRequests((req, res) => {
      void (async () => {
        await Promise.resolve();
        if (req.url === '/fail') {
          setHttpRoute('GET', '/fail');
          res.writeHead(500).end();
          return;
        }
        setHttpRoute('GET', '/lookup/{key}');
        const reply = await clientB.unary('lookup', { key: req.url?.split('/')[2] ?? '' });
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(reply));
      })();
    }),
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  clientB.close();
  server.close();
  await b.stop();
  await telemetry.shutdown();
});

beforeEach(() => recorded.exporter.reset());

function get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function finishedSpans(): Promise<ReadableSpan[]> {
  return recorded.finishedSpans();
}

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '00f067aa0ba902b7';

describe('traceHttpRequests', () => {
  it("continues the caller's traceparent, and the gRPC calls it makes carry the trace", async () => {
    const { status } = await get('/lookup/abc', { traceparent: `00-${TRACE_ID}-${PARENT_ID}-01` });
    expect(status).toBe(200);
    const spans = await finishedSpans();
    const http = spans.find((s) => s.kind === SpanKind.SERVER && s.name === 'GET /lookup/{key}');
    expect(http).toBeDefined();
    expect(http!.spanContext().traceId).toBe(TRACE_ID);
    expect(http!.parentSpanContext?.spanId).toBe(PARENT_ID);
    expect(http!.attributes).toMatchObject({
      'http.request.method': 'GET',
      'http.route': '/lookup/{key}',
      'url.path': '/lookup/abc',
      'http.response.status_code': 200,
    });
    const client = spans.find((s) => s.kind === SpanKind.CLIENT && s.name === 'test.v1.B/Lookup');
    const grpcServer = spans.find((s) => s.kind === SpanKind.SERVER && s.name === 'test.v1.B/Lookup');
    expect(client?.parentSpanContext?.spanId).toBe(http!.spanContext().spanId);
    expect(grpcServer?.parentSpanContext?.spanId).toBe(client?.spanContext().spanId);
    expect(new Set(spans.map((s) => s.spanContext().traceId))).toEqual(new Set([TRACE_ID]));
  });

  it('starts a new trace without a traceparent, one per request', async () => {
    await get('/lookup/x');
    await get('/lookup/y');
    const roots = (await finishedSpans()).filter((s) => s.kind === SpanKind.SERVER && s.name === 'GET /lookup/{key}');
    expect(roots).toHaveLength(2);
    expect(roots.every((s) => s.parentSpanContext === undefined)).toBe(true);
    expect(roots[0]!.spanContext().traceId).not.toBe(roots[1]!.spanContext().traceId);
  });

  it('marks a 5xx answer as an error', async () => {
    expect((await get('/fail')).status).toBe(500);
    const span = (await finishedSpans()).find((s) => s.name === 'GET /fail');
    expect(span?.status.code).toBe(SpanStatusCode.ERROR);
    expect(span?.attributes['http.response.status_code']).toBe(500);
  });
});
