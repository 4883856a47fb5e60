import { checkServiceConfig, fields, loadConfig, loadConfigOrExit, serviceConfigFields } from '@quanta/service-kit';
import type { ConfigOf, ConfigSource, OptionalKey } from '@quanta/service-kit';

/**
 * `home` and `databaseUrl` may be absent: a config written by hand without either (a benchmark, a
 * test) keeps its alert rules in memory only; loadConfig always gives `home`.
 */
const optionalKey: OptionalKey = { optionalKey: true };

/** The monitoring service's settings: flags (`--port 9003`) or QUANTA_* environment variables. */
export const monitoringConfigSchema = {
  home: {
    ...fields.string({
      env: 'QUANTA_HOME',
      default: '.quanta',
      doc: 'data folder: alert rules in the embedded database $QUANTA_HOME/monitoring-db',
    }),
    ...optionalKey,
  },
  ...serviceConfigFields({ envPrefix: 'QUANTA_MONITORING', port: 9003 }),
  databaseUrl: {
    ...fields.string({
      env: 'QUANTA_DATABASE_URL',
      doc:
        'postgres://… to keep alert rules in PostgreSQL; ' +
        'default: the embedded database in $QUANTA_HOME/monitoring-db',
    }),
    ...optionalKey,
  },
  httpHost: fields.string({
    env: 'QUANTA_MONITORING_HTTP_HOST',
    default: '127.0.0.1',
    doc: 'address of the HTTP listener (/metrics, dashboard)',
  }),
  httpPort: fields.port({
    env: 'QUANTA_MONITORING_HTTP_PORT',
    default: 9400,
    doc: 'HTTP port of /metrics and the dashboard (0 picks a free one)',
  }),
  horizon: fields.duration({
    env: 'QUANTA_MONITORING_HORIZON',
    default: 3_600_000,
    doc: 'how long 1-second buckets are kept',
  }),
  cryptoAddr: fields.string({
    env: 'QUANTA_CRYPTO_ADDR',
    default: '127.0.0.1:9002',
    doc: 'crypto service, whose public keys check tokens and whose tenant keys sign webhook bodies',
  }),
  serviceToken: fields.string({
    env: 'QUANTA_MONITORING_SERVICE_TOKEN',
    doc:
      'token for calls to crypto that sign alert webhooks (scope admin: it issues each tenant a short ' +
      'keys:use token); default: $QUANTA_HOME/admin.token',
  }),
  externalUrl: fields.string({
    env: 'QUANTA_MONITORING_EXTERNAL_URL',
    doc: "the dashboard's URL as webhook receivers should link to it; default: the HTTP listener's",
  }),
  webhookTimeout: fields.duration({
    env: 'QUANTA_MONITORING_WEBHOOK_TIMEOUT',
    default: 10_000,
    doc: 'deadline of one webhook POST, answer included',
  }),
  targets: fields.list({
    env: 'QUANTA_MONITORING_TARGETS',
    doc:
      'services the health board checks, as name=host:port,...; ' +
      'default: crypto, registry and inference from QUANTA_<NAME>_ADDR or their default ports',
  }),
  healthInterval: fields.duration({
    env: 'QUANTA_MONITORING_HEALTH_INTERVAL',
    default: 5000,
    doc: 'time between health checks',
  }),
  healthTimeout: fields.duration({
    env: 'QUANTA_MONITORING_HEALTH_TIMEOUT',
    default: 2000,
    doc: 'deadline of one health check',
  }),
  dashboardPublic: fields.bool({
    env: 'QUANTA_MONITORING_DASHBOARD_PUBLIC',
    default: false,
    doc: "serve every tenant's data on the HTTP listener without a token (only allowed on a loopback address)",
  }),
};

export type MonitoringConfig = ConfigOf<typeof monitoringConfigSchema>;

export interface HealthTarget {
  readonly name: string;
  readonly address: string;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

function checkMonitoringConfig(config: Record<string, unknown>): string[] {
  const problems = checkServiceConfig(config);
  if (config['dashboardPublic'] === true && !LOOPBACK.has(String(config['httpHost']))) {
    problems.push(
      `QUANTA_MONITORING_DASHBOARD_PUBLIC needs a loopback --http-host (127.0.0.1 or ::1), ` +
        `not ${String(config['httpHost'])}: it shows every tenant's data without a token`,
    );
  }
  const external = config['externalUrl'];
  if (typeof external === 'string' && !/^https?:\/\/[^/]/.test(external))
    problems.push(`QUANTA_MONITORING_EXTERNAL_URL must be an http or https URL, not "${external}"`);
  if (Number(config['webhookTimeout']) < 1)
    problems.push(`--webhook-timeout must be positive (got ${Number(config['webhookTimeout'])} ms)`);
  const horizon = Number(config['horizon']);
  if (horizon < 1000 || horizon % 1000 !== 0)
    problems.push(`--horizon must be a whole number of seconds, at least 1s (got ${horizon} ms)`);
  for (const t of (config['targets'] as readonly string[] | undefined) ?? []) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*=\S+:\d+$/.test(t))
      problems.push(`QUANTA_MONITORING_TARGETS: "${t}" is not name=host:port`);
  }
  return problems;
}

/** The health board's targets: the configured list, or the other Quanta services as `npm start` runs them. */
export function healthTargets(config: MonitoringConfig, env: NodeJS.ProcessEnv = process.env): HealthTarget[] {
  if (config.targets !== undefined) {
    return config.targets.map((t) => {
      const at = t.indexOf('=');
      return { name: t.slice(0, at), address: t.slice(at + 1) };
    });
  }
  return [
    { name: 'crypto', address: env['QUANTA_CRYPTO_ADDR'] ?? '127.0.0.1:9002' },
    { name: 'inference', address: env['QUANTA_INFERENCE_ADDR'] ?? '127.0.0.1:8001' },
    { name: 'registry', address: env['QUANTA_REGISTRY_ADDR'] ?? '127.0.0.1:9001' },
  ];
}

/** Throws service-kit's ConfigError listing every problem. */
export function loadMonitoringConfig(source?: ConfigSource): MonitoringConfig {
  return loadConfig(monitoringConfigSchema, { check: checkMonitoringConfig, ...source });
}

/**
 * A whole config from the schema's defaults with `overrides` on top, for a server started
 * in-process (tests, benchmarks): no flags or environment are read, and a field added to the
 * schema reaches every such caller with its default.
 */
export function monitoringConfig(overrides: Partial<MonitoringConfig> = {}): MonitoringConfig {
  return { ...loadMonitoringConfig({ argv: [], env: {} }), ...overrides };
}

/** For main: help on --help, a clear message and exit 2 on bad settings. */
export function loadMonitoringConfigOrExit(source?: ConfigSource): MonitoringConfig {
  return loadConfigOrExit(monitoringConfigSchema, { program: 'monitoring', check: checkMonitoringConfig, ...source });
}
