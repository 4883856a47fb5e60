import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createCryptoTokenVerifier } from '@quanta/auth';
import { crypto, monitoring as pb } from '@quanta/contracts';
import type { Authenticator, HttpLimits, QuantaService } from '@quanta/service-kit';
import {
  channelCredentials,
  clientTlsFromConfig,
  createClient,
  createService,
  serviceOptionsFromConfig,
  serviceTokenSource,
} from '@quanta/service-kit';
import { openStore } from '@quanta/store';
import type { Store } from '@quanta/store';
import type { Telemetry } from '@quanta/telemetry';
import type { Logger } from 'pino';
import type { HealthTarget, MonitoringConfig } from '../config.js';
import type { AlertEngine } from '../core/alerts.js';
import { createAlertEngine } from '../core/alerts.js';
import { DRIFT_COMPONENT, DRIFT_MIGRATIONS, createBaselineStore } from '../core/baseline-store.js';
import type { DriftEngine } from '../core/drift.js';
import { createDriftEngine } from '../core/drift.js';
import { createDriftStore } from '../core/drift-store.js';
import type { HealthBoard } from '../core/health-board.js';
import { MONITORING_MIGRATIONS, createRuleStore } from '../core/rule-store.js';
import { createHealthBoard } from '../core/health-board.js';
import type { WindowStore } from '../core/window-store.js';
import { createWindowStore } from '../core/window-store.js';
import type { HttpServer } from '../http/http-server.js';
import { startHttpServer } from '../http/http-server.js';
import type { PromMetrics } from '../http/prometheus.js';
import { createPromMetrics } from '../http/prometheus.js';
import { MONITORING_ACCESS } from './access.js';
import { createMonitoringHandlers } from './handlers.js';
import type { Notifier, RetrySchedule } from './notifier.js';
import { createNotifier } from './notifier.js';
import { createCryptoSigner } from './webhook-signer.js';

export interface MonitoringServerOptions {
  /** How slow an HTTP request may be before its connection is cut (service-kit's defaults when absent). */
  readonly httpLimits?: HttpLimits;
  readonly telemetry?: Telemetry;
  readonly logger?: Logger;
  /** Checks tokens; default: the crypto service's public keys at config.cryptoAddr. */
  readonly authenticator?: Authenticator;
  /** Milliseconds since the epoch (tests move it). */
  readonly clock?: () => number;
  /** The health board's targets; default none. */
  readonly targets?: readonly HealthTarget[];
  /** An open store for the alert rules (tests); otherwise one is opened from the config and closed on stop. */
  readonly store?: Store;
  /** False: the service never evaluates alerts or checks health by itself (tests drive them). Default true. */
  readonly timers?: boolean;
  /** Webhook deliveries: the retry schedule (default the contract's) and how many may wait (default 1000). */
  readonly webhooks?: { readonly retry?: RetrySchedule; readonly maxQueued?: number };
}

export interface MonitoringServer {
  readonly port: number;
  readonly address: string;
  readonly http: HttpServer;
  readonly service: QuantaService;
  readonly store: WindowStore;
  /** Where the alert rules persist (migrated); undefined: in memory only. */
  readonly ruleStore: Store | undefined;
  readonly alerts: AlertEngine;
  readonly board: HealthBoard;
  readonly metrics: PromMetrics;
  /** Input summaries and drift baselines (persisted beside the alert rules). */
  readonly drift: DriftEngine;
  /** Sends alert rules' webhook notifications. */
  readonly notifier: Notifier;
  /** Ends the WatchAlerts streams (call before a stop that service-kit starts on a signal). */
  endStreams(): void;
  /** Ends the streams, stops the gRPC server, then the HTTP listener and the timers. */
  stop(options?: { graceMs?: number }): Promise<void>;
}

/** How often alert rules are evaluated and old series swept, as the contract says: every second. */
const EVALUATE_MS = 1000;

