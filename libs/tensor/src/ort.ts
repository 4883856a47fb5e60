import * as ort from 'onnxruntime-node';
import { isFixedDatatype, type Datatype } from './datatype.js';
import { tensorError, type TensorContext } from './errors.js';
import { TYPED_ARRAY, createTensor, type Tensor, type TensorDataMap } from './tensor.js';

/**
 * The onnxruntime-node tensor type of each datatype. BF16 has none: onnxruntime-node 1.30's
 * ort.Tensor knows no 'bfloat16' type (its types are bool, (u)int4/8/16/32/64, float16/32/64 and
 * string), so a BF16 tensor cannot go to ORT; a model with bfloat16 inputs cannot be fed from JS.
 * FP16 goes as 'float16' holding the bit patterns in a Uint16Array: Node 20 has no Float16Array, and
 * where one exists ORT wraps the same memory in it, so the bits are never converted either way.
 */
export const ORT_TYPE: Readonly<Record<Datatype, ort.Tensor.Type | undefined>> = {
  BOOL: 'bool',
  UINT8: 'uint8',
  UINT16: 'uint16',
  UINT32: 'uint32',
  UINT64: 'uint64',
  INT8: 'int8',
  INT16: 'int16',
  INT32: 'int32',
  INT64: 'int64',
  FP16: 'float16',
  BF16: undefined,
  FP32: 'float32',
  FP64: 'float64',
  BYTES: 'string',
};

const DATATYPE_OF_ORT: ReadonlyMap<string, Datatype> = new Map(
  Object.entries(ORT_TYPE).flatMap(([datatype, type]) => (type === undefined ? [] : [[type, datatype as Datatype]])),
);

/**
 * The typed array an ort.Tensor of the onnxruntime type `type` holds its data in (float16: the bits
 * in a Uint16Array), from the same tables as the conversions here; undefined for 'string' and for
 * types no datatype maps to.
 */
export function ortTypedArray(type: string): (typeof TYPED_ARRAY)[keyof typeof TYPED_ARRAY] | undefined {
  const datatype = DATATYPE_OF_ORT.get(type);
  return datatype !== undefined && isFixedDatatype(datatype) ? TYPED_ARRAY[datatype] : undefined;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * An ort.Tensor over the tensor's own memory (no copy) for every datatype but BYTES, whose
 * elements become strings: ORT string tensors hold text, so each element must be valid UTF-8.
 */
export function tensorToOrt(tensor: Tensor, context: TensorContext = { name: tensor.name }): ort.Tensor {
  const dims = tensor.shape;
  switch (tensor.datatype) {
    case 'BF16':
      throw tensorError(
        context,
        'unsupported',
        'BF16 cannot become an onnxruntime-node tensor: onnxruntime-node has no bfloat16 tensor type',
      );
    case 'BYTES':
      return new ort.Tensor(
        'string',
        tensor.data.map((element, index) => decodeUtf8(element, index, context)),
        dims,
      );
    case 'BOOL':
      return new ort.Tensor('bool', tensor.data, dims);
    case 'FP16':
      return new ort.Tensor('float16', tensor.data, dims);
    default: {
      // The remaining datatypes map one to one onto an ORT type taking the same typed array.
      const type = ORT_TYPE[tensor.datatype] as 'int8';
      return new ort.Tensor(type, tensor.data as Int8Array, dims);
    }
  }
}

function decodeUtf8(element: Uint8Array, index: number, context: TensorContext): string {
  try {
    return utf8.decode(element);
  } catch {
    throw tensorError(
      context,
      'contents',
      `BYTES element ${index} is not valid UTF-8, which an onnxruntime string tensor needs`,
    );
  }
}

/**
 * A Tensor over an ort.Tensor's memory (no copy); string tensors become UTF-8 BYTES elements.
 * ORT's int4/uint4 have no KServe datatype, and the tensor must be on the CPU.
 */
export function tensorFromOrt(value: ort.Tensor, context: TensorContext = {}): Tensor {
  const datatype = DATATYPE_OF_ORT.get(value.type);
  if (datatype === undefined) {
    throw tensorError(context, 'unsupported', `onnxruntime tensor type ${value.type} has no KServe datatype`);
  }
  if (value.location !== 'cpu' && value.location !== 'cpu-pinned') {
    throw tensorError(context, 'unsupported', `onnxruntime tensor is on ${value.location}, not on the CPU`);
  }
  const shape = value.dims;
  const data: unknown = value.data;
  if (datatype === 'BYTES') {
    return createTensor(
      'BYTES',
      shape,
      (data as string[]).map((s) => Buffer.from(s, 'utf8')),
      context,
    );
  }
  if (datatype === 'FP16' && !(data instanceof Uint16Array)) {
    // A runtime with Float16Array hands those out; keep the bits, as everywhere else here.
    const half = data as ArrayBufferView;
    return createTensor('FP16', shape, new Uint16Array(half.buffer, half.byteOffset, half.byteLength / 2), context);
  }
  return createTensor<Datatype>(datatype, shape, data as TensorDataMap[Datatype], context);
}
