import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { serverStreaming, unary } from './handlers.js';
import { REPEATED_SIGNAL_WINDOW_MS } from './service.js';
import { EchoClient } from './testing/echo.js';
import type { EchoReply, EchoRequest } from './testing/echo.js';
import type { Running } from './testing/harness.js';
import { callUnary, grpcError, startEcho } from './testing/harness.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, '..', '..', '..');

let running: Running | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});

/** An Echo whose `hold` calls wait until the test releases them; `held` resolves when one is waiting. */
function holdingEcho() {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let markHeld!: (signal: AbortSignal) => void;
  const held = new Promise<AbortSignal>((resolve) => (markHeld = resolve));
  const implementation = {
    Echo: unary<EchoRequest, EchoReply>({ scope: 'public' }, async (req, ctx) => {
      if (req.hold) {
        markHeld(ctx.signal);
        await Promise.race([released, new Promise((resolve) => ctx.signal.addEventListener('abort', resolve))]);
      }
      return { text: `${req.text} done`, index: 0, payload: Buffer.alloc(0), tenant: '' };
    }),
  };
  return { implementation, held, release };
}

describe('graceful shutdown', () => {
  it('lets an in-flight call finish while new calls are refused', async () => {
    const echo = holdingEcho();
    running = await startEcho(echo.implementation);
    const inFlight = callUnary<EchoReply>(running.client, 'Echo', { text: 'slow', hold: true });
    await echo.held;

    const stopped = running.service.stop({ graceMs: 20_000 });
    let stopDone = false;
    void stopped.then(() => (stopDone = true));

    // A new connection is refused: the listener is closed.
    const fresh = new EchoClient(`127.0.0.1:${running.port}`, grpc.credentials.createInsecure());
    try {
      const refused = await grpcError(callUnary(fresh, 'Echo', { text: 'new' }));
      expect(refused.code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      fresh.close();
    }
    // A new call on the existing connection is refused too (GOAWAY).
    const sameConnection = await grpcError(callUnary(running.client, 'Echo', { text: 'new' }));
    expect(sameConnection.code).toBe(grpc.status.UNAVAILABLE);
    expect(stopDone).toBe(false);

    echo.release();
    expect(await inFlight).toMatchObject({ text: 'slow done' });
    await stopped;
  });

  it('cancels calls still running when the grace period ends', async () => {
    const echo = holdingEcho();
    running = await startEcho(echo.implementation);
    const inFlight = grpcError(callUnary(running.client, 'Echo', { text: 'stuck', hold: true }));
    const signal = await echo.held;
    const t0 = Date.now();
    await running.service.stop({ graceMs: 300 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toMatchObject({ code: 'UNAVAILABLE', message: 'echo is shutting down' });
    const error = await inFlight;
    expect([grpc.status.CANCELLED, grpc.status.UNAVAILABLE]).toContain(error.code);
  });

  it('tells long-lived streams through ctx.shutdown, so they end without waiting out the grace period', async () => {
    running = await startEcho({
      Expand: serverStreaming<EchoRequest, EchoReply>({ scope: 'public' }, async function* (req, ctx) {
        yield { text: `${req.text} watching`, index: 0, payload: Buffer.alloc(0), tenant: '' };
        await new Promise((resolve) => ctx.shutdown.addEventListener('abort', resolve, { once: true }));
        yield { text: 'server stopping', index: 1, payload: Buffer.alloc(0), tenant: '' };
      }),
    });
    const watch = running.stub.Expand({ text: 'deployments' });
    const texts: string[] = [];
    const ended = new Promise<void>((resolve, reject) => {
      watch.on('data', (m: EchoReply) => {
        texts.push(m.text);
        if (texts.length === 1) void running?.service.stop({ graceMs: 30_000 });
      });
      watch.on('end', resolve);
      watch.on('error', reject);
    });
    const t0 = Date.now();
    await ended;
    await running.service.stop();
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(texts).toEqual(['deployments watching', 'server stopping']);
  });

  it('on SIGTERM: finishes the in-flight call, runs onStop hooks, flushes spans, exits 0', async () => {
    const child = await startSigtermChild();
    const client = new EchoClient(`127.0.0.1:${child.port}`, grpc.credentials.createInsecure());
    try {
      const inFlight = callUnary<EchoReply>(client, 'Echo', { text: 'in-flight', hold: true });
      await child.waitFor('HELD');
      child.process.kill('SIGTERM');
      expect(await inFlight).toMatchObject({ text: 'in-flight finished' });
    } finally {
      client.close();
    }
    const [code, signal] = await child.exited;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(child.seen).toContain('ONSTOP');
    // Batched spans leave only on a flush (the schedule is 10 minutes away): the shutdown flushed them.
    expect(child.seen).toContain('SPAN quanta.kittest.v1.EchoService/Echo');
    expect(child.logged()).toEqual(expect.arrayContaining(['signal received', 'shutting down', 'stopped']));
  }, 90_000); // a child process with tsx starts slowly on a busy machine

  it('takes a signal within the window of the first as the same request (Ctrl-C in a terminal, then npm)', async () => {
    const child = await startSigtermChild();
    const client = new EchoClient(`127.0.0.1:${child.port}`, grpc.credentials.createInsecure());
    try {
      const inFlight = callUnary<EchoReply>(client, 'Echo', { text: 'in-flight', hold: true });
      await child.waitFor('HELD');
      child.process.kill('SIGINT');
      // Signals pending together are delivered once: the second goes out after the first was taken.
      await child.waitFor('{', (line) => line.includes('"signal received"'));
      child.process.kill('SIGINT');
      expect(await inFlight).toMatchObject({ text: 'in-flight finished' });
    } finally {
      client.close();
    }
    const [code, signal] = await child.exited;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(child.seen).toContain('ONSTOP');
    expect(child.logged()).toEqual(
      expect.arrayContaining(['signal received', 'signal repeated: already stopping', 'stopped']),
    );
    expect(child.logged()).not.toContain('second signal: exiting now');
  }, 90_000);

  it(`exits 130 at once on a second signal later than ${REPEATED_SIGNAL_WINDOW_MS} ms after the first`, async () => {
    const child = await startSigtermChild();
    const client = new EchoClient(`127.0.0.1:${child.port}`, grpc.credentials.createInsecure());
    try {
      // Never finishes by itself: the graceful stop would wait out its 10 s grace.
      const inFlight = grpcError(callUnary(client, 'Echo', { text: 'forever', hold: true }));
      await child.waitFor('HELD');
      child.process.kill('SIGINT');
      const first = Date.now();
      await child.waitFor('{', (line) => line.includes('"shutting down"'));
      // The window is a span of time: only waiting it out shows what comes after it.
      await delay(REPEATED_SIGNAL_WINDOW_MS + 200 - (Date.now() - first));
      child.process.kill('SIGINT');
      const [code, signal] = await child.exited;
      expect({ code, signal }).toEqual({ code: 130, signal: null });
      expect(Date.now() - first).toBeLessThan(8000);
      expect((await inFlight).code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      client.close();
    }
    expect(child.logged()).toContain('second signal: exiting now');
    expect(child.seen).not.toContain('ONSTOP');
  }, 90_000);

  it('stops as on SIGTERM when its IPC channel closes (the parent that started it is gone)', async () => {
    const child = await startSigtermChild({ ipc: true });
    const client = new EchoClient(`127.0.0.1:${child.port}`, grpc.credentials.createInsecure());
    try {
      const inFlight = callUnary<EchoReply>(client, 'Echo', { text: 'in-flight', hold: true });
      await child.waitFor('HELD');
      // What the child sees of its parent's death: the channel closes.
      child.process.disconnect();
      expect(await inFlight).toMatchObject({ text: 'in-flight finished' });
    } finally {
      client.close();
    }
    // Stopped, it ends itself with SIGKILL: exiting could hang on a log line for a parent that is gone.
    const [code, signal] = await child.exited;
    expect({ code, signal }).toEqual({ code: null, signal: 'SIGKILL' });
    expect(child.seen).toContain('ONSTOP');
    expect(child.logged()).toEqual(
      expect.arrayContaining(['parent process gone: stopping', 'signal received', 'shutting down']),
    );
  }, 90_000);
});

interface SigtermChild {
  readonly process: ChildProcess;
  readonly port: number;
  readonly exited: Promise<[number | null, NodeJS.Signals | null]>;
  /** Every stdout line so far. */
  readonly seen: string[];
  /** The first line that starts with `prefix` (and passes `test`), now or once printed. */
  waitFor(prefix: string, test?: (line: string) => boolean): Promise<string>;
  /** The messages of its JSON log lines. */
  logged(): string[];
}

/** testing/sigterm-child.ts as a process, once it listens; `ipc`: with an IPC channel to this process. */
async function startSigtermChild(options: { ipc?: boolean } = {}): Promise<SigtermChild> {
  const child = spawn(
    process.execPath,
    ['--conditions=@quanta/source', '--import', 'tsx', join(here, 'testing', 'sigterm-child.ts')],
    {
      cwd: repoRoot,
      stdio: options.ipc === true ? ['ignore', 'pipe', 'inherit', 'ipc'] : ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, QUANTA_LOG_LEVEL: 'info', OTEL_BSP_SCHEDULE_DELAY: '600000' },
    },
  );
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const lines = createInterface({ input: child.stdout! });
  const seen: string[] = [];
  lines.on('line', (line) => seen.push(line));
  const waitFor = (prefix: string, test: (line: string) => boolean = () => true): Promise<string> =>
    new Promise((resolve, reject) => {
      const matches = (line: string): boolean => line.startsWith(prefix) && test(line);
      const found = seen.find(matches);
      if (found !== undefined) return resolve(found);
      const onLine = (line: string): void => {
        if (matches(line)) {
          lines.off('line', onLine);
          resolve(line);
        }
      };
      lines.on('line', onLine);
      void exited.then(([code]) => reject(new Error(`child exited (${code}) before printing ${prefix}`)));
    });
  const port = Number((await waitFor('READY ')).split(' ')[1]);
  return {
    process: child,
    port,
    exited,
    seen,
    waitFor,
    logged: () => seen.filter((l) => l.startsWith('{')).map((l) => (JSON.parse(l) as { msg: string }).msg),
  };
}
