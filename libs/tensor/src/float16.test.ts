import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bfloat16BitsToNumber, float16BitsToNumber, numberToBfloat16Bits, numberToFloat16Bits } from './float16.js';

// Second source: CPython's struct 'e' format (see test-vectors/make-fp16-vectors.py).
const vectors = JSON.parse(readFileSync(new URL('../test-vectors/fp16.json', import.meta.url), 'utf8')) as {
  decode: [number, number | string][];
  encode: [number, number][];
};

const hex = (bits: number): string => `0x${bits.toString(16).padStart(4, '0')}`;

describe('FP16', () => {
  it.each([
    [0x3c00, 1],
    [0x7bff, 65504],
    [0xc000, -2],
    [0x0001, 2 ** -24], // smallest subnormal
    [0x03ff, 1023 * 2 ** -24], // largest subnormal
    [0x0400, 2 ** -14], // smallest normal
    [0x3555, 0.333251953125],
    [0x3bff, 0.99951171875],
    [0x3c01, 1.0009765625],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
    [0x0000, 0],
    [0x8000, -0],
  ])('%s <-> %s (published IEEE binary16 patterns)', (bits, value) => {
    expect(float16BitsToNumber(bits)).toBe(value);
    expect(hex(numberToFloat16Bits(value))).toBe(hex(bits));
  });

  it('NaNs decode to NaN and encode to the quiet NaN 0x7e00', () => {
    for (const bits of [0x7c01, 0x7e00, 0xfe00, 0x7fff]) expect(float16BitsToNumber(bits)).toBeNaN();
    expect(hex(numberToFloat16Bits(NaN))).toBe('0x7e00');
  });

  it('rounds to nearest, ties to even, and overflows to infinity', () => {
    expect(hex(numberToFloat16Bits(1 + 2 ** -11))).toBe('0x3c00'); // tie, stays even
    expect(hex(numberToFloat16Bits(1 + 3 * 2 ** -11))).toBe('0x3c02'); // tie, rounds up to even
    expect(hex(numberToFloat16Bits(65519.99))).toBe('0x7bff');
    expect(hex(numberToFloat16Bits(65520))).toBe('0x7c00'); // tie at max rounds to infinity
    expect(hex(numberToFloat16Bits(-1e10))).toBe('0xfc00');
    expect(hex(numberToFloat16Bits(2 ** -25))).toBe('0x0000'); // half the smallest subnormal: tie to 0
    expect(hex(numberToFloat16Bits(-(2 ** -26)))).toBe('0x8000');
    expect(hex(numberToFloat16Bits(3 * 2 ** -26))).toBe('0x0001');
    expect(hex(numberToFloat16Bits(1023.5 * 2 ** -24))).toBe('0x0400'); // subnormal rounds up to normal
  });

  it(`decodes ${vectors.decode.length} patterns like CPython`, () => {
    for (const [bits, value] of vectors.decode) {
      const expected = typeof value === 'string' ? Number(value) : value;
      expect(float16BitsToNumber(bits), hex(bits)).toBe(expected);
    }
  });

  it(`encodes ${vectors.encode.length} values (halfway points included) like CPython`, () => {
    for (const [value, bits] of vectors.encode) expect(hex(numberToFloat16Bits(value)), String(value)).toBe(hex(bits));
  });

  it('every non-NaN pattern survives decode then encode', () => {
    const wrong: string[] = [];
    for (let bits = 0; bits <= 0xffff; bits += 1) {
      const value = float16BitsToNumber(bits);
      if (!Number.isNaN(value) && numberToFloat16Bits(value) !== bits) wrong.push(hex(bits));
    }
    expect(wrong).toEqual([]);
  });
});

/** The usual float32 -> bfloat16 cast (as in PyTorch/TensorFlow): add the rounding bias, keep the top half. */
function bf16FromFloat32Bits(value: number): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setFloat32(0, value);
  const bits = view.getUint32(0);
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

describe('BF16', () => {
  it.each([
    [0x3f80, 1],
    [0xc000, -2],
    [0x4049, 3.140625],
    [0x7f7f, 3.3895313892515355e38], // largest finite
    [0x0001, 2 ** -133], // smallest subnormal
    [0x0080, 2 ** -126], // smallest normal
    [0x7f80, Infinity],
    [0xff80, -Infinity],
    [0x8000, -0],
  ])('%s <-> %s', (bits, value) => {
    expect(bfloat16BitsToNumber(bits)).toBe(value);
    expect(hex(numberToBfloat16Bits(value))).toBe(hex(bits));
  });

  it('NaN encodes to 0x7fc0 and NaN patterns decode to NaN', () => {
    expect(hex(numberToBfloat16Bits(NaN))).toBe('0x7fc0');
    expect(bfloat16BitsToNumber(0x7f81)).toBeNaN();
  });

  it('the top 16 bits of a float32 decode to the same number as that float32 with its low half zeroed', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), (bits) => {
        const view = new DataView(new ArrayBuffer(4));
        view.setUint32(0, bits << 16);
        const expected = view.getFloat32(0);
        const got = bfloat16BitsToNumber(bits);
        if (Number.isNaN(expected)) expect(got).toBeNaN();
        else expect(got).toBe(expected);
      }),
    );
  });

  it('encodes float32 values like the bias-and-truncate cast', () => {
    fc.assert(
      fc.property(fc.float({ noNaN: true }), (value) => {
        expect(hex(numberToBfloat16Bits(value))).toBe(hex(bf16FromFloat32Bits(value)));
      }),
      { numRuns: 2000 },
    );
  });

  it('every non-NaN pattern survives decode then encode', () => {
    const wrong: string[] = [];
    for (let bits = 0; bits <= 0xffff; bits += 1) {
      const value = bfloat16BitsToNumber(bits);
      if (!Number.isNaN(value) && numberToBfloat16Bits(value) !== bits) wrong.push(hex(bits));
    }
    expect(wrong).toEqual([]);
  });
});
