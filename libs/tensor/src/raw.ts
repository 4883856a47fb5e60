import { ELEMENT_SIZE, type Datatype, type FixedDatatype } from './datatype.js';
import { formatShape, tensorError, type TensorContext } from './errors.js';
import { elementCount } from './shape.js';
import {
  TYPED_ARRAY,
  allocUnfilled,
  checkBool,
  type FixedTensor,
  type Tensor,
  type TensorDataMap,
  type TensorFor,
} from './tensor.js';

// Raw form: KServe/Triton `raw_input_contents` / `raw_output_contents`: elements little-endian,
// back to back; BYTES elements each as a 4-byte little-endian length and then the bytes.

/**
 * A typed-array view of `bytes` for a fixed-size datatype: the same memory when
 * `byteOffset % elementSize === 0` (typed arrays demand it), a copy otherwise. Buffers decoded from
 * a gRPC message sit at any offset inside the message, so both happen in practice.
 */
export function viewBytes<D extends FixedDatatype>(datatype: D, bytes: Uint8Array): TensorDataMap[D] {
  const Ctor = TYPED_ARRAY[datatype];
  const size = ELEMENT_SIZE[datatype];
  const length = bytes.byteLength / size;
  if (bytes.byteOffset % size === 0) return new Ctor(bytes.buffer, bytes.byteOffset, length);
  const copy = allocUnfilled(datatype, length);
  new Uint8Array(copy.buffer, copy.byteOffset, bytes.byteLength).set(bytes);
  return copy;
}

/** Reads a tensor from raw bytes, checking the byte count (and BOOL values, BYTES framing). */
export function tensorFromRaw<D extends Datatype>(
  datatype: D,
  shape: readonly number[],
  raw: Uint8Array,
  context?: TensorContext,
): TensorFor<D>;
export function tensorFromRaw(
  datatype: Datatype,
  shape: readonly number[],
  raw: Uint8Array,
  context: TensorContext = {},
): Tensor {
  const count = elementCount(shape, context);
  const base = context.name === undefined ? {} : { name: context.name };
  if (datatype === 'BYTES') {
    return { ...base, datatype, shape: [...shape], data: decodeBytesFraming(raw, count, shape, context) };
  }
  const needed = count * ELEMENT_SIZE[datatype];
  if (raw.byteLength !== needed) {
    throw tensorError(
      context,
      'size',
      `shape ${formatShape(shape)} needs ${needed} bytes of ${datatype}, got ${raw.byteLength}`,
    );
  }
  // BOOL elements are single bytes: never misaligned.
  if (raw.byteOffset % ELEMENT_SIZE[datatype] !== 0)
    return deferredCopy(base, datatype as Exclude<FixedDatatype, 'BOOL'>, shape, raw);
  const data = viewBytes(datatype, raw);
  if (datatype === 'BOOL') checkBool(data as Uint8Array, context);
  return { ...base, datatype, shape: [...shape], data } as Tensor;
}

/** Raw bytes of tensors whose aligned copy is made only when `data` is first read. */
const deferred = new WeakMap<object, Uint8Array>();

/**
 * A tensor over misaligned raw bytes (never BOOL: its elements are single bytes): its `data`, an
 * aligned copy, is made the first time it is read, so that a consumer that only needs the bytes
 * (tensorBytes: a copy into a buffer of its own, say) copies them once rather than twice.
 */
function deferredCopy(
  base: { name?: string },
  datatype: Exclude<FixedDatatype, 'BOOL'>,
  shape: readonly number[],
  raw: Uint8Array,
): Tensor {
  let data: TensorDataMap[typeof datatype] | undefined;
  // An accessor in the literal: an object of one fixed shape, where defineProperty on a fresh
  // object made one per request in dictionary mode.
  const tensor = {
    ...base,
    datatype,
    shape: [...shape],
    get data(): TensorDataMap[typeof datatype] {
      return (data ??= viewBytes(datatype, raw));
    },
  };
  deferred.set(tensor, raw);
  return tensor as unknown as Tensor;
}

/**
 * The little-endian bytes of a fixed-size tensor's elements, without a copy: a view of its data,
 * or, for a tensor read from misaligned raw bytes whose data was never read, those bytes. The
 * caller only reads them.
 */
export function tensorBytes(tensor: FixedTensor): Uint8Array {
  const raw = deferred.get(tensor);
  if (raw !== undefined) return raw;
  const { data } = tensor;
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * The raw bytes of a tensor. Fixed-size datatypes come back as a Buffer over the tensor's own
 * memory (no copy); BYTES is framed into one new Buffer.
 */
export function tensorToRaw(tensor: Tensor): Buffer {
  if (tensor.datatype === 'BYTES') return encodeBytesFraming(tensor.data);
  const { data } = tensor;
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** Frames BYTES elements: 4-byte little-endian length, then the bytes, for each element. */
export function encodeBytesFraming(elements: readonly Uint8Array[]): Buffer {
  let total = 0;
  for (const element of elements) total += 4 + element.byteLength;
  const out = Buffer.allocUnsafe(total);
  let offset = 0;
  for (const element of elements) {
    out.writeUInt32LE(element.byteLength, offset);
    out.set(element, offset + 4);
    offset += 4 + element.byteLength;
  }
  return out;
}

/** Splits framed BYTES into `count` elements; each element is a view of `raw`, not a copy. */
export function decodeBytesFraming(
  raw: Uint8Array,
  count: number,
  shape: readonly number[],
  context: TensorContext = {},
): Uint8Array[] {
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const elements: Uint8Array[] = [];
  let offset = 0;
  while (offset < raw.byteLength) {
    const index = elements.length;
    if (index === count) {
      throw tensorError(
        context,
        'size',
        `shape ${formatShape(shape)} needs ${count} BYTES elements, ` +
          `but ${raw.byteLength - offset} more bytes follow them (from byte ${offset})`,
      );
    }
    const left = raw.byteLength - offset;
    if (left < 4) {
      throw tensorError(
        context,
        'framing',
        `BYTES element ${index} at byte ${offset}: needs a 4-byte length prefix, only ${left} bytes left`,
      );
    }
    const length = view.getUint32(offset, true);
    if (length > left - 4) {
      throw tensorError(
        context,
        'framing',
        `BYTES element ${index} at byte ${offset}: length prefix ${length} runs past the end (${left - 4} bytes left)`,
      );
    }
    elements.push(raw.subarray(offset + 4, offset + 4 + length));
    offset += 4 + length;
  }
  if (elements.length !== count) {
    throw tensorError(
      context,
      'size',
      `shape ${formatShape(shape)} needs ${count} BYTES elements, got ${elements.length}`,
    );
  }
  return elements;
}
