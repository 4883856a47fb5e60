import * as grpc from '@grpc/grpc-js';
import { monitoring as pb } from '@quanta/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../testing/harness.js';
import {
  T0,
  alertRule as rule,
  bearer,
  call,
  failure,
  ingest,
  record,
  seconds,
  startHarness,
} from '../testing/harness.js';

const S = pb.AlertState;

describe('alerts: pending → firing → resolved on a fake clock', () => {
  let h: Harness;
  let admin: string;
  let reader: string;

  beforeAll(async () => {
    h = await startHarness();
    admin = await h.token('platform', ['admin']);
    reader = await h.token('acme', ['monitoring:read', 'alerts:write']);
  });
  afterAll(async () => h.close());

  it('moves a p99 rule through its states, streams each change and lists the alert with its times', async () => {
    h.now.ms = T0;
    const created = await call(h.client, 'createAlertRule', { rule: rule({}) }, reader);
    expect(created.rule?.comparison).toBe(pb.AlertComparison.ALERT_COMPARISON_ABOVE);
    expect(created.rule?.createTime?.getTime()).toBe(T0);

    const stream = h.client.watchAlerts({ ruleName: 'slow' }, bearer(reader));
    const messages = stream[Symbol.asyncIterator]() as AsyncIterator<pb.WatchAlertsResponse>;
    const next = async (): Promise<pb.WatchAlertsResponse> => (await messages.next()).value as pb.WatchAlertsResponse;
    expect((await next()).event).toEqual({ $case: 'snapshot', value: { alerts: [] } });

    // 100 requests at 20 ms: p99 20 ms > 5 ms.
    await ingest(h.client, admin, [Array.from({ length: 100 }, () => record(T0, { totalUs: 20_000n }))]);
    h.server.alerts.evaluate();
    const pending = await next();
    expect(pending.event?.$case).toBe('change');
    const p = pending.event?.value as pb.Alert;
    expect(p).toMatchObject({
      ruleName: 'slow',
      model: 'cifar',
      version: '1',
      state: S.ALERT_STATE_PENDING,
      threshold: 5000,
    });
    expect(Math.abs(p.value - 20_000) / 20_000).toBeLessThanOrEqual(0.01);
    expect(p.pendingTime?.getTime()).toBe(T0);
    expect(p.firingTime).toBeUndefined();

    h.now.ms = T0 + 4000; // still holding, not yet for 5 s
    await ingest(h.client, admin, [[record(T0 + 4000, { totalUs: 20_000n })]]);
    h.server.alerts.evaluate();
    expect(
      (await call(h.client, 'listAlerts', { pageSize: 0, pageToken: '', states: [], ruleName: '' }, reader)).alerts[0]
        ?.state,
    ).toBe(S.ALERT_STATE_PENDING);

    h.now.ms = T0 + 5000;
    h.server.alerts.evaluate();
    const firing = (await next()).event?.value as pb.Alert;
    expect(firing.state).toBe(S.ALERT_STATE_FIRING);
    expect(firing.firingTime?.getTime()).toBe(T0 + 5000);
    expect(firing.message).toMatch(/p99 latency 20\.\d ms > 5\.0 ms over 10 s for 5 s/);

    // A new client sees it in the snapshot.
    const late = h.client.watchAlerts({ ruleName: '' }, bearer(reader));
    const lateFirst = (await (late[Symbol.asyncIterator]() as AsyncIterator<pb.WatchAlertsResponse>).next())
      .value as pb.WatchAlertsResponse;
    expect(lateFirst.event?.$case === 'snapshot' && lateFirst.event.value.alerts.map((a) => a.state)).toEqual([
      S.ALERT_STATE_FIRING,
    ]);
    late.cancel();

    h.now.ms = T0 + 20_000; // the window holds no slow requests any more
    h.server.alerts.evaluate();
    const resolved = (await next()).event?.value as pb.Alert;
    expect(resolved.state).toBe(S.ALERT_STATE_RESOLVED);
    expect(resolved.resolvedTime?.getTime()).toBe(T0 + 20_000);
    stream.cancel();

    const listed = await call(
      h.client,
      'listAlerts',
      { pageSize: 0, pageToken: '', states: [S.ALERT_STATE_RESOLVED], ruleName: 'slow' },
      reader,
    );
    expect(listed.alerts).toHaveLength(1);
    expect(listed.alerts[0]).toMatchObject({
      pendingTime: new Date(T0),
      firingTime: new Date(T0 + 5000),
      resolvedTime: new Date(T0 + 20_000),
    });
  });

  it('fires at once with a zero `for`, watches error rate and a throughput floor', async () => {
    h.now.ms = T0 + 100_000;
    await call(
      h.client,
      'createAlertRule',
      {
        rule: rule({
          name: 'errors',
          metric: pb.AlertMetric.ALERT_METRIC_ERROR_RATE,
          threshold: 0.1,
          forDuration: seconds(0),
        }),
      },
      reader,
    );
    await call(
      h.client,
      'createAlertRule',
      {
        rule: rule({
          name: 'quiet',
          version: '1',
          metric: pb.AlertMetric.ALERT_METRIC_THROUGHPUT_RPS,
          comparison: pb.AlertComparison.ALERT_COMPARISON_BELOW,
          threshold: 5,
          forDuration: seconds(0),
        }),
      },
      reader,
    );
    // 30 requests in 10 s (3 req/s, below 5), 6 of them failed (20% > 10%).
    await ingest(h.client, admin, [
      Array.from({ length: 30 }, (_, i) => record(T0 + 100_000 - (i % 10) * 1000, { statusCode: i < 6 ? 14 : 0 })),
    ]);
    const changes: pb.Alert[] = [];
    const off = h.server.alerts.subscribe((tenant, a) => tenant === 'acme' && changes.push(a));
    h.server.alerts.evaluate();
    const of = (name: string) => changes.filter((c) => c.ruleName === name).map((c) => c.state);
    expect(of('errors')).toEqual([S.ALERT_STATE_PENDING, S.ALERT_STATE_FIRING]);
    expect(of('quiet')).toEqual([S.ALERT_STATE_PENDING, S.ALERT_STATE_FIRING]);
    expect(changes.find((c) => c.ruleName === 'errors' && c.state === S.ALERT_STATE_FIRING)?.value).toBeCloseTo(
      0.2,
      12,
    );
    expect(changes.find((c) => c.ruleName === 'quiet')?.value).toBeCloseTo(3, 12);
    // Deleting a rule resolves its alert.
    changes.length = 0;
    await call(h.client, 'deleteAlertRule', { name: 'errors' }, reader);
    expect(changes.map((c) => [c.ruleName, c.state])).toEqual([['errors', S.ALERT_STATE_RESOLVED]]);
    off();
  });

  it('manages rules per tenant with clear errors', async () => {
    const rules = await call(h.client, 'listAlertRules', { pageSize: 1, pageToken: '', model: '' }, reader);
    expect(rules.rules.map((r) => r.name)).toEqual(['quiet']);
    const page2 = await call(
      h.client,
      'listAlertRules',
      { pageSize: 1, pageToken: rules.nextPageToken, model: '' },
      reader,
    );
    expect(page2.rules.map((r) => r.name)).toEqual(['slow']);
    expect(page2.nextPageToken).toBe('');

    const dup = await failure(call(h.client, 'createAlertRule', { rule: rule({}) }, reader));
    expect(dup.code).toBe(grpc.status.ALREADY_EXISTS);
    const stranger = await h.token('globex', ['monitoring:read']);
    const hidden = await failure(call(h.client, 'getAlertRule', { name: 'slow' }, stranger));
    expect(hidden.code).toBe(grpc.status.NOT_FOUND);
    expect(hidden.details).toBe('alert rule "slow" does not exist');
    const badMetric = await failure(
      call(
        h.client,
        'createAlertRule',
        { rule: rule({ name: 'x', metric: pb.AlertMetric.ALERT_METRIC_UNSPECIFIED }) },
        reader,
      ),
    );
    expect(badMetric.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(badMetric.details).toMatch(/metric ALERT_METRIC_UNSPECIFIED is not one of/);
    const negative = await failure(
      call(h.client, 'createAlertRule', { rule: rule({ name: 'x', threshold: -1 }) }, reader),
    );
    expect(negative.details).toMatch(/threshold must be a number >= 0/);
    const wide = await failure(
      call(h.client, 'createAlertRule', { rule: rule({ name: 'x', window: seconds(7200) }) }, reader),
    );
    expect(wide.details).toMatch(/beyond the horizon/);

    h.now.ms = T0 + 200_000;
    const updated = await call(h.client, 'updateAlertRule', { rule: rule({ threshold: 9000 }) }, reader);
    expect(updated.rule).toMatchObject({
      threshold: 9000,
      createTime: new Date(T0),
      updateTime: new Date(T0 + 200_000),
    });
  });

  it('lets a read-only token read rules but never create, change or delete one', async () => {
    const readOnly = await h.token('acme', ['monitoring:read']);
    const before = await call(h.client, 'listAlertRules', { pageSize: 0, pageToken: '', model: '' }, readOnly);
    expect(before.rules.length).toBeGreaterThan(0);
    const name = before.rules[0]!.name;
    for (const attempt of [
      call(h.client, 'createAlertRule', { rule: rule({ name: 'sneaky' }) }, readOnly),
      call(h.client, 'updateAlertRule', { rule: rule({ name, threshold: 1 }) }, readOnly),
      call(h.client, 'deleteAlertRule', { name }, readOnly),
    ]) {
      const denied = await failure(attempt);
      expect(denied.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(denied.details).toMatch(/needs scope "alerts:write"/);
    }
    // Nor does the platform's ingest scope write a tenant's rules.
    const ingest = await h.token('acme', ['monitoring:write']);
    expect((await failure(call(h.client, 'createAlertRule', { rule: rule({ name: 'sneaky' }) }, ingest))).code).toBe(
      grpc.status.PERMISSION_DENIED,
    );
    expect(await call(h.client, 'listAlertRules', { pageSize: 0, pageToken: '', model: '' }, readOnly)).toEqual(before);
  });
});
