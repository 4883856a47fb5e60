import { monotonicNs } from './clock.js';
import { InferError, type CallerLimits, type ServingConfig } from './types.js';

// A deployment's caller limits (docs/decisions/inference-caller-limits.md): a caller is a token's
// subject within the model's tenant (a partner, an application). Each caller has a token bucket
// (requests per second, burst) and a cap on its requests in flight (queued or running). They are
// checked before a request is queued, so a caller over its limits never takes a queue place or an
// instance from another: its request is refused at once with RESOURCE_EXHAUSTED and how long to
// wait before retrying (`retry-after-ms`; `retry-after` in whole seconds for HTTP).
//
// One limiter serves every version of a model (ModelManager keeps it per tenant and model), so a
// version swap or a canary split neither resets nor doubles a caller's allowance.

/** What an admitted request holds until it settles; `release` is idempotent. */
export interface CallerPermit {
  release(durationNs: bigint): void;
}

export interface CallerLimiter {
  /** Takes the deployment's current limits (kept state: buckets and requests in flight). */
  configure(config: ServingConfig): void;
  /** Admits one request of `caller`, or throws RESOURCE_EXHAUSTED with retry-after details; undefined: no limits. */
  admit(model: string, caller: string): CallerPermit | undefined;
  /** Callers with state held (for tests and the sweep). */
  size(): number;
}

interface CallerState {
  tokens: number;
  /** monotonicNs() when `tokens` was last brought up to date. */
  updatedNs: bigint;
  inFlight: number;
  /** Moving average of its requests' durations, ms: the wait suggested when its concurrency is full. */
  averageMs: number;
}

/** The wait suggested to a caller at its concurrency cap before any of its requests has finished. */
const DEFAULT_BUSY_RETRY_MS = 50;
/** Above this many callers, idle ones (full bucket, nothing in flight) are forgotten. */
const SWEEP_ABOVE = 10_000;

const NO_PERMIT = undefined;

function active(limits: CallerLimits | undefined): limits is CallerLimits {
  return limits !== undefined && (limits.requestsPerSecond > 0 || limits.maxConcurrency > 0);
}

/** The bucket size of `limits`: its burst, or one second's worth (at least 1). */
export function bucketSize(limits: CallerLimits): number {
  return limits.burst > 0 ? limits.burst : Math.max(1, Math.ceil(limits.requestsPerSecond));
}

export function createCallerLimiter(nowNs: () => bigint = monotonicNs): CallerLimiter {
  let defaults: CallerLimits | undefined;
  let overrides: Readonly<Record<string, CallerLimits>> = {};
  const callers = new Map<string, CallerState>();

  const limitsOf = (caller: string): CallerLimits | undefined =>
    Object.hasOwn(overrides, caller) ? overrides[caller] : defaults;

  const refill = (state: CallerState, limits: CallerLimits, now: bigint): void => {
    const elapsedS = Number(now - state.updatedNs) / 1e9;
    state.tokens = Math.min(bucketSize(limits), state.tokens + elapsedS * limits.requestsPerSecond);
    state.updatedNs = now;
  };

  const sweep = (now: bigint): void => {
    for (const [caller, state] of callers) {
      if (state.inFlight > 0) continue;
      const limits = limitsOf(caller);
      if (limits === undefined) {
        callers.delete(caller);
        continue;
      }
      refill(state, limits, now);
      if (limits.requestsPerSecond <= 0 || state.tokens >= bucketSize(limits)) callers.delete(caller);
    }
  };

  const refuse = (model: string, caller: string, why: string, retryAfterMs: number): never => {
    const ms = Math.max(1, Math.ceil(retryAfterMs));
    throw new InferError(
      'RESOURCE_EXHAUSTED',
      `model "${model}": caller "${caller}" is over its limit (${why}); retry after ${ms} ms`,
      { details: { 'retry-after-ms': String(ms), 'retry-after': String(Math.ceil(ms / 1000)) } },
    );
  };

  return {
    configure(config) {
      defaults = active(config.callerLimits) ? config.callerLimits : undefined;
      overrides = config.callerLimitOverrides ?? {};
      if (defaults === undefined && !Object.values(overrides).some(active)) callers.clear();
    },
    admit(model, caller) {
      const limits = limitsOf(caller);
      if (!active(limits)) return NO_PERMIT;
      const now = nowNs();
      let state = callers.get(caller);
      if (state === undefined) {
        if (callers.size >= SWEEP_ABOVE) sweep(now);
        state = { tokens: bucketSize(limits), updatedNs: now, inFlight: 0, averageMs: 0 };
        callers.set(caller, state);
      }
      if (limits.maxConcurrency > 0 && state.inFlight >= limits.maxConcurrency) {
        refuse(
          model,
          caller,
          `${state.inFlight} requests in flight, at most ${limits.maxConcurrency}`,
          state.averageMs > 0 ? state.averageMs : DEFAULT_BUSY_RETRY_MS,
        );
      }
      if (limits.requestsPerSecond > 0) {
        refill(state, limits, now);
        if (state.tokens < 1) {
          refuse(
            model,
            caller,
            `${limits.requestsPerSecond} requests per second, burst ${bucketSize(limits)}`,
            ((1 - state.tokens) / limits.requestsPerSecond) * 1000,
          );
        }
        state.tokens -= 1;
      }
      state.inFlight++;
      const held = state;
      let released = false;
      return {
        release(durationNs) {
          if (released) return;
          released = true;
          held.inFlight--;
          const ms = Number(durationNs) / 1e6;
          held.averageMs = held.averageMs === 0 ? ms : held.averageMs * 0.8 + ms * 0.2;
        },
      };
    },
    size: () => callers.size,
  };
}
