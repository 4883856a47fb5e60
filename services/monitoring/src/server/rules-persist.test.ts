import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { monitoring as pb } from '@quanta/contracts';
import type { Store } from '@quanta/store';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../testing/harness.js';
import { startMonitoringServer } from './monitoring-server.js';
import { T0, alertRule, call, failure, ingest, record, seconds, startHarness, testConfig } from '../testing/harness.js';
import { testBackends } from '@quanta/store/testing';

const S = pb.AlertState;
/** Rules here fire as soon as their condition holds (no `for`). */
const rule = (over: Partial<pb.AlertRule>): pb.AlertRule => alertRule({ forDuration: seconds(0), ...over });

const list = async (h: Harness, token: string): Promise<pb.AlertRule[]> =>
  (await call(h.client, 'listAlertRules', { pageSize: 0, pageToken: '', model: '' }, token)).rules;

describe.each(testBackends('test_monitoring'))('alert rules persist on $name', (backend) => {
  let store: Store;
  let h: Harness;
  let admin: string;
  let acme: string;
  let globex: string;

  beforeAll(async () => {
    store = await backend.open();
    h = await startHarness({ store });
    admin = await h.token('platform', ['admin']);
    acme = await h.token('acme', ['monitoring:read', 'alerts:write']);
    globex = await h.token('globex', ['monitoring:read', 'alerts:write']);
  });
  afterAll(async () => {
    await h.close();
    await backend.cleanup();
  });

  it('lists the rules with the same fields after a restart, and evaluates them', async () => {
    h.now.ms = T0;
    await call(h.client, 'createAlertRule', { rule: rule({ description: 'p99 of cifar, any version' }) }, acme);
    await call(
      h.client,
      'createAlertRule',
      {
        rule: rule({
          name: 'quiet',
          version: '2',
          metric: pb.AlertMetric.ALERT_METRIC_THROUGHPUT_RPS,
          comparison: pb.AlertComparison.ALERT_COMPARISON_BELOW,
          threshold: 0.25,
          window: { seconds: 90n, nanos: 500_000_000 },
          forDuration: seconds(30),
        }),
      },
      acme,
    );
    await call(
      h.client,
      'createAlertRule',
      { rule: rule({ threshold: 123_456, metric: pb.AlertMetric.ALERT_METRIC_ERROR_RATE }) },
      globex,
    );
    h.now.ms = T0 + 7000;
    await call(
      h.client,
      'updateAlertRule',
      {
        rule: rule({
          name: 'quiet',
          version: '2',
          metric: pb.AlertMetric.ALERT_METRIC_THROUGHPUT_RPS,
          comparison: pb.AlertComparison.ALERT_COMPARISON_BELOW,
          threshold: 0.5,
          window: { seconds: 90n, nanos: 500_000_000 },
          forDuration: seconds(30),
          webhooks: [
            { url: 'https://hooks.example.com/quanta?team=ml', hmacKey: 'alert-hooks', skipResolved: false },
            { url: 'http://127.0.0.1:9/pager', hmacKey: 'pager.v2', skipResolved: true },
          ],
        }),
      },
      acme,
    );
    const before = await list(h, acme);
    expect(before[0]?.webhooks.map((w) => [w.url, w.hmacKey, w.skipResolved])).toEqual([
      ['https://hooks.example.com/quanta?team=ml', 'alert-hooks', false],
      ['http://127.0.0.1:9/pager', 'pager.v2', true],
    ]);
    expect(before.map((r) => [r.name, r.threshold, r.createTime, r.updateTime])).toEqual([
      ['quiet', 0.5, new Date(T0), new Date(T0 + 7000)],
      ['slow', 5000, new Date(T0), new Date(T0)],
    ]);
    const globexBefore = await list(h, globex);

    // The row holds the rule's fields as JSON: enum names, readable in psql.
    const rows = await store.query<{ tenant: string; name: string; metric: string; comparison: string }>(
      `SELECT tenant, name, rule->>'metric' AS metric, rule->>'comparison' AS comparison
       FROM monitoring_alert_rules ORDER BY tenant, name`,
    );
    expect(rows).toEqual([
      { tenant: 'acme', name: 'quiet', metric: 'ALERT_METRIC_THROUGHPUT_RPS', comparison: 'ALERT_COMPARISON_BELOW' },
      { tenant: 'acme', name: 'slow', metric: 'ALERT_METRIC_P99_LATENCY_US', comparison: 'ALERT_COMPARISON_ABOVE' },
      { tenant: 'globex', name: 'slow', metric: 'ALERT_METRIC_ERROR_RATE', comparison: 'ALERT_COMPARISON_ABOVE' },
    ]);
    // Webhooks are in the same JSON: key names only, never key material.
    const hooks = await store.query<{ url: string; key: string }>(
      `SELECT w->>'url' AS url, w->>'hmacKey' AS key
       FROM monitoring_alert_rules, jsonb_array_elements(rule->'webhooks') w
       WHERE tenant = 'acme' AND name = 'quiet'`,
    );
    expect(hooks).toEqual([
      { url: 'https://hooks.example.com/quanta?team=ml', key: 'alert-hooks' },
      { url: 'http://127.0.0.1:9/pager', key: 'pager.v2' },
    ]);

    await h.restart();
    expect(h.server.alerts.listAlerts('acme')).toEqual([]); // alert states start over
    expect(await list(h, acme)).toEqual(before);
    expect(await list(h, globex)).toEqual(globexBefore);
    expect((await call(h.client, 'getAlertRule', { name: 'quiet' }, acme)).rule).toEqual(before[0]);

    // The loaded rule fires on the fake clock: 20 requests at 20 ms, p99 20 ms > 5 ms, `for` 0.
    h.now.ms = T0 + 10_000;
    await ingest(h.client, admin, [Array.from({ length: 20 }, () => record(T0 + 10_000, { totalUs: 20_000n }))]);
    h.server.alerts.evaluate();
    const alerts = await call(
      h.client,
      'listAlerts',
      { pageSize: 0, pageToken: '', states: [S.ALERT_STATE_FIRING], ruleName: 'slow' },
      acme,
    );
    expect(alerts.alerts.map((a) => [a.ruleName, a.model, a.version, a.state, a.firingTime])).toEqual([
      ['slow', 'cifar', '1', S.ALERT_STATE_FIRING, new Date(T0 + 10_000)],
    ]);
    // globex's rule of the same name watches globex's cifar, which has no traffic.
    expect(
      (await call(h.client, 'listAlerts', { pageSize: 0, pageToken: '', states: [], ruleName: '' }, globex)).alerts,
    ).toEqual([]);
  });

  it(
    'keeps a delete across a restart, each tenant its own rules, ' + 'and a duplicate is still ALREADY_EXISTS',
    async () => {
      await call(h.client, 'deleteAlertRule', { name: 'quiet' }, acme);
      await h.restart();
      expect((await list(h, acme)).map((r) => r.name)).toEqual(['slow']);
      const gone = await failure(call(h.client, 'getAlertRule', { name: 'quiet' }, acme));
      expect(gone.code).toBe(grpc.status.NOT_FOUND);
      expect((await list(h, globex)).map((r) => [r.name, r.threshold])).toEqual([['slow', 123_456]]);

      const dup = await failure(call(h.client, 'createAlertRule', { rule: rule({}) }, acme));
      expect(dup.code).toBe(grpc.status.ALREADY_EXISTS);
      expect(dup.details).toBe('alert rule "slow" already exists');
      // Deleting globex's rule leaves acme's of the same name.
      await call(h.client, 'deleteAlertRule', { name: 'slow' }, globex);
      await h.restart();
      expect(await list(h, globex)).toEqual([]);
      expect((await list(h, acme)).map((r) => r.name)).toEqual(['slow']);
    },
  );

  it('fails a change whose write fails with UNAVAILABLE, and changes nothing', async () => {
    const kept = await list(h, acme);
    await store.query('ALTER TABLE monitoring_alert_rules RENAME TO monitoring_alert_rules_away');
    try {
      const created = await failure(call(h.client, 'createAlertRule', { rule: rule({ name: 'new' }) }, acme));
      expect(created.code).toBe(grpc.status.UNAVAILABLE);
      expect(created.details).toMatch(
        /^alert rule "new" was not created: the rule store failed \(.*monitoring_alert_rules.*\); nothing changed/,
      );
      const updated = await failure(call(h.client, 'updateAlertRule', { rule: rule({ threshold: 1 }) }, acme));
      expect(updated.code).toBe(grpc.status.UNAVAILABLE);
      expect(updated.details).toMatch(/^alert rule "slow" was not updated/);
      const deleted = await failure(call(h.client, 'deleteAlertRule', { name: 'slow' }, acme));
      expect(deleted.code).toBe(grpc.status.UNAVAILABLE);
      expect(await list(h, acme)).toEqual(kept);
    } finally {
      await store.query('ALTER TABLE monitoring_alert_rules_away RENAME TO monitoring_alert_rules');
    }
    await call(h.client, 'createAlertRule', { rule: rule({ name: 'new' }) }, acme);
    await h.restart();
    expect((await list(h, acme)).map((r) => r.name)).toEqual(['new', 'slow']);
  });
});

