import { readFile, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { createTestPki } from '@quanta/service-kit/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../testing/harness.js';
import { startHarness } from '../testing/harness.js';

let dir = '';
const file = (name: string): string => join(dir, name);

/** A throwaway CA and a server certificate for 127.0.0.1/localhost (openssl), as service-kit's TLS tests make them. */
beforeAll(async () => {
  dir = await createTestPki({
    prefix: 'monitoring-https-',
    caName: 'monitoring-test-ca',
    certs: { server: 'subjectAltName=IP:127.0.0.1,DNS:localhost' },
  });
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

interface Reply {
  status: number;
  type: string;
  body: string;
}

/** One GET over HTTPS trusting only `ca` (no client certificate), or over plain HTTP when `ca` is undefined. */
function get(url: string, options: { ca?: Buffer; token?: string }): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers = options.token === undefined ? {} : { authorization: `Bearer ${options.token}` };
    const req = url.startsWith('https:')
      ? httpsRequest(url, { headers, ...(options.ca === undefined ? {} : { ca: options.ca }) })
      : httpRequest(url, { headers });
    req.setTimeout(5000, () => req.destroy(new Error('timed out')));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          type: String(res.headers['content-type']),
          body: Buffer.concat(chunks).toString(),
        }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function failure(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (error: unknown) {
    return error as Error & { code?: string };
  }
  throw new Error('expected the request to fail, it succeeded');
}

describe('HTTP listener under TLS', () => {
  let h: Harness;
  let ca: Buffer;

  beforeAll(async () => {
    ca = await readFile(file('ca.pem'));
    // gRPC requires client certificates (mTLS); the HTTP listener asks for none.
    h = await startHarness({
      config: {
        tlsCert: file('server.pem'),
        tlsKey: file('server.key'),
        tlsCa: file('ca.pem'),
        tlsRequireClientCert: true,
      },
    });
  });
  afterAll(async () => h.close());

  it(
    'serves /metrics and the dashboard over HTTPS with the gRPC certificate, ' + 'no client certificate needed',
    async () => {
      expect(h.server.http.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/$/);
      const reader = await h.token('acme', ['monitoring:read']);
      const metrics = await get(`${h.server.http.url}metrics`, { ca, token: reader });
      expect(metrics.status).toBe(200);
      expect(metrics.type).toMatch(/^text\/plain; version=0\.0\.4/);
      expect(metrics.body).toMatch(/^# HELP process_cpu_seconds_total /m);
      const page = await get(h.server.http.url, { ca });
      expect(page.status).toBe(200);
      expect(page.body).toMatch(/<html/i);
      // Still checks tokens.
      expect((await get(`${h.server.http.url}metrics`, { ca })).status).toBe(401);
    },
  );

  it('refuses a client that does not trust the CA, and plain HTTP on the same port', async () => {
    const untrusted = await failure(get(h.server.http.url, {}));
    expect(untrusted.code).toMatch(
      /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY/,
    );
    const plain = await failure(get(h.server.http.url.replace('https:', 'http:'), {}));
    expect(plain.message).toMatch(/socket hang up|ECONNRESET|Parse Error/);
  });
});

describe('HTTP listener without TLS', () => {
  it('stays plain HTTP by default', async () => {
    const h = await startHarness();
    try {
      expect(h.server.http.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
      expect((await get(`${h.server.http.url}healthz`, {})).body).toBe('ok\n');
    } finally {
      await h.close();
    }
  });
});
