// fast-check arbitraries shared by the tests (not part of the build: see tsconfig.build.json).
import fc from 'fast-check';
import type { Datatype, FixedDatatype } from '../datatype.js';

/** Shapes of rank 0..3 with small dims (0 included, so empty tensors come up too). */
export const shapeArb: fc.Arbitrary<number[]> = fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 });

export function countOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function intArb(min: number, max: number): fc.Arbitrary<number> {
  return fc.oneof(fc.constantFrom(min, max, 0), fc.integer({ min, max }));
}

function bigArb(min: bigint, max: bigint): fc.Arbitrary<bigint> {
  return fc.oneof(fc.constantFrom(min, max, 0n, min + 1n, max - 1n), fc.bigInt({ min, max }));
}

/** Plain JS element values per datatype: numbers, bigints, booleans, 16-bit float patterns, bytes. */
export type ElementOf<D extends Datatype> = D extends 'BOOL'
  ? boolean
  : D extends 'INT64' | 'UINT64'
    ? bigint
    : D extends 'BYTES'
      ? Uint8Array
      : number;

export const ELEMENT_ARB: { [D in Datatype]: fc.Arbitrary<ElementOf<D>> } = {
  BOOL: fc.boolean(),
  UINT8: intArb(0, 0xff),
  UINT16: intArb(0, 0xffff),
  UINT32: intArb(0, 0xffff_ffff),
  UINT64: bigArb(0n, 2n ** 64n - 1n),
  INT8: intArb(-0x80, 0x7f),
  INT16: intArb(-0x8000, 0x7fff),
  INT32: intArb(-0x8000_0000, 0x7fff_ffff),
  INT64: bigArb(-(2n ** 63n), 2n ** 63n - 1n),
  // every bit pattern: ±0, subnormals, ±Inf and NaNs with payloads included
  FP16: fc.oneof(
    fc.constantFrom(0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x7c01, 0x0001, 0x7bff),
    fc.integer({ min: 0, max: 0xffff }),
  ),
  BF16: fc.oneof(
    fc.constantFrom(0x0000, 0x8000, 0x7f80, 0xff80, 0x7fc0, 0x7f81, 0x0001, 0x7f7f),
    fc.integer({ min: 0, max: 0xffff }),
  ),
  FP32: fc.oneof(
    fc.constantFrom(NaN, Infinity, -Infinity, -0, 0, 3.4028234663852886e38, 1.401298464324817e-45),
    fc.float(),
  ),
  FP64: fc.oneof(fc.constantFrom(NaN, Infinity, -Infinity, -0, 0, Number.MAX_VALUE, Number.MIN_VALUE), fc.double()),
  BYTES: fc.uint8Array({ maxLength: 12 }),
};

/** A shape and exactly as many element values. */
export function caseArb<D extends Datatype>(
  datatype: D,
  element: fc.Arbitrary<ElementOf<D>> = ELEMENT_ARB[datatype],
): fc.Arbitrary<{ shape: number[]; values: ElementOf<D>[] }> {
  return shapeArb.chain((shape) =>
    fc.array(element, { minLength: countOf(shape), maxLength: countOf(shape) }).map((values) => ({ shape, values })),
  );
}

/**
 * The little-endian bytes of fixed-size values, written element by element with DataView: an
 * encoding independent of the typed-array views the library uses.
 */
export function leBytes(datatype: FixedDatatype, values: readonly (number | bigint | boolean)[]): Buffer {
  const size = {
    BOOL: 1,
    UINT8: 1,
    INT8: 1,
    UINT16: 2,
    INT16: 2,
    FP16: 2,
    BF16: 2,
    UINT32: 4,
    INT32: 4,
    FP32: 4,
    UINT64: 8,
    INT64: 8,
    FP64: 8,
  }[datatype];
  const out = Buffer.alloc(values.length * size);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  values.forEach((v, i) => {
    const at = i * size;
    switch (datatype) {
      case 'BOOL':
        view.setUint8(at, v ? 1 : 0);
        break;
      case 'UINT8':
        view.setUint8(at, Number(v));
        break;
      case 'INT8':
        view.setInt8(at, Number(v));
        break;
      case 'UINT16':
      case 'FP16':
      case 'BF16':
        view.setUint16(at, Number(v), true);
        break;
      case 'INT16':
        view.setInt16(at, Number(v), true);
        break;
      case 'UINT32':
        view.setUint32(at, Number(v), true);
        break;
      case 'INT32':
        view.setInt32(at, Number(v), true);
        break;
      case 'FP32':
        view.setFloat32(at, Number(v), true);
        break;
      case 'FP64':
        view.setFloat64(at, Number(v), true);
        break;
      case 'UINT64':
        view.setBigUint64(at, v as bigint, true);
        break;
      case 'INT64':
        view.setBigInt64(at, v as bigint, true);
        break;
    }
  });
  return out;
}

/** Independent BYTES framing: [u32 LE length][bytes] per element. */
export function framedBytes(elements: readonly Uint8Array[]): Buffer {
  return Buffer.concat(
    elements.flatMap((e) => {
      const prefix = Buffer.alloc(4);
      prefix.writeUInt32LE(e.length);
      return [prefix, Buffer.from(e)];
    }),
  );
}
