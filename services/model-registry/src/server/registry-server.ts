import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createCryptoTokenVerifier } from '@quanta/auth';
import { crypto as cpb } from '@quanta/contracts';
import type { registry as pb } from '@quanta/contracts';
import {
  clientTlsFromConfig,
  createClient,
  createService,
  serviceOptionsFromConfig,
  serviceTokenSource,
} from '@quanta/service-kit';
import type { Authenticator, QuantaService } from '@quanta/service-kit';
import { openStore } from '@quanta/store';
import type { Store } from '@quanta/store';
import type { Telemetry } from '@quanta/telemetry';
import type { Logger } from 'pino';
import type { RegistryConfig } from '../config.js';
import type { BlobStore } from '../core/blob-store.js';
import { openBlobStore } from '../core/open-blob-store.js';
import { startDeploymentFeed } from '../core/change-feed.js';
import type { DeploymentFeed } from '../core/change-feed.js';
import { REGISTRY_MIGRATIONS } from '../core/migrations.js';
import { createAuditHandlers, createRegistryAudit } from './audit.js';
import { createDataKeys } from './data-keys.js';
import { createDataKeyHandlers } from './handlers-data-keys.js';
import type { RegistryDeps } from './deps.js';
import { createDeploymentHandlers } from './handlers-deployments.js';
import { createModelHandlers } from './handlers-models.js';
import { inspectOnnxModel } from './inspector.js';
import { REGISTRY_ACCESS } from './access.js';
import { registryServiceDefinition } from './wire-codecs.js';
import type { Inspector } from './inspector.js';

export interface RegistryServerOptions {
  telemetry?: Telemetry;
  logger?: Logger;
  /** An open store to use (tests); otherwise one is opened from the config and closed on stop. */
  store?: Store;
  /** Checks tokens (tests may pass one); default: crypto's JWKS through GetJwks. */
  authenticator?: Authenticator;
  inspect?: Inspector;
  now?: () => Date;
}

export interface RegistryServer {
  readonly port: number;
  readonly address: string;
  readonly service: QuantaService;
  readonly store: Store;
  readonly blobs: BlobStore;
  /** This process's reader of the deployment change feed that every replica on the database writes. */
  readonly feed: DeploymentFeed;
  /** The folder of a file blob store (tests read it); '' when the blobs are in a bucket. */
  readonly blobDir: string;
  /** Ends the watch streams (UNAVAILABLE) so that a stop does not wait on them; `stop` does it too. */
  beginStop(): void;
  stop(options?: { graceMs?: number }): Promise<void>;
}

/**
 * Removes what uploads that died with an earlier process left: temporary blobs, plaintext
 * scratch files, and published blobs whose metadata never committed. In a store shared with other
 * replicas, what is younger than its sweep grace may be an upload still running there: it stays.
 */
async function sweep(store: Store, blobs: BlobStore, scratchDir: string, logger: Logger): Promise<void> {
  const cutoff = blobs.sweepGraceMs > 0 ? new Date(Date.now() - blobs.sweepGraceMs) : undefined;
  const temporaries = await blobs.removeTemporaries(cutoff);
  const scratch = await readdir(scratchDir).catch(() => [] as string[]);
  await Promise.all(scratch.map((name) => rm(join(scratchDir, name), { force: true })));
  let orphans = 0;
  for await (const key of blobs.list()) {
    if (cutoff !== undefined && key.modified >= cutoff) continue;
    const rows = await store.query('SELECT 1 FROM registry_blobs WHERE tenant = $1 AND sha256 = $2', [
      key.tenant,
      key.sha256,
    ]);
    if (rows.length === 0) {
      await blobs.delete(key);
      orphans += 1;
    }
  }
  if (temporaries + scratch.length + orphans > 0) {
    logger.warn({ temporaries, scratch: scratch.length, orphans }, 'removed files left by interrupted uploads');
  }
}

/**
 * A store shared with other replicas keeps a sweep grace, so the start-up sweep spares young
 * leftovers: sweeping again every grace period removes what a crashed replica left within two,
 * whether or not anything restarts. A folder (grace 0) is swept at start only.
 */
function sweepPeriodically(
  store: Store,
  blobs: BlobStore,
  scratchDir: string,
  logger: Logger,
): { stop(): Promise<void> } {
  if (blobs.sweepGraceMs === 0) return { stop: () => Promise.resolve() };
  let running: Promise<void> = Promise.resolve();
  const timer = setInterval(
    () => {
      running = sweep(store, blobs, scratchDir, logger).catch((error: unknown) =>
        logger.warn({ err: error }, 'the blob sweep failed; it runs again later'),
      );
    },
    Math.min(blobs.sweepGraceMs, 2 ** 31 - 1),
  ); // setInterval's largest delay
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}

