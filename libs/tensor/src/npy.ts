// NumPy's .npy format (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
// the magic "\x93NUMPY", a major and minor version byte, the header's length (2 bytes little-endian
// in 1.0, 4 bytes in 2.0 and 3.0), then a Python dict literal {'descr', 'fortran_order', 'shape'}
// padded with spaces and a newline so that the data starts on a 64-byte boundary, then the elements.
// Only plain numeric little-endian C-order arrays are taken: those are the tensors a model eats.
import { ELEMENT_SIZE, type FixedDatatype } from './datatype.js';
import { tensorFromRaw, tensorToRaw } from './raw.js';
import type { Tensor } from './tensor.js';

/** A file that is not a .npy array this reader takes; the message names the file and what is wrong. */
export class NpyError extends Error {
  override readonly name = 'NpyError';
}

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY

/** numpy's type code (kind + item size, no byte order) of each datatype that has one. */
const DESCR: Readonly<Partial<Record<FixedDatatype, string>>> = {
  BOOL: 'b1',
  UINT8: 'u1',
  UINT16: 'u2',
  UINT32: 'u4',
  UINT64: 'u8',
  INT8: 'i1',
  INT16: 'i2',
  INT32: 'i4',
  INT64: 'i8',
  FP16: 'f2',
  FP32: 'f4',
  FP64: 'f8',
};

const DATATYPE_OF: ReadonlyMap<string, FixedDatatype> = new Map(
  Object.entries(DESCR).map(([datatype, code]) => [code, datatype as FixedDatatype]),
);

/** A Python literal as far as .npy headers use them (ints, strings, booleans, None, tuples, lists, dicts). */
type PyValue = number | string | boolean | null | PyValue[] | Map<string, PyValue>;

/** Parses the header's Python literal; `what` names the file in errors. */
function parsePyLiteral(text: string, what: string): PyValue {
  let pos = 0;
  const fail = (message: string): NpyError =>
    new NpyError(`${what}: bad .npy header (${message} at character ${pos}): ${text.trim()}`);
  const skip = (): void => {
    while (pos < text.length && /\s/.test(text[pos]!)) pos += 1;
  };
  const value = (): PyValue => {
    skip();
    const c = text[pos];
    if (c === undefined) throw fail('unexpected end');
    if (c === "'" || c === '"') {
      const end = text.indexOf(c, pos + 1);
      if (end < 0) throw fail('unterminated string');
      const s = text.slice(pos + 1, end);
      pos = end + 1;
      return s;
    }
    if (c === '(' || c === '[') return sequence(c === '(' ? ')' : ']');
    if (c === '{') return dict();
    const word = /^(True|False|None|-?\d+L?)/.exec(text.slice(pos))?.[0];
    if (word === undefined) throw fail(`unexpected "${c}"`);
    pos += word.length;
    if (word === 'True') return true;
    if (word === 'False') return false;
    if (word === 'None') return null;
    // Python 2 wrote longs with an L suffix: (3L, 4L)
    return Number(word.replace('L', ''));
  };
  const sequence = (close: string): PyValue[] => {
    pos += 1;
    const items: PyValue[] = [];
    for (;;) {
      skip();
      if (text[pos] === close) {
        pos += 1;
        return items;
      }
      items.push(value());
      skip();
      if (text[pos] === ',') pos += 1;
      else if (text[pos] !== close) throw fail(`expected "," or "${close}"`);
    }
  };
  const dict = (): Map<string, PyValue> => {
    pos += 1;
    const entries = new Map<string, PyValue>();
    for (;;) {
      skip();
      if (text[pos] === '}') {
        pos += 1;
        return entries;
      }
      const key = value();
      if (typeof key !== 'string') throw fail('a dict key that is not a string');
      skip();
      if (text[pos] !== ':') throw fail('expected ":"');
      pos += 1;
      entries.set(key, value());
      skip();
      if (text[pos] === ',') pos += 1;
      else if (text[pos] !== '}') throw fail('expected "," or "}"');
    }
  };
  const result = value();
  skip();
  if (pos !== text.length) throw fail('text after the dict');
  return result;
}

/** The datatype of a numpy descr such as '<f4', '|b1', '=i8'; a clear error for what is not taken. */
function datatypeOfDescr(descr: PyValue | undefined, what: string): FixedDatatype {
  if (typeof descr !== 'string') {
    throw new NpyError(
      `${what}: structured arrays (descr ${JSON.stringify(descr)}) are not supported; save a plain numeric array`,
    );
  }
  const order = descr[0] ?? '';
  const code = '<>|='.includes(order) ? descr.slice(1) : descr;
  const datatype = DATATYPE_OF.get(code);
  if (datatype === undefined) {
    throw new NpyError(
      `${what}: dtype '${descr}' is not supported; ` +
        'use one of bool, int8..int64, uint8..uint64, float16, float32, float64',
    );
  }
  // One-byte types have no byte order; '=' is the host's order and this host is little-endian.
  if (order === '>' && ELEMENT_SIZE[datatype] > 1) {
    throw new NpyError(
      `${what}: dtype '${descr}' is big-endian; save it little-endian (arr.astype(arr.dtype.newbyteorder('<')))`,
    );
  }
  return datatype;
}

/** What a .npy header says: the array's datatype and shape, and where its data starts. */
export interface NpyHeader {
  readonly datatype: FixedDatatype;
  readonly shape: readonly number[];
  /** Offset of the first element. */
  readonly dataOffset: number;
}

