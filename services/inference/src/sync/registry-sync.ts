import { crypto as cpb, registry as pb } from '@quanta/contracts';
import type { ClientTlsOptions, TokenSource } from '@quanta/service-kit';
import { createClient } from '@quanta/service-kit';
import type { Telemetry } from '@quanta/telemetry';
import type { Logger } from 'pino';
import type { ModelManager } from '../core/types.js';
import type { RepositoryLoader } from '../server/repository-loader.js';
import type { Backoff } from './backoff.js';
import { createConverger } from './converger.js';
import { createDeploymentWatcher } from './deployment-watcher.js';
import { createModelCache } from './model-cache.js';
import type { ModelCache } from './model-cache.js';
import type { ServingDefaults } from './serving-config.js';
import { createModelFetcher } from './model-fetcher.js';
import { createRegistryLoader } from './registry-loader.js';
import { createSealedDiskCache } from './sealed-cache.js';

export interface RegistrySyncOptions {
  /** The registry, e.g. `127.0.0.1:9001`. */
  readonly registryAddress: string;
  /** A token with the `admin` scope: the replica watches and downloads every tenant's deployments. */
  readonly token: TokenSource;
  readonly manager: ModelManager;
  readonly logger: Logger;
  readonly tls?: ClientTlsOptions;
  readonly telemetry?: Telemetry;
  /** Model files kept in memory (LRU, by sha256), in bytes. Default 1 GiB; 0 keeps none. */
  readonly cacheBytes?: number;
  /**
   * Keep downloaded files on disk across restarts, sealed with AES-256-GCM under data keys from the
   * crypto service at `cryptoAddress` (the token needs `keys:use`, and `keys:admin` once to create the key).
   */
  readonly diskCache?: { readonly dir: string; readonly cryptoAddress: string; readonly maxBytes?: number };
  /** Largest model file accepted, in bytes. Default 2 GiB. */
  readonly maxModelBytes?: number;
  /** Reconnection delays of the deployment watch. Default 100 ms doubling to 5 s, jittered. */
  readonly watchBackoff?: Backoff;
  /** Retry delays of a failed load. Default 1 s doubling to 60 s, jittered. */
  readonly retryBackoff?: Backoff;
  /** Settings every model gets that a deployment does not say (onnxruntime threads per session). */
  readonly servingDefaults?: ServingDefaults;
  /** Told of each snapshot (after it is handed to the converger) and each lost watch (metrics, tests). */
  readonly onWatchEvent?: (event: 'snapshot' | 'disconnected') => void;
}

export interface RegistrySync {
  /** RepositoryModelLoad / Unload for the front ends. */
  readonly loader: RepositoryLoader;
  readonly cache: ModelCache;
  /** True once the first snapshot of deployments has been converged (ServerReady). */
  ready(): boolean;
  whenReady(): Promise<void>;
  /** Resolves when no load or unload is running or queued. */
  settled(): Promise<void>;
  /** The deployment serving (tenant, model) now, for monitoring records. */
  deploymentOf(tenant: string, name: string): string | undefined;
  /** True while the deployment watch is connected. */
  connected(): boolean;
  /** Stops watching and loading; the loaded models stay with the manager (close it after). */
  close(): Promise<void>;
}

/**
 * Makes this replica serve what the registry deploys: watches every tenant's deployments
 * (reconnecting, each snapshot reconciled), downloads and checks the files (cached in memory by
 * sha256, never written to disk), and loads, swaps and unloads models in `manager`.
 */
export function createRegistrySync(options: RegistrySyncOptions): RegistrySync {
  const client = createClient(pb.RegistryServiceClient, options.registryAddress, {
    token: options.token,
    ...(options.tls === undefined ? {} : { tls: options.tls }),
    ...(options.telemetry === undefined ? {} : { telemetry: { tracer: options.telemetry.tracer } }),
    // 4 MiB chunks (the registry's largest) plus framing.
    maxReceiveMessageLength: 8 * 1024 * 1024,
    channelOptions: {
      // grpc-js waits up to 2 minutes between reconnections by default; a restarted registry should
      // be found in seconds.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 2000,
      // The watch is idle between changes: pings find a connection that died without a reset
      // (a partition), so the stream fails and reconnects instead of waiting forever.
      'grpc.keepalive_time_ms': 20_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 1,
    },
  });
  const logger = options.logger.child({ component: 'registry-sync' });
  const cache = createModelCache({ maxBytes: options.cacheBytes ?? 1024 * 1024 * 1024 });
  const disk = options.diskCache;
  const cryptoClient =
    disk === undefined
      ? undefined
      : createClient(cpb.CryptoServiceClient, disk.cryptoAddress, {
          token: options.token,
          ...(options.tls === undefined ? {} : { tls: options.tls }),
          ...(options.telemetry === undefined ? {} : { telemetry: { tracer: options.telemetry.tracer } }),
        });
  const fetcher = createModelFetcher({
    client,
    cache,
    ...(disk === undefined || cryptoClient === undefined
      ? {}
      : {
          disk: createSealedDiskCache({
            dir: disk.dir,
            crypto: cryptoClient,
            logger,
            ...(disk.maxBytes === undefined ? {} : { maxBytes: disk.maxBytes }),
          }),
        }),
    ...(options.maxModelBytes === undefined ? {} : { maxModelBytes: options.maxModelBytes }),
  });
  const converger = createConverger({
    manager: options.manager,
    fetcher,
    logger,
    ...(options.retryBackoff === undefined ? {} : { retryBackoff: options.retryBackoff }),
    ...(options.servingDefaults === undefined ? {} : { servingDefaults: options.servingDefaults }),
  });
  const watcher = createDeploymentWatcher({
    client,
    logger,
    onSnapshot: (deployments) => {
      logger.info(
        { deployments: deployments.length },
        `deployment snapshot: ${deployments.length} deployment${deployments.length === 1 ? '' : 's'}`,
      );
      converger.applySnapshot(deployments);
      options.onWatchEvent?.('snapshot');
    },
    onChange: (change) => converger.applyChange(change),
    onDisconnect: () => options.onWatchEvent?.('disconnected'),
    ...(options.watchBackoff === undefined ? {} : { backoff: options.watchBackoff }),
  });

  return {
    loader: createRegistryLoader(converger),
    cache,
    ready: () => converger.ready(),
    whenReady: () => converger.whenReady(),
    settled: () => converger.settled(),
    deploymentOf: (tenant, name) => converger.deploymentOf(tenant, name),
    connected: () => watcher.connected,
    async close() {
      await watcher.close();
      await converger.close();
      client.close();
      cryptoClient?.close();
      cache.clear();
    },
  };
}
