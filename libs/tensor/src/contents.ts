import type { inference } from '@quanta/contracts';
import { INTEGER_RANGE, type Datatype } from './datatype.js';
import { formatShape, tensorError, type TensorContext } from './errors.js';
import { elementCount } from './shape.js';
import { allocData, tensorObject, type Tensor, type TensorFor } from './tensor.js';

/**
 * KServe `InferTensorContents` as ts-proto generates it (forceLong=bigint, bytes as Buffer):
 * one repeated field per element kind; FP16 and BF16 have none.
 */
export type TensorContents = inference.InferTensorContents;

type ContentsField = keyof TensorContents;

const FIELDS: readonly ContentsField[] = [
  'boolContents',
  'intContents',
  'int64Contents',
  'uintContents',
  'uint64Contents',
  'fp32Contents',
  'fp64Contents',
  'bytesContents',
];

/** The typed field of each datatype; FP16 and BF16 have none in KServe and travel raw only. */
export const CONTENTS_FIELD: Readonly<Record<Datatype, ContentsField | undefined>> = {
  BOOL: 'boolContents',
  UINT8: 'uintContents',
  UINT16: 'uintContents',
  UINT32: 'uintContents',
  UINT64: 'uint64Contents',
  INT8: 'intContents',
  INT16: 'intContents',
  INT32: 'intContents',
  INT64: 'int64Contents',
  FP16: undefined,
  BF16: undefined,
  FP32: 'fp32Contents',
  FP64: 'fp64Contents',
  BYTES: 'bytesContents',
};

/** The proto field names, as users of any KServe client see them. */
const PROTO_NAME: Readonly<Record<ContentsField, string>> = {
  boolContents: 'bool_contents',
  intContents: 'int_contents',
  int64Contents: 'int64_contents',
  uintContents: 'uint_contents',
  uint64Contents: 'uint64_contents',
  fp32Contents: 'fp32_contents',
  fp64Contents: 'fp64_contents',
  bytesContents: 'bytes_contents',
};

function protoName(field: ContentsField): string {
  return PROTO_NAME[field];
}

export function emptyContents(): TensorContents {
  return {
    boolContents: [],
    intContents: [],
    int64Contents: [],
    uintContents: [],
    uint64Contents: [],
    fp32Contents: [],
    fp64Contents: [],
    bytesContents: [],
  };
}

function rawFieldName(context: TensorContext): string {
  return context.role === 'output' ? 'raw_output_contents' : 'raw_input_contents';
}

/**
 * Reads a tensor from typed contents, checking that only the datatype's field holds values,
 * that it holds exactly the shape's element count, and that integers fit the datatype.
 */
export function tensorFromContents<D extends Datatype>(
  datatype: D,
  shape: readonly number[],
  contents: TensorContents,
  context?: TensorContext,
): TensorFor<D>;
export function tensorFromContents(
  datatype: Datatype,
  shape: readonly number[],
  contents: TensorContents,
  context: TensorContext = {},
): Tensor {
  const count = elementCount(shape, context);
  const field = CONTENTS_FIELD[datatype];
  for (const other of FIELDS) {
    const length = contents[other].length;
    if (other === field || length === 0) continue;
    if (field === undefined) {
      throw tensorError(
        context,
        'unsupported',
        `${datatype} has no typed contents field in KServe, but ${protoName(other)} holds ${length} values; ` +
          `send ${datatype} in ${rawFieldName(context)}`,
      );
    }
    throw tensorError(
      context,
      'contents',
      `datatype ${datatype} takes ${protoName(field)}, but ${protoName(other)} holds ${length} values`,
    );
  }
  const { name } = context;
  const dims = [...shape];
  if (field === undefined) {
    if (count === 0) return tensorObject(name, datatype, dims, new Uint16Array(0)) as Tensor;
    throw tensorError(
      context,
      'unsupported',
      `${datatype} has no typed contents field in KServe; send it in ${rawFieldName(context)}`,
    );
  }
  const values = contents[field];
  if (values.length !== count) {
    throw tensorError(
      context,
      'size',
      `shape ${formatShape(shape)} needs ${count} values in ${protoName(field)}, got ${values.length}`,
    );
  }
  checkValues(datatype, values, field, context);
  switch (datatype) {
    case 'BOOL':
      return tensorObject(
        name,
        datatype,
        dims,
        Uint8Array.from(contents.boolContents, (b) => (b ? 1 : 0)),
      );
    case 'BYTES':
      return tensorObject(name, datatype, dims, contents.bytesContents);
    case 'INT64':
      return tensorObject(name, datatype, dims, BigInt64Array.from(contents.int64Contents, BigInt));
    case 'UINT64':
      return tensorObject(name, datatype, dims, BigUint64Array.from(contents.uint64Contents, BigInt));
    default: {
      const data = allocData(datatype, count);
      data.set(values as number[]);
      return tensorObject(name, datatype, dims, data) as Tensor;
    }
  }
}

