// The inference process: the core's model manager behind the gRPC (KServe v2 / Triton, :8001) and
// REST (KServe v2, :8000) front ends, Triton's Prometheus metrics (:8002), with the registry sync
// plugged in through `sync`.
import { createCryptoTokenVerifier } from '@quanta/auth';
import { crypto } from '@quanta/contracts';
import type { Authenticator, QuantaService } from '@quanta/service-kit';
import {
  channelCredentials,
  clientTlsFromConfig,
  createService,
  serviceOptionsFromConfig,
  serviceTokenSource as homeTokenSource,
} from '@quanta/service-kit';
import type { Telemetry } from '@quanta/telemetry';
import type { Logger } from 'pino';
import type { InferenceConfig } from '../config.js';
import { createModelManager } from '../core/model-manager.js';
import type { InferObserver, ModelManager } from '../core/types.js';
import type { HttpListener } from '../http/http-listener.js';
import type { RestServer } from '../http/rest-server.js';
import { startRestServer } from '../http/rest-server.js';
import { METRICS_PATH, startMetricsServer } from '../metrics/metrics-server.js';
import { createTritonMetrics } from '../metrics/triton-metrics.js';
import { INFERENCE_ACCESS } from './access.js';
import { createGrpcHandlers, grpcInferenceServiceDefinition } from './grpc-handlers.js';
import { createInferenceApi } from './inference-api.js';
import type { RepositoryLoader } from './repository-loader.js';

export const INFERENCE_VERSION = '0.1.0';

/** The gRPC health name whose status follows ServerReady (the Triton/KServe service's full name). */
export const INFERENCE_HEALTH_SERVICE = 'inference.GRPCInferenceService';
/** How often that status is brought up to date with ServerReady. */
const READINESS_POLL_MS = 250;

/**
 * What the registry sync gives the server: RepositoryModelLoad/Unload, ServerReady, and a close
 * that stops its watching and loading (the manager is closed after it). The registry sync's
 * `RegistrySync` (src/sync) has this shape.
 */
export interface InferenceSync {
  readonly loader?: RepositoryLoader;
  /** True once the replica serves what the registry deploys (ServerReady, /v2/health/ready). */
  ready?(): boolean;
  close(): Promise<void>;
}

/** What a sync factory is handed: the manager it loads models into and the process's settings. */
export interface SyncContext {
  readonly manager: ModelManager;
  readonly config: InferenceConfig;
  readonly logger: Logger;
  readonly telemetry: Telemetry | undefined;
  /** The token for calls to the registry, crypto and monitoring (config or $QUANTA_HOME/admin.token). */
  readonly token: () => Promise<string>;
}

export type SyncFactory = (context: SyncContext) => InferenceSync | Promise<InferenceSync>;

export interface InferenceServerOptions {
  /** The model manager; default a new one (with `observer`). Closed by stop(). */
  readonly manager?: ModelManager;
  /** Told about every request when the server makes the manager (monitoring records). */
  readonly observer?: InferObserver;
  /** Checks tokens (gRPC and REST); default the crypto service's public keys at config.cryptoAddr. */
  readonly authenticator?: Authenticator;
  /** RepositoryModelLoad/Unload; default the sync's; none: they answer UNIMPLEMENTED. */
  readonly loader?: RepositoryLoader;
  /** ServerReady; default the sync's, else always true. */
  readonly ready?: () => boolean;
  /**
   * HOOK for the registry sync (src/sync): made once the manager exists and before the listeners
   * open, closed on stop before the manager. main.ts passes it when config.watch is on.
   */
  readonly sync?: SyncFactory;
  readonly telemetry?: Telemetry;
  readonly logger?: Logger;
}

export interface InferenceServer {
  /** gRPC port and `host:port`. */
  readonly port: number;
  readonly address: string;
  readonly http: { readonly port: number; readonly url: string };
  /** Triton's Prometheus metrics: `url` ends in /metrics; undefined with --no-metrics (or no metricsPort). */
  readonly metrics: { readonly port: number; readonly url: string } | undefined;
  readonly service: QuantaService;
  readonly manager: ModelManager;
  readonly sync: InferenceSync | undefined;
  /** Stops the REST and metrics listeners taking requests (a signal handler calls it before service-kit's stop). */
  beginStop(): void;
  /** Stops accepting on every listener, lets accepted requests finish (grace), then closes the sync and the manager. */
  stop(options?: { graceMs?: number }): Promise<void>;
}

/** The configured service token, else the admin token the crypto service wrote (read per call: it may be renewed). */
export function serviceTokenSource(config: Pick<InferenceConfig, 'serviceToken' | 'home'>): () => Promise<string> {
  return homeTokenSource({ token: config.serviceToken, home: config.home, variable: 'QUANTA_INFERENCE_SERVICE_TOKEN' });
}

