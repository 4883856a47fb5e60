import { readdir } from 'node:fs/promises';
import { registry as pb } from '@quanta/contracts';
import { buildMlp } from '@quanta/onnx';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Backend, Harness, SharedCrypto } from '../testing/harness.js';
import { bearer, call, startHarness, startSharedCrypto } from '../testing/harness.js';
import { failure, grpc, pull, push } from '../testing/client.js';

const mlp = (seed: number): Buffer => Buffer.from(buildMlp({ seed }));
const spec = (modelRef: string, extra: Partial<pb.DeploymentSpec> = {}): pb.DeploymentSpec => ({
  modelRef,
  maxBatchSize: 8,
  maxQueueDelayUs: 500,
  instanceCount: 1,
  maxQueueSize: 0,
  sequenceState: [],
  sequenceIdleTimeoutMs: 0,
  preferredBatchSizes: [],
  tunePreferredBatchSize: false,
  responseCacheBytes: 0n,
  priorityLevels: 0,
  defaultPriorityLevel: 0,
  priorityQueuePolicies: {},
  callerLimitOverrides: {},
  ...extra,
});

/** Reads a WatchDeployments stream one message at a time. */
function watcher(h: Harness, token: string, allTenants = false) {
  const stream = h.client.watchDeployments({ allTenants }, bearer(token));
  const iterator = (stream as AsyncIterable<pb.WatchDeploymentsResponse>)[Symbol.asyncIterator]();
  return {
    async next(): Promise<pb.WatchDeploymentsResponse['event']> {
      const result = await iterator.next();
      if (result.done === true) throw new Error('watch stream ended');
      return result.value.event;
    },
    close: () => stream.cancel(),
  };
}

let crypto: SharedCrypto;
beforeAll(async () => {
  crypto = await startSharedCrypto();
}, 240_000);
afterAll(async () => {
  await crypto?.close();
});

