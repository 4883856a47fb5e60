import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createClient } from './client.js';
import { unary } from './handlers.js';
import { EchoClient, type EchoReply, type EchoRequest } from './testing/echo.js';
import type { Running } from './testing/harness.js';
import { callUnary, startEcho } from './testing/harness.js';

let running: Running | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});

const echo = {
  Echo: unary<EchoRequest, EchoReply>({ scope: 'public' }, (req) =>
    Promise.resolve({ text: req.text.slice(0, 8), index: req.text.length, payload: Buffer.alloc(0), tenant: '' }),
  ),
};

/** What an HTTP/2 client of the service is allowed to send: the streams' initial window and the connection's window. */
async function windowsSeenByAClient(port: number): Promise<{ stream: number; connection: number }> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    await new Promise<void>((resolve, reject) => {
      session.once('remoteSettings', () => resolve());
      session.once('error', reject);
    });
    // The connection's WINDOW_UPDATE follows the SETTINGS frame: give it a moment to arrive.
    const deadline = Date.now() + 2000;
    let connection = session.state.remoteWindowSize ?? 0;
    const before = connection;
    while (connection === before && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      connection = session.state.remoteWindowSize ?? 0;
    }
    return { stream: session.remoteSettings.initialWindowSize ?? 0, connection };
  } finally {
    session.destroy();
  }
}

describe('HTTP/2 flow-control windows', () => {
  it('lets clients send 1 MiB per stream and 4 MiB per connection by default', async () => {
    running = await startEcho(echo);
    expect(await windowsSeenByAClient(running.port)).toEqual({ stream: 1 << 20, connection: 4 << 20 });
    // Calls larger than HTTP/2's 64 KiB go through whole.
    expect(await callUnary<EchoReply>(running.client, 'Echo', { text: 'b'.repeat(300_000) })).toMatchObject({
      text: 'bbbbbbbb',
      index: 300_000,
    });
  });

  it('keeps HTTP/2’s 64 KiB windows when configured at 65535 or less', async () => {
    running = await startEcho(echo, { flowControlWindow: 0 });
    const seen = await windowsSeenByAClient(running.port);
    expect(seen.stream).toBe(65_535);
    expect(seen.connection).toBeLessThanOrEqual(65_535);
  });
});

describe('createClient', () => {
  it('lets servers send 4 MiB ahead per stream', async () => {
    // A bare HTTP/2 server that records the SETTINGS a gRPC client of the kit announces.
    const server = http2.createServer();
    const announced = new Promise<number | undefined>((resolve) => {
      server.on('session', (session) =>
        session.once('remoteSettings', (settings) => resolve(settings.initialWindowSize)),
      );
    });
    server.on('stream', (stream) =>
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '0' }, { endStream: true }),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const client = createClient(EchoClient, `127.0.0.1:${port}`, { telemetry: false });
    try {
      void callUnary(client, 'Echo', { text: 'x' }).catch(() => undefined);
      expect(await announced).toBe(4 << 20);
    } finally {
      client.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
