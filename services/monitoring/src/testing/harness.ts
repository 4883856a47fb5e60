import * as grpc from '@grpc/grpc-js';
import { createMemorySigningKeyStore, createTokenIssuer, createTokenVerifier } from '@quanta/auth';
import type { TokenIssuer } from '@quanta/auth';
import { monitoring as pb, unaryCaller, type RequestOf, type ResponseOf, type UnaryMethod } from '@quanta/contracts';
import { openStore } from '@quanta/store';
import type { HttpLimits } from '@quanta/service-kit';
import { bearer, failure } from '@quanta/service-kit/testing';
import type { Store } from '@quanta/store';
import { pino } from 'pino';
import { monitoringConfig, type HealthTarget, type MonitoringConfig } from '../config.js';
import type { MonitoringServer, MonitoringServerOptions } from '../server/monitoring-server.js';
import { startMonitoringServer } from '../server/monitoring-server.js';

export interface Harness {
  server: MonitoringServer;
  client: pb.MonitoringServiceClient;
  issuer: TokenIssuer;
  /** The monitoring clock (windows, alerts, health times); tokens use the real one. */
  now: { ms: number };
  token(tenant: string, scopes: string[], subject?: string): Promise<string>;
  /** Stops the server and starts a new one over the same rule store (or home), issuer and clock. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

/** A fixed start, so that tests see whole seconds: 2026-01-01T12:00:00Z. */
export const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);

export function testConfig(overrides: Partial<MonitoringConfig> = {}): MonitoringConfig {
  return monitoringConfig({
    port: 0,
    shutdownGrace: 1000,
    httpPort: 0,
    cryptoAddr: '127.0.0.1:1',
    ...overrides,
  });
}

/**
 * A real monitoring server on 127.0.0.1:0 checking real EdDSA tokens (from an in-memory issuer,
 * as the crypto service issues them), with a clock the test moves and no timers of its own
 * unless asked. Its alert rules go to `store` when given (the test closes it), else to
 * `config.home` when `ownStore` is set (the server opens and closes it there), else to an
 * in-memory embedded store the harness closes.
 */
export async function startHarness(
  options: {
    config?: Partial<MonitoringConfig>;
    targets?: HealthTarget[];
    timers?: boolean;
    realClock?: boolean;
    issuer?: TokenIssuer;
    store?: Store;
    ownStore?: boolean;
    httpLimits?: HttpLimits;
    /** Webhook deliveries (a faster retry schedule). */
    webhooks?: MonitoringServerOptions['webhooks'];
  } = {},
): Promise<Harness> {
  const issuer = options.issuer ?? (await createTokenIssuer({ store: createMemorySigningKeyStore() }));
  const now = { ms: T0 };
  const memory = options.store === undefined && options.ownStore !== true ? await openStore({}) : undefined;
  const store = options.store ?? memory;
  const start = (): Promise<MonitoringServer> =>
    startMonitoringServer(testConfig(options.config), {
      authenticator: createTokenVerifier({ fetchJwks: () => issuer.jwks(), minRefreshIntervalMs: 0 }),
      ...(options.realClock === true ? {} : { clock: () => now.ms }),
      timers: options.timers ?? false,
      targets: options.targets ?? [],
      logger: pino({ level: process.env['QUANTA_LOG_LEVEL'] ?? 'silent' }),
      ...(store === undefined ? {} : { store }),
      ...(options.httpLimits === undefined ? {} : { httpLimits: options.httpLimits }),
      ...(options.webhooks === undefined ? {} : { webhooks: options.webhooks }),
    });
  let server: MonitoringServer;
  try {
    server = await start();
  } catch (error: unknown) {
    await memory?.close();
    throw error;
  }
  const connect = (s: MonitoringServer) =>
    new pb.MonitoringServiceClient(`127.0.0.1:${s.port}`, grpc.credentials.createInsecure());
  const harness: Harness = {
    server,
    client: connect(server),
    issuer,
    now,
    token: (tenant, scopes, subject = `${tenant}-user`) => issuer.issue({ tenant, subject, scopes, ttlSeconds: 3600 }),
    async restart() {
      harness.client.close();
      await harness.server.stop({ graceMs: 1000 });
      harness.server = await start();
      harness.client = connect(harness.server);
    },
    async close() {
      harness.client.close();
      await harness.server.stop({ graceMs: 1000 });
      await memory?.close();
    },
  };
  return harness;
}

export { bearer, failure };

/** Sends batches over one Ingest stream and returns the reply. */
export function ingest(
  client: pb.MonitoringServiceClient,
  token: string | undefined,
  batches: pb.InferenceRecord[][],
): Promise<pb.IngestResponse> {
  return new Promise((resolve, reject) => {
    const stream = client.ingest(bearer(token), (error, response) => (error ? reject(error) : resolve(response)));
    for (const records of batches) stream.write({ records, inputSummaries: [] });
    stream.end();
  });
}

type Definition = typeof pb.MonitoringServiceService;

/** Calls a unary method by name with a bearer token; rejects with the grpc ServiceError. */
export function call<K extends UnaryMethod<Definition>>(
  client: pb.MonitoringServiceClient,
  method: K,
  request: RequestOf<Definition, K>,
  token?: string,
): Promise<ResponseOf<Definition, K>> {
  return unaryCaller(client, pb.MonitoringServiceService)(method, request, { metadata: bearer(token) });
}

/** A valid record at `timeMs`; override what the test is about. */
export function record(timeMs: number, over: Partial<pb.InferenceRecord> = {}): pb.InferenceRecord {
  return {
    tenant: 'acme',
    model: 'cifar',
    version: '1',
    deployment: 'cifar-prod',
    requestId: 'r',
    traceId: '',
    spanId: '',
    statusCode: 0,
    queueUs: 100n,
    computeUs: 900n,
    totalUs: 1000n,
    batchSize: 1,
    bytesIn: 100n,
    bytesOut: 40n,
    route: '',
    cacheHit: false,
    cacheMiss: false,
    time: new Date(timeMs),
    ...over,
  };
}

export const window = (seconds: number): { $case: 'window'; value: { seconds: bigint; nanos: number } } => ({
  $case: 'window',
  value: { seconds: BigInt(seconds), nanos: 0 },
});

/** A protobuf duration of whole seconds. */
export const seconds = (n: number): { seconds: bigint; nanos: number } => ({ seconds: BigInt(n), nanos: 0 });

/** An alert rule on cifar's p99 latency above 5 ms over 10 s, held 5 s; `over` replaces fields. */
export function alertRule(over: Partial<pb.AlertRule>): pb.AlertRule {
  return {
    name: 'slow',
    model: 'cifar',
    version: '',
    metric: pb.AlertMetric.ALERT_METRIC_P99_LATENCY_US,
    comparison: pb.AlertComparison.ALERT_COMPARISON_UNSPECIFIED,
    threshold: 5000,
    window: seconds(10),
    forDuration: seconds(5),
    description: '',
    input: '',
    webhooks: [],
    ...over,
  };
}
