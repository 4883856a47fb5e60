// The public contracts of Quanta: ts-proto code generated from proto/ (see src/gen, never
// edited by hand). Each protobuf package is exported as a namespace so that equal message
// names in different packages never collide.
export * as health from './gen/grpc/health/v1/health.js';
export * as inference from './gen/inference/grpc_service.js';
/** Triton's model configuration messages (package `inference`, file model_config.proto). */
export * as inferenceConfig from './gen/inference/model_config.js';
export * as crypto from './gen/quanta/crypto/v1/crypto.js';
export * as registry from './gen/quanta/registry/v1/registry.js';
export * as monitoring from './gen/quanta/monitoring/v1/monitoring.js';
export { descriptorSetBase64 } from './gen/descriptor-set.js';
export {
  unaryCaller,
  type RequestOf,
  type ResponseOf,
  type UnaryCallOptions,
  type UnaryCaller,
  type UnaryMethod,
} from './unary.js';
export { decodeModelInferRequest, encodeModelInferResponse, encodeModelStreamInferResponse } from './infer-codec.js';
export {
  LeanRegistryServiceClient,
  decodeDownloadVersionResponse,
  encodeUploadVersionRequest,
  leanRegistryServiceDefinition,
  readUploadChunks,
} from './registry-codec.js';
export { readVarint, varintLength, writeVarint } from './varint.js';
