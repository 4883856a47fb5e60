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
