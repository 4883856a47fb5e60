// A REST request's cancellation: the client hanging up abandons its request, and the core drops
// it from the queue if it has not run yet.
import type { ServerResponse } from 'node:http';
import { AbortListeners } from '@quanta/service-kit';
import type { CancelSignal } from '../core/types.js';

/**
 * Aborted when the client goes away before its answer is written. Not an AbortController, and no
 * closure per request: either, made on every request's path, costs more garbage collection than
 * the request's own work on a small model (as for service-kit's `ctx.cancellation`; figures in
 * docs/decisions/inference-front-cancellation.md). One shared 'close' listener, attached only while
 * someone listens, finds the cancellation by its response.
 */
export class ResponseCancellation implements CancelSignal {
  readonly #res: ServerResponse;
  #listeners: AbortListeners | undefined = undefined;
  #fired = false;

  constructor(res: ServerResponse) {
    this.#res = res;
  }

  get aborted(): boolean {
    return this.#fired || ((this.#res.destroyed || this.#res.closed) && !this.#res.writableFinished);
  }

  addEventListener(type: 'abort', listener: () => void): void {
    if (type !== 'abort' || this.aborted) return;
    if (!(this.#listeners ??= new AbortListeners()).add(listener)) return;
    cancellations.set(this.#res, this);
    this.#res.on('close', ResponseCancellation.#onClose);
  }

  removeEventListener(type: 'abort', listener: () => void): void {
    if (type === 'abort' && this.#listeners?.remove(listener) === true) this.#detach();
  }

  #detach(): void {
    cancellations.delete(this.#res);
    this.#res.removeListener('close', ResponseCancellation.#onClose);
  }

  static #onClose(this: ServerResponse): void {
    const cancellation = cancellations.get(this);
    if (cancellation === undefined || this.writableFinished) return;
    cancellation.#fired = true;
    cancellation.#detach();
    cancellation.#listeners?.fire();
  }
}

/** Responses whose cancellation has listeners, to it (for the one shared 'close' listener). */
const cancellations = new Map<ServerResponse, ResponseCancellation>();
