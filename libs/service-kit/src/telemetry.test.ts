import { PassThrough } from 'node:stream';
import { SpanKind } from '@opentelemetry/api';
import * as grpc from '@grpc/grpc-js';
import { createLogger } from '@quanta/telemetry';
import { recordSpans } from '@quanta/telemetry/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from './client.js';
import { unary } from './handlers.js';
import { EchoClient } from './testing/echo.js';
import type { EchoReply, EchoRequest } from './testing/echo.js';
import type { Running } from './testing/harness.js';
import { callUnary, grpcError, startEcho } from './testing/harness.js';

const { telemetry, exporter, finishedSpans } = recordSpans({ serviceName: 'echo' });
const logLines: Record<string, unknown>[] = [];

let running: Running;
beforeAll(async () => {
  const destination = new PassThrough();
  destination.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n').filter(Boolean))
      logLines.push(JSON.parse(line) as Record<string, unknown>);
  });
  running = await startEcho(
    {
      Echo: unary<EchoRequest, EchoReply>({ scope: 'public' }, (req, ctx) => {
        ctx.logger.info({ text: req.text }, 'echo handled');
        if (req.text === 'boom') throw new Error('kaput');
        return Promise.resolve({ text: req.text, index: 0, payload: Buffer.alloc(0), tenant: '' });
      }),
    },
    { telemetry, logger: createLogger('echo', { destination }) },
  );
});
afterAll(async () => {
  await running.close();
  await telemetry.shutdown();
});

describe('telemetry', () => {
  it('gives each call a server span, a child of the client span of createClient', async () => {
    exporter.reset();
    const client = createClient(EchoClient, `127.0.0.1:${running.port}`, { telemetry });
    try {
      await callUnary(client, 'Echo', { text: 'hi' });
    } finally {
      client.close();
    }
    const spans = (await finishedSpans()).filter((s) => s.name === 'quanta.kittest.v1.EchoService/Echo');
    const server = spans.find((s) => s.kind === SpanKind.SERVER);
    const clientSpan = spans.find((s) => s.kind === SpanKind.CLIENT);
    expect(server?.attributes).toMatchObject({
      'rpc.system': 'grpc',
      'rpc.service': 'quanta.kittest.v1.EchoService',
      'rpc.method': 'Echo',
      'rpc.grpc.status_code': 0,
    });
    expect(server?.spanContext().traceId).toBe(clientSpan?.spanContext().traceId);
    expect(server?.parentSpanContext?.spanId).toBe(clientSpan?.spanContext().spanId);
    // The handler ran inside the server span: its log line carries the span's ids.
    const line = logLines.find((l) => l['msg'] === 'echo handled' && l['text'] === 'hi');
    expect(line?.['trace_id']).toBe(server?.spanContext().traceId);
    expect(line?.['span_id']).toBe(server?.spanContext().spanId);
  });

  it('quotes the trace id of the server span in INTERNAL errors and logs it with the stack', async () => {
    exporter.reset();
    const error = await grpcError(callUnary(running.client, 'Echo', { text: 'boom' }));
    const server = (await finishedSpans()).find((s) => s.kind === SpanKind.SERVER);
    const traceId = server?.spanContext().traceId ?? 'missing';
    expect(error.code).toBe(grpc.status.INTERNAL);
    expect(error.details).toBe(`internal error (trace id ${traceId})`);
    expect(server?.attributes['rpc.grpc.status_code']).toBe(grpc.status.INTERNAL);
    const logged = logLines.find((l) => l['level'] === 50 && l['trace_id'] === traceId);
    expect(String((logged?.['err'] as { stack?: string } | undefined)?.stack)).toMatch(
      /kaput[\s\S]*telemetry\.test\.ts/,
    );
  });
});
