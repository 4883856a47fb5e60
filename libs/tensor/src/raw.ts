import { ELEMENT_SIZE, type Datatype, type FixedDatatype } from './datatype.js';
import { formatShape, tensorError, type TensorContext } from './errors.js';
import { elementCount } from './shape.js';
import {
  TYPED_ARRAY,
  allocUnfilled,
  checkBool,
  tensorObject,
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
  if (datatype === 'BYTES')
    return tensorObject(context.name, datatype, [...shape], decodeBytesFraming(raw, count, shape, context));
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
    return deferredCopy(context.name, datatype as Exclude<FixedDatatype, 'BOOL'>, shape, raw);
  const data = viewBytes(datatype, raw);
  if (datatype === 'BOOL') checkBool(data as Uint8Array, context);
  return tensorObject(context.name, datatype, [...shape], data) as Tensor;
}

/** The misaligned raw bytes a deferredCopy tensor was made from. */
const RAW = Symbol('quanta.tensor.raw');
/** Its aligned copy, once `data` was read. */
const DATA = Symbol('quanta.tensor.data');
/** The tensor itself: a spread copy carries the original here, so its raw bytes are not its own. */
const SELF = Symbol('quanta.tensor.self');

interface Deferred {
  readonly datatype: Exclude<FixedDatatype, 'BOOL'>;
  readonly [RAW]: Uint8Array;
  [DATA]: TensorDataMap[FixedDatatype] | undefined;
  [SELF]: object | undefined;
}

/** `data` of every deferredCopy tensor: one getter function, so that they all share one hidden class. */
function deferredData(this: Deferred): TensorDataMap[FixedDatatype] {
  return (this[DATA] ??= viewBytes(this.datatype, this[RAW]));
}

const DEFERRED_DATA: PropertyDescriptor = { get: deferredData, enumerable: true, configurable: true };

/**
 * A tensor over misaligned raw bytes (never BOOL: its elements are single bytes): its `data`, an
 * aligned copy, is made the first time it is read, so that a consumer that only needs the bytes
 * (tensorBytes: a copy into a buffer of its own, say) copies them once rather than twice. The getter
 * is shared, not a closure per tensor: an accessor made per object (in a literal or by
 * defineProperty) leaves every such tensor in dictionary mode, slow to make and to read. The raw
 * bytes sit under symbols; a spread copy carries its own `data` (the getter's value) and the
 * original in SELF, so tensorBytes reads the copy's data.
 */
function deferredCopy(
  name: string | undefined,
  datatype: Exclude<FixedDatatype, 'BOOL'>,
  shape: readonly number[],
  raw: Uint8Array,
): Tensor {
  const tensor: Deferred & { name?: string; shape: number[] } =
    name === undefined
      ? { datatype, shape: [...shape], [RAW]: raw, [DATA]: undefined, [SELF]: undefined }
      : { name, datatype, shape: [...shape], [RAW]: raw, [DATA]: undefined, [SELF]: undefined };
  tensor[SELF] = tensor;
  Object.defineProperty(tensor, 'data', DEFERRED_DATA);
  return tensor as unknown as Tensor;
}

/**
 * The little-endian bytes of a fixed-size tensor's elements, without a copy: a view of its data,
 * or, for a tensor read from misaligned raw bytes whose data was never read, those bytes. The
 * caller only reads them.
 */
export function tensorBytes(tensor: FixedTensor): Uint8Array {
  const deferred = tensor as Partial<Deferred>;
  const raw = deferred[RAW];
  if (raw !== undefined && deferred[SELF] === tensor && deferred[DATA] === undefined) return raw;
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
