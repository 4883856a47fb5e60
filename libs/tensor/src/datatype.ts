import { tensorError, type TensorContext } from './errors.js';

/** The KServe v2 / Triton tensor datatypes, spelled as they travel on the wire. */
export const DATATYPES = [
  'BOOL',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'FP16',
  'BF16',
  'FP32',
  'FP64',
  'BYTES',
] as const;

export type Datatype = (typeof DATATYPES)[number];
/** Every datatype whose elements have one size; BYTES elements are variable length. */
export type FixedDatatype = Exclude<Datatype, 'BYTES'>;

/** Bytes per element in raw (little-endian) form; BOOL is one byte, 0 or 1. */
export const ELEMENT_SIZE: Readonly<Record<FixedDatatype, number>> = {
  BOOL: 1,
  UINT8: 1,
  UINT16: 2,
  UINT32: 4,
  UINT64: 8,
  INT8: 1,
  INT16: 2,
  INT32: 4,
  INT64: 8,
  FP16: 2,
  BF16: 2,
  FP32: 4,
  FP64: 8,
};

/** Bytes per element, or undefined for BYTES (each element carries its own 4-byte length). */
export function elementSize(datatype: Datatype): number | undefined {
  return datatype === 'BYTES' ? undefined : ELEMENT_SIZE[datatype];
}

/** Inclusive value ranges of the integer datatypes (typed contents and JSON carry them in wider types). */
export const INTEGER_RANGE: Readonly<Partial<Record<Datatype, readonly [bigint, bigint]>>> = {
  UINT8: [0n, 0xffn],
  UINT16: [0n, 0xffffn],
  UINT32: [0n, 0xffff_ffffn],
  UINT64: [0n, 0xffff_ffff_ffff_ffffn],
  INT8: [-0x80n, 0x7fn],
  INT16: [-0x8000n, 0x7fffn],
  INT32: [-0x8000_0000n, 0x7fff_ffffn],
  INT64: [-0x8000_0000_0000_0000n, 0x7fff_ffff_ffff_ffffn],
};

const DATATYPE_SET: ReadonlySet<string> = new Set(DATATYPES);

export function isDatatype(value: string): value is Datatype {
  return DATATYPE_SET.has(value);
}

export function isFixedDatatype(datatype: Datatype): datatype is FixedDatatype {
  return datatype !== 'BYTES';
}

/** Checks a wire datatype string; the error lists the accepted spellings. */
export function parseDatatype(value: string, context: TensorContext = {}): Datatype {
  if (isDatatype(value)) return value;
  throw tensorError(
    context,
    'datatype',
    `unknown datatype ${JSON.stringify(value)}; expected one of ${DATATYPES.join(', ')}`,
  );
}
