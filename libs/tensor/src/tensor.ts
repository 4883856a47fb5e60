import type { Datatype, FixedDatatype } from './datatype.js';
import { formatShape, tensorError, type TensorContext } from './errors.js';
import { elementCount } from './shape.js';

/**
 * How each datatype's elements are held: the typed array whose memory is the raw little-endian
 * form (so raw bytes, ORT tensors and this share one buffer where alignment allows). FP16 and BF16
 * are bit patterns in a Uint16Array; BOOL is one byte per element, 0 or 1; BYTES is one byte
 * array per element.
 */
export interface TensorDataMap {
  BOOL: Uint8Array;
  UINT8: Uint8Array;
  UINT16: Uint16Array;
  UINT32: Uint32Array;
  UINT64: BigUint64Array;
  INT8: Int8Array;
  INT16: Int16Array;
  INT32: Int32Array;
  INT64: BigInt64Array;
  FP16: Uint16Array;
  BF16: Uint16Array;
  FP32: Float32Array;
  FP64: Float64Array;
  BYTES: readonly Uint8Array[];
}

export interface TensorOf<D extends Datatype> {
  readonly name?: string | undefined;
  readonly datatype: D;
  /** Row-major dims; [] is a scalar. */
  readonly shape: readonly number[];
  readonly data: TensorDataMap[D];
}

/** A tensor of any datatype; narrowing on `datatype` narrows `data`. */
export type Tensor = { [D in Datatype]: TensorOf<D> }[Datatype];
/** TensorOf distributed over a union of datatypes (so a Datatype gives a Tensor). */
export type TensorFor<D extends Datatype> = D extends Datatype ? TensorOf<D> : never;
export type FixedTensor = { [D in FixedDatatype]: TensorOf<D> }[FixedDatatype];

export type FixedData = TensorDataMap[FixedDatatype];

interface TypedArrayConstructorOf<T> {
  new (length: number): T;
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): T;
  readonly BYTES_PER_ELEMENT: number;
}

export const TYPED_ARRAY: { readonly [D in FixedDatatype]: TypedArrayConstructorOf<TensorDataMap[D]> } = {
  BOOL: Uint8Array,
  UINT8: Uint8Array,
  UINT16: Uint16Array,
  UINT32: Uint32Array,
  UINT64: BigUint64Array,
  INT8: Int8Array,
  INT16: Int16Array,
  INT32: Int32Array,
  INT64: BigInt64Array,
  FP16: Uint16Array,
  BF16: Uint16Array,
  FP32: Float32Array,
  FP64: Float64Array,
};

// Typed arrays use the host's byte order and KServe raw bytes are little-endian; every platform
// onnxruntime-node ships for is little-endian, so refuse to run rather than silently swap bytes.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error('@quanta/tensor needs a little-endian host');
}

/** Allocates a zero-filled array for `length` elements of a fixed-size datatype. */
export function allocData<D extends FixedDatatype>(datatype: D, length: number): TensorDataMap[D] {
  const Ctor: TypedArrayConstructorOf<TensorDataMap[D]> = TYPED_ARRAY[datatype];
  return new Ctor(length);
}

/**
 * Memory for `length` elements that the caller overwrites completely (not exported from the
 * package): Buffer.allocUnsafe skips allocData's zero fill, which costs as much as the copy that
 * follows for a large input. Node aligns its pool slices to 8 bytes; anything else falls back.
 */
export function allocUnfilled<D extends FixedDatatype>(datatype: D, length: number): TensorDataMap[D] {
  const Ctor: TypedArrayConstructorOf<TensorDataMap[D]> = TYPED_ARRAY[datatype];
  const size = Ctor.BYTES_PER_ELEMENT;
  const bytes = Buffer.allocUnsafe(length * size);
  if (bytes.byteOffset % size !== 0) return new Ctor(length);
  return new Ctor(bytes.buffer, bytes.byteOffset, length);
}

/**
 * Makes a Tensor after checking that `data` is the array type for `datatype` and holds exactly
 * as many elements as the shape asks for. The data is kept, not copied.
 */
export function createTensor<D extends Datatype>(
  datatype: D,
  shape: readonly number[],
  data: TensorDataMap[D],
  context: TensorContext = {},
): TensorFor<D> {
  const count = elementCount(shape, context);
  const length = checkDataType(datatype, data, context);
  if (length !== count) {
    throw tensorError(
      context,
      'size',
      `shape ${formatShape(shape)} needs ${count} ${datatype} elements, got ${length}`,
    );
  }
  return tensorObject(context.name, datatype, [...shape], data) as TensorFor<D>;
}

/**
 * A tensor object, with `name` only when one is given. Written out, not spread from a `{ name }`
 * head: V8 builds a literal that spreads an object and then adds properties on a slow path (a
 * microsecond or more per tensor, several per request), and one of two hidden classes keeps the
 * readers of tensors fast.
 */
export function tensorObject<D extends Datatype>(
  name: string | undefined,
  datatype: D,
  shape: readonly number[],
  data: TensorDataMap[D],
): TensorOf<D> {
  return name === undefined ? { datatype, shape, data } : { name, datatype, shape, data };
}

/** Checks at run time (for callers from plain JS or wire objects) and returns the element count. */
function checkDataType(datatype: Datatype, data: unknown, context: TensorContext): number {
  if (datatype === 'BYTES') {
    if (Array.isArray(data) && data.every((item) => item instanceof Uint8Array)) return data.length;
    throw tensorError(context, 'datatype', 'BYTES data must be an array of Uint8Array (one per element)');
  }
  const Ctor = TYPED_ARRAY[datatype];
  // Buffer is a Uint8Array subclass, so a Buffer is accepted for BOOL and UINT8.
  if (data instanceof Ctor) {
    if (datatype === 'BOOL') checkBool(data as Uint8Array, context);
    return (data as ArrayLike<unknown>).length;
  }
  // Object.prototype.toString names typed arrays (and survives objects without a constructor)
  const got =
    typeof data === 'object' && data !== null ? Object.prototype.toString.call(data).slice(8, -1) : typeof data;
  throw tensorError(context, 'datatype', `${datatype} data must be a ${Ctor.name}, got ${got}`);
}

/** BOOL bytes must be 0 or 1: ORT and Triton read them as C++ bool. */
export function checkBool(data: Uint8Array, context: TensorContext): void {
  const bad = data.findIndex((byte) => byte > 1);
  if (bad >= 0) {
    throw tensorError(context, 'contents', `BOOL element ${bad} is ${data[bad]}; must be 0 or 1`);
  }
}
