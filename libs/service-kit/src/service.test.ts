import { describe, expect, it } from 'vitest';
import { unary } from './handlers.js';
import { createService } from './service.js';
import type { EchoReply, EchoRequest } from './testing/echo.js';
import { echoService } from './testing/echo.js';
import { startEcho } from './testing/harness.js';

const echo = {
  Echo: unary<EchoRequest, EchoReply>({ scope: 'public' }, (req) =>
    Promise.resolve({ text: req.text, index: 0, payload: Buffer.alloc(0), tenant: '' }),
  ),
};

describe('createService', () => {
  it('says which address it cannot listen on', async () => {
    const first = await startEcho(echo);
    try {
      const second = createService({ name: 'echo-2', port: first.port });
      second.addService(echoService, echo);
      await expect(second.start()).rejects.toThrow(`echo-2: cannot listen on 127.0.0.1:${first.port}`);
    } finally {
      await first.close();
    }
  });

  it('starts once however often start() is called, refuses services added after it, and cannot restart', async () => {
    const service = createService({ name: 'echo', port: 0 });
    service.addService(echoService, echo);
    const [a, b] = await Promise.all([service.start(), service.start()]);
    try {
      expect(a).toBe(b);
      expect(a.address).toBe(`127.0.0.1:${a.port}`);
      expect(() => service.addService(echoService, echo)).toThrow('addService: call it before start()');
    } finally {
      await service.stop();
    }
    await expect(service.start()).rejects.toThrow('start: the service was stopped');
  });

  it('stopped while starting, it finishes binding and then closes (no server left listening)', async () => {
    const service = createService({ name: 'echo', port: 0 });
    service.addService(echoService, echo);
    const started = service.start();
    const stopped = service.stop();
    const { port } = await started;
    await stopped;
    expect(service.health.get('')).toBe('NOT_SERVING');
    const again = createService({ name: 'echo-again', port });
    again.addService(echoService, echo);
    await expect(again.start()).resolves.toMatchObject({ port }); // the port is free again
    await again.stop();
  });
});
