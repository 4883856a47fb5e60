/** Wall-clock time in ms since the epoch; tests pass a hand-driven one. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** Monotonic nanoseconds, for stage times (never the wall clock: it can jump). */
export function monotonicNs(): bigint {
  return process.hrtime.bigint();
}

/**
 * The dynamic batcher's time: a monotonic clock and a one-shot timer at ns precision. Tests pass
 * a hand-driven one; the real one is below.
 */
export interface BatchTimers {
  nowNs(): bigint;
  /** Calls `fn` once, about `ns` from now (never before). */
  setTimer(fn: () => void, ns: bigint): BatchTimer;
}

export interface BatchTimer {
  cancel(): void;
}

const NS_PER_MS = 1_000_000n;
/** Below this, the rest of a wait is polled; above, it goes to setTimeout. */
const POLL_NS = 200_000n;

/**
 * Node's setTimeout counts whole milliseconds (0.3 ms becomes 1 ms or more), too coarse for a
 * queue delay of hundreds of µs, and polling with setImmediate keeps the event loop spinning (a
 * core's worth of CPU while it waits, taken from the requests' own work on a small machine). So:
 * waits of a millisecond or more go to setTimeout for their whole milliseconds, the last
 * POLL_NS are polled with setImmediate (one check per event-loop turn, I/O included, so requests
 * keep arriving meanwhile), and what lies between goes to a 1 ms setTimeout, which may end up to
 * about 0.8 ms late: a batch then waits a little longer than the delay, never shorter.
 */
export const systemTimers: BatchTimers = {
  nowNs: monotonicNs,
  setTimer(fn, ns) {
    const due = monotonicNs() + ns;
    let timeout: NodeJS.Timeout | undefined;
    let immediate: NodeJS.Immediate | undefined;
    const wait = (left: bigint): void => {
      if (left > POLL_NS) timeout = setTimeout(check, Math.max(1, Number(left / NS_PER_MS)));
      else immediate = setImmediate(check);
    };
    const check = (): void => {
      timeout = undefined;
      immediate = undefined;
      const left = due - monotonicNs();
      if (left <= 0n) fn();
      else wait(left);
    };
    // Never synchronously, even for 0 ns.
    wait(ns);
    return {
      cancel() {
        clearTimeout(timeout);
        if (immediate !== undefined) clearImmediate(immediate);
      },
    };
  },
};
