// The REST door under bad input at the HTTP level (the JSON bodies themselves are fuzzed in
// server/fuzz.test.ts): random bytes as bodies, inconsistent Triton binary lengths, invalid UTF-8,
// huge headers, malformed request lines, bodies over the limit and bodies that trickle. Every
// request gets a 4xx with a JSON {"error": "..."} (or a right answer), never a 500, and the server
// stays up with a bounded heap.
import { connect } from 'node:net';
import { buildMlp } from '@quanta/onnx';
import { rawHttp as raw, type RawAnswer } from '@quanta/service-kit/testing';
import fc from 'fast-check';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../testing/harness.js';
import { startHarness } from '../testing/harness.js';
import { startHttpListener } from './http-listener.js';

const LIMIT = 1024 * 1024;
const FAULTS = new Set([400, 401, 404, 405, 408, 413, 431]);

function expectFault(answer: RawAnswer, where: string): void {
  expect(FAULTS.has(answer.status), `${where}: status ${answer.status} ${answer.body.slice(0, 200)}`).toBe(true);
  const parsed = JSON.parse(answer.body) as { error?: unknown };
  expect(typeof parsed.error, where).toBe('string');
}

const post = (token: string, headers: Record<string, string>, body: Buffer): Buffer =>
  Buffer.concat([
    Buffer.from(
      [
        'POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\n',
        `Authorization: Bearer ${token}\r\nContent-Length: ${body.length}\r\n`,
        ...Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`),
        'Connection: close\r\n\r\n',
      ].join(''),
      'latin1',
    ),
    body,
  ]);

describe('the REST door under bad HTTP input', () => {
  let h: Harness;
  let token: string;
  let port: number;

  beforeAll(async () => {
    h = await startHarness({ config: { maxBodyBytes: LIMIT } });
    await h.deploy('acme', 'mlp', '1', buildMlp());
    token = await h.token('acme', ['infer', 'models:read']);
    port = h.server.http.port;
  });
  afterAll(() => h.close());

  it('random bodies and Inference-Header-Content-Length values: 4xx with a JSON error or an answer', async () => {
    const header = fc.oneof(
      fc.constant(undefined),
      fc.nat({ max: 400 }).map(String),
      fc.constantFrom('-1', '1e3', '0x10', ' 5', '', '99999999999999999999', 'NaN', '3.5'),
    );
    const jsonHead = fc.record({
      name: fc.constantFrom('input', 'x', ''),
      datatype: fc.constantFrom('FP32', 'INT8', 'BYTES', 'FP16', 'nope'),
      shape: fc.array(fc.integer({ min: -2, max: 6 }), { maxLength: 3 }),
      size: fc.integer({ min: -4, max: 80 }),
    });
    const seen = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(
        header,
        jsonHead,
        fc.uint8Array({ maxLength: 120 }),
        fc.boolean(),
        async (hcl, head, bytes, structured) => {
          // Half the runs send a KServe JSON header with a binary tensor, so the binary path is reached.
          const json = Buffer.from(
            JSON.stringify({
              inputs: [
                {
                  name: head.name,
                  datatype: head.datatype,
                  shape: head.shape,
                  parameters: { binary_data_size: head.size },
                },
              ],
            }),
          );
          const body = structured ? Buffer.concat([json, Buffer.from(bytes)]) : Buffer.from(bytes);
          const headers: Record<string, string> = {};
          if (hcl !== undefined)
            headers['Inference-Header-Content-Length'] = structured && hcl === '0' ? String(json.length) : hcl;
          const answer = await raw(port, [post(token, headers, body)]);
          seen.set(answer.status, (seen.get(answer.status) ?? 0) + 1);
          if (answer.status !== 200) expectFault(answer, `hcl=${String(hcl)} bytes=${bytes.length}`);
        },
      ),
      { numRuns: 300, seed: 20261207 },
    );
    // The runs reached the decoder (400s), not just the door.
    expect(seen.get(400) ?? 0).toBeGreaterThan(200);
  }, 120_000);

  it('invalid UTF-8 in the JSON is refused with 400, never replaced', async () => {
    const json = Buffer.concat([
      Buffer.from('{"id":"'),
      Buffer.from([0xc3, 0x28, 0xff]),
      Buffer.from('","inputs":[]}'),
    ]);
    const answer = await raw(port, [post(token, { 'Content-Type': 'application/json' }, json)]);
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body)).toEqual({ error: 'the request body is not valid UTF-8 JSON' });
    // In the JSON part of a binary request too.
    const binary = await raw(port, [
      post(token, { 'Inference-Header-Content-Length': String(json.length) }, Buffer.concat([json, Buffer.alloc(8)])),
    ]);
    expect(binary.status).toBe(400);
  });

  it('huge headers, bad request lines and Authorization bytes, junk: a JSON 4xx, then the server answers', async () => {
    const huge = await raw(port, [
      `GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`,
    ]);
    expect(huge.status).toBe(431);
    expect(JSON.parse(huge.body)).toMatchObject({ error: expect.stringContaining('headers') as unknown });
    expectFault(await raw(port, ['GE\u0001T / HTTP/1.1\r\n\r\n']), 'bad method');
    expectFault(
      await raw(port, ['GET /v2/models/mlp HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n']),
      'bad content-length',
    );
    expectFault(
      await raw(port, ['GET http://x:99999/v2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n']),
      'absolute URL with a bad port',
    );
    expectFault(
      await raw(port, [
        Buffer.from(
          'GET /v2/models/mlp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xe9\x7f\r\nConnection: close\r\n\r\n',
          'latin1',
        ),
      ]),
      'bad authorization',
    );
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 200 }), async (junk) => {
        const answer = await raw(port, [Buffer.from(junk), '\r\n\r\n']);
        // Junk that parses as a request line is a request: a fault or a page, never a 500.
        if (answer.status !== 0 && answer.status !== 200)
          expectFault(answer, `junk ${Buffer.from(junk).toString('hex').slice(0, 40)}`);
      }),
      { numRuns: 200, seed: 7 },
    );
    expect((await h.rest('GET', '/v2/health/live')).status).toBe(200);
  }, 60_000);

  it('bodies over the limit get 413 with a JSON error, and the heap does not grow with them', async () => {
    const big = Buffer.alloc(3 * LIMIT, 0x20);
    const first = await raw(port, [post(token, {}, big)]);
    expect(first.status).toBe(413);
    expect(JSON.parse(first.body)).toMatchObject({
      error: expect.stringContaining('larger than the limit') as unknown,
    });
    // Undeclared length (chunked): cut at the limit as the bytes come.
    const chunked = await raw(port, [
      `POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n` +
        'Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n',
      `${(2 * LIMIT).toString(16)}\r\n`,
      Buffer.alloc(2 * LIMIT, 0x20),
      '\r\n0\r\n\r\n',
    ]);
    expect(chunked.status).toBe(413);
    global.gc?.();
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 20; i++) expect((await raw(port, [post(token, {}, big)])).status).toBe(413);
    global.gc?.();
    // 20 bodies of 3 MiB went through; what stays is far below one of them each.
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(20 * LIMIT);
  }, 60_000);
});

describe('the HTTP listener cuts requests that trickle (slowloris)', () => {
  it('a body trickling past the request timeout gets 408 with a JSON error and a close; slow headers too', async () => {
    const listener = await startHttpListener({
      host: '127.0.0.1',
      port: 0,
      what: 'test listener',
      limits: { headersTimeoutMs: 300, requestTimeoutMs: 600 },
      onRequest: (req, res) => {
        req.resume();
        req.on('end', () => res.end('{}'));
      },
      refuse: (res) => res.end(),
    });
    const logger = pino({ level: 'silent' });
    try {
      const started = Date.now();
      const trickled = await new Promise<RawAnswer>((resolve) => {
        const socket = connect(listener.port, '127.0.0.1');
        const got: Buffer[] = [];
        let timer: NodeJS.Timeout | undefined;
        socket.on('connect', () => {
          socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n');
          timer = setInterval(() => socket.write('a'), 50);
        });
        socket.on('data', (d: Buffer) => got.push(d));
        socket.on('error', () => undefined);
        socket.on('close', () => {
          clearInterval(timer);
          const text = Buffer.concat(got).toString('latin1');
          resolve({
            status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0),
            body: text.slice(text.indexOf('\r\n\r\n') + 4),
          });
        });
      });
      const took = Date.now() - started;
      logger.info({ took }, 'trickled request cut');
      expect(trickled.status).toBe(408);
      expect(JSON.parse(trickled.body)).toMatchObject({ error: expect.stringContaining('too slowly') as unknown });
      expect(took).toBeLessThan(5000);

      // Headers that never end.
      const slowHeaders = await raw(listener.port, ['GET / HTTP/1.1\r\nHost: x\r\n']);
      expect(slowHeaders.status).toBe(408);
    } finally {
      await listener.close({ graceMs: 100 });
    }
  }, 30_000);
});
