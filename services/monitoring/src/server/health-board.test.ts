import { monitoring as pb } from '@quanta/contracts';
import type { QuantaService } from '@quanta/service-kit';
import { createService } from '@quanta/service-kit';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import type { Harness } from '../testing/harness.js';
import { T0, call, startHarness } from '../testing/harness.js';

const H = pb.ServiceHealthStatus;

/** A real gRPC service (health and reflection only, as service-kit serves them) on `port`. */
async function startTarget(port: number): Promise<{ service: QuantaService; port: number }> {
  const service = createService({ name: 'target', port, logger: pino({ level: 'silent' }) });
  const started = await service.start();
  return { service, port: started.port };
}

describe('health board', () => {
  let h: Harness | undefined;
  let target: { service: QuantaService; port: number } | undefined;
  afterAll(async () => {
    await target?.service.stop({ graceMs: 0 });
    await h?.close();
  });

  it('sees a real service serving, going down, and coming back, with change times and latency', async () => {
    target = await startTarget(0);
    const port = target.port;
    h = await startHarness({
      targets: [
        { name: 'target', address: `127.0.0.1:${port}` },
        { name: 'absent', address: '127.0.0.1:1' },
      ],
    });
    const reader = await h.token('acme', ['monitoring:read']);
    const board = async () => (await call(h!.client, 'getHealthBoard', {}, reader)).services;

    expect((await board()).map((s) => [s.name, s.status])).toEqual([
      ['absent', H.SERVICE_HEALTH_STATUS_UNKNOWN],
      ['target', H.SERVICE_HEALTH_STATUS_UNKNOWN],
    ]);

    h.now.ms = T0;
    await h.server.board.checkNow();
    const [absent, first] = await board();
    let up = first;
    expect(up).toMatchObject({
      name: 'target',
      status: H.SERVICE_HEALTH_STATUS_SERVING,
      error: '',
      lastChangeTime: new Date(T0),
      lastCheckTime: new Date(T0),
    });
    expect(Number(up?.latency?.seconds) * 1e9 + (up?.latency?.nanos ?? 0)).toBeGreaterThan(0);
    expect(absent?.status).toBe(H.SERVICE_HEALTH_STATUS_UNREACHABLE);
    expect(absent?.error).toMatch(/UNAVAILABLE/);

    h.now.ms = T0 + 5000;
    await target.service.stop({ graceMs: 0 });
    await h.server.board.checkNow();
    [, up] = await board();
    expect(up).toMatchObject({ status: H.SERVICE_HEALTH_STATUS_UNREACHABLE, lastChangeTime: new Date(T0 + 5000) });
    expect(up?.error).toMatch(/UNAVAILABLE/);

    h.now.ms = T0 + 10_000;
    await h.server.board.checkNow(); // still down: the change time stays
    [, up] = await board();
    expect(up).toMatchObject({
      status: H.SERVICE_HEALTH_STATUS_UNREACHABLE,
      lastChangeTime: new Date(T0 + 5000),
      lastCheckTime: new Date(T0 + 10_000),
    });

    target = await startTarget(port);
    h.now.ms = T0 + 15_000;
    await h.server.board.checkNow();
    [, up] = await board();
    expect(up).toMatchObject({
      status: H.SERVICE_HEALTH_STATUS_SERVING,
      lastChangeTime: new Date(T0 + 15_000),
      error: '',
    });

    // NOT_SERVING is told apart from unreachable.
    target.service.health.set('', 'NOT_SERVING');
    await h.server.board.checkNow();
    [, up] = await board();
    expect(up?.status).toBe(H.SERVICE_HEALTH_STATUS_NOT_SERVING);
    expect(up?.error).toMatch(/NOT_SERVING/);
  });
});
