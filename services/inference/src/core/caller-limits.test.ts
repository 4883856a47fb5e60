import { describe, expect, it } from 'vitest';
import { createCallerLimiter } from './caller-limits.js';
import { servingConfig } from '../testing/core.js';
import { InferError } from './types.js';

// The token bucket and the in-flight cap of each caller, on a clock the test moves.

function clock(): { nowNs: () => bigint; advanceMs(ms: number): void } {
  let now = 1_000_000_000n;
  return {
    nowNs: () => now,
    advanceMs(ms) {
      now += BigInt(Math.round(ms * 1e6));
    },
  };
}

function refusal(fn: () => unknown): InferError {
  try {
    fn();
  } catch (error: unknown) {
    if (error instanceof InferError) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

describe('caller limiter', () => {
  it('lets a burst through, refuses the next with the wait until a token, and refills at the rate', () => {
    const time = clock();
    const limiter = createCallerLimiter(time.nowNs);
    limiter.configure(servingConfig({ callerLimits: { requestsPerSecond: 10, burst: 3, maxConcurrency: 0 } }));
    for (let i = 0; i < 3; i++) limiter.admit('mlp', 'app')?.release(0n);
    const error = refusal(() => limiter.admit('mlp', 'app'));
    expect(error.code).toBe('RESOURCE_EXHAUSTED');
    expect(error.message).toMatch(/caller "app" is over its limit \(10 requests per second, burst 3\)/);
    // One token comes back every 100 ms.
    expect(error.details).toEqual({ 'retry-after-ms': '100', 'retry-after': '1' });
    time.advanceMs(40);
    expect(refusal(() => limiter.admit('mlp', 'app')).details['retry-after-ms']).toBe('60');
    time.advanceMs(60);
    expect(limiter.admit('mlp', 'app')).toBeDefined();
    // Another caller has a bucket of its own.
    for (let i = 0; i < 3; i++) expect(limiter.admit('mlp', 'other')).toBeDefined();
  });

  it('caps requests in flight per caller and frees a place when one settles', () => {
    const limiter = createCallerLimiter(clock().nowNs);
    limiter.configure(servingConfig({ callerLimits: { requestsPerSecond: 0, burst: 0, maxConcurrency: 2 } }));
    const first = limiter.admit('mlp', 'app');
    limiter.admit('mlp', 'app');
    const error = refusal(() => limiter.admit('mlp', 'app'));
    expect(error.message).toMatch(/2 requests in flight, at most 2/);
    // Before any request finished: the default wait.
    expect(error.details['retry-after-ms']).toBe('50');
    first?.release(8_000_000n);
    first?.release(8_000_000n); // idempotent
    const third = limiter.admit('mlp', 'app');
    expect(third).toBeDefined();
    // Now the wait suggested is what its requests take.
    expect(refusal(() => limiter.admit('mlp', 'app')).details['retry-after-ms']).toBe('8');
  });

  it('gives named callers their override, and nobody a limit without limits', () => {
    const limiter = createCallerLimiter(clock().nowNs);
    limiter.configure(
      servingConfig({
        callerLimits: { requestsPerSecond: 1, burst: 1, maxConcurrency: 0 },
        callerLimitOverrides: { partner: { requestsPerSecond: 0, burst: 0, maxConcurrency: 0 } },
      }),
    );
    limiter.admit('mlp', 'app');
    expect(refusal(() => limiter.admit('mlp', 'app')).code).toBe('RESOURCE_EXHAUSTED');
    for (let i = 0; i < 100; i++) expect(limiter.admit('mlp', 'partner')).toBeUndefined();
    limiter.configure(servingConfig({}));
    expect(limiter.admit('mlp', 'app')).toBeUndefined();
    expect(limiter.size()).toBe(0);
  });

  it('sizes the bucket at one second of the rate when no burst is given', () => {
    const limiter = createCallerLimiter(clock().nowNs);
    limiter.configure(servingConfig({ callerLimits: { requestsPerSecond: 2.5, burst: 0, maxConcurrency: 0 } }));
    for (let i = 0; i < 3; i++) limiter.admit('mlp', 'app');
    expect(refusal(() => limiter.admit('mlp', 'app')).code).toBe('RESOURCE_EXHAUSTED');
  });
});
