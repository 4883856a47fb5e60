import { InferError } from '../core/types.js';
import type { InferErrorCode } from '../core/types.js';
import type { RepositoryLoader } from '../server/repository-loader.js';
import type { Converger } from './converger.js';
import { FetchError } from './model-fetcher.js';

const CODES: Readonly<Record<FetchError['code'], InferErrorCode>> = {
  NOT_FOUND: 'NOT_FOUND',
  FAILED_PRECONDITION: 'FAILED_PRECONDITION',
  UNAVAILABLE: 'UNAVAILABLE',
  RESOURCE_EXHAUSTED: 'RESOURCE_EXHAUSTED',
  // The caller cannot fix these: the replica's token or the stored file is wrong.
  PERMISSION_DENIED: 'INTERNAL',
  DATA_LOSS: 'INTERNAL',
  INTERNAL: 'INTERNAL',
};

/** The failure of a load or unload, as an InferError whose code the front ends pass on. */
export function asInferError(error: unknown, what: string): InferError {
  if (error instanceof InferError) return error;
  if (error instanceof FetchError) return new InferError(CODES[error.code], `${what}: ${error.message}`);
  return new InferError('INTERNAL', `${what}: ${error instanceof Error ? error.message : String(error)}`);
}

/**
 * RepositoryModelLoad / Unload through the registry: `load` serves the model's deployment when the
 * tenant has one, else the model's latest READY version (DownloadVersion with a bare name, which the
 * replica's admin token may ask for any tenant), with one instance and no batching; `unload` unloads
 * it and keeps a deployment of it unloaded until the deployment changes.
 */
export function createRegistryLoader(converger: Converger): RepositoryLoader {
  return {
    async load(tenant, name) {
      try {
        await converger.load(tenant, name);
      } catch (error: unknown) {
        throw asInferError(error, `loading model "${name}"`);
      }
    },
    async unload(tenant, name) {
      try {
        await converger.unload(tenant, name);
      } catch (error: unknown) {
        throw asInferError(error, `unloading model "${name}"`);
      }
    },
  };
}
