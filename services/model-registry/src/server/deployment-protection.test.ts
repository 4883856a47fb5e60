import { registry as pb } from '@quanta/contracts';
import { buildMlp } from '@quanta/onnx';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Backend, Harness, SharedCrypto } from '../testing/harness.js';
import { call, startHarness, startSharedCrypto } from '../testing/harness.js';
import { failure, grpc, push } from '../testing/client.js';

// A deployment's response cache, priorities and caller limits: kept through every read, and
// refused with the field and the bound when inference could not honour them.

const spec = (extra: Partial<pb.DeploymentSpec> = {}): pb.DeploymentSpec =>
  pb.DeploymentSpec.fromPartial({ modelRef: 'guarded', maxBatchSize: 8, ...extra });

const policy = (extra: Partial<pb.QueuePolicy> = {}): pb.QueuePolicy => pb.QueuePolicy.fromPartial(extra);
const limits = (extra: Partial<pb.CallerLimits> = {}): pb.CallerLimits => pb.CallerLimits.fromPartial(extra);

let crypto: SharedCrypto;
beforeAll(async () => {
  crypto = await startSharedCrypto();
}, 240_000);
afterAll(async () => {
  await crypto?.close();
});

describe.each<Backend>(['embedded', 'postgres'])('deployment protection on the %s store', (backend) => {
  let h: Harness;
  let acme: string;

  beforeAll(async () => {
    h = await startHarness({ backend, crypto });
    acme = await h.token('acme', ['models:read', 'models:write']);
    await push(h.client, acme, { model: 'guarded' }, Buffer.from(buildMlp({ seed: 4 })));
  }, 240_000);
  afterAll(async () => {
    await h?.close();
  });

  it('keeps the cache, priorities and caller limits through create, get, list and update', async () => {
    const wanted = spec({
      responseCacheBytes: 64n << 20n,
      priorityLevels: 3,
      defaultPriorityLevel: 2,
      defaultQueuePolicy: policy({ maxQueueSize: 100 }),
      priorityQueuePolicies: {
        1: policy({ maxQueueSize: 8, timeoutUs: 50_000n, delayOnTimeout: true }),
        3: policy({ timeoutUs: 2_000_000n, allowTimeoutOverride: true }),
      },
      callerLimits: limits({ requestsPerSecond: 100, burst: 20, maxConcurrency: 16 }),
      callerLimitOverrides: { partner: limits({ requestsPerSecond: 1000.5, maxConcurrency: 64 }) },
    });
    const created = await call(h.client, 'createDeployment', { name: 'guarded', spec: wanted }, acme);
    const kept = {
      responseCacheBytes: 64n << 20n,
      priorityLevels: 3,
      defaultPriorityLevel: 2,
      defaultQueuePolicy: wanted.defaultQueuePolicy,
      priorityQueuePolicies: wanted.priorityQueuePolicies,
      callerLimits: wanted.callerLimits,
      callerLimitOverrides: wanted.callerLimitOverrides,
    };
    expect(created.deployment?.spec).toMatchObject(kept);
    expect((await call(h.client, 'getDeployment', { name: 'guarded' }, acme)).deployment?.spec).toMatchObject(kept);
    const listed = await call(h.client, 'listDeployments', { pageSize: 0, pageToken: '', model: 'guarded' }, acme);
    expect(listed.deployments[0]?.spec).toMatchObject(kept);
    // An update replaces the spec whole: no cache, no levels, no limits.
    const cleared = await call(
      h.client,
      'updateDeployment',
      { name: 'guarded', spec: spec(), expectedGeneration: 0n },
      acme,
    );
    expect(cleared.deployment?.spec).toMatchObject({
      responseCacheBytes: 0n,
      priorityLevels: 0,
      priorityQueuePolicies: {},
      callerLimits: undefined,
      callerLimitOverrides: {},
    });
    await call(h.client, 'deleteDeployment', { name: 'guarded' }, acme);
  });

  it('refuses what inference could not honour, naming the field and the bound', async () => {
    const refused: [Partial<pb.DeploymentSpec>, string][] = [
      [
        { responseCacheBytes: (64n << 30n) + 1n },
        'spec.response_cache_bytes is 68719476737, above the most a replica keeps (68719476736 bytes, 64 GiB)',
      ],
      [
        { responseCacheBytes: 1024n, sequenceState: [{ inputName: 'h', outputName: 'hn' }] },
        'spec.response_cache_bytes is set for a stateful model (spec.sequence_state): an answer there depends on ' +
          "the sequence's state, so it is never cached; drop one of them",
      ],
      [{ priorityLevels: 101 }, 'spec.priority_levels is 101, above the most a deployment may have (100)'],
      [
        { priorityLevels: 3, defaultPriorityLevel: 4 },
        'spec.default_priority_level is 4 but the deployment has 3 levels (1 to 3)',
      ],
      [
        { defaultPriorityLevel: 1 },
        'spec.default_priority_level is 1 but the deployment has no priority levels (set spec.priority_levels)',
      ],
      [
        { priorityLevels: 2, priorityQueuePolicies: { 3: policy() } },
        'spec.priority_queue_policies names level 3, but the levels are 1 to 2',
      ],
      [
        { priorityLevels: 2, priorityQueuePolicies: { 0: policy() } },
        'spec.priority_queue_policies names level 0, but the levels are 1 to 2',
      ],
      [
        { defaultQueuePolicy: policy({ timeoutUs: 3_600_000_001n }) },
        'spec.default_queue_policy.timeout_us is 3600000001, above the most a request may wait ' +
          '(3600000000 µs, an hour)',
      ],
      [
        { priorityLevels: 2, priorityQueuePolicies: { 1: policy({ delayOnTimeout: true }) } },
        'spec.priority_queue_policies[1].delay_on_timeout is set but the level has no timeout: set timeout_us, or ' +
          "allow_timeout_override so that requests' own timeouts delay them",
      ],
      [
        { callerLimits: limits({ requestsPerSecond: -1 }) },
        'spec.caller_limits.requests_per_second is -1: it must be a finite number, 0 (no limit) or above',
      ],
      [
        { callerLimits: limits({ requestsPerSecond: Number.POSITIVE_INFINITY }) },
        'spec.caller_limits.requests_per_second is Infinity: it must be a finite number, 0 (no limit) or above',
      ],
      [
        { callerLimits: limits({ burst: 5 }) },
        'spec.caller_limits.burst is 5 but requests_per_second is 0 (no rate limit to burst over)',
      ],
      [
        { callerLimitOverrides: { ' ': limits({ maxConcurrency: 1 }) } },
        'spec.caller_limit_overrides has an empty caller: name a token subject',
      ],
      [
        { callerLimitOverrides: { app: limits({ requestsPerSecond: Number.NaN }) } },
        'spec.caller_limit_overrides["app"].requests_per_second is NaN: it must be a finite number, 0 (no limit) ' +
          'or above',
      ],
    ];
    for (const [extra, details] of refused) {
      const error = await failure(call(h.client, 'createDeployment', { name: 'guarded-bad', spec: spec(extra) }, acme));
      expect([error.code, error.details]).toEqual([grpc.status.INVALID_ARGUMENT, details]);
    }
    expect((await failure(call(h.client, 'getDeployment', { name: 'guarded-bad' }, acme))).code).toBe(
      grpc.status.NOT_FOUND,
    );
  });
});
