import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Authenticator, Principal } from './auth.js';
import { cancelled, deadlineExceeded } from './errors.js';

/** What every grpc-js server call offers, whatever its kind. */
export interface ServerCall {
  readonly metadata: grpc.Metadata;
  readonly cancelled: boolean;
  getPath(): string;
  getDeadline(): grpc.Deadline;
  getPeer(): string;
  on(event: 'cancelled', listener: () => void): unknown;
  once(event: 'cancelled', listener: () => void): unknown;
  removeListener(event: 'cancelled', listener: () => void): unknown;
}

/**
 * Whether a call was given up, and an 'abort' listener, as an AbortSignal offers them (an AbortSignal
 * is one). Listeners run once, on the first abort; one added after it is never called (EventTarget's
 * rule): check `aborted` first.
 */
export interface Cancellation {
  readonly aborted: boolean;
  /**
   * Why: a ServiceError (CANCELLED, DEADLINE_EXCEEDED, or the forced shutdown's UNAVAILABLE);
   * undefined until aborted.
   */
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/**
 * The 'abort' listeners of a Cancellation: the first in a field, more in an array, no closure made.
 * Each is kept once (EventTarget's rule) and called once, when `fire` takes them all.
 */
export class AbortListeners {
  #first: (() => void) | undefined = undefined;
  #more: (() => void)[] | undefined = undefined;

  get empty(): boolean {
    return this.#first === undefined;
  }

