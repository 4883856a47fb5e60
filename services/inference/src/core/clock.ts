/** Wall-clock time in ms since the epoch; tests pass a hand-driven one. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** Monotonic nanoseconds, for stage times (never the wall clock: it can jump). */
export function monotonicNs(): bigint {
  return process.hrtime.bigint();
}