/** Opens the store and blob folder, connects to crypto, and serves RegistryService. */
export async function startRegistryServer(
  config: RegistryConfig,
  options: RegistryServerOptions = {},
): Promise<RegistryServer> {
  await mkdir(config.home, { recursive: true, mode: 0o700 });
  const tls = clientTlsFromConfig(config);
  const jwksClient = createClient(cpb.CryptoServiceClient, config.cryptoAddr, {
    ...(tls === undefined ? {} : { tls }),
    ...(options.telemetry === undefined ? {} : { telemetry: { tracer: options.telemetry.tracer } }),
  });
  const cryptoClient = createClient(cpb.CryptoServiceClient, config.cryptoAddr, {
    token: serviceTokenSource({ token: config.serviceToken, home: config.home, variable: 'QUANTA_SERVICE_TOKEN' }),
    ...(tls === undefined ? {} : { tls }),
    ...(options.telemetry === undefined ? {} : { telemetry: { tracer: options.telemetry.tracer } }),
  });
  const verifier =
    options.authenticator === undefined
      ? createCryptoTokenVerifier(jwksClient, {
          logger: { warn: (o, m) => service.logger.warn(o, m), info: (o, m) => service.logger.info(o, m) },
        })
      : undefined;
  const authenticator = options.authenticator ?? verifier;
  const service = createService({
    name: 'model-registry',
    ...serviceOptionsFromConfig(config),
    authenticator,
    ...(options.telemetry === undefined ? {} : { telemetry: options.telemetry }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  });
  const logger = service.logger;
  const ownStore = options.store === undefined;
  const store =
    options.store ??
    (await openStore(
      config.databaseUrl === undefined ? { dataDir: join(config.home, 'registry-db') } : { url: config.databaseUrl },
    ));
  let blobs: BlobStore | undefined;
  let feed: DeploymentFeed | undefined;
  try {
    await store.migrate('model-registry', REGISTRY_MIGRATIONS);
    const defaultBlobDir = join(config.home, 'blobs');
    // Plaintext scratch copies that versions before streaming inspection wrote: still swept at start.
    const scratchDir = join(config.home, 'registry-tmp');
    blobs = await openBlobStore(config.blobUrl, defaultBlobDir, { maxObjectBytes: config.maxUploadBytes });
    const blobDir = blobs.location.startsWith('file:') ? fileURLToPath(blobs.location) : '';
    await sweep(store, blobs, scratchDir, logger);
    const sweeping = sweepPeriodically(store, blobs, scratchDir, logger);
    // Before the hooks that close the store and the blobs, which a running sweep uses.
    service.onStop(() => sweeping.stop());
    feed = await startDeploymentFeed(store, { logger });
    const closing = new AbortController();
    const deps: RegistryDeps = {
      store,
      blobs,
      dataKeys: createDataKeys(cryptoClient, config.keyName),
      inspect: options.inspect ?? inspectOnnxModel,
      feed,
      maxUploadBytes: config.maxUploadBytes,
      now: options.now ?? (() => new Date()),
      closing: closing.signal,
      audit: createRegistryAudit(store),
    };
    const implementation: pb.RegistryServiceServer = {
      ...createModelHandlers(deps),
      ...createDeploymentHandlers(deps),
      ...createDataKeyHandlers(deps, deps.audit),
      ...createAuditHandlers(store),
    };
    service.addService(registryServiceDefinition(), implementation, REGISTRY_ACCESS);
    service.onStop(() => {
      verifier?.close();
      cryptoClient.close();
      jwksClient.close();
    });
    const openFeed = feed;
    service.onStop(() => openFeed.close());
    if (ownStore) service.onStop(() => store.close());
    const openedBlobs = blobs;
    service.onStop(() => openedBlobs.close());
    const { port, address } = await service.start();
    return {
      port,
      address,
      service,
      store,
      blobs,
      feed,
      blobDir,
      beginStop: () => closing.abort(),
      stop: (o) => {
        closing.abort();
        return service.stop(o);
      },
    };
  } catch (error: unknown) {
    cryptoClient.close();
    jwksClient.close();
    await feed?.close();
    await blobs?.close();
    if (ownStore) await store.close();
    throw error;
  }
}
