import { once } from 'node:events';
import type { Readable } from 'node:stream';
import type * as grpc from '@grpc/grpc-js';
import type { HandlerScope, Principal } from './auth.js';
import { requireScope } from './auth.js';
import type { CallContext, HandlerRuntime, OpenCall, ServerCall } from './call-context.js';
import { createCallRegistry, openCall } from './call-context.js';
import { ServiceError, unauthenticated } from './errors.js';
import { defaultLogger } from './logger.js';
import type { ErrorStatus } from './status.js';
import { toErrorStatus } from './status.js';

export interface HandlerOptions {
  /** The scope the caller's token must grant (`admin` grants all), or `public` for no authentication. */
  readonly scope: HandlerScope;
}

const bindKey = Symbol.for('quanta.service-kit.handler');

export type HandlerKind = 'unary' | 'serverStream' | 'clientStream' | 'bidi';

interface HandlerBinding {
  readonly kind: HandlerKind;
  readonly scope: HandlerScope;
  bind(runtime: HandlerRuntime): grpc.UntypedHandleCall;
}

type Bindable = { [bindKey]?: HandlerBinding };

/** The runtime of a handler used outside `createService`: no authenticator, so only `public` calls pass. */
const bareRuntime: HandlerRuntime = {
  authenticator: undefined,
  logger: defaultLogger,
  calls: createCallRegistry(),
  shutdown: new AbortController().signal,
};

function defineHandler<H extends grpc.UntypedHandleCall>(
  kind: HandlerKind,
  scope: HandlerScope,
  make: (runtime: HandlerRuntime) => H,
): H {
  const handler = make(bareRuntime) as H & Bindable;
  handler[bindKey] = { kind, scope, bind: make };
  return handler;
}

/** The scope a handler made by these adapters declares; undefined for any other function. */
export function handlerScope(handler: unknown): HandlerScope | undefined {
  return typeof handler === 'function' ? (handler as Bindable)[bindKey]?.scope : undefined;
}

/** Which adapter made a handler; undefined for any other function. */
export function handlerKind(handler: unknown): HandlerKind | undefined {
  return typeof handler === 'function' ? (handler as Bindable)[bindKey]?.kind : undefined;
}

/** The handler bound to a service's runtime (authenticator, logger, in-flight calls); undefined if not ours. */
export function bindHandler(handler: unknown, runtime: HandlerRuntime): grpc.UntypedHandleCall | undefined {
  return typeof handler === 'function' ? (handler as Bindable)[bindKey]?.bind(runtime) : undefined;
}

/** Checks the caller's token and scope and sets `ctx.principal`. */
async function authorize(ctx: OpenCall['ctx'], runtime: HandlerRuntime, scope: Exclude<HandlerScope, 'public'>): Promise<void> {
  const principal = await authenticate(ctx, runtime, scope);
  requireScope(principal, scope, ctx.method);
  ctx.principal = principal;
}

function authenticate(ctx: OpenCall['ctx'], runtime: HandlerRuntime, scope: HandlerScope): Promise<Principal> {
  if (runtime.authenticator === undefined) {
    throw unauthenticated(`${ctx.method} needs scope "${scope}" but this server has no authenticator configured`);
  }
  return runtime.authenticator(ctx.metadata);
}

/** The status to send for what a call threw, or undefined when the call had already ended under it. */
function failure(open: OpenCall, error: unknown): ErrorStatus | undefined {
  const { ctx } = open;
  // Once the call is cancelled, past its deadline or forced down, grpc-js has already ended it.
  if (open.isAborted()) {
    ctx.logger.debug({ err: error }, 'handler stopped after its call ended');
    return undefined;
  }
  // A ServiceError is sent as it is: no need to make the call's child logger for it.
  return toErrorStatus(error, error instanceof ServiceError ? defaultLogger : ctx.logger, ctx.method);
}

/**
 * Runs one unary call: context, authentication, the body, and the mapping of whatever it throws. Unary
 * calls are most of the traffic, so this path makes no closure and no promise beyond the handler's own
 * (and the authenticator's, for a scope other than `public`).
 */
async function runUnary<Req, Res>(
  call: grpc.ServerUnaryCall<Req, Res>,
  callback: grpc.sendUnaryData<Res>,
  runtime: HandlerRuntime,
  scope: HandlerScope,
  fn: (request: Req, ctx: CallContext) => Promise<Res>,
): Promise<void> {
  const open = openCall(call, runtime);
  const { ctx } = open;
  try {
    if (scope !== 'public') {
      const principal = await authenticate(ctx, runtime, scope);
      requireScope(principal, scope, ctx.method);
      ctx.principal = principal;
    }
    callback(null, await fn(call.request, ctx));
  } catch (error: unknown) {
    const status = failure(open, error);
    if (status !== undefined) callback(status);
  } finally {
    open.close();
  }
}

