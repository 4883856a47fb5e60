import { PassThrough } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { health } from '@quanta/contracts';
import { afterEach, describe, expect, expectTypeOf, it } from 'vitest';
import type { Principal } from './auth.js';
import { notFound, resourceExhausted } from './errors.js';
import { bidiStreaming, clientStreaming, handlerKind, handlerScope, serverStreaming, unary } from './handlers.js';
import { createService } from './service.js';
import type { EchoReply, EchoRequest } from './testing/echo.js';
import { echoService } from './testing/echo.js';
import type { Running } from './testing/harness.js';
import { bearer, callUnary, grpcError, startEcho } from './testing/harness.js';

let running: Running | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});

const reply = (text: string, tenant = ''): EchoReply => ({ text, index: 0, payload: Buffer.alloc(0), tenant });

describe('error mapping', () => {
  it('sends the code and message of a DomainError', async () => {
    running = await startEcho({
      Echo: unary<EchoRequest, EchoReply>({ scope: 'public' }, (req) =>
        Promise.reject(notFound(`model "${req.text}" has no version 7`)),
      ),
    });
    const error = await grpcError(callUnary(running.client, 'Echo', { text: 'resnet' }));
    expect(error.code).toBe(grpc.status.NOT_FOUND);
    expect(error.details).toBe('model "resnet" has no version 7');
  });

  it('turns any other error into INTERNAL with a reference, logs the stack, never sends it', async () => {
    const lines: string[] = [];
    const destination = new PassThrough();
    destination.on('data', (chunk: Buffer) => lines.push(...chunk.toString('utf8').split('\n').filter(Boolean)));
    const logger = pino({ level: 'info' }, destination);
    running = await startEcho(
      {
        Echo: unary<EchoRequest, EchoReply>({ scope: 'public' }, () => {
          throw new Error('secret database password in message');
        }),
      },
      { logger },
    );
    const error = await grpcError(callUnary(running.client, 'Echo', { text: 'x' }));
    expect(error.code).toBe(grpc.status.INTERNAL);
    const match = /^internal error \((?:trace|error) id ([0-9a-f]+)\)$/.exec(error.details);
    expect(match, error.details).not.toBeNull();
    expect(error.details).not.toContain('secret');
    expect(error.details).not.toContain('handlers.test.ts');

    const logged = lines.map((line) => JSON.parse(line) as Record<string, unknown>).find((l) => l['level'] === 50);
    expect(logged).toBeDefined();
    expect(String(logged?.['reference'])).toContain(match?.[1]);
    expect(String((logged?.['err'] as { stack?: string } | undefined)?.stack)).toContain('handlers.test.ts');
  });

  it('maps errors of streaming handlers too, after messages already sent', async () => {
    running = await startEcho({
      Expand: serverStreaming<EchoRequest, EchoReply>({ scope: 'public' }, async function* (req) {
        yield reply('first');
        await Promise.resolve(); // a lookup that fails
        throw notFound(`"${req.text}" is gone`);
      }),
    });
    const call = running.stub.Expand({ text: 'x' });
    const received: string[] = [];
    call.on('data', (m: EchoReply) => received.push(m.text));
    const error = await new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
    expect(received).toEqual(['first']);
    expect(error.code).toBe(grpc.status.NOT_FOUND);
    expect(error.details).toBe('"x" is gone');
  });
});

