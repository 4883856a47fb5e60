import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createChunkPool } from './chunk-pool.js';

describe('upload chunk pool', () => {
  it('copies chunks that fit into reused buffers, up to its size, and leaves the rest to the caller', () => {
    const pool = createChunkPool({ slotBytes: 1024, maxSlots: 2, minBytes: 100 });
    const a = randomBytes(1024);
    const b = randomBytes(500);
    const ca = pool.copy(a);
    const cb = pool.copy(b);
    expect(ca?.equals(a)).toBe(true);
    expect(cb?.equals(b)).toBe(true);
    expect(ca?.buffer).not.toBe(cb?.buffer);
    expect(pool.copy(randomBytes(200))).toBeUndefined(); // both taken
    expect(pool.copy(randomBytes(99))).toBeUndefined(); // too small to be worth it
    expect(pool.copy(randomBytes(1025))).toBeUndefined(); // does not fit
    expect(pool.allocated).toBe(2);

    pool.release(ca!);
    pool.release(ca!); // twice: nothing more
    pool.release(randomBytes(10)); // not the pool's: nothing
    expect(pool.free).toBe(1);
    const c = randomBytes(300);
    const cc = pool.copy(c);
    expect(cc?.equals(c)).toBe(true);
    expect(cc?.buffer).toBe(ca?.buffer); // the released buffer, reused
    expect(cb?.equals(b)).toBe(true); // the one still held is untouched
    expect(pool.allocated).toBe(2);
  });
});
