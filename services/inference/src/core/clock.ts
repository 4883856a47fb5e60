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

/**
 * Node's setTimeout counts whole milliseconds (0.3 ms becomes 1 ms), too coarse for a queue
 * delay of hundreds of µs: whole milliseconds go to setTimeout, the rest is polled with
 * setImmediate (one check per event-loop turn, I/O included, so requests keep arriving while it
 * polls).
 */
export const systemTimers: BatchTimers = {
  nowNs: monotonicNs,
  setTimer(fn, ns) {
    const due = monotonicNs() + ns;
    let timeout: NodeJS.Timeout | undefined;
    let immediate: NodeJS.Immediate | undefined;
    const check = (): void => {
      timeout = undefined;
      immediate = undefined;
      const left = due - monotonicNs();
      if (left <= 0n) fn();
      else if (left >= NS_PER_MS) timeout = setTimeout(check, Number(left / NS_PER_MS));
      else immediate = setImmediate(check);
    };
    // Never synchronously, even for 0 ns.
    if (ns >= NS_PER_MS) timeout = setTimeout(check, Number(ns / NS_PER_MS));
    else immediate = setImmediate(check);
    return {
      cancel() {
        clearTimeout(timeout);
        if (immediate !== undefined) clearImmediate(immediate);
      },
    };
  },
};
