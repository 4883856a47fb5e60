/**
 * Capped exponential backoff with full jitter, so replicas that lost the registry together do not
 * reconnect in step.
 */
export interface BackoffOptions {
  /** First delay's ceiling, in ms. Default 200. */
  readonly initialMs?: number;
  /** Largest delay, in ms. Default 10 000. */
  readonly maxMs?: number;
  /** Source of randomness in [0, 1); tests may fix it. */
  readonly random?: () => number;
}

export interface Backoff {
  /**
   * The delay before attempt `attempt` (0-based): uniform in [ceiling/2, ceiling], where
   * ceiling = min(max, initial·2^attempt).
   */
  delay(attempt: number): number;
}

export function createBackoff(options: BackoffOptions = {}): Backoff {
  const initial = options.initialMs ?? 200;
  const max = options.maxMs ?? 10_000;
  const random = options.random ?? Math.random;
  if (!(initial > 0) || !(max >= initial))
    throw new RangeError(`backoff needs 0 < initialMs <= maxMs (got ${initial}, ${max})`);
  return {
    delay(attempt) {
      // 2^30 is far past any cap; min() keeps the exponent from overflowing to Infinity.
      const ceiling = Math.min(max, initial * 2 ** Math.min(attempt, 30));
      // Half fixed, half random: never a near-zero delay that hammers a registry that is down.
      return ceiling / 2 + random() * (ceiling / 2);
    },
  };
}

/** Resolves after `ms`, or at once when `signal` aborts; the timer never holds the process open. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) return resolve();
    const timer = setTimeout(done, ms);
    timer.unref();
    signal?.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}
