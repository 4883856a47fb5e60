export * from './core/types.js';
export { createModelManager, type ModelManagerOptions } from './core/model-manager.js';
export { systemClock, type Clock } from './core/clock.js';
export { DEFAULT_SEQUENCE_IDLE_TIMEOUT_MS } from './core/sequence-batcher.js';
