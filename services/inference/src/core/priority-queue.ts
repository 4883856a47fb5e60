import { InferError, type QueuePolicy, type ServingConfig } from './types.js';

// Triton's request priorities, as the dynamic batcher applies them: a deployment has
// `priorityLevels` levels, 1 first out; a request names its level with the `priority` parameter (0
// or none: the default level). Each level has a queue policy (its own or the default one): how many
// of its requests may wait, how long, and whether one whose time is up is refused or moved behind
// every level. Without levels (0), every request is of one level and `priority` is ignored, as
// Triton ignores it.

/** A level's policy when the deployment gives none: no limit of its own, refuse on timeout. */
export const NO_POLICY: QueuePolicy = Object.freeze({
  maxQueueSize: 0,
  timeoutUs: 0,
  delayOnTimeout: false,
  allowTimeoutOverride: false,
});

/** The levels of a deployment: at least 1 (one level when it has none). */
export function levelCount(config: ServingConfig): number {
  return Math.max(1, config.priorityLevels ?? 0);
}

/** The level of a request that names none: the configured one, or the lowest. */
export function defaultLevel(config: ServingConfig): number {
  const levels = levelCount(config);
  const chosen = config.defaultPriorityLevel ?? 0;
  return chosen >= 1 && chosen <= levels ? chosen : levels;
}

/** The level a request's `priority` puts it at; INVALID_ARGUMENT when the deployment has no such level. */
export function levelOf(model: string, config: ServingConfig, priority: number | undefined): number {
  const levels = config.priorityLevels ?? 0;
  if (priority === undefined || priority === 0 || levels === 0) return defaultLevel(config);
  if (priority > levels) {
    throw new InferError(
      'INVALID_ARGUMENT',
      `model "${model}": priority ${priority} is out of range: the deployment has ${levels} priority levels ` +
        `(1 is the highest; 0 or none means the default level ${defaultLevel(config)})`,
    );
  }
  return priority;
}

/** The queue policy of one level. */
export function policyOf(config: ServingConfig, level: number): QueuePolicy {
  return config.priorityQueuePolicies?.[level] ?? config.defaultQueuePolicy ?? NO_POLICY;
}

/**
 * How long a request of `policy`'s level may wait, in microseconds (0: no limit): the request's own
 * `timeout` where the level has no timeout or lets it override, the level's otherwise.
 */
export function queueTimeoutUs(policy: QueuePolicy, requestTimeoutUs: number | undefined): number {
  const own = requestTimeoutUs ?? 0;
  if (own > 0 && (policy.timeoutUs === 0 || policy.allowTimeoutOverride)) return own;
  return policy.timeoutUs;
}
