// Row access to one .npy file on disk: its header is parsed once, then rows are read (and, for
// an output, written) at their offsets, so a file of any size is used with bounded memory.
import { ELEMENT_SIZE, type FixedDatatype } from '@quanta/tensor/core';

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY

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

export interface NpyLayout {
  readonly datatype: FixedDatatype;
  readonly shape: readonly number[];
  /** Offset of the first element. */
  readonly dataOffset: number;
  /** Bytes of one row (one step along dim 0). */
  readonly rowBytes: number;
}

/** Parses a .npy header from the first bytes of a file (at least the header; 64 KiB always suffices for 1.0). */
export function parseNpyHeader(head: Buffer, what: string): NpyLayout {
  if (head.length < 10 || !head.subarray(0, 6).equals(MAGIC))
    throw new Error(`${what} is not a .npy file (no \\x93NUMPY magic)`);
  const major = head[6]!;
  const start = major === 1 ? 10 : 12;
  if (major !== 1 && major !== 2 && major !== 3)
    throw new Error(`${what}: .npy format version ${major} is not supported`);
  const length = major === 1 ? head.readUInt16LE(8) : head.readUInt32LE(8);
  if (head.length < start + length) throw new Error(`${what}: truncated .npy header`);
  const text = head.subarray(start, start + length).toString(major === 3 ? 'utf8' : 'latin1');
  const descr = /'descr':\s*'([<>|=]?)([a-z]\d+)'/.exec(text);
  const fortran = /'fortran_order':\s*(True|False)/.exec(text);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(text);
  if (descr === null || fortran === null || shape === null)
    throw new Error(`${what}: a .npy header this reader does not take: ${text.trim()}`);
  const datatype = (Object.entries(DESCR).find(([, code]) => code === descr[2])?.[0] ?? undefined) as
    FixedDatatype | undefined;
  if (datatype === undefined) throw new Error(`${what}: dtype '${descr[1]}${descr[2]}' is not supported`);
  if (descr[1] === '>' && ELEMENT_SIZE[datatype] > 1)
    throw new Error(`${what}: dtype '${descr[1]}${descr[2]}' is big-endian; save it little-endian`);
  if (fortran[1] === 'True')
    throw new Error(`${what}: the array is in Fortran order; save it C-ordered (np.ascontiguousarray)`);
  const dims = shape[1]!
    .split(',')
    .map((d) => d.trim().replace(/L$/, ''))
    .filter((d) => d !== '')
    .map(Number);
  if (dims.length === 0) throw new Error(`${what}: a scalar array has no rows`);
  const rowBytes = dims.slice(1).reduce((a, b) => a * b, 1) * ELEMENT_SIZE[datatype];
  return { datatype, shape: dims, dataOffset: start + length, rowBytes };
}

/** numpy's descr of a datatype, or undefined for BYTES and BF16, which have none. */
export function npyDescr(datatype: string): string | undefined {
  const code = DESCR[datatype as FixedDatatype];
  if (code === undefined) return undefined;
  return `${ELEMENT_SIZE[datatype as FixedDatatype] === 1 ? '|' : '<'}${code}`;
}

/**
 * A version 1.0 header of a fixed `size` (the shape written later fits without moving the data),
 * for `shape`; size a multiple of 64 (numpy aligns the data on 64 bytes).
 */
export function npyHeader(datatype: string, shape: readonly number[], size = 128): Buffer {
  const descr = npyDescr(datatype);
  if (descr === undefined) throw new Error(`${datatype} has no .npy dtype`);
  const dims = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${dims}, }`;
  if (10 + dict.length + 1 > size) throw new Error(`a .npy header for shape ${dims} needs more than ${size} bytes`);
  const head = Buffer.alloc(size, 0x20);
  MAGIC.copy(head, 0);
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(size - 10, 8);
  head.write(dict, 10, 'latin1');
  head[size - 1] = 0x0a;
  return head;
}
