// @quanta/onnx: inspect ONNX models (bounded memory, seeking past weights) and build small ones.
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
export { inspectOnnx, inspectOnnxFile, inspectOnnxSource, READ_CHUNK_BYTES, type InspectFileOptions, type ReadAt } from './inspect.js';
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