/**
 * Parses the header at the start of `bytes` (the data need not follow: a file's first 64 KiB hold
 * any 1.0 header), with a clear NpyError for what numpy would not have written or we do not take.
 */
export function readNpyHeader(bytes: Uint8Array, what = 'the .npy file'): NpyHeader {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buffer.length < 10 || !buffer.subarray(0, 6).equals(MAGIC))
    throw new NpyError(`${what} is not a .npy file (no \\x93NUMPY magic)`);
  const major = buffer[6]!;
  let headerLength: number;
  let headerStart: number;
  if (major === 1) {
    headerLength = buffer.readUInt16LE(8);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (buffer.length < 12) throw new NpyError(`${what}: truncated .npy header`);
    headerLength = buffer.readUInt32LE(8);
    headerStart = 12;
  } else {
    throw new NpyError(`${what}: .npy format version ${major}.${buffer[7]} is not supported (1.0, 2.0 and 3.0 are)`);
  }
  const dataStart = headerStart + headerLength;
  if (buffer.length < dataStart)
    throw new NpyError(`${what}: truncated .npy header (needs ${dataStart} bytes, file has ${buffer.length})`);
  // 1.0 and 2.0 headers are latin-1, 3.0 headers UTF-8.
  const header = buffer.subarray(headerStart, dataStart).toString(major === 3 ? 'utf8' : 'latin1');
  const dict = parsePyLiteral(header, what);
  if (!(dict instanceof Map)) throw new NpyError(`${what}: bad .npy header (not a dict): ${header.trim()}`);
  const datatype = datatypeOfDescr(dict.get('descr'), what);
  const fortran = dict.get('fortran_order');
  if (fortran === true) {
    throw new NpyError(
      `${what}: the array is in Fortran (column-major) order; save it C-ordered (np.ascontiguousarray)`,
    );
  }
  if (fortran !== false) throw new NpyError(`${what}: bad .npy header (fortran_order must be True or False)`);
  const shapeValue = dict.get('shape');
  if (
    !Array.isArray(shapeValue) ||
    !shapeValue.every((d): d is number => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)
  ) {
    throw new NpyError(`${what}: bad .npy header (shape must be a tuple of whole numbers)`);
  }
  return { datatype, shape: shapeValue, dataOffset: dataStart };
}

/** Reads a .npy file's bytes into a tensor (the data is viewed, not copied, where alignment allows). */
export function readNpy(bytes: Uint8Array, what = 'the .npy file'): Tensor {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const { datatype, shape: shapeValue, dataOffset } = readNpyHeader(buffer, what);
  const data = buffer.subarray(dataOffset);
  const count = shapeValue.reduce((a, b) => a * b, 1);
  const needed = count * ELEMENT_SIZE[datatype];
  if (data.length !== needed) {
    throw new NpyError(
      `${what}: shape (${shapeValue.join(', ')}) of ${datatype} needs ${needed} data bytes, ` +
        `the file has ${data.length}`,
    );
  }
  try {
    return tensorFromRaw(datatype, [...shapeValue], data);
  } catch (error: unknown) {
    throw new NpyError(`${what}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/**
 * Writes a tensor as a .npy file (format 1.0, or 2.0 when the header outgrows 64 KiB), laid out
 * as numpy.save does: little-endian, C order, data on a 64-byte boundary.
 */
export function writeNpy(tensor: Tensor): Buffer {
  if (tensor.datatype === 'BYTES' || tensor.datatype === 'BF16') {
    throw new NpyError(`output "${tensor.name ?? ''}" is ${tensor.datatype}, which has no .npy dtype`);
  }
  return Buffer.concat([npyHeaderBytes(tensor.datatype, tensor.shape), tensorToRaw(tensor)]);
}

/** numpy's descr of a datatype ('<f4', '|u1'), or undefined for BYTES and BF16, which have none. */
export function npyDescr(datatype: string): string | undefined {
  const code = DESCR[datatype as FixedDatatype];
  if (code === undefined) return undefined;
  return `${ELEMENT_SIZE[datatype as FixedDatatype] === 1 ? '|' : '<'}${code}`;
}

/**
 * The header numpy.save writes for an array of `datatype` and `shape` (format 1.0, or 2.0 when it
 * outgrows 64 KiB), padded so the data starts on a 64-byte boundary and, with `minBytes`, to at
 * least that many bytes (room to rewrite the shape in place later).
 */
export function npyHeaderBytes(datatype: string, shape: readonly number[], minBytes = 0): Buffer {
  const descr = npyDescr(datatype);
  if (descr === undefined) throw new NpyError(`${datatype} has no .npy dtype`);
  // numpy writes a 1-d shape as (n,) and a scalar as ().
  const dims = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${dims}, }`;
  const build = (major: 1 | 2): Buffer => {
    const prefix = major === 1 ? 10 : 12;
    const unpadded = Math.max(prefix + dict.length + 1, minBytes);
    const total = Math.ceil(unpadded / 64) * 64;
    const head = Buffer.alloc(total, 0x20);
    MAGIC.copy(head, 0);
    head[6] = major;
    head[7] = 0;
    if (major === 1) head.writeUInt16LE(total - prefix, 8);
    else head.writeUInt32LE(total - prefix, 8);
    head.write(dict, prefix, 'latin1');
    head[total - 1] = 0x0a;
    return head;
  };
  const v1 = build(1);
  return v1.length - 10 <= 0xffff ? v1 : build(2);
}
