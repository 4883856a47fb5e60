export * from './core/types.js';
export { createModelManager, type ModelManagerOptions } from './core/model-manager.js';
export { systemClock, type Clock } from './core/clock.js';
export { DEFAULT_SEQUENCE_IDLE_TIMEOUT_MS } from './core/sequence-batcher.js';
// Front ends and process assembly (server/, http/, config).
export {
  INFERENCE_VERSION,
  serviceTokenSource,
  startInferenceServer,
  type InferenceServer,
  type InferenceServerOptions,
  type InferenceSync,
  type SyncContext,
  type SyncFactory,
} from './server/inference-server.js';
export type { RepositoryLoader } from './server/repository-loader.js';
export {
  inferenceConfig,
  inferenceConfigSchema,
  loadInferenceConfig,
  loadInferenceConfigOrExit,
  type InferenceConfig,
} from './config.js';
export { INFERENCE_ACCESS } from './server/access.js';
// What main.ts wires from the config: the registry sync and the monitoring observer (records, drift samples).
export { createSyncWiring, type SyncWiring } from './sync/index.js';
