import { registry as pb } from '@quanta/contracts';
import { describe, expect, it } from 'vitest';
import { configKey, servingConfig } from './serving-config.js';

/** A spec with the registry's defaults (fromPartial) for what a test does not set. */
const spec = (extra: Partial<pb.DeploymentSpec> = {}): pb.DeploymentSpec =>
  pb.DeploymentSpec.fromPartial({
    modelRef: 'cifar@prod',
    maxBatchSize: 16,
    maxQueueDelayUs: 500,
    instanceCount: 2,
    ...extra,
  });

describe('servingConfig', () => {
  it('maps the preferred batch sizes ascending and the tuning flag', () => {
    const fixed = servingConfig(spec({ preferredBatchSizes: [16, 4, 8] }));
    expect(fixed).toMatchObject({ maxBatchSize: 16, preferredBatchSizes: [4, 8, 16], tunePreferredBatchSize: false });
    expect(servingConfig(spec({ tunePreferredBatchSize: true }))).toMatchObject({
      preferredBatchSizes: [],
      tunePreferredBatchSize: true,
    });
  });

  it('leaves the spec untouched when it sorts', () => {
    const sizes = [8, 2];
    servingConfig(spec({ preferredBatchSizes: sizes }));
    expect(sizes).toEqual([8, 2]);
  });

  it('gives no preferred sizes and no tuning without a spec (a model loaded by hand)', () => {
    expect(servingConfig(undefined)).toMatchObject({ preferredBatchSizes: [], tunePreferredBatchSize: false });
  });
});

describe('servingConfig: cache, priorities and caller limits', () => {
  it('maps them into the core terms, and leaves them out when the spec sets none', () => {
    const config = servingConfig(
      spec({
        responseCacheBytes: 64n << 20n,
        priorityLevels: 3,
        defaultPriorityLevel: 2,
        defaultQueuePolicy: pb.QueuePolicy.fromPartial({ maxQueueSize: 10 }),
        priorityQueuePolicies: { 1: pb.QueuePolicy.fromPartial({ timeoutUs: 50_000n, delayOnTimeout: true }) },
        callerLimits: pb.CallerLimits.fromPartial({ requestsPerSecond: 100, maxConcurrency: 16 }),
        callerLimitOverrides: { partner: pb.CallerLimits.fromPartial({ requestsPerSecond: 500 }) },
      }),
    );
    expect(config).toMatchObject({
      responseCacheBytes: 64 << 20,
      priorityLevels: 3,
      defaultPriorityLevel: 2,
      defaultQueuePolicy: { maxQueueSize: 10, timeoutUs: 0, delayOnTimeout: false, allowTimeoutOverride: false },
      priorityQueuePolicies: { 1: { maxQueueSize: 0, timeoutUs: 50_000, delayOnTimeout: true } },
      callerLimits: { requestsPerSecond: 100, burst: 0, maxConcurrency: 16 },
      callerLimitOverrides: { partner: { requestsPerSecond: 500, burst: 0, maxConcurrency: 0 } },
    });
    const plain = servingConfig(spec());
    for (const field of ['responseCacheBytes', 'priorityLevels', 'defaultQueuePolicy', 'callerLimits'] as const)
      expect(plain[field]).toBeUndefined();
  });

  it('reloads the model when one of them changes', () => {
    const key = (extra: Partial<pb.DeploymentSpec>): string => configKey(servingConfig(spec(extra)));
    const none = key({});
    expect(key({ responseCacheBytes: 1024n })).not.toBe(none);
    expect(key({ priorityLevels: 2 })).not.toBe(none);
    expect(key({ callerLimits: pb.CallerLimits.fromPartial({ maxConcurrency: 4 }) })).not.toBe(none);
    expect(key({ callerLimitOverrides: { a: pb.CallerLimits.fromPartial({ maxConcurrency: 4 }) } })).not.toBe(none);
  });
});

describe('configKey', () => {
  const key = (extra: Partial<pb.DeploymentSpec>): string => configKey(servingConfig(spec(extra)));

  it('changes, so the model reloads, when the preferred sizes or the tuning flag change', () => {
    const none = key({});
    expect(key({ preferredBatchSizes: [8] })).not.toBe(none);
    expect(key({ preferredBatchSizes: [4, 8] })).not.toBe(key({ preferredBatchSizes: [8] }));
    expect(key({ tunePreferredBatchSize: true })).not.toBe(none);
  });

  it('stays the same for the same sizes in another order, and for the same spec twice', () => {
    expect(key({ preferredBatchSizes: [8, 4] })).toBe(key({ preferredBatchSizes: [4, 8] }));
    expect(key({ tunePreferredBatchSize: true })).toBe(key({ tunePreferredBatchSize: true }));
  });

  it('reads an absent field like an empty one (configs built by hand)', () => {
    const { preferredBatchSizes: _sizes, tunePreferredBatchSize: _tune, ...bare } = servingConfig(spec());
    expect(configKey(bare)).toBe(key({}));
  });
});
