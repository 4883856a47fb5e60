import type { ConfigOf } from './config.js';
import { fields } from './config.js';
import type { ServiceOptions } from './service.js';
import { DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH, DEFAULT_SHUTDOWN_GRACE_MS } from './service.js';

/**
 * The fields every service shares (listen address, TLS, message size, shutdown grace), read from
 * `<prefix>_HOST`, `<prefix>_PORT`, ... e.g. prefix `QUANTA_CRYPTO`. Spread them into a service's schema.
 */
export function serviceConfigFields(options: { envPrefix: string; port: number; maxReceiveMessageLength?: number }) {
  const p = options.envPrefix;
  return {
    host: fields.string({ env: `${p}_HOST`, default: '127.0.0.1', doc: 'address to listen on (0.0.0.0 or :: for every interface)' }),
    port: fields.port({ env: `${p}_PORT`, default: options.port, doc: 'gRPC port (0 picks a free one)' }),
    tlsCert: fields.string({ env: `${p}_TLS_CERT`, doc: 'PEM certificate chain file; serves TLS when set (with --tls-key)' }),
    tlsKey: fields.string({ env: `${p}_TLS_KEY`, doc: 'PEM private key file of --tls-cert' }),
    tlsCa: fields.string({ env: `${p}_TLS_CA`, doc: 'PEM CA file that client certificates must chain to (mTLS)' }),
    tlsRequireClientCert: fields.bool({
      env: `${p}_TLS_REQUIRE_CLIENT_CERT`,
      default: false,
      doc: 'refuse clients without a certificate from --tls-ca (mTLS)',
    }),
    maxReceiveMessageBytes: fields.int({
      env: `${p}_MAX_RECEIVE_MESSAGE_BYTES`,
      default: options.maxReceiveMessageLength ?? DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH,
      min: 1024,
      max: 2 ** 31 - 1,
      doc: 'largest request message accepted, in bytes',
    }),
    shutdownGrace: fields.duration({
      env: `${p}_SHUTDOWN_GRACE`,
      default: DEFAULT_SHUTDOWN_GRACE_MS,
      doc: 'how long in-flight calls may run after SIGTERM before they are cancelled',
    }),
  };
}

export type ServiceConfig = ConfigOf<ReturnType<typeof serviceConfigFields>>;

/** Cross-field checks for `loadConfig(..., { check })`: TLS files come as a pair, mTLS needs a CA. */
export function checkServiceConfig(config: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const has = (key: string): boolean => config[key] !== undefined;
  if (has('tlsCert') !== has('tlsKey')) problems.push('--tls-cert and --tls-key go together: give both or neither');
  if (config['tlsRequireClientCert'] === true && !has('tlsCa')) {
    problems.push('--tls-require-client-cert needs --tls-ca, the CA that client certificates are checked against');
  }
  if (has('tlsCa') && !has('tlsCert')) problems.push('--tls-ca needs --tls-cert and --tls-key (it only applies to a TLS server)');
  return problems;
}

/** The createService options that the shared fields decide. */
export function serviceOptionsFromConfig(
  config: ServiceConfig,
): Pick<ServiceOptions, 'host' | 'port' | 'tls' | 'maxReceiveMessageLength' | 'shutdownGraceMs'> {
  return {
    host: config.host,
    port: config.port,
    maxReceiveMessageLength: config.maxReceiveMessageBytes,
    shutdownGraceMs: config.shutdownGrace,
    ...(config.tlsCert !== undefined && config.tlsKey !== undefined
      ? {
          tls: {
            certFile: config.tlsCert,
            keyFile: config.tlsKey,
            ...(config.tlsCa === undefined ? {} : { caFile: config.tlsCa }),
            requireClientCert: config.tlsRequireClientCert,
          },
        }
      : {}),
  };
}
