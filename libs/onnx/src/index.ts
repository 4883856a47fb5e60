// @quanta/onnx: inspect ONNX models (bounded memory, seeking past weights), build small ones and
// compress them (int8, float16, pruning).
export { OnnxError, type OnnxProblem } from './errors.js';
export { OnnxDataType, onnxDataType, type OnnxDataTypeInfo, type OnnxDataTypeName } from './data-types.js';
export type {
  OnnxInitializerInfo,
  OnnxModelInfo,
  OnnxOpsetImport,
  OnnxTypeInfo,
  OnnxValueInfo,
  OnnxValueKind,
} from './model-info.js';
export {
  inspectOnnx,
  inspectOnnxFile,
  inspectOnnxSource,
  READ_CHUNK_BYTES,
  type InspectFileOptions,
  type ReadAt,
} from './inspect.js';
export {
  DEFAULT_IR_VERSION,
  DEFAULT_OPSET,
  encodeModel,
  encodeModelChunks,
  floatTensor,
  int64Tensor,
  type AttributeValue,
  type DimSpec,
  type GraphSpec,
  type ModelSpec,
  type NodeSpec,
  type TensorSpec,
  type ValueSpec,
} from './model-spec.js';
export { createRng, uniform, type Rng } from './rng.js';
export { buildMlp, mlpModel, type MlpOptions } from './build-mlp.js';
export { buildCnn, cnnModel, type CnnOptions } from './build-cnn.js';
export { buildLstm, lstmModel, LSTM_NAMES, type LstmOptions } from './build-lstm.js';
export { buildScalarModel, scalarModel, type ScalarOptions } from './build-scalar.js';
export { demoModels, writeDemoModels } from './demo-models.js';
export { CompressError, type CompressProblem } from './compress/compress-error.js';
export {
  COMPRESS_METHODS,
  compressModel,
  MIN_FP16_ELEMENTS,
  MIN_WEIGHT_ELEMENTS,
  type CompressMethod,
  type CompressOptions,
  type CompressResult,
  type LeftOp,
  type OpCount,
} from './compress/compress-model.js';
export { generateCalibrationInputs, type CalibrationOptions, type CalibrationSample } from './compress/calibration.js';
