// The registry sync: what makes an inference replica serve the registry's deployments.
export { createRegistrySync, type RegistrySync, type RegistrySyncOptions } from './registry-sync.js';
export { createIngestObserver, type IngestObserverOptions } from './ingest-observer.js';
export { createBackoff, type Backoff, type BackoffOptions } from './backoff.js';
export { createSyncWiring, type SyncWiring } from './sync-wiring.js';
