// Batch inference over datasets: batchInfer, the dataset readers and writers, and the checkpoint.
export {
  AUTO_BATCH_ROWS,
  DEFAULT_WINDOW_ROWS,
  batchInfer,
  BatchError,
  sequenceParameters,
  type BatchOptions,
} from './engine.js';
export { readCheckpoint, removeCheckpoint, type Checkpoint, type CheckpointMark } from './checkpoint.js';
export { AeadFile, FernetLines, PlainFile, type LineOutput } from './outputs.js';
export { csvSink, errorsSink, jsonlSink, npyFileSink, npyFolderSink, npzSink } from './sinks.js';
export {
  csvSource,
  inputFormatOf,
  jsonlSource,
  npyFolderSource,
  npyRowsSource,
  npzSource,
  parquetSource,
  splitCsvLine,
  type InputFormat,
  type JsonlSourceOptions,
  type TableSourceOptions,
} from './sources.js';
export type {
  BatchFailure,
  BatchProgress,
  BatchRecord,
  BatchResult,
  BatchSink,
  BatchSource,
  BatchSummary,
  ModelSignature,
  TensorSpec,
} from './types.js';
