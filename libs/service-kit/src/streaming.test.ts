import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { invalidArgument } from './errors.js';
import { bidiStreaming, bidiStreamingCall, clientStreaming, serverStreaming, unary } from './handlers.js';
import type { EchoReply, EchoRequest } from './testing/echo.js';
import type { Running } from './testing/harness.js';
import { bearer, callUnary, grpcError, startEcho } from './testing/harness.js';

let running: Running | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});

const reply = (text: string, index = 0, payload = Buffer.alloc(0)): EchoReply => ({ text, index, payload, tenant: '' });

/** A promise plus its resolver, to await an event raised inside a handler. */
function signalled<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe('server streaming', () => {
  it('sends every message in order, then OK', async () => {
    running = await startEcho({
      Expand: serverStreaming<EchoRequest, EchoReply>({ scope: 'public' }, async function* (req) {
        for (let i = 0; i < req.count; i++) yield await Promise.resolve(reply(`${req.text}-${i}`, i));
      }),
    });
    const call = running.stub.Expand({ text: 'm', count: 5 });
    const texts: string[] = [];
    for await (const message of call as AsyncIterable<EchoReply>) texts.push(message.text);
    expect(texts).toEqual(['m-0', 'm-1', 'm-2', 'm-3', 'm-4']);
  });

  it('respects backpressure: the producer never runs far ahead of a slow reader', async () => {
    let produced = 0;
    let finished = false;
    running = await startEcho({
      Expand: serverStreaming<EchoRequest, EchoReply>({ scope: 'public' }, async function* (req) {
        try {
          for (let i = 0; i < req.count; i++) {
            produced = i + 1;
            yield await Promise.resolve(reply('', i, Buffer.alloc(req.size, i % 251)));
          }
        } finally {
          finished = true;
        }
      }),
      Echo: unary<EchoRequest, EchoReply>({ scope: 'public' }, (req) => Promise.resolve(reply(req.text))),
    });
    const count = 160;
    const size = 64 * 1024; // 10 MiB in all: far more than the buffers on the way
    const call = running.stub.Expand({ count, size });
    let received = 0;
    let maxAhead = 0;
    let finishedEarly = false;
    for await (const message of call as AsyncIterable<EchoReply>) {
      expect(message.index).toBe(received);
      expect(message.payload.length).toBe(size);
      received++;
      maxAhead = Math.max(maxAhead, produced - received);
      if (received === 1) finishedEarly = finished;
      // A slow reader: one round trip to the server per message.
      await callUnary(running.client, 'Echo', { text: 'tick' });
    }
    expect(received).toBe(count);
    expect(finishedEarly).toBe(false);
    // Without waiting for 'drain', the whole stream is produced before the first message arrives.
    expect(maxAhead).toBeLessThan(count / 2);
    console.log(
      `backpressure: producer at most ${maxAhead} messages (${(maxAhead * size) / 2 ** 20} MiB) ahead of the reader`,
    );
  });

  it('aborts ctx.signal when the client cancels, and ends the generator', async () => {
    const aborted = signalled<unknown>();
    const cleanedUp = signalled();
    running = await startEcho({
      Expand: serverStreaming<EchoRequest, EchoReply>({ scope: 'public' }, async function* (req, ctx) {
        ctx.signal.addEventListener('abort', () => aborted.resolve(ctx.signal.reason));
        try {
          for (let i = 0; ; i++) {
            yield reply(req.text, i);
            // Wait for the client to ask for more (the test cancels instead).
            await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
          }
        } finally {
          cleanedUp.resolve();
        }
      }),
    });
    const call = running.stub.Expand({ text: 'x' });
    await new Promise<void>((resolve) => call.once('data', () => resolve()));
    const errored = new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
    call.cancel();
    const reason = await aborted.promise;
    expect(reason).toMatchObject({ code: 'CANCELLED' });
    await cleanedUp.promise;
    expect((await errored).code).toBe(grpc.status.CANCELLED);
  });
});

describe('client streaming', () => {
  it('reads every request as an async iterable', async () => {
    running = await startEcho({
      Collect: clientStreaming<EchoRequest, EchoReply>({ scope: 'public' }, async (requests) => {
        const texts: string[] = [];
        for await (const r of requests) texts.push(r.text);
        return reply(texts.join('+'), texts.length);
      }),
    });
    const { stub } = running;
    const result = await new Promise<EchoReply | undefined>((resolve, reject) => {
      const stream = stub.Collect(new grpc.Metadata(), {}, (e, r) => (e ? reject(e) : resolve(r)));
      for (const text of ['a', 'b', 'c']) stream.write({ text });
      stream.end();
    });
    expect(result).toMatchObject({ text: 'a+b+c', index: 3 });
  });

  it('aborts ctx.signal when the client cancels mid-stream', async () => {
    const aborted = signalled<unknown>();
    const firstRead = signalled();
    running = await startEcho({
      Collect: clientStreaming<EchoRequest, EchoReply>({ scope: 'public' }, async (requests, ctx) => {
        ctx.signal.addEventListener('abort', () => aborted.resolve(ctx.signal.reason));
        for await (const r of requests) {
          if (r.text === 'first') firstRead.resolve();
        }
        return reply('done');
      }),
    });
    const { stub } = running;
    const done = new Promise<grpc.ServiceError | null>((resolve) => {
      const stream = stub.Collect(new grpc.Metadata(), {}, (e) => resolve(e));
      stream.write({ text: 'first' });
      void firstRead.promise.then(() => stream.cancel());
    });
    expect(await aborted.promise).toMatchObject({ code: 'CANCELLED' });
    expect((await done)?.code).toBe(grpc.status.CANCELLED);
  });
});

