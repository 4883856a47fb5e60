// The ingest client the inference service uses to report every finished request to monitoring.
export { createIngestClient } from './ingest-client.js';
export type {
  IngestClient,
  IngestClientOptions,
  IngestClientStats,
  IngestRecord,
  IngestSummary,
} from './ingest-client.js';
// Input summaries for drift detection, shared by inference, monitoring and the CLI.
export {
  BIN_LIMIT,
  BIN_ZERO,
  BINS_PER_OCTAVE,
  InputAccumulator,
  MOMENT_LIMIT,
  PSI_GROUPS,
  PSI_SHARE_FLOOR,
  binIndex,
  binLowerMagnitude,
  mergeSummaries,
  populationStabilityIndex,
  psiGroups,
  psiVerdict,
  type SummaryLabels,
} from './input-summary.js';