it('sends the details of a DomainError as trailers', async () => {
  running = await startEcho({
    Echo: unary<EchoRequest, EchoReply>({ scope: 'public' }, () =>
      Promise.reject(resourceExhausted('queue full', { details: { 'retry-after-ms': '250' } })),
    ),
  });
  const error = await grpcError(callUnary(running.client, 'Echo', { text: 'x' }));
  expect(error.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  expect(error.metadata.get('retry-after-ms')).toEqual(['250']);
});

describe('auth', () => {
  const implementation = {
    Echo: unary<EchoRequest, EchoReply>({ scope: 'keys:use' }, (req, ctx) =>
      Promise.resolve(reply(`${ctx.principal?.subject ?? '?'}:${req.text}`, ctx.principal?.tenant)),
    ),
    Collect: clientStreaming<EchoRequest, EchoReply>({ scope: 'public' }, async (requests, ctx) => {
      let text = '';
      for await (const r of requests) text += r.text;
      return reply(`${ctx.principal === undefined ? 'anonymous' : 'known'}:${text}`);
    }),
  };

  it('refuses a call without a token with UNAUTHENTICATED from the authenticator', async () => {
    running = await startEcho(implementation);
    const error = await grpcError(callUnary(running.client, 'Echo', { text: 'x' }));
    expect(error.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(error.details).toBe('missing bearer token');
  });

  it('refuses a token without the scope with PERMISSION_DENIED naming the scope', async () => {
    running = await startEcho(implementation);
    const error = await grpcError(
      callUnary(running.client, 'Echo', { text: 'x' }, bearer('acme/alice/models:read,infer')),
    );
    expect(error.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(error.details).toContain('"keys:use"');
    expect(error.details).toContain('/quanta.kittest.v1.EchoService/Echo');
  });

  it('lets the right scope and admin through, with ctx.principal set', async () => {
    running = await startEcho(implementation);
    const ok = await callUnary<EchoReply>(running.client, 'Echo', { text: 'x' }, bearer('acme/alice/keys:use'));
    expect(ok).toMatchObject({ text: 'alice:x', tenant: 'acme' });
    const admin = await callUnary<EchoReply>(running.client, 'Echo', { text: 'y' }, bearer('globex/root/admin'));
    expect(admin).toMatchObject({ text: 'root:y', tenant: 'globex' });
  });

  it('checks streaming handlers before they run', async () => {
    let ran = false;
    running = await startEcho({
      Expand: serverStreaming<EchoRequest, EchoReply>({ scope: 'models:read' }, async function* () {
        ran = true;
        yield await Promise.resolve(reply('secret'));
      }),
    });
    const call = running.stub.Expand({ text: 'x' }, bearer('acme/bob/infer'));
    const error = await new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
    expect(error.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(ran).toBe(false);
  });

  it('runs public handlers without authentication', async () => {
    running = await startEcho(implementation);
    const { stub } = running;
    const result = await new Promise<EchoReply | undefined>((resolve, reject) => {
      const stream = stub.Collect(new grpc.Metadata(), {}, (e, r) => (e ? reject(e) : resolve(r)));
      stream.write({ text: 'a' });
      stream.write({ text: 'b' });
      stream.end();
    });
    expect(result?.text).toBe('anonymous:ab');
  });

  it('fails closed when a scoped handler runs on a server with no authenticator', async () => {
    running = await startEcho(implementation, { authenticator: undefined });
    const error = await grpcError(callUnary(running.client, 'Echo', { text: 'x' }, bearer('acme/alice/admin')));
    expect(error.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(error.details).toContain('no authenticator');
  });
});

describe('addService', () => {
  it('refuses a handler that declares no scope', () => {
    const service = createService({ name: 'echo', port: 0 });
    expect(() => service.addService(echoService, { Echo: () => undefined })).toThrow(
      /wrap the handler in unary\(\{ scope \}, fn\)/,
    );
  });

  it('refuses a handler made by the wrong adapter', () => {
    const service = createService({ name: 'echo', port: 0 });
    const wrong = bidiStreaming<EchoRequest, EchoReply>({ scope: 'public' }, async function* () {});
    expect(() => service.addService(echoService, { Echo: wrong })).toThrow(
      /EchoService\/Echo is unary but its handler was made with bidiStreaming/,
    );
  });
});

describe('typing', () => {
  it('infers request and response types from ts-proto server interfaces', () => {
    const implementation: health.HealthServer = {
      check: unary({ scope: 'public' }, (req) => {
        expectTypeOf(req).toEqualTypeOf<health.HealthCheckRequest>();
        return Promise.resolve({ status: health.HealthCheckResponse_ServingStatus.SERVING });
      }),
      watch: serverStreaming({ scope: 'monitoring:read' }, async function* (req, ctx) {
        expectTypeOf(req.service).toEqualTypeOf<string>();
        expectTypeOf(ctx.principal).toEqualTypeOf<Principal | undefined>();
        yield await Promise.resolve({ status: health.HealthCheckResponse_ServingStatus.NOT_SERVING });
      }),
    };
    expect(handlerScope(implementation.check)).toBe('public');
    expect(handlerScope(implementation.watch)).toBe('monitoring:read');
    expect(handlerKind(implementation.watch)).toBe('serverStream');
  });
});
