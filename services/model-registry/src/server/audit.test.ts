import { registry as pb } from '@quanta/contracts';
import { buildMlp } from '@quanta/onnx';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, startHarness } from '../testing/harness.js';
import type { Harness } from '../testing/harness.js';
import { failure, grpc, push } from '../testing/client.js';

const OK = pb.AuditOutcome.AUDIT_OUTCOME_OK;
const ERROR = pb.AuditOutcome.AUDIT_OUTCOME_ERROR;

const spec = (modelRef: string): pb.DeploymentSpec =>
  pb.DeploymentSpec.fromPartial({ modelRef, maxBatchSize: 8, maxQueueDelayUs: 500, instanceCount: 1 });

describe('the registry audit trail', () => {
  let h: Harness;
  let acme: string;
  let reader: string;
  let globex: string;
  let admin: string;

  const list = async (token: string, filter: Partial<pb.ListAuditEventsRequest> = {}): Promise<pb.AuditEvent[]> =>
    (await call(h.client, 'listAuditEvents', { subject: '', action: '', pageSize: 0, pageToken: '', ...filter }, token))
      .events;

  beforeAll(async () => {
    h = await startHarness();
    acme = await h.token('acme', ['models:read', 'models:write'], 'alice');
    reader = await h.token('acme', ['models:read'], 'reader');
    globex = await h.token('globex', ['models:read', 'models:write'], 'gary');
    admin = await h.token('ops', ['admin'], 'root');
  }, 240_000);
  afterAll(async () => {
    await h?.close();
  });

  it('records one event per change of every kind, failures with their code, scoped to the tenant', async () => {
    await call(h.client, 'createModel', { name: 'cifar', description: 'd', tags: {} }, acme);
    await push(h.client, acme, { model: 'cifar' }, Buffer.from(buildMlp({ seed: 4 })));
    await call(h.client, 'updateModel', { name: 'cifar', setTags: { team: 'vision' }, removeTags: [] }, acme);
    await call(h.client, 'updateVersion', { ref: 'cifar:1', setTags: { stage: 'qa' }, removeTags: [] }, acme);
    await call(h.client, 'setAlias', { model: 'cifar', alias: 'production', version: 1 }, acme);
    await call(h.client, 'createDeployment', { name: 'web', spec: spec('cifar@production') }, acme);
    await call(h.client, 'updateDeployment', { name: 'web', spec: spec('cifar:1'), expectedGeneration: 0n }, acme);
    const refused = await failure(call(h.client, 'deleteModel', { name: 'cifar' }, acme));
    expect(refused.code).toBe(grpc.status.FAILED_PRECONDITION);
    await call(h.client, 'deleteDeployment', { name: 'web' }, acme);
    await call(h.client, 'deleteAlias', { model: 'cifar', alias: 'production' }, acme);
    await call(h.client, 'deleteModel', { name: 'cifar' }, acme);
    await call(h.client, 'createModel', { name: 'theirs', description: '', tags: {} }, globex);

    const events = (await list(reader)).reverse();
    expect(events.map((e) => [e.action, e.resource, e.outcome, e.errorCode])).toEqual([
      ['CreateModel', 'cifar', OK, ''],
      ['UploadVersion', 'cifar:1', OK, ''],
      ['UpdateModel', 'cifar', OK, ''],
      ['UpdateVersion', 'cifar:1', OK, ''],
      ['SetAlias', 'cifar@production', OK, ''],
      ['CreateDeployment', 'deployment/web', OK, ''],
      ['UpdateDeployment', 'deployment/web', OK, ''],
      ['DeleteModel', 'cifar', ERROR, 'FAILED_PRECONDITION'],
      ['DeleteDeployment', 'deployment/web', OK, ''],
      ['DeleteAlias', 'cifar@production', OK, ''],
      ['DeleteModel', 'cifar', OK, ''],
    ]);
    for (const e of events) expect(e).toMatchObject({ tenant: 'acme', subject: 'alice' });
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);

    // A failed upload is recorded against the model it named.
    expect((await failure(push(h.client, acme, { model: 'cifar2' }, Buffer.from('not onnx')))).code).not.toBe(
      grpc.status.OK,
    );
    expect((await list(reader, { action: 'UploadVersion' }))[0]).toMatchObject({ resource: 'cifar2', outcome: ERROR });

    expect((await list(globex)).map((e) => e.resource)).toEqual(['theirs']);
    const all = await list(admin);
    expect(new Set(all.map((e) => e.tenant))).toEqual(new Set(['acme', 'globex']));
    expect(await list(admin, { subject: 'gary' })).toHaveLength(1);
  });
});
