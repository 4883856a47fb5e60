import { createHmac, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { crypto as cpb, monitoring as pb, unaryCaller } from '@quanta/contracts';
import type { ServiceProcess } from '@quanta/service-kit/testing';
import { createTestPki, startServiceProcess } from '@quanta/service-kit/testing';
import { recordSpans, type RecordedTelemetry } from '@quanta/telemetry/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AlertmanagerBody } from '../core/webhook.js';
import type { Harness } from '../testing/harness.js';
import { DEFAULT_RETRY, createNotifier, retryDelayMs } from './notifier.js';
import { T0, alertRule, bearer, call, failure, ingest, record, seconds, startHarness } from '../testing/harness.js';

const D = pb.WebhookDeliveryState;
const S = pb.AlertState;
/** A fast schedule with the contract's shape: 40 ms doubling to 160 ms, 4 attempts. */
const RETRY = { firstDelayMs: 40, maxDelayMs: 160, maxAttempts: 4 };

interface Received {
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  readonly atMs: number;
}

/**
 * A webhook receiver on 127.0.0.1:0 (HTTPS with `tls`): answers each path with the scripted
 * statuses, then 200.
 */
async function startReceiver(tls?: { cert: Buffer; key: Buffer }): Promise<{
  url: (path: string) => string;
  received: Received[];
  script: Map<string, number[]>;
  close(): Promise<void>;
}> {
  const received: Received[] = [];
  const script = new Map<string, number[]>();
  const listener: RequestListener = (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '/';
      received.push({ path, headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), atMs: Date.now() });
      res.statusCode = script.get(path)?.shift() ?? 200;
      res.end('ok');
    });
  };
  const server: Server = tls === undefined ? createServer(listener) : createHttpsServer(tls, listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: (path) => `${tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}${path}`,
    received,
    script,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** `t=<unix>,v1=<hex>` → its parts. */
function parseSignature(header: string | string[] | undefined): { t: number; v1: string } {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(String(header));
  if (m === null) throw new Error(`not a signature header: ${String(header)}`);
  return { t: Number(m[1]), v1: m[2] as string };
}

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('alert webhooks: signed Alertmanager bodies through a real crypto service', () => {
  let home: string;
  let crypto: ServiceProcess;
  let cryptoClient: cpb.CryptoServiceClient;
  let cryptoCall: ReturnType<typeof unaryCaller<typeof cpb.CryptoServiceService>>;
  let cryptoAdmin: string;
  let acmeKeys: string;
  let h: Harness;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let admin: string;
  let acme: string;
  /** The raw secret imported as acme's `hooks` key, and the exported one of `hooks-exported`. */
  const imported = randomBytes(32);
  let exported: Buffer;
  /** Finished spans, in memory. */
  let recorded: RecordedTelemetry;

  beforeAll(async () => {
    recorded = recordSpans({ serviceName: 'monitoring' });
    home = await mkdtemp(join(tmpdir(), 'quanta-webhooks-'));
    crypto = await startServiceProcess('crypto', {
      QUANTA_HOME: home,
      QUANTA_CRYPTO_PORT: '0',
      QUANTA_DATABASE_URL: undefined,
    });
    cryptoAdmin = (await readFile(join(home, 'admin.token'), 'utf8')).trim();
    cryptoClient = new cpb.CryptoServiceClient(crypto.address, grpc.credentials.createInsecure());
    cryptoCall = unaryCaller(cryptoClient, cpb.CryptoServiceService, { deadlineMs: 10_000 });
    acmeKeys = (
      await cryptoCall(
        'issueToken',
        { tenant: 'acme', subject: 'acme-ops', scopes: ['keys:admin', 'keys:use'], ttlSeconds: 3600n },
        { metadata: bearer(cryptoAdmin) },
      )
    ).token;
    const md = { metadata: bearer(acmeKeys) };
    await cryptoCall(
      'importKey',
      { name: 'hooks', type: cpb.KeyType.KEY_TYPE_HMAC_SHA256, material: imported, config: {} },
      md,
    );
    await cryptoCall(
      'createKey',
      { name: 'hooks-exported', type: cpb.KeyType.KEY_TYPE_HMAC_SHA256, config: { exportable: true } },
      md,
    );
    exported = (await cryptoCall('exportKey', { name: 'hooks-exported', version: 0 }, md)).material;
    await cryptoCall('createKey', { name: 'not-hmac', type: cpb.KeyType.KEY_TYPE_AES256_GCM, config: {} }, md);

    receiver = await startReceiver();
    // Monitoring signs with the platform's admin token from crypto, as `npm start` runs it.
    h = await startHarness({
      config: { cryptoAddr: crypto.address, serviceToken: cryptoAdmin, externalUrl: 'https://quanta.example/' },
      webhooks: { retry: RETRY },
    });
    admin = await h.token('platform', ['admin']);
    acme = await h.token('acme', ['monitoring:read', 'alerts:write']);
  }, 60_000);
  afterAll(async () => {
    await h?.close();
    await receiver?.close();
    cryptoClient?.close();
    await crypto?.stop();
    await rm(home, { recursive: true, force: true });
    await recorded?.telemetry.shutdown();
  });

  /**
   * Gives `model` 20 requests of 20 ms at `atMs` and evaluates: its rule (p99 > 5 ms, `for` 0)
   * fires. Each test has its own model, so earlier rules stay as they are.
   */
  async function fire(atMs: number, model: string, version = '1'): Promise<void> {
    h.now.ms = atMs;
    await ingest(h.client, admin, [
      Array.from({ length: 20 }, () => record(atMs, { model, version, totalUs: 20_000n })),
    ]);
    h.server.alerts.evaluate();
  }
  function resolve(atMs: number): void {
    h.now.ms = atMs;
    h.server.alerts.evaluate();
  }
  const alertsOf = async (rule: string): Promise<pb.Alert[]> =>
    (await call(h.client, 'listAlerts', { pageSize: 0, pageToken: '', states: [], ruleName: rule }, acme)).alerts;

  /** Checks one received request's signature both ways: crypto's Verify, and HMAC-SHA256 here. */
  async function verify(r: Received, secret: Buffer, keyName: string): Promise<void> {
    const { t, v1 } = parseSignature(r.headers['x-quanta-signature']);
    expect(Math.abs(t - Date.now() / 1000)).toBeLessThan(120);
    const version = Number(r.headers['x-quanta-key-version']);
    expect(version).toBe(1);
    const signed = Buffer.from(`${t}.${r.body}`, 'utf8');
    expect(createHmac('sha256', secret).update(signed).digest('hex')).toBe(v1);
    const md = { metadata: bearer(acmeKeys) };
    const check = (data: Buffer) =>
      cryptoCall('verify', { keyName, data, signature: Buffer.from(v1, 'hex'), keyVersion: version }, md);
    expect((await check(signed)).valid).toBe(true);
    // The signature covers the time and every byte of the body.
    expect((await check(Buffer.from(`${t + 1}.${r.body}`, 'utf8'))).valid).toBe(false);
    expect((await check(Buffer.from(`${t}.${r.body} `, 'utf8'))).valid).toBe(false);
  }

  it('POSTs a signed Alertmanager body on firing and on resolving, and records each delivery', async () => {
    await call(
      h.client,
      'createAlertRule',
      {
        rule: alertRule({
          name: 'slow',
          forDuration: seconds(0),
          description: 'cifar is slow',
          webhooks: [
            { url: receiver.url('/imported'), hmacKey: 'hooks', skipResolved: false },
            { url: receiver.url('/exported'), hmacKey: 'hooks-exported', skipResolved: false },
            { url: receiver.url('/firing-only'), hmacKey: 'hooks', skipResolved: true },
          ],
        }),
      },
      acme,
    );
    await fire(T0, 'cifar');
    const firing = (await alertsOf('slow'))[0] as pb.Alert;
    expect(firing.state).toBe(S.ALERT_STATE_FIRING);
    await until('3 firing notifications', () => (receiver.received.length >= 3 ? true : undefined));

    const byPath = (path: string) => receiver.received.filter((r) => r.path === path);
    const first = byPath('/imported')[0] as Received;
    await verify(first, imported, 'hooks');
    await verify(byPath('/exported')[0] as Received, exported, 'hooks-exported');
    await verify(byPath('/firing-only')[0] as Received, imported, 'hooks');
    expect(first.headers['content-type']).toBe('application/json');

    // What Alertmanager receivers read.
    const body = JSON.parse(first.body) as AlertmanagerBody;
    const labels = { alertname: 'slow', model: 'cifar', version: '1', tenant: 'acme' };
    expect(body).toMatchObject({
      version: '4',
      status: 'firing',
      receiver: 'slow',
      truncatedAlerts: 0,
      groupLabels: { alertname: 'slow', tenant: 'acme' },
      commonLabels: labels,
      commonAnnotations: { description: 'cifar is slow', summary: firing.message },
      externalURL: 'https://quanta.example',
    });
    expect(body.groupKey).toBe('{}:{alertname="slow",tenant="acme"}');
    expect(body.alerts).toHaveLength(1);
    const a = body.alerts[0];
    expect(a).toMatchObject({
      status: 'firing',
      labels,
      annotations: { description: 'cifar is slow', summary: firing.message },
      startsAt: new Date(T0).toISOString(),
      endsAt: '0001-01-01T00:00:00Z',
    });
    expect(a?.fingerprint).toMatch(/^[0-9a-f]{16}$/);
    expect(new URL(a?.generatorURL ?? '').origin).toBe('https://quanta.example');

    await until('firing deliveries recorded', async () => {
      const d = (await alertsOf('slow'))[0]?.deliveries ?? [];
      return d.length === 3 && d.every((x) => x.state === D.WEBHOOK_DELIVERY_STATE_DELIVERED) ? true : undefined;
    });

    resolve(T0 + 20_000);
    const resolved = (await alertsOf('slow'))[0] as pb.Alert;
    expect(resolved.state).toBe(S.ALERT_STATE_RESOLVED);
    await until('2 resolved notifications', () => (receiver.received.length >= 5 ? true : undefined));
    await h.server.notifier.idle();
    // skip_resolved: the third webhook was told of the firing only.
    expect(byPath('/firing-only')).toHaveLength(1);
    const last = byPath('/imported')[1] as Received;
    await verify(last, imported, 'hooks');
    await verify(byPath('/exported')[1] as Received, exported, 'hooks-exported');
    const rbody = JSON.parse(last.body) as AlertmanagerBody;
    expect(rbody.status).toBe('resolved');
    expect(rbody.alerts[0]).toMatchObject({
      status: 'resolved',
      labels,
      startsAt: new Date(T0).toISOString(),
      endsAt: new Date(T0 + 20_000).toISOString(),
      // The same alert: receivers pair the resolve with its firing by fingerprint.
      fingerprint: a?.fingerprint,
    });
    expect(rbody.commonAnnotations['summary']).toBe(resolved.message);

    const deliveries = (await alertsOf('slow'))[0]?.deliveries ?? [];
    expect(deliveries.map((d) => [d.url, d.status, d.state, d.attempts, d.lastHttpStatus, d.lastError])).toEqual([
      [receiver.url('/imported'), 'resolved', D.WEBHOOK_DELIVERY_STATE_DELIVERED, 1, 200, ''],
      [receiver.url('/exported'), 'resolved', D.WEBHOOK_DELIVERY_STATE_DELIVERED, 1, 200, ''],
      [receiver.url('/firing-only'), 'firing', D.WEBHOOK_DELIVERY_STATE_DELIVERED, 1, 200, ''],
    ]);
    for (const d of deliveries) {
      expect(d.deliveredTime).toBeInstanceOf(Date);
      expect(d.nextAttemptTime).toBeUndefined();
    }
  });

  it('retries a 500 with a growing backoff, and still sends the resolve after the firing, in order', async () => {
    receiver.received.length = 0;
    receiver.script.set('/flaky', [500, 503]);
    await call(
      h.client,
      'createAlertRule',
      {
        rule: alertRule({
          name: 'flaky',
          model: 'flaky',
          forDuration: seconds(0),
          webhooks: [{ url: receiver.url('/flaky'), hmacKey: 'hooks', skipResolved: false }],
        }),
      },
      acme,
    );
    const changes: pb.WebhookDelivery[] = [];
    const unsubscribe = h.server.alerts.subscribe((tenant, alert, change) => {
      if (tenant === 'acme' && alert.ruleName === 'flaky' && change === 'delivery') changes.push(...alert.deliveries);
    });
    await fire(T0 + 60_000, 'flaky');
    resolve(T0 + 80_000); // while the firing notification is still being retried
    await until('4 requests', () => (receiver.received.length >= 4 ? true : undefined));
    await h.server.notifier.idle();
    unsubscribe();

    const got = receiver.received.map((r) => (JSON.parse(r.body) as AlertmanagerBody).status);
    expect(got).toEqual(['firing', 'firing', 'firing', 'resolved']);
    for (const r of receiver.received) await verify(r, imported, 'hooks');
    // Never earlier than the schedule: 40 ms after the first failure, 80 ms after the second.
    const at = receiver.received.map((r) => r.atMs);
    expect((at[1] as number) - (at[0] as number)).toBeGreaterThanOrEqual(RETRY.firstDelayMs - 5);
    expect((at[2] as number) - (at[1] as number)).toBeGreaterThanOrEqual(2 * RETRY.firstDelayMs - 5);

    const retrying = changes.find((d) => d.state === D.WEBHOOK_DELIVERY_STATE_RETRYING && d.attempts === 1);
    expect(retrying).toMatchObject({
      status: 'firing',
      lastHttpStatus: 500,
      lastError: 'the receiver answered HTTP 500',
    });
    expect(retrying?.nextAttemptTime).toBeInstanceOf(Date);
    expect(changes.find((d) => d.state === D.WEBHOOK_DELIVERY_STATE_DELIVERED && d.status === 'firing')?.attempts).toBe(
      3,
    );
    const [final] = (await alertsOf('flaky'))[0]?.deliveries ?? [];
    expect(final).toMatchObject({ status: 'resolved', state: D.WEBHOOK_DELIVERY_STATE_DELIVERED, attempts: 1 });

    // A span per attempt, with the crypto Sign call inside it.
    const spans = await recorded.finishedSpans();
    const attempts = spans.filter(
      (x) => x.name === 'monitoring.webhook_delivery' && x.attributes['quanta.alert_rule'] === 'flaky',
    );
    expect(
      attempts.map((x) => [
        x.attributes['quanta.webhook.status'],
        x.attributes['quanta.webhook.attempt'],
        x.attributes['http.response.status_code'],
      ]),
    ).toEqual([
      ['firing', 1, 500],
      ['firing', 2, 503],
      ['firing', 3, 200],
      ['resolved', 1, 200],
    ]);
    for (const attempt of attempts) {
      const inside = spans.filter((x) => x.parentSpanContext?.spanId === attempt.spanContext().spanId);
      expect(inside.map((x) => x.name)).toContainEqual(expect.stringMatching(/Sign$/));
    }
  });

  it('gives up after the last attempt, and never sends a body it could not sign', async () => {
    receiver.received.length = 0;
    receiver.script.set('/down', [500, 500, 500, 500, 500]);
    await call(
      h.client,
      'createAlertRule',
      {
        rule: alertRule({
          name: 'down',
          model: 'down',
          version: '7',
          forDuration: seconds(0),
          webhooks: [
            { url: receiver.url('/down'), hmacKey: 'hooks', skipResolved: true },
            { url: receiver.url('/no-key'), hmacKey: 'no-such-key', skipResolved: true },
            { url: receiver.url('/not-hmac'), hmacKey: 'not-hmac', skipResolved: true },
          ],
        }),
      },
      acme,
    );
    await fire(T0 + 120_000, 'down', '7');
    await until('4 attempts', () => (receiver.received.length >= 4 ? true : undefined));
    await h.server.notifier.idle();
    expect(receiver.received.map((r) => r.path)).toEqual(['/down', '/down', '/down', '/down']);
    const deliveries = (await alertsOf('down'))[0]?.deliveries ?? [];
    const byUrl = new Map(deliveries.map((d) => [d.url, d]));
    expect(byUrl.get(receiver.url('/down'))).toMatchObject({
      state: D.WEBHOOK_DELIVERY_STATE_FAILED,
      attempts: RETRY.maxAttempts,
      lastHttpStatus: 500,
      lastError: 'the receiver answered HTTP 500',
    });
    expect(byUrl.get(receiver.url('/down'))?.nextAttemptTime).toBeUndefined();
    // A missing key is no transient failure: FAILED at once, with crypto's reason.
    const noKey = byUrl.get(receiver.url('/no-key'));
    expect(noKey).toMatchObject({ state: D.WEBHOOK_DELIVERY_STATE_FAILED, attempts: 1, lastHttpStatus: 0 });
    expect(noKey?.lastError).toMatch(/^not sent, signing failed: .*"no-such-key".*NOT_FOUND/);
    const notHmac = byUrl.get(receiver.url('/not-hmac'));
    expect(notHmac).toMatchObject({ state: D.WEBHOOK_DELIVERY_STATE_FAILED, attempts: 1 });
    expect(notHmac?.lastError).toMatch(/signing failed/);
  });

  it('works as `npm start` runs it: the monitoring process signs with the admin token of $QUANTA_HOME', async () => {
    // Over HTTPS this time, to a receiver whose private CA the process trusts (NODE_EXTRA_CA_CERTS).
    const pki = await createTestPki({
      prefix: 'quanta-webhook-tls-',
      caName: 'webhook-test-ca',
      certs: { receiver: 'subjectAltName=IP:127.0.0.1' },
    });
    const tlsReceiver = await startReceiver({
      cert: await readFile(join(pki, 'receiver.pem')),
      key: await readFile(join(pki, 'receiver.key')),
    });
    const monitoring = await startServiceProcess('monitoring', {
      NODE_EXTRA_CA_CERTS: join(pki, 'ca.pem'),
      QUANTA_HOME: home,
      QUANTA_CRYPTO_ADDR: crypto.address,
      QUANTA_MONITORING_PORT: '0',
      QUANTA_MONITORING_HTTP_PORT: '0',
      QUANTA_MONITORING_TARGETS: `crypto=${crypto.address}`,
      QUANTA_MONITORING_SERVICE_TOKEN: undefined,
      QUANTA_DATABASE_URL: undefined,
    });
    const client = new pb.MonitoringServiceClient(monitoring.address, grpc.credentials.createInsecure());
    try {
      const issue = async (scopes: string[]) =>
        (
          await cryptoCall(
            'issueToken',
            { tenant: 'acme', subject: 'acme-ops', scopes, ttlSeconds: 600n },
            { metadata: bearer(cryptoAdmin) },
          )
        ).token;
      const user = await issue(['monitoring:read', 'alerts:write']);
      // A 2 s window: the alert fires on the requests below, and resolves by itself 2 s after.
      const rule = alertRule({
        name: 'proc',
        model: 'proc',
        window: seconds(2),
        forDuration: seconds(0),
        webhooks: [{ url: tlsReceiver.url('/proc'), hmacKey: 'hooks', skipResolved: false }],
      });
      await call(client, 'createAlertRule', { rule }, user);
      const now = Date.now();
      await ingest(client, cryptoAdmin, [
        Array.from({ length: 20 }, () => record(now, { model: 'proc', totalUs: 20_000n })),
      ]);
      await until('firing and resolved', () => (tlsReceiver.received.length >= 2 ? true : undefined), 30_000);
      expect(tlsReceiver.received.map((r) => (JSON.parse(r.body) as AlertmanagerBody).status)).toEqual([
        'firing',
        'resolved',
      ]);
      for (const r of tlsReceiver.received) await verify(r, imported, 'hooks');
      const listed = await until('the resolved delivery recorded', async () => {
        const [a] = (
          await call(client, 'listAlerts', { pageSize: 0, pageToken: '', states: [], ruleName: 'proc' }, user)
        ).alerts;
        const d = a?.deliveries[0];
        return d?.status === 'resolved' && d.state === D.WEBHOOK_DELIVERY_STATE_DELIVERED ? d : undefined;
      });
      expect(listed).toMatchObject({ url: tlsReceiver.url('/proc'), attempts: 1, lastHttpStatus: 200 });
    } finally {
      client.close();
      await monitoring.stop();
      await tlsReceiver.close();
      await rm(pki, { recursive: true, force: true });
    }
  });

  it('rejects bad webhooks with INVALID_ARGUMENT saying what is wrong', async () => {
    const hook = (over: Partial<pb.Webhook>): pb.Webhook => ({
      url: 'https://hooks.example.com/a',
      hmacKey: 'hooks',
      skipResolved: false,
      ...over,
    });
    const cases: [pb.Webhook[], RegExp][] = [
      [Array.from({ length: 9 }, (_, i) => hook({ url: `https://h.example/${i}` })), /9 webhooks, at most 8/],
      [[hook({ url: '' })], /webhook 1: url is missing/],
      [[hook({ url: 'not a url' })], /webhook 1: url "not a url" is not a URL/],
      [[hook({}), hook({ url: 'ftp://h.example/x' })], /webhook 2: url "ftp:\/\/h.example\/x" is not http or https/],
      [[hook({ url: 'https://user:pw@h.example/' })], /must not hold credentials/],
      [[hook({}), hook({})], /webhook 2: url "https:\/\/hooks.example.com\/a" is named twice/],
      [[hook({ hmacKey: '' })], /webhook 1: hmac_key is missing/],
      [[hook({ hmacKey: '../etc' })], /hmac_key "..\/etc" is not a key name/],
    ];
    for (const [webhooks, message] of cases) {
      const error = await failure(
        call(h.client, 'createAlertRule', { rule: alertRule({ name: 'bad', webhooks }) }, acme),
      );
      expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(error.details).toMatch(message);
    }
    // An update is checked alike, and leaves the rule as it was.
    const error = await failure(
      call(h.client, 'updateAlertRule', { rule: alertRule({ name: 'slow', webhooks: [hook({ url: 'x:y' })] }) }, acme),
    );
    expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await call(h.client, 'getAlertRule', { name: 'slow' }, acme)).rule?.webhooks).toHaveLength(3);
  });
});

