import type { registry as pb } from '@quanta/contracts';
import type { CallerLimits, QueuePolicy, ServingConfig } from '../core/types.js';

/**
 * What the replica sets that a DeploymentSpec does not say (onnxruntime threads, execution
 * providers, worker or inline sessions).
 */
export type ServingDefaults = Pick<ServingConfig, 'threadsPerInstance' | 'executionProviders' | 'execution'>;

const ascending = (sizes: readonly number[]): number[] => [...sizes].sort((a, b) => a - b);

const queuePolicy = (p: pb.QueuePolicy): QueuePolicy => ({
  maxQueueSize: p.maxQueueSize,
  timeoutUs: Number(p.timeoutUs),
  delayOnTimeout: p.delayOnTimeout,
  allowTimeoutOverride: p.allowTimeoutOverride,
});

const callerLimits = (l: pb.CallerLimits): CallerLimits => ({
  requestsPerSecond: l.requestsPerSecond,
  burst: l.burst,
  maxConcurrency: l.maxConcurrency,
});

/** The response cache, priorities and caller limits of a spec, set only where the spec sets them. */
function protection(spec: pb.DeploymentSpec | undefined): Partial<ServingConfig> {
  if (spec === undefined) return {};
  const policies = Object.entries(spec.priorityQueuePolicies ?? {});
  const overrides = Object.entries(spec.callerLimitOverrides ?? {});
  return {
    ...(spec.responseCacheBytes > 0n ? { responseCacheBytes: Number(spec.responseCacheBytes) } : {}),
    ...(spec.priorityLevels > 0
      ? { priorityLevels: spec.priorityLevels, defaultPriorityLevel: spec.defaultPriorityLevel }
      : {}),
    ...(spec.defaultQueuePolicy === undefined ? {} : { defaultQueuePolicy: queuePolicy(spec.defaultQueuePolicy) }),
    ...(policies.length === 0
      ? {}
      : { priorityQueuePolicies: Object.fromEntries(policies.map(([level, p]) => [Number(level), queuePolicy(p)])) }),
    ...(spec.callerLimits === undefined ? {} : { callerLimits: callerLimits(spec.callerLimits) }),
    ...(overrides.length === 0
      ? {}
      : { callerLimitOverrides: Object.fromEntries(overrides.map(([sub, l]) => [sub, callerLimits(l)])) }),
  };
}

/** How the core serves a deployment's model: the registry's DeploymentSpec in the core's terms. */
export function servingConfig(spec: pb.DeploymentSpec | undefined, defaults: ServingDefaults = {}): ServingConfig {
  return {
    ...defaults,
    maxBatchSize: spec?.maxBatchSize ?? 0,
    maxQueueDelayUs: spec?.maxQueueDelayUs ?? 0,
    // The registry keeps them as given; the core wants them ascending.
    preferredBatchSizes: ascending(spec?.preferredBatchSizes ?? []),
    tunePreferredBatchSize: spec?.tunePreferredBatchSize ?? false,
    // The spec's 0 means 1; the core wants at least 1.
    instanceCount: Math.max(1, spec?.instanceCount ?? 1),
    maxQueueSize: spec?.maxQueueSize ?? 0,
    sequenceState: (spec?.sequenceState ?? []).map((s) => ({ input: s.inputName, output: s.outputName })),
    sequenceIdleTimeoutMs: spec?.sequenceIdleTimeoutMs ?? 0,
    ...protection(spec),
  };
}

/** Equal for configs that serve the same way (a changed key means a reload). */
export function configKey(config: ServingConfig): string {
  return JSON.stringify([
    config.maxBatchSize,
    config.maxQueueDelayUs,
    ascending(config.preferredBatchSizes ?? []),
    config.tunePreferredBatchSize ?? false,
    config.instanceCount,
    config.maxQueueSize,
    config.sequenceState.map((s) => [s.input, s.output]),
    config.sequenceIdleTimeoutMs,
    config.threadsPerInstance ?? 0,
    config.executionProviders ?? [],
    config.execution ?? 'worker',
    config.responseCacheBytes ?? 0,
    config.priorityLevels ?? 0,
    config.defaultPriorityLevel ?? 0,
    config.defaultQueuePolicy ?? null,
    Object.entries(config.priorityQueuePolicies ?? {}).sort(([a], [b]) => Number(a) - Number(b)),
    config.callerLimits ?? null,
    Object.entries(config.callerLimitOverrides ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  ]);
}

/** The model name of a reference: `cifar:3`, `cifar@prod` and `cifar` all name `cifar`. */
export function modelNameOf(ref: string): string {
  const at = ref.search(/[:@]/);
  return at < 0 ? ref : ref.slice(0, at);
}

/** The name inference serves a deployment under: its reference's model name. */
export function servedName(deployment: pb.Deployment): string {
  const resolved = deployment.resolvedVersion?.model;
  return resolved !== undefined && resolved !== '' ? resolved : modelNameOf(deployment.spec?.modelRef ?? '');
}
