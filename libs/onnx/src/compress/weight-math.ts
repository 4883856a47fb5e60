import { numberToFloat16Bits } from '@quanta/tensor';

// The arithmetic of the methods, on plain arrays: symmetric int8 per channel, float16 storage and
// magnitude pruning.

export interface Int8Weights {
  readonly values: Int8Array;
  /** One scale per channel (one in all when per tensor), float32 values. */
  readonly scales: Float32Array;
}

/**
 * Symmetric quantization along `axis` of a tensor of `dims` (axis -1: one scale for the whole
 * tensor): q = round(w / s) clamped to [-qmax, qmax], s = max|w| / qmax per channel, zero point 0,
 * so exact zeros (pruned weights) stay zero. A channel of zeros gets scale 1.
 */
export function quantizeInt8(w: Float32Array, dims: readonly number[], axis: number, qmax = 127): Int8Weights {
  const channels = axis < 0 ? 1 : dims[axis]!;
  const inner = axis < 0 ? w.length : dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const channelOf = (i: number): number => (axis < 0 ? 0 : Math.floor(i / inner) % channels);
  const max = new Float32Array(channels);
  for (let i = 0; i < w.length; i++) {
    const c = channelOf(i);
    const a = Math.abs(w[i]!);
    if (a > max[c]!) max[c] = a;
  }
  const scales = new Float32Array(channels);
  for (let c = 0; c < channels; c++) scales[c] = max[c]! > 0 ? max[c]! / qmax : 1;
  const values = new Int8Array(w.length);
  for (let i = 0; i < w.length; i++) {
    const q = Math.round(w[i]! / scales[channelOf(i)]!);
    values[i] = Math.max(-qmax, Math.min(qmax, q));
  }
  return { values, scales };
}

/** Largest magnitude a float16 holds. */
export const FLOAT16_MAX = 65504;

/** Float16 bit patterns, rounded to nearest even. */
export function toFloat16(w: Float32Array): Uint16Array {
  const out = new Uint16Array(w.length);
  const bits = new Uint32Array(w.buffer, w.byteOffset, w.length);
  for (let i = 0; i < w.length; i++) {
    const f = bits[i]!;
    const exp = f & 0x7f800000;
    // Float16's normal range (exponents 1..30) straight from the bits; zeros, subnormals, overflow,
    // Inf and NaN through the general conversion.
    if (exp > 0x38000000 && exp < 0x47800000) {
      const mantissa = f & 0x007fffff;
      let h = ((f >>> 16) & 0x8000) | ((exp - 0x38000000) >>> 13) | (mantissa >>> 13);
      const rest = mantissa & 0x1fff;
      if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h += 1; // a carry rounds into the exponent, as it should
      out[i] = h;
    } else {
      out[i] = numberToFloat16Bits(w[i]!);
    }
  }
  return out;
}

/** Sets the floor(sparsity * n) smallest-magnitude elements to zero (ties: the first ones). */
export function pruneByMagnitude(w: Float32Array, sparsity: number): Float32Array {
  const out = Float32Array.from(w);
  const k = Math.floor(sparsity * w.length);
  if (k === 0) return out;
  const magnitudes = out.map(Math.abs).sort();
  const threshold = magnitudes[k - 1]!;
  let below = 0;
  for (let i = 0; i < out.length; i++) if (Math.abs(out[i]!) < threshold) below += 1;
  let ties = k - below;
  for (let i = 0; i < out.length; i++) {
    const a = Math.abs(out[i]!);
    if (a < threshold) out[i] = 0;
    else if (a === threshold && ties > 0) {
      out[i] = 0;
      ties -= 1;
    }
  }
  return out;
}

/** Little-endian bytes of a typed array (the host is little-endian: @quanta/tensor checks). */
export function bytesOf(a: Float32Array | Int8Array | Uint16Array | Uint8Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** w transposed from [rows, cols] to [cols, rows]. */
export function transpose2d(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c]!;
  return out;
}
