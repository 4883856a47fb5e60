import * as grpc from '@grpc/grpc-js';
import { health } from '@quanta/contracts';
import { afterEach, describe, expect, it } from 'vitest';
import { unary } from './handlers.js';
import type { EchoReply, EchoRequest } from './testing/echo.js';
import type { Running } from './testing/harness.js';
import { grpcError, startEcho } from './testing/harness.js';

const { SERVING, NOT_SERVING, SERVICE_UNKNOWN } = health.HealthCheckResponse_ServingStatus;
const ECHO = 'quanta.kittest.v1.EchoService';

let running: Running | undefined;
let healthClient: health.HealthClient | undefined;
afterEach(async () => {
  healthClient?.close();
  await running?.close();
  running = undefined;
  healthClient = undefined;
});

async function start(): Promise<{ running: Running; client: health.HealthClient }> {
  running = await startEcho({
    Echo: unary<EchoRequest, EchoReply>({ scope: 'public' }, (req) =>
      Promise.resolve({ text: req.text, index: 0, payload: Buffer.alloc(0), tenant: '' }),
    ),
  });
  healthClient = new health.HealthClient(`127.0.0.1:${running.port}`, grpc.credentials.createInsecure());
  return { running, client: healthClient };
}

function check(client: health.HealthClient, service: string): Promise<health.HealthCheckResponse> {
  return new Promise((resolve, reject) => client.check({ service }, (e, r) => (e ? reject(e) : resolve(r))));
}

/** Each status a Watch stream delivers, awaited one at a time. */
function watch(client: health.HealthClient, service: string): { next(): Promise<number | 'end'>; cancel(): void } {
  const stream = client.watch({ service });
  const queue: (number | 'end')[] = [];
  const waiters: ((v: number | 'end') => void)[] = [];
  const push = (v: number | 'end'): void => {
    const waiter = waiters.shift();
    if (waiter) waiter(v);
    else queue.push(v);
  };
  stream.on('data', (r: health.HealthCheckResponse) => push(r.status));
  stream.on('end', () => push('end'));
  stream.on('error', () => push('end'));
  return {
    next: () => {
      const v = queue.shift();
      return v !== undefined ? Promise.resolve(v) : new Promise((resolve) => waiters.push(resolve));
    },
    cancel: () => stream.cancel(),
  };
}

describe('grpc.health.v1.Health', () => {
  it('reports the server ("") and each added service SERVING once started', async () => {
    const { client } = await start();
    expect((await check(client, '')).status).toBe(SERVING);
    expect((await check(client, ECHO)).status).toBe(SERVING);
  });

  it('answers NOT_FOUND for an unknown service in Check', async () => {
    const { client } = await start();
    const error = await grpcError(check(client, 'no.such.Service'));
    expect(error.code).toBe(grpc.status.NOT_FOUND);
    expect(error.details).toContain('no.such.Service');
  });

  it('streams SERVICE_UNKNOWN in Watch for an unknown service, then its status once it is set', async () => {
    const { running, client } = await start();
    const w = watch(client, 'late.Service');
    expect(await w.next()).toBe(SERVICE_UNKNOWN);
    running.service.health.set('late.Service', 'SERVING');
    expect(await w.next()).toBe(SERVING);
    w.cancel();
  });

  it('streams every change in Watch, and Check follows health.set', async () => {
    const { running, client } = await start();
    const w = watch(client, ECHO);
    expect(await w.next()).toBe(SERVING);
    running.service.health.set(ECHO, 'NOT_SERVING');
    expect(await w.next()).toBe(NOT_SERVING);
    expect((await check(client, ECHO)).status).toBe(NOT_SERVING);
    running.service.health.set(ECHO, 'SERVING');
    expect(await w.next()).toBe(SERVING);
    w.cancel();
  });

  it('goes NOT_SERVING for every service on shutdown and ends the Watch streams', async () => {
    const { running, client } = await start();
    const whole = watch(client, '');
    const echo = watch(client, ECHO);
    expect(await whole.next()).toBe(SERVING);
    expect(await echo.next()).toBe(SERVING);
    const stopped = running.service.stop({ graceMs: 5000 });
    expect(await whole.next()).toBe(NOT_SERVING);
    expect(await echo.next()).toBe(NOT_SERVING);
    expect(await whole.next()).toBe('end');
    expect(await echo.next()).toBe('end');
    // Watch streams end at once: they do not hold the graceful shutdown for its whole grace period.
    const t0 = Date.now();
    await stopped;
    expect(Date.now() - t0).toBeLessThan(4000);
    expect(running.service.health.get(ECHO)).toBe('NOT_SERVING');
    running.service.health.set(ECHO, 'SERVING'); // too late: a stopping server stays NOT_SERVING
    expect(running.service.health.get(ECHO)).toBe('NOT_SERVING');
  });
});