describe('bidi streaming', () => {
  it('answers each request as it arrives (not after the whole stream)', async () => {
    running = await startEcho({
      Chat: bidiStreaming<EchoRequest, EchoReply>({ scope: 'public' }, async function* (requests) {
        let i = 0;
        for await (const r of requests) yield reply(r.text.toUpperCase(), i++);
      }),
    });
    const call = running.stub.Chat();
    const replies = call[Symbol.asyncIterator]() as AsyncIterator<EchoReply>;
    const seen: string[] = [];
    for (const text of ['one', 'two', 'three']) {
      call.write({ text });
      // The reply comes back while the request stream is still open.
      const next = await replies.next();
      seen.push((next.value as EchoReply).text);
    }
    call.end();
    expect((await replies.next()).done).toBe(true);
    expect(seen).toEqual(['ONE', 'TWO', 'THREE']);
  });
});

describe('bidi streaming on the call itself (bidiStreamingCall)', () => {
  /** The replies of a Chat until its status: texts, then the status code. */
  function collect(
    call: grpc.ClientDuplexStream<Partial<EchoRequest>, EchoReply>,
  ): Promise<{ texts: string[]; code: grpc.status; details: string }> {
    const texts: string[] = [];
    return new Promise((resolve) => {
      call.on('data', (m: EchoReply) => texts.push(m.text));
      call.on('error', () => undefined);
      call.on('status', (s: grpc.StatusObject) => resolve({ texts, code: s.code, details: s.details }));
    });
  }

  const chat = bidiStreamingCall<EchoRequest, EchoReply>(
    { scope: 'infer' },
    (call, ctx) =>
      new Promise<void>((resolve, reject) => {
        const tenant = ctx.principal?.tenant ?? 'none';
        call.on('data', (r: EchoRequest) => {
          if (r.text === 'bad') reject(invalidArgument('bad request'));
          else call.write(reply(`${tenant}:${r.text}`));
        });
        call.on('end', () => {
          call.end();
          resolve();
        });
      }),
  );

  it('checks the token once, gives the handler the call and the principal, and ends with OK', async () => {
    running = await startEcho({ Chat: chat });
    const call = running.stub.Chat(bearer('acme/alice/infer'));
    const done = collect(call);
    call.write({ text: 'a' });
    call.write({ text: 'b' });
    call.end();
    expect(await done).toMatchObject({ texts: ['acme:a', 'acme:b'], code: grpc.status.OK });
  });

  it('refuses a token without the scope before the handler runs, and maps a rejection to the status', async () => {
    running = await startEcho({ Chat: chat });
    const denied = running.stub.Chat(bearer('acme/alice/models:read'));
    const deniedDone = collect(denied);
    denied.write({ text: 'a' });
    denied.end();
    expect(await deniedDone).toMatchObject({ texts: [], code: grpc.status.PERMISSION_DENIED });

    const failing = running.stub.Chat(bearer('acme/alice/infer'));
    const failingDone = collect(failing);
    failing.write({ text: 'bad' });
    expect(await failingDone).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: 'bad request' });
    failing.end();
  });
});

describe('unary cancellation and deadlines', () => {
  it('aborts ctx.signal when the client cancels', async () => {
    const started = signalled();
    const aborted = signalled<unknown>();
    running = await startEcho({
      Echo: unary<EchoRequest, EchoReply>({ scope: 'public' }, (_req, ctx) => {
        ctx.signal.addEventListener('abort', () => aborted.resolve(ctx.signal.reason));
        started.resolve();
        return new Promise<EchoReply>(() => {}); // never answers: only the abort ends it
      }),
    });
    const error = grpcError(
      callUnary(running.client, 'Echo', { text: 'x' }, new grpc.Metadata(), {}, (call) => {
        void started.promise.then(() => call.cancel());
      }),
    );
    expect(await aborted.promise).toMatchObject({ code: 'CANCELLED' });
    expect((await error).code).toBe(grpc.status.CANCELLED);
  });

  it('gives the handler the deadline and aborts ctx.signal when it passes', async () => {
    const aborted = signalled<unknown>();
    let seenDeadline: Date | undefined;
    running = await startEcho({
      Echo: unary<EchoRequest, EchoReply>({ scope: 'public' }, (_req, ctx) => {
        seenDeadline = ctx.deadline;
        ctx.signal.addEventListener('abort', () => aborted.resolve(ctx.signal.reason));
        return new Promise<EchoReply>(() => {});
      }),
    });
    const deadline = new Date(Date.now() + 300);
    const error = await grpcError(callUnary(running.client, 'Echo', { text: 'x' }, new grpc.Metadata(), { deadline }));
    expect(error.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(await aborted.promise).toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    // The deadline travels as a relative timeout, so the server's copy is off by the transit time.
    expect(Math.abs((seenDeadline?.getTime() ?? 0) - deadline.getTime())).toBeLessThan(1500);
  });
});
