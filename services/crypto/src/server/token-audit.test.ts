import * as grpc from '@grpc/grpc-js';
import { crypto as pb } from '@quanta/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../testing/harness.js';
import { call, failure, startHarness } from '../testing/harness.js';

const OK = pb.AuditOutcome.AUDIT_OUTCOME_OK;
const ERROR = pb.AuditOutcome.AUDIT_OUTCOME_ERROR;

describe('token and signing-key changes join the crypto audit', () => {
  let h: Harness;
  let root: string;
  let acmeKeys: string;

  beforeAll(async () => {
    h = await startHarness();
    root = await h.token('platform', ['admin'], 3600, 'root');
    acmeKeys = await h.token('acme', ['keys:admin', 'keys:use'], 3600, 'alice');
  });
  afterAll(() => h.close());

  it('records issue, revoke and rotation with who and what, never the token; an admin sees every tenant', async () => {
    const issued = await call(
      h.client,
      'issueToken',
      { tenant: 'acme', subject: 'bob', scopes: ['models:read'], ttlSeconds: 600n },
      root,
    );
    await call(h.client, 'revokeToken', { target: { $case: 'subject', value: 'bob' }, tenant: 'acme' }, root);
    await call(h.client, 'revokeToken', { target: { $case: 'token', value: issued.token }, tenant: '' }, root);
    expect(
      (
        await failure(
          call(h.client, 'revokeToken', { target: { $case: 'token', value: 'not.a.token' }, tenant: '' }, root),
        )
      ).code,
    ).toBe(grpc.status.INVALID_ARGUMENT);
    await call(h.client, 'rotateSigningKey', {}, root);
    await call(h.client, 'createKey', { name: 'k', type: pb.KeyType.KEY_TYPE_AES256_GCM, config: undefined }, acmeKeys);

    const all = (await call(h.client, 'listAuditEvents', { keyName: '', pageSize: 0, pageToken: '' }, root)).events;
    const tokenEvents = all.filter((e) => e.tenant === 'platform').reverse();
    expect(tokenEvents.map((e) => [e.operation, e.keyName, e.outcome, e.errorCode, e.subject])).toEqual([
      ['issue-token', 'token/acme/bob', OK, '', 'root'],
      ['revoke-token', 'token/acme/bob', OK, '', 'root'],
      ['revoke-token', 'token/(by value)', OK, '', 'root'],
      ['revoke-token', 'token/(by value)', ERROR, 'INVALID_ARGUMENT', 'root'],
      ['rotate-signing-key', 'signing-key', OK, '', 'root'],
    ]);
    expect(JSON.stringify(all.map((e) => pb.AuditEvent.toJSON(e)))).not.toContain(issued.token.slice(0, 20));
    // The admin sees acme's key events too; acme sees only its own.
    expect(all.some((e) => e.tenant === 'acme' && e.operation === 'create')).toBe(true);
    const acme = (await call(h.client, 'listAuditEvents', { keyName: '', pageSize: 0, pageToken: '' }, acmeKeys))
      .events;
    expect(new Set(acme.map((e) => e.tenant))).toEqual(new Set(['acme']));
  });
});