export async function startInferenceServer(
  config: InferenceConfig,
  options: InferenceServerOptions = {},
): Promise<InferenceServer> {
  let authenticator = options.authenticator;
  let cryptoClient: crypto.CryptoServiceClient | undefined;
  let closeVerifier = (): void => undefined;
  if (authenticator === undefined) {
    cryptoClient = new crypto.CryptoServiceClient(config.cryptoAddr, channelCredentials(clientTlsFromConfig(config)));
    const verifier = createCryptoTokenVerifier(cryptoClient, {
      logger: { warn: (o, m) => service.logger.warn(o, m), info: (o, m) => service.logger.info(o, m) },
    });
    closeVerifier = () => verifier.close();
    authenticator = verifier;
  }
  const service = createService({
    name: 'inference',
    version: INFERENCE_VERSION,
    ...serviceOptionsFromConfig(config),
    authenticator,
    ...(options.telemetry === undefined ? {} : { telemetry: options.telemetry }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  });
  const logger = service.logger;
  const manager =
    options.manager ??
    createModelManager({
      logger: logger.child({ component: 'core' }),
      ...(options.observer === undefined ? {} : { observer: options.observer }),
    });

  let sync: InferenceSync | undefined;
  let http: RestServer | undefined;
  let metrics: HttpListener | undefined;
  let ready: (() => boolean) | undefined;
  const release = async (): Promise<void> => {
    await metrics?.close({ graceMs: 0 });
    await sync?.close();
    await manager.close();
    closeVerifier();
    cryptoClient?.close();
  };
  try {
    sync = await options.sync?.({
      manager,
      config,
      logger,
      telemetry: options.telemetry,
      token: serviceTokenSource(config),
    });
    const loader = options.loader ?? sync?.loader;
    ready = options.ready ?? (sync?.ready === undefined ? undefined : () => sync?.ready?.() ?? true);
    const api = createInferenceApi({ manager, loader, ready, version: INFERENCE_VERSION });
    service.addService(grpcInferenceServiceDefinition, createGrpcHandlers(api), INFERENCE_ACCESS);
    // REST serves the same certificate (and client-certificate rule) as gRPC.
    const { tls } = serviceOptionsFromConfig(config);
    http = await startRestServer({
      host: config.httpHost,
      port: config.httpPort,
      api,
      authenticator,
      maxBodyBytes: config.maxBodyBytes,
      tls,
      logger,
    });
    // Triton's metrics listener (by default on the REST host, as Triton's follow --http-address).
    // Bound before gRPC, so that every listener is open once the gRPC one logs "listening".
    if (config.metrics !== false && config.metricsPort !== undefined) {
      metrics = await startMetricsServer({
        host: config.metricsHost ?? config.httpHost,
        port: config.metricsPort,
        tls,
        metrics: createTritonMetrics(manager),
        authenticator,
        public: config.metricsPublic === true,
        logger,
      });
    }
  } catch (error: unknown) {
    await http?.close({ graceMs: 0 });
    await release();
    throw error;
  }
  const rest = http;
  const scrape = metrics;

  // grpc.health.v1: "" is the process (live: a liveness probe must not restart a replica that is
  // still downloading its models); the inference service's own name follows ServerReady, for
  // readiness probes and load balancers, checked every READINESS_POLL_MS.
  let followReadiness: NodeJS.Timeout | undefined;
  const readiness = ready;
  const updateHealth = (): void => {
    if (readiness !== undefined) service.health.set(INFERENCE_HEALTH_SERVICE, readiness() ? 'SERVING' : 'NOT_SERVING');
  };

  let restClosed: Promise<void> | undefined;
  const beginStop = (graceMs: number = config.shutdownGrace): Promise<void> =>
    (restClosed ??= Promise.all([rest.close({ graceMs }), scrape?.close({ graceMs })]).then(() => undefined));
  service.onStop(async () => {
    clearInterval(followReadiness);
    await beginStop();
    await release();
  });

  let port: number;
  let address: string;
  try {
    ({ port, address } = await service.start());
  } catch (error: unknown) {
    await service.stop({ graceMs: 0 });
    throw error;
  }
  if (readiness !== undefined) {
    updateHealth();
    followReadiness = setInterval(updateHealth, READINESS_POLL_MS);
    followReadiness.unref();
  }
  logger.info({ url: rest.url }, `KServe v2 REST on ${rest.url}`);
  const metricsUrl = scrape === undefined ? undefined : `${scrape.url}${METRICS_PATH}`;
  if (scrape !== undefined)
    logger.info({ url: metricsUrl, public: config.metricsPublic === true }, `Triton metrics on ${metricsUrl}`);
  return {
    port,
    address,
    http: { port: rest.port, url: rest.url },
    metrics: scrape === undefined || metricsUrl === undefined ? undefined : { port: scrape.port, url: metricsUrl },
    service,
    manager,
    sync,
    beginStop: () => void beginStop(),
    async stop(stopOptions = {}) {
      const graceMs = stopOptions.graceMs ?? config.shutdownGrace;
      await Promise.all([beginStop(graceMs), service.stop({ graceMs })]);
    },
  };
}