/** Runs one streaming call: context, authentication, the body, and the mapping of whatever it throws. */
async function runCall(
  call: ServerCall,
  runtime: HandlerRuntime,
  scope: HandlerScope,
  body: (ctx: CallContext) => Promise<void>,
  fail: (status: ErrorStatus) => void,
): Promise<void> {
  const open = openCall(call, runtime);
  try {
    if (scope !== 'public') await authorize(open.ctx, runtime, scope);
    await body(open.ctx);
  } catch (error: unknown) {
    const status = failure(open, error);
    if (status !== undefined) fail(status);
  } finally {
    open.close();
  }
}

/** Writes every message of `source`, waiting for 'drain' whenever the stream asks us to. */
async function writeAll<Res>(
  stream: NodeJS.EventEmitter & { write(message: Res): boolean },
  source: AsyncIterable<Res>,
  signal: AbortSignal,
): Promise<void> {
  for await (const message of source) {
    if (signal.aborted) return; // leaving the loop runs the source's finally blocks
    if (!stream.write(message)) {
      await once(stream, 'drain', { signal });
    }
  }
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * The requests of a client or bidi stream; reading pulls from the network (grpc-js reads on demand).
 * grpc-js reports a client's cancel first as the end of its request stream and only then as
 * 'cancelled' (grpc/grpc-node#2583): before telling the handler the stream is complete (or broke),
 * let that news arrive, so a cancelled upload never passes for a whole one.
 */
async function* readAll<Req>(stream: Readable, signal: AbortSignal): AsyncGenerator<Req, void, undefined> {
  try {
    // Plain for-await would destroy the stream at its end: the whole duplex, responses included.
    for await (const message of stream.iterator({ destroyOnReturn: false })) yield message as Req;
  } catch (error: unknown) {
    await nextTurn();
    throw signal.aborted ? signal.reason : error;
  }
  await nextTurn();
  if (signal.aborted) throw signal.reason;
}

function sendStreamError(stream: NodeJS.EventEmitter, status: ErrorStatus): void {
  // grpc-js turns an 'error' event on a server stream into the trailing status and ends the call.
  stream.emit('error', status);
}

export function unary<Req, Res>(
  options: HandlerOptions,
  fn: (request: Req, ctx: CallContext) => Promise<Res>,
): grpc.handleUnaryCall<Req, Res> {
  const { scope } = options;
  return defineHandler('unary', scope, (runtime) => (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>) => {
    void runUnary(call, callback, runtime, scope, fn);
  });
}

export function serverStreaming<Req, Res>(
  options: HandlerOptions,
  fn: (request: Req, ctx: CallContext) => AsyncIterable<Res>,
): grpc.handleServerStreamingCall<Req, Res> {
  return defineHandler('serverStream', options.scope, (runtime) => (call: grpc.ServerWritableStream<Req, Res>) => {
    void runCall(
      call,
      runtime,
      options.scope,
      async (ctx) => {
        await writeAll(call, fn(call.request, ctx), ctx.signal);
        if (!ctx.signal.aborted) call.end();
      },
      (status) => sendStreamError(call, status),
    );
  });
}

export function clientStreaming<Req, Res>(
  options: HandlerOptions,
  fn: (requests: AsyncIterable<Req>, ctx: CallContext) => Promise<Res>,
): grpc.handleClientStreamingCall<Req, Res> {
  return defineHandler('clientStream', options.scope, (runtime) => (call: grpc.ServerReadableStream<Req, Res>, callback: grpc.sendUnaryData<Res>) => {
    void runCall(
      call,
      runtime,
      options.scope,
      async (ctx) => callback(null, await fn(readAll(call, ctx.signal), ctx)),
      (status) => callback(status),
    );
  });
}

export function bidiStreaming<Req, Res>(
  options: HandlerOptions,
  fn: (requests: AsyncIterable<Req>, ctx: CallContext) => AsyncIterable<Res>,
): grpc.handleBidiStreamingCall<Req, Res> {
  return bidiStreamingCall<Req, Res>(options, async (call, ctx) => {
    await writeAll(call, fn(readAll(call, ctx.signal), ctx), ctx.signal);
    if (!ctx.signal.aborted) call.end();
  });
}

/**
 * A bidi handler that works on the grpc-js duplex call itself (its 'data' events and `write`), for a
 * hot stream whose per-message cost matters: the kit still opens the call's context, checks the token
 * and scope once, and maps what the returned promise rejects with into the call's status (nothing is
 * sent once the call has ended under it). The body reads and writes the call and ends it; the promise
 * settles when the body is done with the call.
 */
export function bidiStreamingCall<Req, Res>(
  options: HandlerOptions,
  fn: (call: grpc.ServerDuplexStream<Req, Res>, ctx: CallContext) => Promise<void>,
): grpc.handleBidiStreamingCall<Req, Res> {
  return defineHandler('bidi', options.scope, (runtime) => (call: grpc.ServerDuplexStream<Req, Res>) => {
    void runCall(
      call,
      runtime,
      options.scope,
      (ctx) => fn(call, ctx),
      (status) => sendStreamError(call, status),
    );
  });
}
