// The request/response pump of one ModelStreamInfer, on the grpc-js duplex call itself: 'data'
// events in, `call.write` out, one promise per request and nothing else per message, since any
// per-message machinery (async generators, say) costs CPU on every streamed request
// (docs/decisions/inference-front-stream-pump.md).
import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { CallContext } from '@quanta/service-kit';

interface Slot<Res> {
  response: Res | undefined;
}

/**
 * Runs the requests of a stream with up to `depth` of them in flight and writes their responses in
 * request order. A request is handed to `run` as soon as it arrives (so a sequence's requests reach
 * the core in order); reading pauses while `depth` requests are in flight or the call is not
 * draining, and resumes after. `run` must not reject: a request's failure is a response of its own.
 * When the client half-closes, the responses still due are written and the call is ended; the
 * promise rejects when reading the stream fails (or with the abort reason once the call has ended
 * under us), and resolves once the call is ended or has been cancelled.
 */
export function pumpStream<Req, Res>(
  call: ServerDuplexStream<Req, Res>,
  ctx: CallContext,
  run: (request: Req) => Promise<Res>,
  depth: number,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const { signal } = ctx;
    const slots: Slot<Res>[] = [];
    let ended = false; // the client half-closed (and no cancel came with it)
    let draining = false; // a write returned false: waiting for 'drain'
    let paused = false;
    let settled = false;

    const settle = (error?: unknown): void => {
      if (settled) return;
      settled = true;
      call.off('data', onData);
      call.off('end', onEnd);
      call.off('error', onError);
      call.off('drain', onDrain);
      signal.removeEventListener('abort', onAbort);
      if (error === undefined) resolve();
      // What the stream or the abort gave us, mapped to a status by the kit.
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
      else reject(error);
    };

    const flush = (): void => {
      while (!draining && slots.length > 0) {
        const head = slots[0]!;
        if (head.response === undefined) break;
        slots.shift();
        if (!call.write(head.response)) {
          draining = true;
          call.once('drain', onDrain);
        }
      }
      if (draining) {
        if (!paused) {
          paused = true;
          call.pause();
        }
      } else if (ended) {
        if (slots.length === 0) {
          call.end();
          settle();
        }
      } else if (paused && slots.length < depth) {
        paused = false;
        call.resume();
      }
    };

    function onDrain(): void {
      draining = false;
      if (!settled) flush();
    }

    function onData(message: Req): void {
      const slot: Slot<Res> = { response: undefined };
      slots.push(slot);
      let response: Promise<Res>;
      try {
        response = run(message);
      } catch (error: unknown) {
        settle(error);
        return;
      }
      response.then(
        (value) => {
          slot.response = value;
          if (!settled && slots[0] === slot) flush();
        },
        (error: unknown) => settle(error),
      );
      if (!paused && (slots.length >= depth || draining)) {
        paused = true;
        call.pause();
      }
    }

    // grpc-js reports a client's cancel first as the end of its request stream and only then as
    // 'cancelled' (grpc/grpc-node#2583): let that news arrive before taking an end (or a broken
    // read) for what it says.
    function onEnd(): void {
      setImmediate(() => {
        if (settled) return;
        if (signal.aborted) {
          settle(signal.reason);
          return;
        }
        ended = true;
        flush();
      });
    }

    function onError(error: unknown): void {
      setImmediate(() => settle(signal.aborted ? signal.reason : error));
    }

    // Cancelled, past its deadline or forced down: grpc-js has ended the call; write nothing more.
    function onAbort(): void {
      settle();
    }

    if (signal.aborted) {
      settle();
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    call.on('error', onError);
    call.on('end', onEnd);
    call.on('data', onData);
  });
}
