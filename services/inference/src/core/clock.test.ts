import { describe, expect, it } from 'vitest';
import { monotonicNs, systemTimers } from './clock.js';

// The batcher's real timer: never early (the delay is a promise to the batch), and cancellable.

describe('systemTimers', () => {
  it(
    'fires each timer once, never before it is due, whether polled, ' + 'a 1 ms timeout or whole milliseconds',
    async () => {
      const waits = [0n, 50_000n, 300_000n, 900_000n, 2_300_000n];
      const fired = await Promise.all(
        waits.map(
          (ns) =>
            new Promise<{ ns: bigint; early: boolean; synchronous: boolean }>((resolve) => {
              let returned = false;
              const due = monotonicNs() + ns;
              systemTimers.setTimer(() => resolve({ ns, early: monotonicNs() < due, synchronous: !returned }), ns);
              returned = true;
            }),
        ),
      );
      expect(fired).toEqual(waits.map((ns) => ({ ns, early: false, synchronous: false })));
    },
  );

  it('does not fire a cancelled timer', async () => {
    let calls = 0;
    const short = systemTimers.setTimer(() => calls++, 100_000n);
    const long = systemTimers.setTimer(() => calls++, 1_500_000n);
    short.cancel();
    long.cancel();
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(calls).toBe(0);
  });
});
