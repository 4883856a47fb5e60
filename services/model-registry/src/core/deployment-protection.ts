import type { registry as pb } from '@quanta/contracts';
import { invalidArgument } from '@quanta/service-kit';

// The checks of a DeploymentSpec's response cache, priorities and caller limits: values inference
// could not honour are refused here, with the field and the bound, rather than at every replica.

/** The largest response cache a replica may be asked for: 64 GiB. */
export const MAX_RESPONSE_CACHE_BYTES = 64n << 30n;
/** The most priority levels a deployment may have (the dynamic batcher orders by level). */
export const MAX_PRIORITY_LEVELS = 100;
/** The longest queue timeout of a level: one hour. */
export const MAX_QUEUE_TIMEOUT_US = 3_600_000_000n;
/** The most callers a deployment may name in its overrides. */
export const MAX_CALLER_OVERRIDES = 10_000;

function checkPolicy(policy: pb.QueuePolicy, field: string): void {
  if (policy.timeoutUs > MAX_QUEUE_TIMEOUT_US)
    throw invalidArgument(
      `${field}.timeout_us is ${policy.timeoutUs}, above the most a request may wait ` +
        `(${MAX_QUEUE_TIMEOUT_US} µs, an hour)`,
    );
  if (policy.delayOnTimeout && policy.timeoutUs === 0n && !policy.allowTimeoutOverride)
    throw invalidArgument(
      `${field}.delay_on_timeout is set but the level has no timeout: set timeout_us, or allow_timeout_override ` +
        "so that requests' own timeouts delay them",
    );
}

function checkLimits(limits: pb.CallerLimits, field: string): void {
  const rate = limits.requestsPerSecond;
  if (!Number.isFinite(rate) || rate < 0)
    throw invalidArgument(`${field}.requests_per_second is ${rate}: it must be a finite number, 0 (no limit) or above`);
  if (rate === 0 && limits.burst > 0)
    throw invalidArgument(
      `${field}.burst is ${limits.burst} but requests_per_second is 0 (no rate limit to burst over)`,
    );
}

/** Refuses a spec whose cache, priorities or caller limits inference could not honour (INVALID_ARGUMENT). */
export function checkProtection(spec: pb.DeploymentSpec): void {
  if (spec.responseCacheBytes > MAX_RESPONSE_CACHE_BYTES)
    throw invalidArgument(
      `spec.response_cache_bytes is ${spec.responseCacheBytes}, above the most a replica keeps ` +
        `(${MAX_RESPONSE_CACHE_BYTES} bytes, 64 GiB)`,
    );
  if (spec.responseCacheBytes > 0n && spec.sequenceState.length > 0)
    throw invalidArgument(
      'spec.response_cache_bytes is set for a stateful model (spec.sequence_state): an answer there depends on ' +
        "the sequence's state, so it is never cached; drop one of them",
    );
  const levels = spec.priorityLevels;
  if (levels > MAX_PRIORITY_LEVELS)
    throw invalidArgument(
      `spec.priority_levels is ${levels}, above the most a deployment may have (${MAX_PRIORITY_LEVELS})`,
    );
  if (spec.defaultPriorityLevel > 0 && spec.defaultPriorityLevel > levels)
    throw invalidArgument(
      `spec.default_priority_level is ${spec.defaultPriorityLevel} but the deployment has ` +
        (levels === 0 ? 'no priority levels (set spec.priority_levels)' : `${levels} levels (1 to ${levels})`),
    );
  if (spec.defaultQueuePolicy !== undefined) checkPolicy(spec.defaultQueuePolicy, 'spec.default_queue_policy');
  for (const [key, policy] of Object.entries(spec.priorityQueuePolicies)) {
    const level = Number(key);
    if (level < 1 || level > Math.max(1, levels))
      throw invalidArgument(
        `spec.priority_queue_policies names level ${key}, but the levels are 1 to ${Math.max(1, levels)}` +
          (levels === 0 ? ' (set spec.priority_levels)' : ''),
      );
    checkPolicy(policy, `spec.priority_queue_policies[${key}]`);
  }
  if (spec.callerLimits !== undefined) checkLimits(spec.callerLimits, 'spec.caller_limits');
  const overrides = Object.entries(spec.callerLimitOverrides);
  if (overrides.length > MAX_CALLER_OVERRIDES)
    throw invalidArgument(
      `spec.caller_limit_overrides names ${overrides.length} callers, more than ${MAX_CALLER_OVERRIDES}`,
    );
  for (const [subject, limits] of overrides) {
    if (subject.trim() === '')
      throw invalidArgument('spec.caller_limit_overrides has an empty caller: name a token subject');
    checkLimits(limits, `spec.caller_limit_overrides["${subject}"]`);
  }
}
