// Row access to one .npy file on disk: its header is parsed once (by @quanta/tensor's reader),
// then rows are read (and, for an output, written) at their offsets, so a file of any size is used
// with bounded memory.
import { ELEMENT_SIZE, npyHeaderBytes, readNpyHeader, type FixedDatatype } from '@quanta/tensor/core';

export { npyDescr } from '@quanta/tensor/core';

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
  const { datatype, shape, dataOffset } = readNpyHeader(head, what);
  if (shape.length === 0) throw new Error(`${what}: a scalar array has no rows`);
  const rowBytes = shape.slice(1).reduce((a, b) => a * b, 1) * ELEMENT_SIZE[datatype];
  return { datatype, shape, dataOffset, rowBytes };
}

/**
 * A version 1.0 header of exactly `size` bytes (so the shape written at the end fits where the
 * first one was, without moving the data); `size` a multiple of 64 (numpy aligns the data on 64).
 */
export function npyHeader(datatype: string, shape: readonly number[], size = 128): Buffer {
  const head = npyHeaderBytes(datatype, shape, size);
  if (head.length !== size) {
    throw new Error(`a .npy header for shape (${shape.join(', ')}) needs more than ${size} bytes`);
  }
  return head;
}