function checkValues(
  datatype: Datatype,
  values: readonly unknown[],
  field: ContentsField,
  context: TensorContext,
): void {
  const range = INTEGER_RANGE[datatype];
  // Number bounds are exact for the 32-bit types and safe enough for 64-bit ones, where numbers
  // (from hand-made objects) must be safe integers anyway.
  const [lo, hi] = range === undefined ? [0, 0] : [Number(range[0]), Number(range[1])];
  const is64 = datatype === 'INT64' || datatype === 'UINT64';
  for (const [index, value] of values.entries()) {
    let ok: boolean;
    if (datatype === 'BOOL') ok = typeof value === 'boolean';
    else if (datatype === 'BYTES') ok = value instanceof Uint8Array;
    else if (range === undefined) ok = typeof value === 'number';
    else if (typeof value === 'bigint') ok = is64 && value >= range[0] && value <= range[1];
    else ok = Number.isSafeInteger(value) && (value as number) >= lo && (value as number) <= hi;
    if (!ok) {
      const shown = typeof value === 'bigint' || typeof value === 'number' ? String(value) : typeof value;
      const expected =
        range !== undefined
          ? `an integer in [${range[0]}, ${range[1]}]`
          : datatype === 'BOOL'
            ? 'true or false'
            : datatype === 'BYTES'
              ? 'a byte string'
              : 'a number';
      throw tensorError(
        context,
        'contents',
        `${protoName(field)}[${index}] is ${shown}; ${datatype} needs ${expected}`,
      );
    }
  }
}

/**
 * Writes a tensor as typed contents (a copy into JS arrays; BYTES elements are shared). FP16 and
 * BF16 have no typed field in KServe: they can only travel raw.
 */
export function tensorToContents(tensor: Tensor, context: TensorContext = { name: tensor.name }): TensorContents {
  const contents = emptyContents();
  switch (tensor.datatype) {
    case 'FP16':
    case 'BF16':
      throw tensorError(
        context,
        'unsupported',
        `${tensor.datatype} has no typed contents field in KServe; send it in ${rawFieldName(context)}`,
      );
    case 'BOOL':
      contents.boolContents = Array.from(tensor.data, (b) => b !== 0);
      break;
    case 'BYTES':
      contents.bytesContents = tensor.data.map((e) => Buffer.from(e.buffer, e.byteOffset, e.byteLength));
      break;
    case 'INT64':
      contents.int64Contents = Array.from(tensor.data);
      break;
    case 'UINT64':
      contents.uint64Contents = Array.from(tensor.data);
      break;
    case 'INT8':
    case 'INT16':
    case 'INT32':
      contents.intContents = Array.from(tensor.data);
      break;
    case 'UINT8':
    case 'UINT16':
    case 'UINT32':
      contents.uintContents = Array.from(tensor.data);
      break;
    case 'FP32':
      contents.fp32Contents = Array.from(tensor.data);
      break;
    case 'FP64':
      contents.fp64Contents = Array.from(tensor.data);
      break;
  }
  return contents;
}
