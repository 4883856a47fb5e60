// The ingest client the inference service uses to report every finished request to monitoring.
export { createIngestClient } from './ingest-client.js';
export type { IngestClient, IngestClientOptions, IngestClientStats, IngestRecord } from './ingest-client.js';
