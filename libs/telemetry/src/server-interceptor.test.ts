import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createClientInterceptor } from './client-interceptor.js';
import { createServerInterceptor } from './server-interceptor.js';
import type { Telemetry } from './telemetry.js';
import { method } from './testing/services.js';
import { recordSpans, type RecordedTelemetry } from './testing/spans.js';

interface Empty {
  readonly note?: string;
}
interface Seen {
  readonly spanId: string | undefined;
}

const edge = {
  whoAmI: method<Empty, Seen>('/test.v1.Edge/WhoAmI', false, false),
  throws: method<Empty, Seen>('/test.v1.Edge/Throws', false, false),
  hang: method<Empty, Seen>('/test.v1.Edge/Hang', false, false),
} satisfies grpc.ServiceDefinition;
const EdgeClient = grpc.makeGenericClientConstructor(edge, 'Edge');
type Unary = (
  req: Empty,
  md: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (e: grpc.ServiceError | null, r?: Seen) => void,
) => grpc.ClientUnaryCall;

let recorded: RecordedTelemetry;
let telemetry: Telemetry;
let hangStarted: () => void = () => undefined;
let cancelled: () => void = () => undefined;

const implementation: grpc.UntypedServiceImplementation = {
  whoAmI: (_call: grpc.ServerUnaryCall<Empty, Seen>, callback: grpc.sendUnaryData<Seen>) => {
    callback(null, { spanId: trace.getActiveSpan()?.spanContext().spanId });
  },
  throws: () => {
    throw new Error('boom');
  },
  hang: (call: grpc.ServerUnaryCall<Empty, Seen>) => {
    call.on('cancelled', () => cancelled());
    hangStarted();
  },
};

// Stands in for an auth interceptor placed after telemetry: rejects calls without a token, and checks
// good ones asynchronously before letting them through.
const authLike: grpc.ServerInterceptor = (_descriptor, call) =>
  new grpc.ServerInterceptingCall(call, {
    start: (next) =>
      next({
        onReceiveMetadata: (metadata, nextMetadata) => {
          if (metadata.get('authorization').length === 0) {
            call.sendStatus({ code: grpc.status.UNAUTHENTICATED, details: 'missing bearer token' });
            return;
          }
          void Promise.resolve().then(() => nextMetadata(metadata));
        },
      }),
  });

async function serve(
  interceptors: grpc.ServerInterceptor[],
): Promise<{ server: grpc.Server; client: grpc.Client; port: number }> {
  const server = new grpc.Server({ interceptors });
  server.addService(edge, implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  const client = new EdgeClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
    interceptors: [createClientInterceptor()],
  });
  return { server, client, port };
}

function call(
  client: grpc.Client,
  name: keyof typeof edge,
  options: { token?: boolean; deadlineMs?: number; traceparent?: string } = {},
) {
  const metadata = new grpc.Metadata();
  if (options.traceparent !== undefined) metadata.set('traceparent', options.traceparent);
  if (options.token !== false) metadata.set('authorization', 'Bearer t');
  const callOptions: grpc.CallOptions = options.deadlineMs ? { deadline: Date.now() + options.deadlineMs } : {};
  let handle: grpc.ClientUnaryCall | undefined;
  const result = new Promise<{ error: grpc.ServiceError | null; reply: Seen | undefined }>((resolve) => {
    handle = (client as unknown as Record<string, Unary>)[name]!.call(
      client,
      {},
      metadata,
      callOptions,
      (error, reply) => resolve({ error, reply }),
    );
  });
  return { result, cancel: () => handle!.cancel() };
}

async function serverSpan(name: string): Promise<ReadableSpan> {
  const found = (await recorded.finishedSpans()).filter((s) => s.kind === SpanKind.SERVER && s.name === name);
  expect(found).toHaveLength(1);
  return found[0]!;
}

let plain: { server: grpc.Server; client: grpc.Client; port: number };
let untraced: grpc.Client;
let guarded: { server: grpc.Server; client: grpc.Client; port: number };