export async function startMonitoringServer(
  config: MonitoringConfig,
  options: MonitoringServerOptions = {},
): Promise<MonitoringServer> {
  let authenticator = options.authenticator;
  let cryptoClient: crypto.CryptoServiceClient | undefined;
  let closeVerifier = (): void => undefined;
  // One set of channel credentials (files read once) for the JWKS client and every health check.
  const tls = clientTlsFromConfig(config);
  const credentials = channelCredentials(tls);
  if (authenticator === undefined) {
    cryptoClient = new crypto.CryptoServiceClient(config.cryptoAddr, credentials);
    const verifier = createCryptoTokenVerifier(cryptoClient, {
      logger: { warn: (o, m) => service.logger.warn(o, m), info: (o, m) => service.logger.info(o, m) },
    });
    closeVerifier = () => verifier.close();
    authenticator = verifier;
  }
  const service = createService({
    name: 'monitoring',
    ...serviceOptionsFromConfig(config),
    authenticator,
    ...(options.telemetry === undefined ? {} : { telemetry: options.telemetry }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  });
  const logger = service.logger;
  const store = createWindowStore({
    horizonSeconds: Math.round(config.horizon / 1000),
    ...(options.clock === undefined ? {} : { clock: options.clock }),
  });
  // The rule store: the one given (tests), PostgreSQL, the embedded one under home, or none (a
  // config written by hand with neither: rules in memory only).
  let ruleStore: Store | undefined = options.store;
  const ownStore = ruleStore === undefined;
  const closeStore = async (): Promise<void> => {
    if (ownStore) await ruleStore?.close();
  };
  const driftStore = createDriftStore({
    horizonSeconds: store.horizonSeconds,
    ...(options.clock === undefined ? {} : { clock: options.clock }),
  });
  let drift: DriftEngine;
  let alerts: AlertEngine;
  try {
    if (ruleStore === undefined && config.databaseUrl !== undefined)
      ruleStore = await openStore({ url: config.databaseUrl });
    else if (ruleStore === undefined && config.home !== undefined) {
      await mkdir(config.home, { recursive: true, mode: 0o700 });
      ruleStore = await openStore({ dataDir: join(config.home, 'monitoring-db') });
    }
    if (ruleStore === undefined) {
      drift = createDriftEngine(driftStore, { clock: store.clock });
      alerts = createAlertEngine(store, { drift });
      logger.warn('alert rules are kept in memory only: the config gives neither home nor databaseUrl');
    } else {
      await ruleStore.migrate('monitoring', MONITORING_MIGRATIONS);
      await ruleStore.migrate(DRIFT_COMPONENT, DRIFT_MIGRATIONS);
      drift = createDriftEngine(driftStore, { baselines: createBaselineStore(ruleStore), clock: store.clock });
      for (const warning of await drift.load()) logger.warn(warning);
      alerts = createAlertEngine(store, { rules: createRuleStore(ruleStore), drift });
      for (const warning of await alerts.load()) logger.warn(warning);
      const loaded = alerts.tenants().reduce((n, t) => n + alerts.listRules(t).length, 0);
      logger.info(
        { rules: loaded, store: ruleStore.kind },
        `alert rules: ${loaded} loaded from the ${ruleStore.kind} store`,
      );
    }
  } catch (error: unknown) {
    await closeStore();
    closeVerifier();
    cryptoClient?.close();
    throw error;
  }
  const board = createHealthBoard({
    targets: options.targets ?? [],
    credentials,
    intervalMs: config.healthInterval,
    timeoutMs: config.healthTimeout,
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    onChange: (h) =>
      logger.info(
        { target: h.name, address: h.address, status: pb.serviceHealthStatusToJSON(h.status), error: h.error },
        `health: ${h.name} is ${pb.serviceHealthStatusToJSON(h.status)}`,
      ),
  });
  const metrics = createPromMetrics();
  alerts.subscribe((tenant, a, change) => {
    if (change !== 'state') return;
    logger.info(
      { tenant, rule: a.ruleName, model: a.model, version: a.version, state: pb.alertStateToJSON(a.state) },
      `alert ${a.ruleName}: ${a.message}`,
    );
  });

  // Webhooks are signed with the tenant's key through crypto, with a token crypto issues per tenant.
  const signingClient = createClient(crypto.CryptoServiceClient, config.cryptoAddr, {
    ...(tls === undefined ? {} : { tls }),
  });
  let externalUrl = config.externalUrl ?? '';
  const notifier = createNotifier({
    sign: createCryptoSigner({
      client: signingClient,
      serviceToken: serviceTokenSource({
        token: config.serviceToken,
        home: config.home ?? '.quanta',
        variable: 'QUANTA_MONITORING_SERVICE_TOKEN',
      }),
    }),
    record: (tenant, alert, delivery) => alerts.recordDelivery(tenant, alert, delivery),
    externalUrl: () => externalUrl,
    timeoutMs: config.webhookTimeout,
    ...(options.webhooks?.retry === undefined ? {} : { retry: options.webhooks.retry }),
    ...(options.webhooks?.maxQueued === undefined ? {} : { maxQueued: options.webhooks.maxQueued }),
    logger: { warn: (o, m) => logger.warn(o, m), info: (o, m) => logger.info(o, m) },
  });
  alerts.subscribe((tenant, a, change) => {
    if (change !== 'state') return;
    // A resolve is told only of an alert that fired; a pending one that clears was never told.
    const fired = a.state === pb.AlertState.ALERT_STATE_FIRING;
    const resolved = a.state === pb.AlertState.ALERT_STATE_RESOLVED && a.firingTime !== undefined;
    if (!fired && !resolved) return;
    let rule: pb.AlertRule;
    try {
      // Listeners run inside the change, so a rule being deleted or redefined is still the old one.
      rule = alerts.getRule(tenant, a.ruleName);
    } catch {
      return;
    }
    if (rule.webhooks.length > 0) notifier.notify(tenant, a, rule);
  });

  const stopped = new AbortController();
  service.addService(
    pb.MonitoringServiceService,
    createMonitoringHandlers({
      store,
      alerts,
      board,
      drift,
      accept: (s) => {
        store.add(s);
        metrics.observe(s);
      },
      countIngest: (a, r) => metrics.countIngest(a, r),
      stopped: stopped.signal,
      auditStore: ruleStore,
    }),
    MONITORING_ACCESS,
  );

  let http: HttpServer;
  let port: number;
  let address: string;
  try {
    ({ port, address } = await service.start());
  } catch (error: unknown) {
    notifier.stop();
    signingClient.close();
    await closeStore();
    closeVerifier();
    cryptoClient?.close();
    throw error;
  }
  try {
    http = await startHttpServer({
      host: config.httpHost,
      port: config.httpPort,
      store,
      alerts,
      board,
      metrics,
      drift,
      authenticator,
      public: config.dashboardPublic,
      logger,
      limits: options.httpLimits,
      // Under TLS the HTTP listener serves HTTPS with the gRPC certificate, no client certificate asked.
      tls:
        config.tlsCert !== undefined && config.tlsKey !== undefined
          ? { certFile: config.tlsCert, keyFile: config.tlsKey }
          : undefined,
    });
  } catch (error: unknown) {
    await service.stop({ graceMs: 0 });
    notifier.stop();
    signingClient.close();
    await closeStore();
    throw error;
  }
  if (externalUrl === '') externalUrl = http.url;
  logger.info(
    { url: http.url, public: config.dashboardPublic, tls: config.tlsCert !== undefined },
    `dashboard and /metrics on ${http.url}`,
  );

  let timer: NodeJS.Timeout | undefined;
  if (options.timers !== false) {
    board.start();
    timer = setInterval(() => {
      alerts.evaluate();
      store.sweep();
      driftStore.sweep();
    }, EVALUATE_MS);
    timer.unref();
  }

  service.onStop(async () => {
    if (timer !== undefined) clearInterval(timer);
    notifier.stop();
    signingClient.close();
    board.stop();
    await http.close();
    closeVerifier();
    cryptoClient?.close();
    await closeStore();
  });
  // Ends the WatchAlerts streams, which never end by themselves, so that a stop does not spend
  // its grace period waiting for them.
  const endStreams = (): void => stopped.abort();
  const stop = (o?: { graceMs?: number }): Promise<void> => {
    endStreams();
    return service.stop(o);
  };
  return {
    port,
    address,
    http,
    service,
    store,
    ruleStore,
    alerts,
    board,
    metrics,
    notifier,
    drift,
    endStreams,
    stop,
  };
}
