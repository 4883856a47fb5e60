import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import type { Authenticator } from './auth.js';
import { createClient } from './client.js';
import { unary } from './handlers.js';
import { EchoClient } from './testing/echo.js';
import type { EchoReply, EchoRequest } from './testing/echo.js';
import type { Running } from './testing/harness.js';
import { callUnary, grpcError, startEcho, testAuthenticator } from './testing/harness.js';

let running: Running | undefined;
let client: grpc.Client | undefined;
afterEach(async () => {
  client?.close();
  await running?.close();
  running = undefined;
  client = undefined;
});

let authenticated = 0;
const countingAuthenticator: Authenticator = (metadata) => {
  authenticated++;
  return testAuthenticator(metadata);
};

const whoAmI = {
  Echo: unary<EchoRequest, EchoReply>({ scope: 'keys:use' }, async (req, ctx) => {
    if (req.hold) await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
    return {
      text: `${ctx.principal?.tenant}/${ctx.principal?.subject}:${req.text}`,
      index: 0,
      payload: Buffer.alloc(0),
      tenant: '',
    };
  }),
};

describe('createClient', () => {
  it('sends a fixed bearer token', async () => {
    running = await startEcho(whoAmI);
    client = createClient(EchoClient, `127.0.0.1:${running.port}`, { token: 'acme/svc-registry/keys:use' });
    expect(await callUnary(client, 'Echo', { text: 'x' })).toMatchObject({ text: 'acme/svc-registry:x' });
  });

  it('asks a token function on every call', async () => {
    running = await startEcho(whoAmI);
    let asked = 0;
    client = createClient(EchoClient, `127.0.0.1:${running.port}`, {
      token: () => Promise.resolve(`acme/caller-${++asked}/keys:use`),
    });
    expect(await callUnary(client, 'Echo', { text: 'a' })).toMatchObject({ text: 'acme/caller-1:a' });
    expect(await callUnary(client, 'Echo', { text: 'b' })).toMatchObject({ text: 'acme/caller-2:b' });
  });

  it('fails the call UNAUTHENTICATED, without reaching the server, when the token cannot be had', async () => {
    running = await startEcho(whoAmI, { authenticator: countingAuthenticator });
    authenticated = 0;
    client = createClient(EchoClient, `127.0.0.1:${running.port}`, {
      token: () => Promise.reject(new Error('token file .quanta/admin.token is missing')),
    });
    const error = await grpcError(callUnary(client, 'Echo', { text: 'x' }));
    expect(error.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(error.details).toBe('could not get a token: token file .quanta/admin.token is missing');
    expect(authenticated).toBe(0);
  });

  it('applies a default deadline to calls made without one', async () => {
    running = await startEcho(whoAmI);
    client = createClient(EchoClient, `127.0.0.1:${running.port}`, {
      token: 'acme/a/keys:use',
      defaultDeadlineMs: 200,
    });
    const error = await grpcError(callUnary(client, 'Echo', { text: 'x', hold: true }));
    expect(error.code).toBe(grpc.status.DEADLINE_EXCEEDED);
  });
});

describe('createClient load balancing', () => {
  it('spreads calls over every address with round_robin', async () => {
    const servedBy: string[] = [];
    const replica = (name: string) => ({
      Echo: unary<EchoRequest, EchoReply>({ scope: 'public' }, (req) => {
        servedBy.push(name);
        return Promise.resolve({ text: req.text, index: 0, payload: Buffer.alloc(0), tenant: '' });
      }),
    });
    const a = await startEcho(replica('a'));
    const b = await startEcho(replica('b'));
    const spread = createClient(EchoClient, `ipv4:127.0.0.1:${a.port},127.0.0.1:${b.port}`, {
      loadBalancing: 'round_robin',
    });
    try {
      // round_robin connects to both before it spreads; wait until the channel is READY.
      await new Promise<void>((resolve, reject) =>
        spread.waitForReady(Date.now() + 10_000, (error) => (error ? reject(error) : resolve())),
      );
      // The second connection may come up a little later: call until both served (pick_first never would).
      for (let i = 0; i < 200 && new Set(servedBy).size < 2; i++) await callUnary(spread, 'Echo', { text: `${i}` });
      expect(servedBy.filter((n) => n === 'a').length).toBeGreaterThan(0);
      expect(servedBy.filter((n) => n === 'b').length).toBeGreaterThan(0);
    } finally {
      spread.close();
      await Promise.all([a.close(), b.close()]);
    }
  });
});

describe('maxReceiveMessageLength', () => {
  it('refuses larger requests with RESOURCE_EXHAUSTED, and can be raised', async () => {
    running = await startEcho(whoAmI, { maxReceiveMessageLength: 1024 });
    client = createClient(EchoClient, `127.0.0.1:${running.port}`, { token: 'acme/a/keys:use' });
    const error = await grpcError(callUnary(client, 'Echo', { text: 'x'.repeat(2000) }));
    expect(error.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(await callUnary(client, 'Echo', { text: 'y'.repeat(900) })).toMatchObject({
      text: `acme/a:${'y'.repeat(900)}`,
    });
  });

  it('defaults to 4 MiB like grpc-js', async () => {
    running = await startEcho(whoAmI);
    client = createClient(EchoClient, `127.0.0.1:${running.port}`, { token: 'acme/a/keys:use' });
    const ok = await callUnary<EchoReply>(client, 'Echo', { text: 'z'.repeat(4 * 1024 * 1024 - 64) });
    expect(ok.text.length).toBe('acme/a:'.length + 4 * 1024 * 1024 - 64);
    const error = await grpcError(callUnary(client, 'Echo', { text: 'z'.repeat(4 * 1024 * 1024 + 1) }));
    expect(error.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  });
});
