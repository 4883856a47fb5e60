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
  add(controller: AbortController): void;
  delete(controller: AbortController): void;
  readonly size: number;
  abortAll(reason: unknown): void;
}

export function createCallRegistry(): CallRegistry {
  const controllers = new Set<AbortController>();
  return {
    add: (c) => void controllers.add(c),
    delete: (c) => void controllers.delete(c),
    get size() {
      return controllers.size;
    },
    abortAll(reason) {
      for (const c of controllers) c.abort(reason);
    },
  };
}

export interface OpenCall {
  readonly ctx: CallContext & { principal: Principal | undefined };
  readonly controller: AbortController;
  close(): void;
}

const DEADLINE_SLACK_MS = 100;

/** Sets up the context of one call: abort on cancel and on deadline, registered as in flight. */
export function openCall(call: ServerCall, runtime: HandlerRuntime): OpenCall {
  const controller = new AbortController();
  const method = call.getPath();
  const rawDeadline = call.getDeadline();
  const deadlineMs = rawDeadline instanceof Date ? rawDeadline.getTime() : rawDeadline;
  const deadline = Number.isFinite(deadlineMs) ? new Date(deadlineMs) : undefined;

  // grpc-js reports a passed deadline as a cancellation too; and a client cancels on its own deadline
  // timer, a little before ours runs out (the timeout travels as a relative value).
  const onCancel = (): void =>
    controller.abort(
      deadline !== undefined && Date.now() >= deadline.getTime() - DEADLINE_SLACK_MS
        ? deadlineExceeded(`${method} ran past its deadline`)
        : cancelled(`${method} was cancelled by the client`),
    );
  call.once('cancelled', onCancel);
  if (call.cancelled) onCancel();

  // grpc-js answers DEADLINE_EXCEEDED by itself but does not tell the handler: abort our signal too.
  let timer: NodeJS.Timeout | undefined;
  if (deadline !== undefined) {
    const abortAtDeadline = (): void => controller.abort(deadlineExceeded(`${method} ran past its deadline`));
    const remaining = deadline.getTime() - Date.now();
    if (remaining <= 0) abortAtDeadline();
    else timer = setTimeout(abortAtDeadline, remaining);
  }

  runtime.calls.add(controller);
  const ctx = {
    principal: undefined as Principal | undefined,
    metadata: call.metadata,
    signal: controller.signal,
    shutdown: runtime.shutdown,
    deadline,
    method,
    peer: call.getPeer(),
    logger: runtime.logger.child({ rpc: method }),
  };
  return {
    ctx,
    controller,
    close() {
      if (timer !== undefined) clearTimeout(timer);
      call.removeListener('cancelled', onCancel);
      runtime.calls.delete(controller);
    },
  };
}
