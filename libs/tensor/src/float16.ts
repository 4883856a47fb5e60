// FP16 (IEEE 754 binary16) and BF16 (bfloat16) as 16-bit patterns. Node 20 has no Float16Array,
// and nothing in JS knows bfloat16, so tensors keep both as Uint16Array bit patterns; these
// conversions are only needed where a number is wanted (the JSON form).

interface Format {
  readonly mantBits: number;
  readonly bias: number;
  readonly expMax: number; // all-ones exponent: Inf and NaN
  readonly quietNaN: number;
}

const FP16: Format = { mantBits: 10, bias: 15, expMax: 0x1f, quietNaN: 0x7e00 };
const BF16: Format = { mantBits: 7, bias: 127, expMax: 0xff, quietNaN: 0x7fc0 };

export function float16BitsToNumber(bits: number): number {
  return decode(bits, FP16);
}

/** Rounds to nearest, ties to even (as IEEE 754 casts do); too large becomes ±Infinity, NaN 0x7E00. */
export function numberToFloat16Bits(value: number): number {
  return encode(value, FP16);
}

export function bfloat16BitsToNumber(bits: number): number {
  return decode(bits, BF16);
}

/**
 * Rounds straight from the float64 to nearest, ties to even (no double rounding through
 * float32); too large becomes ±Infinity, NaN 0x7FC0.
 */
export function numberToBfloat16Bits(value: number): number {
  return encode(value, BF16);
}

function decode(bits: number, f: Format): number {
  const sign = (bits >> 15) & 1 ? -1 : 1;
  const exp = (bits >> f.mantBits) & f.expMax;
  const mant = bits & ((1 << f.mantBits) - 1);
  if (exp === f.expMax) return mant === 0 ? sign * Infinity : NaN;
  if (exp === 0) return sign * mant * 2 ** (1 - f.bias - f.mantBits);
  return sign * (2 ** f.mantBits + mant) * 2 ** (exp - f.bias - f.mantBits);
}

function encode(value: number, f: Format): number {
  if (Number.isNaN(value)) return f.quietNaN;
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0;
  const a = Math.abs(value);
  if (a === Infinity) return sign | (f.expMax << f.mantBits);
  if (a === 0) return sign;
  // Math.log2 may be off by one near powers of two; fix it with exact power-of-two compares.
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e -= 1;
  else if (2 ** (e + 1) <= a) e += 1;
  const emin = 1 - f.bias;
  if (e < emin) e = emin; // subnormal range: the quantum stays 2^(emin - mantBits)
  // q < 2^(mantBits+1) and a / 2^k is exact in float64, so floor and the remainder are exact.
  const q = a / 2 ** (e - f.mantBits);
  const floor = Math.floor(q);
  const rest = q - floor;
  let m = rest > 0.5 || (rest === 0.5 && floor % 2 === 1) ? floor + 1 : floor;
  if (m === 2 ** (f.mantBits + 1)) {
    m = 2 ** f.mantBits; // rounding carried into the next binade
    e += 1;
  }
  if (m < 2 ** f.mantBits) return sign | m; // subnormal (or rounded to zero)
  const biased = e + f.bias;
  if (biased >= f.expMax) return sign | (f.expMax << f.mantBits);
  return sign | (biased << f.mantBits) | (m - 2 ** f.mantBits);
}