beforeAll(async () => {
  recorded = recordSpans({ serviceName: 'edge' });
  telemetry = recorded.telemetry;
  plain = await serve([createServerInterceptor()]);
  guarded = await serve([createServerInterceptor(), authLike]);
  // No client interceptor: the test writes the traceparent header itself.
  untraced = new EdgeClient(`127.0.0.1:${plain.port}`, grpc.credentials.createInsecure());
});

afterAll(async () => {
  untraced.close();
  for (const { server, client } of [plain, guarded]) {
    client.close();
    server.forceShutdown();
  }
  await telemetry.shutdown();
});

beforeEach(() => recorded.exporter.reset());

describe('server interceptor', () => {
  it('records a handler that throws as UNKNOWN with status ERROR', async () => {
    const { error } = await call(plain.client, 'throws').result;
    expect(error?.code).toBe(grpc.status.UNKNOWN);
    const span = await serverSpan('test.v1.Edge/Throws');
    expect(span.attributes['rpc.grpc.status_code']).toBe(grpc.status.UNKNOWN);
    expect(span.status.code).toBe(SpanStatusCode.ERROR);
  });

  it('records a call the client cancels as CANCELLED', async () => {
    const handlerSawCancel = new Promise<void>((resolve) => (cancelled = resolve));
    const handlerStarted = new Promise<void>((resolve) => (hangStarted = resolve));
    const pending = call(plain.client, 'hang');
    await handlerStarted;
    pending.cancel();
    expect((await pending.result).error?.code).toBe(grpc.status.CANCELLED);
    await handlerSawCancel;
    const span = await serverSpan('test.v1.Edge/Hang');
    expect(span.attributes['rpc.grpc.status_code']).toBe(grpc.status.CANCELLED);
    expect(span.status.code).toBe(SpanStatusCode.ERROR);
  });

  it('records a call that runs past its deadline as DEADLINE_EXCEEDED', async () => {
    const handlerSawCancel = new Promise<void>((resolve) => (cancelled = resolve));
    const { error } = await call(plain.client, 'hang', { deadlineMs: 100 }).result;
    expect(error?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await handlerSawCancel;
    const span = await serverSpan('test.v1.Edge/Hang');
    expect(span.attributes['rpc.grpc.status_code']).toBe(grpc.status.DEADLINE_EXCEEDED);
  });

  it('sees the status an interceptor after it sends (auth rejection), and the handler never runs', async () => {
    const { error } = await call(guarded.client, 'whoAmI', { token: false }).result;
    expect(error?.code).toBe(grpc.status.UNAUTHENTICATED);
    const span = await serverSpan('test.v1.Edge/WhoAmI');
    expect(span.attributes['rpc.grpc.status_code']).toBe(grpc.status.UNAUTHENTICATED);
    expect(span.status.message).toBe('UNAUTHENTICATED: missing bearer token');
  });

  it('runs the handler in the server span even when a later interceptor defers it asynchronously', async () => {
    const { error, reply } = await call(guarded.client, 'whoAmI').result;
    expect(error).toBeNull();
    const span = await serverSpan('test.v1.Edge/WhoAmI');
    expect(reply?.spanId).toBe(span.spanContext().spanId);
    expect(span.attributes['rpc.grpc.status_code']).toBe(grpc.status.OK);
  });

  it('continues a trace from a traceparent header written by hand (W3C example values)', async () => {
    const { reply } = await call(untraced, 'whoAmI', {
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    }).result;
    const span = await serverSpan('test.v1.Edge/WhoAmI');
    expect(span.spanContext().traceId).toBe('0af7651916cd43dd8448eb211c80319c');
    expect(span.parentSpanContext?.spanId).toBe('b7ad6b7169203331');
    expect(span.parentSpanContext?.isRemote).toBe(true);
    expect(reply?.spanId).toBe(span.spanContext().spanId);
  });

  it('starts a new trace when the traceparent header is malformed', async () => {
    const { error } = await call(untraced, 'whoAmI', { traceparent: '00-not-a-trace-01' }).result;
    expect(error).toBeNull();
    const span = await serverSpan('test.v1.Edge/WhoAmI');
    expect(span.parentSpanContext).toBeUndefined();
    expect(span.spanContext().traceId).toMatch(/^[0-9a-f]{32}$/);
  });
});
