import { once } from 'node:events';
import type { Readable } from 'node:stream';
import type * as grpc from '@grpc/grpc-js';
import type { HandlerScope, Principal } from './auth.js';
import { requireScope } from './auth.js';
import type { CallContext, HandlerRuntime, OpenCall, ServerCall } from './call-context.js';
import { createCallRegistry, openCall } from './call-context.js';
import { DomainError, unauthenticated } from './errors.js';
import { defaultLogger } from './logger.js';
import type { ErrorStatus } from './status.js';
import { toErrorStatus } from './status.js';

export interface HandlerOptions {
  /**
   * The scope the caller's token must grant (`admin` grants all), or `public` for no authentication.
   * A service passes an access table to `addService` instead, so that its matrix is in one place;
   * a handler that names a scope too must name the table's.
   */
  readonly scope: HandlerScope;
}

const bindKey = Symbol.for('quanta.service-kit.handler');

export type HandlerKind = 'unary' | 'serverStream' | 'clientStream' | 'bidi';

interface HandlerBinding {
  readonly kind: HandlerKind;
  readonly scope: HandlerScope | undefined;
  bind(runtime: HandlerRuntime, scope: HandlerScope): grpc.UntypedHandleCall;
}

type Bindable = { [bindKey]?: HandlerBinding };

/**
 * The runtime of a handler used outside `createService`: no authenticator, so only `public` calls
 * pass (an undeclared scope is `admin`: closed).
 */
const bareRuntime: HandlerRuntime = {
  authenticator: undefined,
  logger: defaultLogger,
  calls: createCallRegistry(),
  shutdown: new AbortController().signal,
};

function defineHandler<H extends grpc.UntypedHandleCall>(
  kind: HandlerKind,
  scope: HandlerScope | undefined,
  make: (runtime: HandlerRuntime, scope: HandlerScope) => H,
): H {
  const handler = make(bareRuntime, scope ?? 'admin') as H & Bindable;
  handler[bindKey] = { kind, scope, bind: make };
  return handler;
}

/**
 * The scope a handler made by these adapters declares itself; undefined when it leaves it to an
 * access table, or is not ours.
 */
export function handlerScope(handler: unknown): HandlerScope | undefined {
  return typeof handler === 'function' ? (handler as Bindable)[bindKey]?.scope : undefined;
}

/** Which adapter made a handler; undefined for any other function. */
export function handlerKind(handler: unknown): HandlerKind | undefined {
  return typeof handler === 'function' ? (handler as Bindable)[bindKey]?.kind : undefined;
}

/**
 * The handler bound to a service's runtime (authenticator, logger, in-flight calls) with the scope
 * it enforces; undefined if not ours.
 */
export function bindHandler(
  handler: unknown,
  runtime: HandlerRuntime,
  scope: HandlerScope,
): grpc.UntypedHandleCall | undefined {
  return typeof handler === 'function' ? (handler as Bindable)[bindKey]?.bind(runtime, scope) : undefined;
}

