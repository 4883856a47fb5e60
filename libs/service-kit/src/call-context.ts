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
  once(event: 'cancelled', listener: () => void): unknown;
  removeListener(event: 'cancelled', listener: () => void): unknown;
}

/** What a handler knows about its call besides the request. */
export interface CallContext {
  /** The authenticated caller; undefined only for `public` handlers. */
  readonly principal: Principal | undefined;
  readonly metadata: grpc.Metadata;
  /** Aborted when the client cancels, the deadline passes or the server is forced down. */
  readonly signal: AbortSignal;
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
  /** Whether the call has ended under the handler (cancelled, past its deadline, forced down), without making its signal. */
  isAborted(): boolean;
  close(): void;
}

const DEADLINE_SLACK_MS = 100;

/**
 * The context of one call, which is also its OpenCall. Most handlers never look at the signal or the
 * logger: the AbortController, its 'cancelled' listener and deadline timer, and the child logger are
 * made on first use (they were most of this kit's per-call cost). A signal made after the call ended
 * starts out aborted, with the reason it would have had.
 */
class ServerCallContext implements OpenCall, Abortable {
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
          const abortAtDeadline = (): void => controller.abort(deadlineExceeded(`${this.method} ran past its deadline`));
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
    return this.#forced || this.#call.cancelled || Date.now() >= this.#deadlineMs;
  }

  /** A forced shutdown. */
  abort(reason?: unknown): void {
    if (this.#controller !== undefined) {
      this.#controller.abort(reason);
    } else if (!this.#forced) {
      this.#forced = true;
      this.#forcedReason = reason;
    }
  }

  close(): void {
    this.#closed = true;
    this.#runtime.calls.delete(this);
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#onCancel !== undefined) this.#call.removeListener('cancelled', this.#onCancel);
  }

  // A client cancels on its own deadline timer, a little before ours runs out (the timeout travels as
  // a relative value): a cancel that close to the deadline counts as the deadline.
  #cancelReason(): unknown {
    return Date.now() >= this.#deadlineMs - DEADLINE_SLACK_MS
      ? deadlineExceeded(`${this.method} ran past its deadline`)
      : cancelled(`${this.method} was cancelled by the client`);
  }
}

/** Sets up the context of one call, registered as in flight; its signal aborts on cancel, deadline and forced shutdown. */
export function openCall(call: ServerCall, runtime: HandlerRuntime): OpenCall {
  return new ServerCallContext(call, runtime);
}
