import { join } from 'node:path';
import type { IngestClient } from '@quanta/monitoring-client';
import { createIngestClient } from '@quanta/monitoring-client';
import { clientTlsFromConfig } from '@quanta/service-kit';
import type { InferenceConfig } from '../config.js';
import type { InferObserver } from '../core/types.js';
import type { InferenceSync, SyncFactory } from '../server/inference-server.js';
import { serviceTokenSource } from '../server/inference-server.js';
import type { DriftSampler } from './drift-sampler.js';
import { createDriftSampler } from './drift-sampler.js';
import { createIngestObserver } from './ingest-observer.js';
import type { RegistrySync } from './registry-sync.js';
import { createRegistrySync } from './registry-sync.js';

export interface SyncWiring {
  /** The monitoring observer for the manager the server makes; absent without a monitoring address. */
  readonly observer?: InferObserver;
  /** Makes the registry sync (with `watch`) and closes the ingest client on stop. */
  readonly sync?: SyncFactory;
}

/**
 * What main.ts hands startInferenceServer: with `config.watch`, a sync that serves the registry's
 * deployments (RepositoryModelLoad/Unload and ServerReady come from it); with
 * `config.monitoringAddr`, an observer that streams a record of every request to monitoring. Both
 * use the service token (QUANTA_INFERENCE_SERVICE_TOKEN, else $QUANTA_HOME/admin.token), which needs
 * the `admin` scope (all tenants' deployments) — `monitoring:write` alone suffices for monitoring.
 */
export function createSyncWiring(config: InferenceConfig): SyncWiring {
  let registrySync: RegistrySync | undefined;
  let ingest: IngestClient | undefined;
  let drift: DriftSampler | undefined;
  let observer: InferObserver | undefined;
  const tls = clientTlsFromConfig(config);
  // Failed sends are logged at most every 30 s (the logger arrives with the sync factory's context).
  let warn: ((error: Error) => void) | undefined;
  let lastWarned = 0;
  const onError = (error: Error): void => {
    const now = Date.now();
    if (now - lastWarned < 30_000) return;
    lastWarned = now;
    warn?.(error);
  };
  if (config.monitoringAddr !== undefined) {
    ingest = createIngestClient({
      address: config.monitoringAddr,
      token: serviceTokenSource(config),
      onError,
      ...(tls === undefined ? {} : { tls }),
    });
    // Input summaries for drift detection ride the same stream (QUANTA_DRIFT_SAMPLE_RATE; 0: none).
    if (config.driftSampleRate > 0)
      drift = createDriftSampler({
        client: ingest,
        valuesPerSecond: config.driftSampleRate,
        maxValuesPerInput: config.driftMaxValues,
        flushIntervalMs: config.driftFlushInterval,
      });
    observer = createIngestObserver({
      client: ingest,
      ...(drift === undefined ? {} : { drift }),
      deploymentOf: (tenant, name) => registrySync?.deploymentOf(tenant, name),
    });
  }
  if (!config.watch && ingest === undefined) return {};
  const client = ingest;
  const sync: SyncFactory = (context) => {
    warn = (error) =>
      context.logger.warn(
        { reason: error.message },
        `monitoring ingest failed (${error.message}); records are dropped while it does not answer`,
      );
    if (config.watch) {
      registrySync = createRegistrySync({
        registryAddress: config.registryAddr,
        token: context.token,
        ...(tls === undefined ? {} : { tls }),
        manager: context.manager,
        logger: context.logger,
        ...(context.telemetry === undefined ? {} : { telemetry: context.telemetry }),
        servingDefaults: {
          execution: config.execution,
          ...(config.threadsPerInstance > 0 ? { threadsPerInstance: config.threadsPerInstance } : {}),
        },
        // Sealed on disk, so a restarted replica loads without downloading again.
        diskCache: { dir: join(config.home, 'inference', 'cache'), cryptoAddress: config.cryptoAddr },
      });
    }
    const running = registrySync;
    const made: InferenceSync = {
      ...(running === undefined ? {} : { loader: running.loader, ready: () => running.ready() }),
      async close() {
        await running?.close();
        // Flushes what is buffered (within its send timeout): a stopping replica's last records still count.
        drift?.close();
        await client?.close();
      },
    };
    return made;
  };
  return { ...(observer === undefined ? {} : { observer }), sync };
}