/** Checks the caller's token and scope and sets `ctx.principal`. */
async function authorize(
  ctx: OpenCall['ctx'],
  runtime: HandlerRuntime,
  scope: Exclude<HandlerScope, 'public'>,
): Promise<void> {
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
  // A DomainError is sent as it is: no need to make the call's child logger for it.
  return toErrorStatus(error, error instanceof DomainError ? defaultLogger : ctx.logger, ctx.method);
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

/** `(options, fn)` or `(fn)`: the arguments of an adapter, the options being optional. */
function split<F>(a: HandlerOptions | F, b: F | undefined): [HandlerScope | undefined, F] {
  return b === undefined ? [undefined, a as F] : [(a as HandlerOptions).scope, b];
}

type UnaryFn<Req, Res> = (request: Req, ctx: CallContext) => Promise<Res>;

/** A unary handler; its scope comes from the service's access table (or from `options`, used bare). */
export function unary<Req, Res>(fn: UnaryFn<Req, Res>): grpc.handleUnaryCall<Req, Res>;
export function unary<Req, Res>(options: HandlerOptions, fn: UnaryFn<Req, Res>): grpc.handleUnaryCall<Req, Res>;
export function unary<Req, Res>(
  a: HandlerOptions | UnaryFn<Req, Res>,
  b?: UnaryFn<Req, Res>,
): grpc.handleUnaryCall<Req, Res> {
  const [declared, fn] = split(a, b);
  return defineHandler(
    'unary',
    declared,
    (runtime, scope) => (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>) => {
      void runUnary(call, callback, runtime, scope, fn);
    },
  );
}

type ServerStreamingFn<Req, Res> = (request: Req, ctx: CallContext) => AsyncIterable<Res>;

export function serverStreaming<Req, Res>(fn: ServerStreamingFn<Req, Res>): grpc.handleServerStreamingCall<Req, Res>;
export function serverStreaming<Req, Res>(
  options: HandlerOptions,
  fn: ServerStreamingFn<Req, Res>,
): grpc.handleServerStreamingCall<Req, Res>;
export function serverStreaming<Req, Res>(
  a: HandlerOptions | ServerStreamingFn<Req, Res>,
  b?: ServerStreamingFn<Req, Res>,
): grpc.handleServerStreamingCall<Req, Res> {
  const [declared, fn] = split(a, b);
  return defineHandler('serverStream', declared, (runtime, scope) => (call: grpc.ServerWritableStream<Req, Res>) => {
    void runCall(
      call,
      runtime,
      scope,
      async (ctx) => {
        await writeAll(call, fn(call.request, ctx), ctx.signal);
        if (!ctx.signal.aborted) call.end();
      },
      (status) => sendStreamError(call, status),
    );
  });
}

type ClientStreamingFn<Req, Res> = (requests: AsyncIterable<Req>, ctx: CallContext) => Promise<Res>;

export function clientStreaming<Req, Res>(fn: ClientStreamingFn<Req, Res>): grpc.handleClientStreamingCall<Req, Res>;
export function clientStreaming<Req, Res>(
  options: HandlerOptions,
  fn: ClientStreamingFn<Req, Res>,
): grpc.handleClientStreamingCall<Req, Res>;
export function clientStreaming<Req, Res>(
  a: HandlerOptions | ClientStreamingFn<Req, Res>,
  b?: ClientStreamingFn<Req, Res>,
): grpc.handleClientStreamingCall<Req, Res> {
  const [declared, fn] = split(a, b);
  return defineHandler(
    'clientStream',
    declared,
    (runtime, scope) => (call: grpc.ServerReadableStream<Req, Res>, callback: grpc.sendUnaryData<Res>) => {
      void runCall(
        call,
        runtime,
        scope,
        async (ctx) => callback(null, await fn(readAll(call, ctx.signal), ctx)),
        (status) => callback(status),
      );
    },
  );
}

type BidiStreamingFn<Req, Res> = (requests: AsyncIterable<Req>, ctx: CallContext) => AsyncIterable<Res>;

export function bidiStreaming<Req, Res>(fn: BidiStreamingFn<Req, Res>): grpc.handleBidiStreamingCall<Req, Res>;
export function bidiStreaming<Req, Res>(
  options: HandlerOptions,
  fn: BidiStreamingFn<Req, Res>,
): grpc.handleBidiStreamingCall<Req, Res>;
export function bidiStreaming<Req, Res>(
  a: HandlerOptions | BidiStreamingFn<Req, Res>,
  b?: BidiStreamingFn<Req, Res>,
): grpc.handleBidiStreamingCall<Req, Res> {
  const [declared, fn] = split(a, b);
  const body = async (call: grpc.ServerDuplexStream<Req, Res>, ctx: CallContext): Promise<void> => {
    await writeAll(call, fn(readAll(call, ctx.signal), ctx), ctx.signal);
    if (!ctx.signal.aborted) call.end();
  };
  return declared === undefined
    ? bidiStreamingCall<Req, Res>(body)
    : bidiStreamingCall<Req, Res>({ scope: declared }, body);
}

/**
 * A bidi handler that works on the grpc-js duplex call itself (its 'data' events and `write`), for a
 * hot stream whose per-message cost matters: the kit still opens the call's context, checks the token
 * and scope once, and maps what the returned promise rejects with into the call's status (nothing is
 * sent once the call has ended under it). The body reads and writes the call and ends it; the promise
 * settles when the body is done with the call.
 */
type BidiCallFn<Req, Res> = (call: grpc.ServerDuplexStream<Req, Res>, ctx: CallContext) => Promise<void>;

export function bidiStreamingCall<Req, Res>(fn: BidiCallFn<Req, Res>): grpc.handleBidiStreamingCall<Req, Res>;
export function bidiStreamingCall<Req, Res>(
  options: HandlerOptions,
  fn: BidiCallFn<Req, Res>,
): grpc.handleBidiStreamingCall<Req, Res>;
export function bidiStreamingCall<Req, Res>(
  a: HandlerOptions | BidiCallFn<Req, Res>,
  b?: BidiCallFn<Req, Res>,
): grpc.handleBidiStreamingCall<Req, Res> {
  const [declared, fn] = split(a, b);
  return defineHandler('bidi', declared, (runtime, scope) => (call: grpc.ServerDuplexStream<Req, Res>) => {
    void runCall(
      call,
      runtime,
      scope,
      (ctx) => fn(call, ctx),
      (status) => sendStreamError(call, status),
    );
  });
}
