import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import type { Cancellation } from './call-context.js';
import { unary } from './handlers.js';
import type { EchoReply, EchoRequest } from './testing/echo.js';
import type { Running } from './testing/harness.js';
import { callUnary, grpcError, startEcho } from './testing/harness.js';

let running: Running | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});

/**
 * An Echo whose `hold` calls listen on ctx.cancellation and wait until it fires. `held` resolves with
 * the cancellation once a call is waiting; `fired` with what the listeners saw.
 */
function listeningEcho() {
  let markHeld!: (c: Cancellation) => void;
  const held = new Promise<Cancellation>((resolve) => (markHeld = resolve));
  let markFired!: (seen: { aborted: boolean; reason: unknown; calls: string[] }) => void;
  const fired = new Promise<{ aborted: boolean; reason: unknown; calls: string[] }>((resolve) => (markFired = resolve));
  const implementation = {
    Echo: unary<EchoRequest, EchoReply>({ scope: 'public' }, async (req, ctx) => {
      const c = ctx.cancellation;
      if (!req.hold)
        return {
          text: `aborted=${c.aborted} reason=${String(c.reason)}`,
          index: 0,
          payload: Buffer.alloc(0),
          tenant: '',
        };
      const calls: string[] = [];
      const removed = (): void => void calls.push('removed');
      const second = (): void => void calls.push('second');
      await new Promise<void>((resolve) => {
        c.addEventListener('abort', removed);
        c.addEventListener('abort', () => {
          calls.push('first');
          resolve();
        });
        c.addEventListener('abort', second, { once: true });
        c.addEventListener('abort', second); // the same listener twice counts once, as on an EventTarget
        c.removeEventListener('abort', removed);
        markHeld(c);
      });
      // A listener added after the abort is never called (EventTarget's rule).
      c.addEventListener('abort', () => calls.push('late'));
      await new Promise((resolve) => setTimeout(resolve, 20));
      markFired({ aborted: c.aborted, reason: c.reason, calls });
      return { text: 'done', index: 0, payload: Buffer.alloc(0), tenant: '' };
    }),
  };
  return { implementation, held, fired };
}

describe('ctx.cancellation', () => {
  it('is not aborted during an ordinary call', async () => {
    running = await startEcho(listeningEcho().implementation);
    expect(await callUnary<EchoReply>(running.client, 'Echo', { text: 'x' })).toMatchObject({
      text: 'aborted=false reason=undefined',
    });
  });

  it('fires its listeners once, in order, when the client cancels, with CANCELLED', async () => {
    const echo = listeningEcho();
    running = await startEcho(echo.implementation);
    let call: grpc.ClientUnaryCall | undefined;
    const error = grpcError(
      callUnary(running.client, 'Echo', { text: 'x', hold: true }, new grpc.Metadata(), {}, (c) => (call = c)),
    );
    const c = await echo.held;
    expect(c.aborted).toBe(false);
    call!.cancel();
    const seen = await echo.fired;
    expect(seen.calls).toEqual(['first', 'second']);
    expect(seen.aborted).toBe(true);
    expect(seen.reason).toMatchObject({ code: 'CANCELLED' });
    expect((await error).code).toBe(grpc.status.CANCELLED);
  });

  it('fires at the deadline with DEADLINE_EXCEEDED', async () => {
    const echo = listeningEcho();
    running = await startEcho(echo.implementation);
    const error = grpcError(
      callUnary(running.client, 'Echo', { text: 'x', hold: true }, new grpc.Metadata(), { deadline: Date.now() + 300 }),
    );
    const seen = await echo.fired;
    expect(seen.calls).toEqual(['first', 'second']);
    expect(seen.reason).toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    expect((await error).code).toBe(grpc.status.DEADLINE_EXCEEDED);
  });

  it('fires when a stop forces the call down, with UNAVAILABLE', async () => {
    const echo = listeningEcho();
    running = await startEcho(echo.implementation);
    const error = grpcError(callUnary(running.client, 'Echo', { text: 'x', hold: true }));
    await echo.held;
    const stopped = running.service.stop({ graceMs: 100 });
    const seen = await echo.fired;
    expect(seen.calls).toEqual(['first', 'second']);
    expect(seen.reason).toMatchObject({ code: 'UNAVAILABLE' });
    await stopped;
    // The forced stop closes the connection: the client sees that, whatever the handler answers.
    expect([grpc.status.CANCELLED, grpc.status.UNAVAILABLE]).toContain((await error).code);
  });
});
