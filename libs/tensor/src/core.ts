// @quanta/tensor/core: everything in @quanta/tensor except the onnxruntime-node conversions, for
// code that must not load onnxruntime's native library (the partner SDK, which bundles this entry).
export { TensorError, describeTensor, type TensorContext, type TensorProblem, type TensorRole } from './errors.js';
export {
  DATATYPES,
  ELEMENT_SIZE,
  INTEGER_RANGE,
  elementSize,
  isDatatype,
  isFixedDatatype,
  parseDatatype,
  type Datatype,
  type FixedDatatype,
} from './datatype.js';
export { elementCount, parseShape } from './shape.js';
export { allocData, createTensor, type FixedTensor, type Tensor, type TensorDataMap, type TensorOf } from './tensor.js';
export { bfloat16BitsToNumber, float16BitsToNumber, numberToBfloat16Bits, numberToFloat16Bits } from './float16.js';
export { decodeBytesFraming, encodeBytesFraming, tensorBytes, tensorFromRaw, tensorToRaw, viewBytes } from './raw.js';
export {
  CONTENTS_FIELD,
  emptyContents,
  tensorFromContents,
  tensorToContents,
  type TensorContents,
} from './contents.js';
export { tensorFromWire, tensorToWire, type WireTensor } from './wire.js';
export { tensorFromJson, tensorToJson, type JsonTensor } from './json.js';
export { concatBatch, splitBatch } from './batch.js';
export { NpyError, npyDescr, npyHeaderBytes, readNpy, readNpyHeader, writeNpy, type NpyHeader } from './npy.js';
export { readNpz } from './npz.js';