describe('the notifier on its own', () => {
  it("waits the contract's schedule: 1 s doubling to 60 s, 10 attempts", () => {
    expect(Array.from({ length: DEFAULT_RETRY.maxAttempts - 1 }, (_, i) => retryDelayMs(DEFAULT_RETRY, i + 1))).toEqual(
      [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000],
    );
  });

  it('holds a bounded queue: beyond it a notification FAILS at once with the reason', async () => {
    const receiver = await startReceiver();
    // The receiver holds its answers until released, so the first two notifications stay in flight.
    const held: (() => void)[] = [];
    const slow = createServer((req, res) => {
      req.resume();
      held.push(() => res.end('ok'));
    });
    await new Promise<void>((done) => slow.listen(0, '127.0.0.1', done));
    const slowUrl = `http://127.0.0.1:${(slow.address() as AddressInfo).port}`;
    const recorded: pb.WebhookDelivery[] = [];
    const notifier = createNotifier({
      // Signing is crypto's (tested above); here only the queue matters.
      sign: () => Promise.resolve({ signature: Buffer.alloc(32, 7), keyVersion: 1 }),
      record: (_tenant, _alert, d) => recorded.push(d),
      externalUrl: () => 'http://127.0.0.1/',
      maxQueued: 2,
    });
    const alert: pb.Alert = {
      ruleName: 'r',
      model: 'm',
      version: '1',
      state: S.ALERT_STATE_FIRING,
      value: 1,
      threshold: 0,
      message: 'm',
      deliveries: [],
      input: '',
      pendingTime: new Date(T0),
      firingTime: new Date(T0),
    };
    const hook = (url: string): pb.Webhook => ({ url, hmacKey: 'k', skipResolved: false });
    notifier.notify('acme', alert, {
      description: '',
      webhooks: [hook(`${slowUrl}/a`), hook(`${slowUrl}/b`), hook(receiver.url('/c'))],
    });
    expect(notifier.queued).toBe(2);
    expect(recorded.find((d) => d.url === receiver.url('/c'))).toMatchObject({
      state: D.WEBHOOK_DELIVERY_STATE_FAILED,
      lastError: 'not sent: 2 notifications are already waiting',
    });
    await until('both held', () => (held.length === 2 ? true : undefined));
    for (const release of held) release();
    await notifier.idle();
    expect(notifier.queued).toBe(0);
    expect(receiver.received).toEqual([]);
    notifier.stop();
    await new Promise<void>((done) => slow.close(() => done()));
    await receiver.close();
  });
});
