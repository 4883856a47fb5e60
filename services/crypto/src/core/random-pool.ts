import { randomFillSync } from 'node:crypto';

/**
 * Small random values (IVs, nonces) from a pooled CSPRNG buffer. node:crypto pays a fixed cost per
 * randomBytes() call, more than the cipher work of a small Fernet token; filling 4 KiB at once
 * amortises it (docs/decisions/crypto-small-token-costs.md). Every byte is handed out once, then
 * the pool is refilled.
 */
const POOL_SIZE = 4096;
const pool = Buffer.allocUnsafe(POOL_SIZE);
let offset = POOL_SIZE;

export function randomSmall(length: number): Buffer {
  if (length > 256) return randomFillSync(Buffer.allocUnsafe(length));
  if (offset + length > POOL_SIZE) {
    randomFillSync(pool);
    offset = 0;
  }
  const out = Buffer.allocUnsafe(length);
  pool.copy(out, 0, offset, offset + length);
  // Wipe what was handed out, so the pool never holds a value someone else already uses.
  pool.fill(0, offset, offset + length);
  offset += length;
  return out;
}
