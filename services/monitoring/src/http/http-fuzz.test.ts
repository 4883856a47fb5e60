// Monitoring's HTTP listener under bad input: random request targets and query strings, tokens
// with bytes no token has, random methods and bodies, huge headers, junk on the socket and
// requests that trickle. Every request gets a page or a 4xx with a JSON {"error": "..."}, never a
// 500, and the server stays up.
import { rawHttp as raw, type RawAnswer } from '@quanta/service-kit/testing';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../testing/harness.js';
import { startHarness } from '../testing/harness.js';

const FAULTS = new Set([400, 401, 403, 404, 405, 408, 431]);

function expectPageOrFault(answer: RawAnswer, where: string): void {
  if (answer.status === 200 || answer.status === 0) return;
  expect(FAULTS.has(answer.status), `${where}: status ${answer.status} ${answer.body.slice(0, 200)}`).toBe(true);
  expect(typeof (JSON.parse(answer.body) as { error?: unknown }).error, where).toBe('string');
}

describe("monitoring's HTTP listener under bad input", () => {
  let h: Harness;
  let port: number;
  let token: string;

  beforeAll(async () => {
    h = await startHarness({ httpLimits: { headersTimeoutMs: 300, requestTimeoutMs: 600 } });
    port = Number(new URL(h.server.http.url).port);
    token = await h.token('acme', ['monitoring:read']);
  });
  afterAll(() => h.close());

  it('random targets, queries, tokens, methods and bodies: a page or a JSON 4xx, never a 500', async () => {
    const path = fc.oneof(
      fc.constantFrom(
        '/',
        '/metrics',
        '/api/overview',
        '/healthz',
        '/index.html',
        '//x',
        '/%',
        '/%ff%fe',
        'http://x:99999/',
        '*',
        '/api/overview/',
      ),
      fc.webPath(),
    );
    const query = fc.oneof(
      fc.constant(''),
      fc.constantFrom(
        '?window=abc',
        '?window=1e9',
        '?step=0',
        '?window=10&step=11',
        '?window=3600&step=1',
        '?token=',
        '?token=%FF%00',
      ),
      fc.string({ maxLength: 30 }).map((s) => `?token=${encodeURIComponent(s)}`),
      fc.webQueryParameters().map((q) => `?${q}`),
    );
    const auth = fc.oneof(
      fc.constant(undefined),
      fc.constant(`Bearer ${token}`),
      fc.constantFrom('Bearer', 'Basic abc', 'Bearer a.b.c', `Bearer ${token}x`),
      fc
        .uint8Array({ maxLength: 40 })
        .map((b) => `Bearer ${Buffer.from(b.filter((c) => c >= 0x20 && c !== 0x7f)).toString('latin1')}`),
    );
    const method = fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'BREW');
    await fc.assert(
      fc.asyncProperty(method, path, query, auth, fc.uint8Array({ maxLength: 200 }), async (m, p, q, a, body) => {
        const target = p.startsWith('/') || p === '*' || p.startsWith('http') ? p : `/${p}`;
        const authorization = a === undefined ? '' : `Authorization: ${a}\r\n`;
        const head =
          `${m} ${target}${q} HTTP/1.1\r\nHost: x\r\n${authorization}` +
          `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
        const answer = await raw(port, [Buffer.from(head, 'latin1'), Buffer.from(body)]);
        if (m !== 'HEAD') expectPageOrFault(answer, `${m} ${target}${q} ${a ?? ''}`);
        else expect(answer.status === 500).toBe(false);
      }),
      { numRuns: 400, seed: 20261207 },
    );
    expect((await fetch(`${h.server.http.url}healthz`)).status).toBe(200);
  }, 120_000);

  it('huge headers, junk on the socket, and requests that trickle: a JSON 4xx or a closed connection', async () => {
    const huge = await raw(port, [`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`]);
    expect(huge.status).toBe(431);
    expect(typeof (JSON.parse(huge.body) as { error?: unknown }).error).toBe('string');
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 200 }), async (junk) => {
        expectPageOrFault(
          await raw(port, [Buffer.from(junk), '\r\n\r\n']),
          `junk ${Buffer.from(junk).toString('hex').slice(0, 40)}`,
        );
      }),
      { numRuns: 200, seed: 11 },
    );
    // Headers that never end are cut by the headers timeout.
    const slow = await raw(port, ['GET /metrics HTTP/1.1\r\nHost: x\r\n']);
    expect(slow.status).toBe(408);
    expect((JSON.parse(slow.body) as { error: string }).error).toMatch(/too slowly/);
    expect((await fetch(`${h.server.http.url}healthz`)).status).toBe(200);
  }, 60_000);
});