describe('alert rules persist in $QUANTA_HOME/monitoring-db by default', () => {
  let home: string;
  beforeAll(async () => {
    home = await mkdtemp(join(tmpdir(), 'quanta-monitoring-'));
  });
  afterAll(async () => rm(home, { recursive: true, force: true }));

  it('opens the embedded database there, and a new server over the same home lists the rules again', async () => {
    const h = await startHarness({ ownStore: true, config: { home } });
    try {
      expect(h.server.ruleStore?.kind).toBe('embedded');
      const acme = await h.token('acme', ['monitoring:read', 'alerts:write']);
      const created = (await call(h.client, 'createAlertRule', { rule: rule({ description: 'on disk' }) }, acme)).rule;
      await h.restart();
      expect(await list(h, acme)).toEqual([created]);
      expect((await stat(join(home, 'monitoring-db'))).isDirectory()).toBe(true);
    } finally {
      await h.close();
    }
  });
});

describe('a config written by hand without home or databaseUrl', () => {
  it('keeps the rules in memory, as before: no store is opened', async () => {
    const { home: _home, databaseUrl: _url, ...bare } = testConfig();
    const server = await startMonitoringServer(bare, {
      authenticator: () => Promise.reject(new Error('no calls')),
      timers: false,
      logger: pino({ level: 'silent' }),
    });
    try {
      expect(server.ruleStore).toBeUndefined();
      await server.alerts.createRule('acme', rule({}));
      expect(server.alerts.listRules('acme').map((r) => r.name)).toEqual(['slow']);
    } finally {
      await server.stop({ graceMs: 0 });
    }
  });
});
