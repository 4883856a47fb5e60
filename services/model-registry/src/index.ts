// The model-registry service: models, versions sealed at rest, aliases, lineage and deployments.
export { loadRegistryConfig, registryConfigSchema, type RegistryConfig } from './config.js';
export { startRegistryServer, type RegistryServer, type RegistryServerOptions } from './server/registry-server.js';
export { formatRef, parseRef, type ModelRef } from './core/names.js';
export { createFsBlobStore, type BlobKey, type BlobStore, type BlobWriter } from './core/blob-store.js';
export { REGISTRY_ACCESS } from './server/access.js';