  /** Adds `listener` unless it is here already; true when it is the first (the owner starts watching). */
  add(listener: () => void): boolean {
    if (this.#first === undefined) {
      this.#first = listener;
      return true;
    }
    if (this.#first !== listener && this.#more?.includes(listener) !== true) (this.#more ??= []).push(listener);
    return false;
  }

  /** Removes `listener`; true when that left none (the owner stops watching). */
  remove(listener: () => void): boolean {
    if (this.#first === listener) this.#first = this.#more?.shift();
    else {
      const at = this.#more?.indexOf(listener) ?? -1;
      if (at < 0) return false;
      this.#more!.splice(at, 1);
    }
    return this.#first === undefined;
  }

  /** Takes every listener and calls each, in the order they came. */
  fire(): void {
    const first = this.#first;
    const more = this.#more;
    this.#first = undefined;
    this.#more = undefined;
    first?.();
    if (more !== undefined) for (const listener of more) listener();
  }
}

/** What a handler knows about its call besides the request. */
export interface CallContext {
  /** The authenticated caller; undefined only for `public` handlers. */
  readonly principal: Principal | undefined;
  readonly metadata: grpc.Metadata;
  /** Aborted when the client cancels, the deadline passes or the server is forced down. */
  readonly signal: AbortSignal;
  /**
   * The same events as `signal`, without an AbortController, for code on every request's path that
   * only checks `aborted` and listens for 'abort'. An AbortController per call costs CPU to make and
   * to listen on, and makes V8 run many more full mark-compacts under load
   * (figures: docs/decisions/inference-front-cancellation.md).
   */
  readonly cancellation: Cancellation;
  /**
   * Aborted when the server begins a graceful shutdown. Long-lived streams (watches) should end then,
   * so that they do not hold the shutdown open for its whole grace period; other calls just finish.
   */
  readonly shutdown: AbortSignal;
  readonly deadline: Date | undefined;
  /** Full method path, e.g. `/quanta.crypto.v1.CryptoService/Encrypt`. */
  readonly method: string;
  readonly peer: string;
  readonly logger: Logger;
}

/** What a service lends its handlers: set by `addService`, a default for handlers used bare. */
export interface HandlerRuntime {
  readonly authenticator: Authenticator | undefined;
  readonly logger: Logger;
  readonly calls: CallRegistry;
  /** Aborted when the service's stop() begins. */
  readonly shutdown: AbortSignal;
}

/** In-flight calls, so that a forced shutdown can abort their signals. */
export interface CallRegistry {
  add(call: Abortable): void;
  delete(call: Abortable): void;
  readonly size: number;
  abortAll(reason: unknown): void;
}

/** What a forced shutdown aborts: an AbortController, or a call whose controller is made on demand. */
export interface Abortable {
  abort(reason?: unknown): void;
}

export function createCallRegistry(): CallRegistry {
  const calls = new Set<Abortable>();
  return {
    add: (c) => void calls.add(c),
    delete: (c) => void calls.delete(c),
    get size() {
      return calls.size;
    },
    abortAll(reason) {
      for (const c of calls) c.abort(reason);
    },
  };
}

export interface OpenCall {
  readonly ctx: CallContext & { principal: Principal | undefined };
  /**
   * Whether the call has ended under the handler (cancelled, past its deadline, forced down),
   * without making its signal.
   */
  isAborted(): boolean;
  close(): void;
}

const DEADLINE_SLACK_MS = 100;

/** Calls whose cancellation has listeners, to their contexts (for the one shared 'cancelled' listener). */
const listening = new Map<ServerCall, ServerCallContext>();

/**
 * The context of one call, which is also its OpenCall. Most handlers never look at the signal or the
 * logger: the AbortController, its 'cancelled' listener and deadline timer, and the child logger are
 * made on first use (they were most of this kit's per-call cost). A signal made after the call ended
 * starts out aborted, with the reason it would have had.
 */
class ServerCallContext implements OpenCall, Abortable, Cancellation {
  principal: Principal | undefined = undefined;
  readonly metadata: grpc.Metadata;
  readonly shutdown: AbortSignal;
  readonly deadline: Date | undefined;
  readonly method: string;
  readonly #call: ServerCall;
  readonly #runtime: HandlerRuntime;
  readonly #deadlineMs: number;
  #controller: AbortController | undefined = undefined;
  #timer: NodeJS.Timeout | undefined = undefined;
  #forcedReason: unknown = undefined;
  #forced = false;
  #closed = false;
  #logger: Logger | undefined = undefined;
  #peer: string | undefined = undefined;
  #onCancel: (() => void) | undefined = undefined;
  // The cancellation's own state (`signal`'s is its controller's). While it has listeners, it
  // watches for the cancel and the deadline.
  #listeners: AbortListeners | undefined = undefined;
  #fired = false;
  #firedReason: unknown = undefined;
  #listenTimer: NodeJS.Timeout | undefined = undefined;

  constructor(call: ServerCall, runtime: HandlerRuntime) {
    this.#call = call;
    this.#runtime = runtime;
    this.metadata = call.metadata;
    this.shutdown = runtime.shutdown;
    this.method = call.getPath();
    const rawDeadline = call.getDeadline();
    const deadlineMs = rawDeadline instanceof Date ? rawDeadline.getTime() : rawDeadline;
    this.#deadlineMs = deadlineMs;
    this.deadline = Number.isFinite(deadlineMs) ? new Date(deadlineMs) : undefined;
    runtime.calls.add(this);
  }

  get ctx(): this {
    return this;
  }

  get peer(): string {
    return (this.#peer ??= this.#call.getPeer());
  }

  get logger(): Logger {
    return (this.#logger ??= this.#runtime.logger.child({ rpc: this.method }));
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      const controller = new AbortController();
      this.#controller = controller;
      if (this.#forced) controller.abort(this.#forcedReason);
      else if (this.#call.cancelled) controller.abort(this.#cancelReason());
      else if (!this.#closed) {
        // grpc-js reports a passed deadline as a cancellation too.
        this.#onCancel = () => controller.abort(this.#cancelReason());
        this.#call.once('cancelled', this.#onCancel);
        // grpc-js answers DEADLINE_EXCEEDED by itself but does not tell the handler: abort our signal too.
        if (Number.isFinite(this.#deadlineMs)) {
          const abortAtDeadline = (): void =>
            controller.abort(deadlineExceeded(`${this.method} ran past its deadline`));
          const remaining = this.#deadlineMs - Date.now();
          if (remaining <= 0) abortAtDeadline();
          else this.#timer = setTimeout(abortAtDeadline, remaining);
        }
      }
    }
    return this.#controller.signal;
  }

  isAborted(): boolean {
    if (this.#controller !== undefined) return this.#controller.signal.aborted;
    // No deadline (Infinity): no clock read; the batcher asks this of every request it looks at.
    return (
      this.#fired ||
      this.#forced ||
      this.#call.cancelled ||
      (this.#deadlineMs !== Infinity && Date.now() >= this.#deadlineMs)
    );
  }

  // ---- the cancellation (the context is its own: no object per call) ----

  get cancellation(): Cancellation {
    return this;
  }

  get aborted(): boolean {
    return this.isAborted();
  }

  get reason(): unknown {
    if (this.#controller !== undefined) return this.#controller.signal.reason as unknown;
    if (this.#fired) return this.#firedReason;
    if (this.#forced) return this.#forcedReason;
    return this.#call.cancelled || Date.now() >= this.#deadlineMs ? this.#cancelReason() : undefined;
  }

  addEventListener(type: 'abort', listener: () => void): void {
    if (type !== 'abort' || this.isAborted() || this.#closed) return;
    if (!(this.#listeners ??= new AbortListeners()).add(listener)) return;
    // The first listener: watch for the cancel and the deadline until the last one leaves. No closure
    // is made here: a shared listener finds this context by its call. (A closure made per call in
    // this class and kept on it, even `() => undefined`, brought back the mark-compacts that
    // AbortController caused: 13–23 against 2 in 4 s of PP-OCR requests.)
    listening.set(this.#call, this);
    this.#call.on('cancelled', ServerCallContext.#onCallCancelled);
    if (Number.isFinite(this.#deadlineMs))
      this.#listenTimer = setTimeout(ServerCallContext.#onDeadline, Math.max(0, this.#deadlineMs - Date.now()), this);
  }

  removeEventListener(type: 'abort', listener: () => void): void {
    if (type === 'abort' && this.#listeners?.remove(listener) === true) this.#stopListening();
  }

  static #onCallCancelled(this: ServerCall): void {
    const context = listening.get(this);
    if (context !== undefined) context.#fire(context.#cancelReason());
  }

  static #onDeadline(context: ServerCallContext): void {
    context.#fire(deadlineExceeded(`${context.method} ran past its deadline`));
  }

  /** Undoes the first listener's watch (call it once the listeners are gone, not before). */
  #stopListening(): void {
    listening.delete(this.#call);
    this.#call.removeListener('cancelled', ServerCallContext.#onCallCancelled);
    if (this.#listenTimer !== undefined) clearTimeout(this.#listenTimer);
    this.#listenTimer = undefined;
  }

  #fire(reason: unknown): void {
    if (this.#fired) return;
    this.#fired = true;
    this.#firedReason = reason;
    if (this.#listeners === undefined || this.#listeners.empty) return;
    this.#stopListening();
    this.#listeners.fire();
  }

  /** A forced shutdown. */
  abort(reason?: unknown): void {
    if (this.#controller !== undefined) {
      this.#controller.abort(reason);
    } else if (!this.#forced) {
      this.#forced = true;
      this.#forcedReason = reason;
    }
    if (this.#listeners?.empty === false) this.#fire(this.#controller?.signal.reason ?? reason);
  }

  close(): void {
    this.#closed = true;
    this.#runtime.calls.delete(this);
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#onCancel !== undefined) this.#call.removeListener('cancelled', this.#onCancel);
    if (this.#listeners?.empty === false) this.#stopListening();
    this.#listeners = undefined;
  }

  // A client cancels on its own deadline timer, a little before ours runs out (the timeout travels as
  // a relative value): a cancel that close to the deadline counts as the deadline.
  #cancelReason(): unknown {
    return Date.now() >= this.#deadlineMs - DEADLINE_SLACK_MS
      ? deadlineExceeded(`${this.method} ran past its deadline`)
      : cancelled(`${this.method} was cancelled by the client`);
  }
}

/**
 * Sets up the context of one call, registered as in flight; its signal aborts on cancel, deadline
 * and forced shutdown.
 */
export function openCall(call: ServerCall, runtime: HandlerRuntime): OpenCall {
  return new ServerCallContext(call, runtime);
}