describe.each<Backend>(['embedded', 'postgres'])('models, aliases and deployments on the %s store', (backend) => {
  let h: Harness;
  let acme: string;
  let acmeRead: string;
  let globex: string;

  beforeAll(async () => {
    h = await startHarness({ backend, crypto });
    acme = await h.token('acme', ['models:read', 'models:write']);
    acmeRead = await h.token('acme', ['models:read']);
    globex = await h.token('globex', ['models:read', 'models:write']);
  }, 240_000);
  afterAll(async () => {
    await h?.close();
  });

  it('creates, lists with pages, filters and updates models', async () => {
    for (const [name, team] of [
      ['resnet', 'vision'],
      ['resnet-small', 'vision'],
      ['bert', 'nlp'],
      ['rnn', 'nlp'],
      ['cifar', 'vision'],
    ] as const) {
      await call(h.client, 'createModel', { name, description: `${name} model`, tags: { team } }, acme);
    }
    const dup = await failure(call(h.client, 'createModel', { name: 'bert', description: '', tags: {} }, acme));
    expect(dup.code).toBe(grpc.status.ALREADY_EXISTS);
    const bad = await failure(call(h.client, 'createModel', { name: '-Nope', description: '', tags: {} }, acme));
    expect(bad.code).toBe(grpc.status.INVALID_ARGUMENT);

    const names: string[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = await call(h.client, 'listModels', { pageSize: 2, pageToken, namePrefix: '', tags: {} }, acmeRead);
      names.push(...page.models.map((m) => m.name));
      pageToken = page.nextPageToken;
      pages += 1;
    } while (pageToken !== '');
    expect(names).toEqual(['bert', 'cifar', 'resnet', 'resnet-small', 'rnn']);
    expect(pages).toBe(3);

    const prefixed = await call(
      h.client,
      'listModels',
      { pageSize: 0, pageToken: '', namePrefix: 'res', tags: {} },
      acmeRead,
    );
    expect(prefixed.models.map((m) => m.name)).toEqual(['resnet', 'resnet-small']);
    const tagged = await call(
      h.client,
      'listModels',
      { pageSize: 0, pageToken: '', namePrefix: '', tags: { team: 'nlp' } },
      acmeRead,
    );
    expect(tagged.models.map((m) => m.name)).toEqual(['bert', 'rnn']);
    const anyTeam = await call(
      h.client,
      'listModels',
      { pageSize: 0, pageToken: '', namePrefix: 'c', tags: { team: '' } },
      acmeRead,
    );
    expect(anyTeam.models.map((m) => m.name)).toEqual(['cifar']);
    const badToken = await failure(
      call(h.client, 'listModels', { pageSize: 0, pageToken: 'garbage', namePrefix: '', tags: {} }, acmeRead),
    );
    expect(badToken.code).toBe(grpc.status.INVALID_ARGUMENT);

    const updated = await call(
      h.client,
      'updateModel',
      { name: 'bert', description: 'BERT base', setTags: { stage: 'dev' }, removeTags: ['team'] },
      acme,
    );
    expect(updated.model).toMatchObject({ name: 'bert', description: 'BERT base', tags: { stage: 'dev' } });
  });

  it('versions with tags and lineage, references by number, alias and latest', async () => {
    const v1 = await push(
      h.client,
      acme,
      {
        model: 'cifar',
        tags: { data: 'v1' },
        lineage: { origin: { $case: 'sourceUri', value: 'https://example.com/cifar.onnx' } },
      },
      mlp(1),
    );
    const v2 = await push(h.client, acme, { model: 'cifar', tags: { data: 'v2' } }, mlp(2));
    const v3 = await push(
      h.client,
      acme,
      {
        model: 'cifar',
        lineage: {
          origin: {
            $case: 'parent',
            value: { model: 'cifar', version: 2, transform: 'quantize-int8', transformParams: { per_channel: 'true' } },
          },
        },
      },
      mlp(3),
    );
    expect([v1.version, v2.version, v3.version]).toEqual([1, 2, 3]);
    expect(v1.lineage?.origin).toEqual({ $case: 'sourceUri', value: 'https://example.com/cifar.onnx' });
    expect(v3.lineage?.origin).toEqual({
      $case: 'parent',
      value: { model: 'cifar', version: 2, transform: 'quantize-int8', transformParams: { per_channel: 'true' } },
    });
    const badParent = await failure(
      push(
        h.client,
        acme,
        {
          model: 'cifar',
          lineage: {
            origin: { $case: 'parent', value: { model: 'cifar', version: 9, transform: 'x', transformParams: {} } },
          },
        },
        mlp(4),
      ),
    );
    expect(badParent.code).toBe(grpc.status.NOT_FOUND);

    const alias = await call(h.client, 'setAlias', { model: 'cifar', alias: 'production', version: 2 }, acme);
    expect(alias).toMatchObject({
      previousVersion: 0,
      model: { aliases: { production: 2 }, latestVersion: 3, versionCount: 3 },
    });
    expect((await call(h.client, 'getVersion', { ref: 'cifar@production' }, acmeRead)).version).toMatchObject({
      version: 2,
      aliases: ['production'],
    });
    expect((await call(h.client, 'getVersion', { ref: 'cifar' }, acmeRead)).version?.version).toBe(3);
    expect((await call(h.client, 'getVersion', { ref: 'cifar:1' }, acmeRead)).version?.tags).toEqual({ data: 'v1' });
    expect((await pull(h.client, acmeRead, 'cifar@production')).bytes.equals(mlp(2))).toBe(true);

    const missing = await failure(call(h.client, 'getVersion', { ref: 'cifar:7' }, acmeRead));
    expect(missing.code).toBe(grpc.status.NOT_FOUND);
    expect(missing.details).toBe('model "cifar" has no version 7; latest is 3');
    expect((await failure(call(h.client, 'getVersion', { ref: 'cifar@staging' }, acmeRead))).details).toBe(
      'model "cifar" has no alias "staging"',
    );
    expect((await failure(call(h.client, 'getVersion', { ref: 'cifar:x' }, acmeRead))).code).toBe(
      grpc.status.INVALID_ARGUMENT,
    );
    expect((await failure(call(h.client, 'setAlias', { model: 'cifar', alias: '42', version: 1 }, acme))).code).toBe(
      grpc.status.INVALID_ARGUMENT,
    );
    expect((await failure(call(h.client, 'setAlias', { model: 'cifar', alias: 'next', version: 9 }, acme))).code).toBe(
      grpc.status.NOT_FOUND,
    );

    const tagged = await call(
      h.client,
      'updateVersion',
      { ref: 'cifar@production', description: 'champion', setTags: { reviewed: 'yes' }, removeTags: ['data'] },
      acme,
    );
    expect(tagged.version).toMatchObject({ version: 2, description: 'champion', tags: { reviewed: 'yes' } });
    const filtered = await call(
      h.client,
      'listVersions',
      { model: 'cifar', pageSize: 0, pageToken: '', status: 0, tags: { reviewed: '' } },
      acmeRead,
    );
    expect(filtered.versions.map((v) => v.version)).toEqual([2]);
    const paged = await call(
      h.client,
      'listVersions',
      { model: 'cifar', pageSize: 2, pageToken: '', status: pb.VersionStatus.VERSION_STATUS_READY, tags: {} },
      acmeRead,
    );
    const rest = await call(
      h.client,
      'listVersions',
      {
        model: 'cifar',
        pageSize: 2,
        pageToken: paged.nextPageToken,
        status: pb.VersionStatus.VERSION_STATUS_READY,
        tags: {},
      },
      acmeRead,
    );
    expect([...paged.versions, ...rest.versions].map((v) => v.version)).toEqual([3, 2, 1]);
    expect(rest.nextPageToken).toBe('');
  });

  it('deployments follow aliases and the latest version, and WatchDeployments sees every change', async () => {
    const first = watcher(h, acmeRead);
    const snapshot = await first.next();
    expect(snapshot).toEqual({ $case: 'snapshot', value: { deployments: [] } });

    const created = await call(
      h.client,
      'createDeployment',
      { name: 'cifar-prod', spec: spec('cifar@production', { sequenceState: [{ inputName: 'h', outputName: 'hn' }] }) },
      acme,
    );
    expect(created.deployment).toMatchObject({
      name: 'cifar-prod',
      tenant: 'acme',
      generation: 1n,
      resolvedVersion: { version: 2 },
    });
    let event = await first.next();
    expect(event?.$case === 'change' && event.value).toMatchObject({
      type: pb.DeploymentChangeType.DEPLOYMENT_CHANGE_TYPE_UPSERTED,
      deployment: { name: 'cifar-prod' },
    });

    // A second watcher joins: its snapshot has the deployment, then both see the alias move.
    const second = watcher(h, acmeRead);
    const snap2 = await second.next();
    expect(
      snap2?.$case === 'snapshot' && snap2.value.deployments.map((d) => [d.name, d.resolvedVersion?.version]),
    ).toEqual([['cifar-prod', 2]]);
    const moved = await call(h.client, 'setAlias', { model: 'cifar', alias: 'production', version: 3 }, acme);
    expect(moved.previousVersion).toBe(2);
    for (const w of [first, second]) {
      event = await w.next();
      expect(event?.$case).toBe('change');
      if (event?.$case !== 'change') return;
      expect(event.value.deployment).toMatchObject({
        name: 'cifar-prod',
        generation: 2n,
        resolvedVersion: { version: 3 },
        spec: { modelRef: 'cifar@production' },
      });
      expect(event.value.reason).toBe('alias production moved from 2 to 3');
    }

    // A deployment of the bare name follows new READY versions.
    await call(h.client, 'createDeployment', { name: 'cifar-latest', spec: spec('cifar') }, acme);
    expect((await first.next())?.$case).toBe('change');
    const v4 = await push(h.client, acme, { model: 'cifar' }, mlp(4));
    event = await first.next();
    expect(event?.$case === 'change' && event.value.deployment).toMatchObject({
      name: 'cifar-latest',
      resolvedVersion: { version: v4.version },
    });

    // Pinned versions do not move; stale generations are refused.
    const pinned = await call(h.client, 'createDeployment', { name: 'cifar-pinned', spec: spec('cifar:1') }, acme);
    expect((await first.next())?.$case).toBe('change');
    const stale = await failure(
      call(h.client, 'updateDeployment', { name: 'cifar-pinned', spec: spec('cifar:2'), expectedGeneration: 5n }, acme),
    );
    expect(stale.code).toBe(grpc.status.FAILED_PRECONDITION);
    const updated = await call(
      h.client,
      'updateDeployment',
      {
        name: 'cifar-pinned',
        spec: spec('cifar:2', { instanceCount: 2 }),
        expectedGeneration: pinned.deployment!.generation,
      },
      acme,
    );
    expect(updated.deployment).toMatchObject({
      generation: 2n,
      resolvedVersion: { version: 2 },
      spec: { instanceCount: 2 },
    });
    expect((await first.next())?.$case).toBe('change');

    const listed = await call(h.client, 'listDeployments', { pageSize: 0, pageToken: '', model: 'cifar' }, acmeRead);
    expect(listed.deployments.map((d) => d.name)).toEqual(['cifar-latest', 'cifar-pinned', 'cifar-prod']);
    expect(
      (await failure(call(h.client, 'createDeployment', { name: 'bad', spec: spec('cifar@nope') }, acme))).code,
    ).toBe(grpc.status.NOT_FOUND);
    expect(
      (await failure(call(h.client, 'createDeployment', { name: 'cifar-prod', spec: spec('cifar') }, acme))).code,
    ).toBe(grpc.status.ALREADY_EXISTS);

    // What deployments use cannot be removed from under them.
    const delModel = await failure(call(h.client, 'deleteModel', { name: 'cifar' }, acme));
    expect(delModel.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(delModel.details).toMatch(/used by deployment "cifar-latest", "cifar-pinned", "cifar-prod"/);
    expect((await failure(call(h.client, 'deleteAlias', { model: 'cifar', alias: 'production' }, acme))).code).toBe(
      grpc.status.FAILED_PRECONDITION,
    );

    for (const name of ['cifar-latest', 'cifar-pinned', 'cifar-prod']) {
      await call(h.client, 'deleteDeployment', { name }, acme);
      event = await second.next();
      while (event?.$case === 'change' && event.value.type !== pb.DeploymentChangeType.DEPLOYMENT_CHANGE_TYPE_DELETED)
        event = await second.next();
      expect(event?.$case === 'change' && event.value.deployment?.name).toBe(name);
    }
    first.close();
    second.close();
    await call(h.client, 'deleteAlias', { model: 'cifar', alias: 'production' }, acme);
    await call(h.client, 'deleteModel', { name: 'cifar' }, acme);
    expect((await failure(call(h.client, 'getModel', { name: 'cifar' }, acmeRead))).code).toBe(grpc.status.NOT_FOUND);
    // Its four blobs went with it.
    const rows = await h.registry.store.query<{ n: bigint }>(
      "SELECT count(*) AS n FROM registry_blobs WHERE tenant = 'acme'",
    );
    const files = await readdir(h.registry.blobDir, { recursive: true, withFileTypes: true });
    expect(files.filter((f) => f.isFile()).length).toBe(Number(rows[0]?.n));
  });

  it(
    'keeps preferred batch sizes and the tuning flag through every read, and refuses sizes the batcher could not ' +
      'use',
    async () => {
      await push(h.client, acme, { model: 'batchy' }, mlp(21));
      const w = watcher(h, acmeRead);
      expect((await w.next())?.$case).toBe('snapshot');

      // Kept as given (inference sorts them), through create, get, list and watch.
      const fixed = await call(
        h.client,
        'createDeployment',
        { name: 'batchy-fixed', spec: spec('batchy', { preferredBatchSizes: [8, 2, 4] }) },
        acme,
      );
      expect(fixed.deployment?.spec).toMatchObject({
        maxBatchSize: 8,
        preferredBatchSizes: [8, 2, 4],
        tunePreferredBatchSize: false,
        responseCacheBytes: 0n,
        priorityLevels: 0,
        defaultPriorityLevel: 0,
        priorityQueuePolicies: {},
        callerLimitOverrides: {},
      });
      let event = await w.next();
      expect(event?.$case === 'change' && event.value.deployment?.spec).toMatchObject({
        preferredBatchSizes: [8, 2, 4],
        tunePreferredBatchSize: false,
        responseCacheBytes: 0n,
        priorityLevels: 0,
        defaultPriorityLevel: 0,
        priorityQueuePolicies: {},
        callerLimitOverrides: {},
      });
      await call(
        h.client,
        'createDeployment',
        { name: 'batchy-tuned', spec: spec('batchy', { tunePreferredBatchSize: true }) },
        acme,
      );
      event = await w.next();
      expect(event?.$case === 'change' && event.value.deployment?.spec).toMatchObject({
        preferredBatchSizes: [],
        tunePreferredBatchSize: true,
        responseCacheBytes: 0n,
        priorityLevels: 0,
        defaultPriorityLevel: 0,
        priorityQueuePolicies: {},
        callerLimitOverrides: {},
      });
      expect(
        (await call(h.client, 'getDeployment', { name: 'batchy-fixed' }, acmeRead)).deployment?.spec
          ?.preferredBatchSizes,
      ).toEqual([8, 2, 4]);
      const listed = await call(h.client, 'listDeployments', { pageSize: 0, pageToken: '', model: 'batchy' }, acmeRead);
      expect(
        listed.deployments.map((d) => [d.name, d.spec?.preferredBatchSizes, d.spec?.tunePreferredBatchSize]),
      ).toEqual([
        ['batchy-fixed', [8, 2, 4], false],
        ['batchy-tuned', [], true],
      ]);
      const late = watcher(h, acmeRead);
      const snapshot = await late.next();
      expect(
        snapshot?.$case === 'snapshot' &&
          snapshot.value.deployments.map((d) => [d.name, d.spec?.preferredBatchSizes, d.spec?.tunePreferredBatchSize]),
      ).toEqual([
        ['batchy-fixed', [8, 2, 4], false],
        ['batchy-tuned', [], true],
      ]);
      late.close();

      // An update replaces the spec whole: sizes out, tuning in.
      const switched = await call(
        h.client,
        'updateDeployment',
        { name: 'batchy-fixed', spec: spec('batchy', { tunePreferredBatchSize: true }), expectedGeneration: 0n },
        acme,
      );
      expect(switched.deployment?.spec).toMatchObject({ preferredBatchSizes: [], tunePreferredBatchSize: true });
      expect((await call(h.client, 'getDeployment', { name: 'batchy-fixed' }, acmeRead)).deployment).toMatchObject({
        generation: 2n,
        spec: { preferredBatchSizes: [], tunePreferredBatchSize: true },
      });

      const refused: [Partial<pb.DeploymentSpec>, string][] = [
        [{ preferredBatchSizes: [4, 0] }, 'spec.preferred_batch_sizes[1] is 0: a batch size is at least 1'],
        [{ preferredBatchSizes: [2, 16] }, 'spec.preferred_batch_sizes[1] is 16, above spec.max_batch_size 8'],
        [{ preferredBatchSizes: [4, 2, 4] }, 'spec.preferred_batch_sizes[2] repeats 4 (already at [0])'],
        [
          { maxBatchSize: 1, preferredBatchSizes: [1] },
          'spec.preferred_batch_sizes is set but batching is off (spec.max_batch_size is 1; it must be above 1)',
        ],
        [
          { maxBatchSize: 0, tunePreferredBatchSize: true },
          'spec.tune_preferred_batch_size is set but batching is off (spec.max_batch_size is 0; it must be above 1)',
        ],
        [
          { preferredBatchSizes: [4], tunePreferredBatchSize: true },
          'spec.preferred_batch_sizes and spec.tune_preferred_batch_size are both set: drop ' +
            'tune_preferred_batch_size to use the listed sizes, ' +
            'or drop preferred_batch_sizes to have inference measure the best one on live traffic',
        ],
      ];
      for (const [extra, details] of refused) {
        const create = await failure(
          call(h.client, 'createDeployment', { name: 'batchy-bad', spec: spec('batchy', extra) }, acme),
        );
        expect([create.code, create.details]).toEqual([grpc.status.INVALID_ARGUMENT, details]);
        const update = await failure(
          call(
            h.client,
            'updateDeployment',
            { name: 'batchy-tuned', spec: spec('batchy', extra), expectedGeneration: 0n },
            acme,
          ),
        );
        expect([update.code, update.details]).toEqual([grpc.status.INVALID_ARGUMENT, details]);
      }
      // Nothing refused was stored: batchy-bad does not exist and batchy-tuned is unchanged.
      expect((await failure(call(h.client, 'getDeployment', { name: 'batchy-bad' }, acmeRead))).code).toBe(
        grpc.status.NOT_FOUND,
      );
      expect((await call(h.client, 'getDeployment', { name: 'batchy-tuned' }, acmeRead)).deployment).toMatchObject({
        generation: 1n,
        spec: { tunePreferredBatchSize: true },
      });
      // Batching off with neither set, and a preferred size equal to max_batch_size, are fine.
      await call(
        h.client,
        'updateDeployment',
        { name: 'batchy-tuned', spec: spec('batchy', { maxBatchSize: 0 }), expectedGeneration: 0n },
        acme,
      );
      await call(
        h.client,
        'updateDeployment',
        { name: 'batchy-tuned', spec: spec('batchy', { preferredBatchSizes: [8] }), expectedGeneration: 0n },
        acme,
      );

      w.close();
      for (const name of ['batchy-fixed', 'batchy-tuned']) await call(h.client, 'deleteDeployment', { name }, acme);
    },
  );

  it('resolves canary and shadow targets, follows their aliases, and refuses bad ones', async () => {
    for (const seed of [31, 32, 33]) await push(h.client, acme, { model: 'split' }, mlp(seed));
    await push(h.client, acme, { model: 'other' }, mlp(34));
    await call(h.client, 'setAlias', { model: 'split', alias: 'next', version: 2 }, acme);
    const w = watcher(h, acmeRead);
    expect((await w.next())?.$case).toBe('snapshot');

    const created = await call(
      h.client,
      'createDeployment',
      {
        name: 'split',
        spec: spec('split:1', {
          canary: { modelRef: 'split@next', percent: 10 },
          shadow: { modelRef: 'split:3', percent: 0 },
        }),
      },
      acme,
    );
    expect(created.deployment).toMatchObject({
      resolvedVersion: { version: 1 },
      canaryVersion: { version: 2 },
      shadowVersion: { version: 3 },
      spec: { canary: { modelRef: 'split@next', percent: 10 }, shadow: { modelRef: 'split:3', percent: 0 } },
    });
    expect((await w.next())?.$case).toBe('change');

    // The canary's alias moves: a new generation and a change event, the primary unchanged.
    await call(h.client, 'setAlias', { model: 'split', alias: 'next', version: 3 }, acme);
    const event = await w.next();
    expect(event?.$case === 'change' && event.value).toMatchObject({
      reason: 'canary: alias next moved from 2 to 3',
      deployment: { generation: 2n, resolvedVersion: { version: 1 }, canaryVersion: { version: 3 } },
    });
    expect((await failure(call(h.client, 'deleteAlias', { model: 'split', alias: 'next' }, acme))).details).toMatch(
      /used by deployment "split"/,
    );

    // Promote: the canary's reference becomes the primary's, without a canary; the shadow stays.
    const promoted = await call(
      h.client,
      'updateDeployment',
      {
        name: 'split',
        spec: spec('split@next', { shadow: { modelRef: 'split:3', percent: 25 } }),
        expectedGeneration: 2n,
      },
      acme,
    );
    expect(promoted.deployment).toMatchObject({ generation: 3n, resolvedVersion: { version: 3 } });
    expect(promoted.deployment?.canaryVersion).toBeUndefined();
    expect((await call(h.client, 'getDeployment', { name: 'split' }, acmeRead)).deployment).toMatchObject({
      shadowVersion: { version: 3 },
      spec: { shadow: { percent: 25 } },
    });

    const refused = async (extra: Partial<pb.DeploymentSpec>, code: number, message: RegExp): Promise<void> => {
      const e = await failure(
        call(h.client, 'createDeployment', { name: 'split-bad', spec: spec('split:1', extra) }, acme),
      );
      expect([e.code, e.details]).toEqual([code, expect.stringMatching(message)]);
    };
    const invalid = grpc.status.INVALID_ARGUMENT;
    await refused(
      { canary: { modelRef: 'split:2', percent: 0 } },
      invalid,
      /spec.canary.percent is 0; it must be 1 to 99/,
    );
    await refused({ canary: { modelRef: 'split:2', percent: 100 } }, invalid, /spec.canary.percent is 100/);
    await refused(
      { shadow: { modelRef: 'split:2', percent: 101 } },
      invalid,
      /spec.shadow.percent is 101; it must be 0 to 100/,
    );
    await refused({ canary: { modelRef: 'other:1', percent: 5 } }, invalid, /names model "other", not "split"/);
    await refused({ canary: { modelRef: '', percent: 5 } }, invalid, /spec.canary.model_ref is empty/);
    await refused(
      { shadow: { modelRef: 'split:2', percent: 0 }, sequenceState: [{ inputName: 'h', outputName: 'hn' }] },
      invalid,
      /spec.shadow is set on a stateful model/,
    );
    await refused({ canary: { modelRef: 'split:9', percent: 5 } }, grpc.status.NOT_FOUND, /has no version 9/);

    w.close();
    await call(h.client, 'deleteDeployment', { name: 'split' }, acme);
  });

  it("keeps tenants apart: another tenant's model behaves like one that does not exist", async () => {
    const own = await push(h.client, acme, { model: 'secret' }, mlp(11));
    await call(h.client, 'createDeployment', { name: 'secret-dep', spec: spec('secret') }, acme);
    const globexWatch = watcher(h, globex);
    expect(await globexWatch.next()).toEqual({ $case: 'snapshot', value: { deployments: [] } });

    const get = await failure(call(h.client, 'getModel', { name: 'secret' }, globex));
    expect(get.code).toBe(grpc.status.NOT_FOUND);
    expect(get.details).toBe('model "secret" not found');
    expect(
      (await call(h.client, 'listModels', { pageSize: 0, pageToken: '', namePrefix: '', tags: {} }, globex)).models,
    ).toEqual([]);
    expect((await failure(pull(h.client, globex, 'secret:1'))).code).toBe(grpc.status.NOT_FOUND);
    expect((await failure(call(h.client, 'getDeployment', { name: 'secret-dep' }, globex))).code).toBe(
      grpc.status.NOT_FOUND,
    );
    expect(
      (await failure(call(h.client, 'createDeployment', { name: 'steal', spec: spec('secret') }, globex))).code,
    ).toBe(grpc.status.NOT_FOUND);
    expect((await failure(push(h.client, globex, { model: 'secret', createModel: false }, mlp(12)))).code).toBe(
      grpc.status.NOT_FOUND,
    );
    expect((await failure(pull(h.client, globex, 'secret:1', { tenant: 'acme' }))).code).toBe(
      grpc.status.PERMISSION_DENIED,
    );

    // Same name, same bytes in the other tenant: its own model and its own blob.
    const theirs = await push(h.client, globex, { model: 'secret' }, mlp(11));
    expect(theirs.version).toBe(1);
    expect(theirs.sha256).toBe(own.sha256);
    // acme's changes never reach globex's watcher: the first change it sees is its own.
    await push(h.client, acme, { model: 'secret' }, mlp(13));
    await call(h.client, 'createDeployment', { name: 'mine', spec: spec('secret') }, globex);
    const event = await globexWatch.next();
    expect(event?.$case === 'change' && [event.value.deployment?.tenant, event.value.deployment?.name]).toEqual([
      'globex',
      'mine',
    ]);
    globexWatch.close();
  });

  it('ends watch streams with UNAVAILABLE when the registry stops, instead of holding the stop', async () => {
    const w = watcher(h, acmeRead);
    expect((await w.next())?.$case).toBe('snapshot');
    const ended = w.next().then(
      () => undefined,
      (error: unknown) => error as grpc.ServiceError,
    );
    // A watch that held the stop would keep it waiting 60 s, past this test's timeout.
    await h.restart(60_000);
    const error = await ended;
    expect(error?.code).toBe(grpc.status.UNAVAILABLE);
    expect(error?.details).toMatch(/shutting down/);
    expect((await call(h.client, 'getModel', { name: 'secret' }, acmeRead)).model?.name).toBe('secret');
  });
});
