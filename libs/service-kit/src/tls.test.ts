import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from './client.js';
import { ConfigError, loadConfig } from './config.js';
import { unary } from './handlers.js';
import { createService } from './service.js';
import { checkServiceConfig, clientTlsFromConfig, serviceConfigFields } from './service-config.js';
import { EchoClient, echoService } from './testing/echo.js';
import type { EchoReply, EchoRequest } from './testing/echo.js';
import type { Running } from './testing/harness.js';
import { callUnary, grpcError, startEcho } from './testing/harness.js';
import { createTestPki } from './testing/pki.js';

let dir = '';
const file = (name: string): string => join(dir, name);

/** A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate (openssl). */
beforeAll(async () => {
  dir = await createTestPki({
    prefix: 'service-kit-tls-',
    caName: 'kit-test-ca',
    certs: { server: 'subjectAltName=IP:127.0.0.1,DNS:localhost', client: 'subjectAltName=DNS:registry.quanta' },
  });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let running: Running | undefined;
let client: grpc.Client | undefined;
afterEach(async () => {
  client?.close();
  await running?.close();
  running = undefined;
  client = undefined;
});

const echo = {
  Echo: unary<EchoRequest, EchoReply>({ scope: 'public' }, (req) =>
    Promise.resolve({ text: req.text, index: 0, payload: Buffer.alloc(0), tenant: '' }),
  ),
};

describe('TLS', () => {
  it('serves TLS from cert/key files; a client trusting the CA gets through, a plaintext one does not', async () => {
    running = await startEcho(echo, { tls: { certFile: file('server.pem'), keyFile: file('server.key') } });
    client = createClient(EchoClient, `127.0.0.1:${running.port}`, { tls: { caFile: file('ca.pem') } });
    expect(await callUnary(client, 'Echo', { text: 'secure' })).toMatchObject({ text: 'secure' });

    const plain = new EchoClient(`127.0.0.1:${running.port}`, grpc.credentials.createInsecure());
    try {
      const error = await grpcError(
        callUnary(plain, 'Echo', { text: 'x' }, new grpc.Metadata(), { deadline: Date.now() + 5000 }),
      );
      expect(error.code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      plain.close();
    }
  });

  it('checks the server name, which serverName can set', async () => {
    running = await startEcho(echo, { tls: { certFile: file('server.pem'), keyFile: file('server.key') } });
    client = createClient(EchoClient, `127.0.0.1:${running.port}`, {
      tls: { caFile: file('ca.pem'), serverName: 'localhost' },
    });
    expect(await callUnary(client, 'Echo', { text: 'named' })).toMatchObject({ text: 'named' });
    const wrong = createClient(EchoClient, `127.0.0.1:${running.port}`, {
      tls: { caFile: file('ca.pem'), serverName: 'crypto.quanta' },
    });
    try {
      const error = await grpcError(
        callUnary(wrong, 'Echo', { text: 'x' }, new grpc.Metadata(), { deadline: Date.now() + 5000 }),
      );
      expect(error.code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      wrong.close();
    }
  });

  it('with requireClientCert (mTLS) refuses clients without a certificate from the CA', async () => {
    running = await startEcho(echo, {
      tls: {
        certFile: file('server.pem'),
        keyFile: file('server.key'),
        caFile: file('ca.pem'),
        requireClientCert: true,
      },
    });
    client = createClient(EchoClient, `127.0.0.1:${running.port}`, {
      tls: { caFile: file('ca.pem'), certFile: file('client.pem'), keyFile: file('client.key') },
    });
    expect(await callUnary(client, 'Echo', { text: 'mutual' })).toMatchObject({ text: 'mutual' });

    const anonymous = createClient(EchoClient, `127.0.0.1:${running.port}`, { tls: { caFile: file('ca.pem') } });
    try {
      const error = await grpcError(
        callUnary(anonymous, 'Echo', { text: 'x' }, new grpc.Metadata(), { deadline: Date.now() + 5000 }),
      );
      expect(error.code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      anonymous.close();
    }
  });

  it('QUANTA_CLIENT_TLS_CA/CERT/KEY give a service the client side of mTLS; without them it is plaintext', async () => {
    const schema = serviceConfigFields({ envPrefix: 'QUANTA_ECHO', port: 0 });
    const env = {
      QUANTA_CLIENT_TLS_CA: file('ca.pem'),
      QUANTA_CLIENT_TLS_CERT: file('client.pem'),
      QUANTA_CLIENT_TLS_KEY: file('client.key'),
    };
    const tls = clientTlsFromConfig(loadConfig(schema, { env, argv: [], check: checkServiceConfig }));
    expect(tls).toEqual({ caFile: file('ca.pem'), certFile: file('client.pem'), keyFile: file('client.key') });
    expect(clientTlsFromConfig(loadConfig(schema, { env: {}, argv: [] }))).toBeUndefined();
    expect(clientTlsFromConfig(loadConfig(schema, { env: { QUANTA_CLIENT_TLS: '1' }, argv: [] }))).toEqual({});
    expect(() =>
      loadConfig(schema, { env: { QUANTA_CLIENT_TLS_CERT: file('client.pem') }, argv: [], check: checkServiceConfig }),
    ).toThrow(ConfigError);

    running = await startEcho(echo, {
      tls: {
        certFile: file('server.pem'),
        keyFile: file('server.key'),
        caFile: file('ca.pem'),
        requireClientCert: true,
      },
    });
    client = createClient(EchoClient, `127.0.0.1:${running.port}`, tls === undefined ? {} : { tls });
    expect(await callUnary(client, 'Echo', { text: 'from config' })).toMatchObject({ text: 'from config' });
  });

  it('says which TLS file it cannot read', async () => {
    const service = createService({
      name: 'echo',
      port: 0,
      tls: { certFile: file('nope.pem'), keyFile: file('server.key') },
    });
    service.addService(echoService, echo);
    await expect(service.start()).rejects.toThrow(`cannot read the TLS certificate file "${file('nope.pem')}"`);
  });

  it('refuses requireClientCert without a CA', async () => {
    const service = createService({
      name: 'echo',
      port: 0,
      tls: { certFile: file('server.pem'), keyFile: file('server.key'), requireClientCert: true },
    });
    await expect(service.start()).rejects.toThrow('requireClientCert needs caFile');
  });
});
