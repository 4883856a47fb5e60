import * as grpc from '@grpc/grpc-js';
import { monitoring as pb } from '@quanta/contracts';
import { openStore } from '@quanta/store';
import type { Store } from '@quanta/store';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../testing/harness.js';
import { alertRule, call, failure, startHarness } from '../testing/harness.js';

const OK = pb.AuditOutcome.AUDIT_OUTCOME_OK;
const ERROR = pb.AuditOutcome.AUDIT_OUTCOME_ERROR;
const events = async (
  h: Harness,
  token: string,
  filter: Partial<pb.ListAuditEventsRequest> = {},
): Promise<pb.AuditEvent[]> =>
  (await call(h.client, 'listAuditEvents', { subject: '', action: '', pageSize: 0, pageToken: '', ...filter }, token))
    .events;

describe('the audit trail of alert-rule changes', () => {
  let store: Store;
  let h: Harness;
  let admin: string;
  let acme: string;
  let acmeReader: string;
  let globex: string;

  beforeAll(async () => {
    store = await openStore({});
    h = await startHarness({ store });
    admin = await h.token('platform', ['admin'], 'root');
    acme = await h.token('acme', ['monitoring:read', 'alerts:write'], 'alice');
    acmeReader = await h.token('acme', ['monitoring:read'], 'reader');
    globex = await h.token('globex', ['monitoring:read', 'alerts:write'], 'gary');
  });
  afterAll(async () => {
    await h.close();
    await store.close();
  });

  it(
    'records each change once, with who, what, when, trace id and outcome; ' + 'failures too; scoped to the tenant',
    async () => {
      const start = new Date(Date.now() - 1000);
      await call(h.client, 'createAlertRule', { rule: alertRule({ name: 'p99' }) }, acme);
      await call(h.client, 'updateAlertRule', { rule: alertRule({ name: 'p99', threshold: 500 }) }, acme);
      const missing = await failure(call(h.client, 'deleteAlertRule', { name: 'nope' }, acme));
      expect(missing.code).toBe(grpc.status.NOT_FOUND);
      // Refused before it ran (no scope): not a change attempt of the tenant's, not recorded.
      expect((await failure(call(h.client, 'deleteAlertRule', { name: 'p99' }, acmeReader))).code).toBe(
        grpc.status.PERMISSION_DENIED,
      );
      await call(h.client, 'deleteAlertRule', { name: 'p99' }, acme);
      await call(h.client, 'createAlertRule', { rule: alertRule({ name: 'other' }) }, globex);

      const mine = await events(h, acmeReader);
      expect(mine.map((e) => [e.action, e.resource, e.outcome, e.errorCode])).toEqual([
        ['DeleteAlertRule', 'alert-rule/p99', OK, ''],
        ['DeleteAlertRule', 'alert-rule/nope', ERROR, 'NOT_FOUND'],
        ['UpdateAlertRule', 'alert-rule/p99', OK, ''],
        ['CreateAlertRule', 'alert-rule/p99', OK, ''],
      ]);
      for (const e of mine) {
        expect(e).toMatchObject({ tenant: 'acme', subject: 'alice' });
        expect(e.time!.getTime()).toBeGreaterThanOrEqual(start.getTime());
        expect(e.traceId).toMatch(/^([0-9a-f]{32})?$/);
        // Only identifiers: no threshold, no rule body.
        expect(JSON.stringify(pb.AuditEvent.toJSON(e))).not.toContain('500');
      }
      const all = await events(h, admin);
      expect(all.map((e) => e.tenant)).toContain('globex');
      expect(all).toHaveLength(5);
      expect(await events(h, admin, { subject: 'gary' })).toHaveLength(1);
      expect(await events(h, admin, { action: 'UpdateAlertRule' })).toHaveLength(1);
      expect(await events(h, admin, { since: new Date(Date.now() + 60_000) })).toHaveLength(0);

      const page = await call(
        h.client,
        'listAuditEvents',
        { subject: '', action: '', pageSize: 2, pageToken: '' },
        admin,
      );
      expect(page.events).toHaveLength(2);
      const next = await call(
        h.client,
        'listAuditEvents',
        { subject: '', action: '', pageSize: 2, pageToken: page.nextPageToken },
        admin,
      );
      expect(next.events[0]!.id < page.events[1]!.id || BigInt(next.events[0]!.id) < BigInt(page.events[1]!.id)).toBe(
        true,
      );
      expect(
        (
          await failure(
            call(h.client, 'listAuditEvents', { subject: '', action: '', pageSize: 2, pageToken: 'garbage' }, admin),
          )
        ).code,
      ).toBe(grpc.status.INVALID_ARGUMENT);
    },
  );
});
