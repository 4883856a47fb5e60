import type { ConfigOf, OptionalKey } from './config.js';
import { fields } from './config.js';
import type { ServiceOptions } from './service.js';
import type { ClientTlsOptions } from './tls.js';
import { DEFAULT_FLOW_CONTROL_WINDOW, HTTP2_MAX_WINDOW } from './flow-control.js';
import { DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH, DEFAULT_SHUTDOWN_GRACE_MS } from './service.js';

const optionalKey: OptionalKey = { optionalKey: true };

/**
 * How a service calls the others (registry → crypto, monitoring → health targets, ...): the same
 * unprefixed `QUANTA_CLIENT_TLS*` variables as the quanta CLI, so one shell setup serves both.
 * Their keys may be left out of configs written by hand: plaintext then, as before.
 */
export function clientTlsFields() {
  return {
    clientTls: {
      ...fields.bool({
        env: 'QUANTA_CLIENT_TLS',
        doc: 'call the other services over TLS, trusting the system roots (implied by --client-tls-ca/-cert)',
      }),
      ...optionalKey,
    },
    clientTlsCa: {
      ...fields.string({
        env: 'QUANTA_CLIENT_TLS_CA',
        doc: "PEM CA file that the other services' certificates must chain to; implies TLS",
      }),
      ...optionalKey,
    },
    clientTlsCert: {
      ...fields.string({
        env: 'QUANTA_CLIENT_TLS_CERT',
        doc: 'PEM client certificate presented to the other services (mTLS; with --client-tls-key)',
      }),
      ...optionalKey,
    },
    clientTlsKey: {
      ...fields.string({ env: 'QUANTA_CLIENT_TLS_KEY', doc: 'PEM private key of --client-tls-cert' }),
      ...optionalKey,
    },
  };
}

export type ClientTlsConfig = ConfigOf<ReturnType<typeof clientTlsFields>>;

/** The TLS of outgoing calls: undefined (plaintext) unless --client-tls or a client TLS file is set. */
export function clientTlsFromConfig(config: ClientTlsConfig): ClientTlsOptions | undefined {
  const files: { caFile?: string; certFile?: string; keyFile?: string } = {};
  if (config.clientTlsCa !== undefined) files.caFile = config.clientTlsCa;
  if (config.clientTlsCert !== undefined) files.certFile = config.clientTlsCert;
  if (config.clientTlsKey !== undefined) files.keyFile = config.clientTlsKey;
  return config.clientTls === true || Object.keys(files).length > 0 ? files : undefined;
}

/**
 * The fields every service shares (listen address, TLS, message size, shutdown grace), read from
 * `<prefix>_HOST`, `<prefix>_PORT`, ... e.g. prefix `QUANTA_CRYPTO`, and the TLS of its outgoing
 * calls (`QUANTA_CLIENT_TLS*`, see clientTlsFields). Spread them into a service's schema.
 */
export function serviceConfigFields(options: { envPrefix: string; port: number; maxReceiveMessageLength?: number }) {
  const p = options.envPrefix;
  return {
    host: fields.string({
      env: `${p}_HOST`,
      default: '127.0.0.1',
      doc: 'address to listen on (0.0.0.0 or :: for every interface)',
    }),
    port: fields.port({ env: `${p}_PORT`, default: options.port, doc: 'gRPC port (0 picks a free one)' }),
    tlsCert: fields.string({
      env: `${p}_TLS_CERT`,
      doc: 'PEM certificate chain file; serves TLS when set (with --tls-key)',
    }),
    tlsKey: fields.string({ env: `${p}_TLS_KEY`, doc: 'PEM private key file of --tls-cert' }),
    tlsCa: fields.string({ env: `${p}_TLS_CA`, doc: 'PEM CA file that client certificates must chain to (mTLS)' }),
    tlsRequireClientCert: fields.bool({
      env: `${p}_TLS_REQUIRE_CLIENT_CERT`,
      default: false,
      doc: 'refuse clients without a certificate from --tls-ca (mTLS)',
    }),
    ...clientTlsFields(),
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
    flowControlWindow: {
      ...fields.int({
        env: `${p}_FLOW_CONTROL_WINDOW`,
        default: DEFAULT_FLOW_CONTROL_WINDOW,
        min: 0,
        max: HTTP2_MAX_WINDOW,
        doc:
          "HTTP/2 receive window of each stream, in bytes (the connection's is 4x); " +
          "65535 or less keeps HTTP/2's 64 KiB",
      }),
      ...optionalKey,
    },
  };
}

export type ServiceConfig = ConfigOf<ReturnType<typeof serviceConfigFields>>;

/** Cross-field checks for `loadConfig(..., { check })`: TLS files come as pairs, mTLS needs a CA. */
export function checkServiceConfig(config: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const has = (key: string): boolean => config[key] !== undefined;
  if (has('tlsCert') !== has('tlsKey')) problems.push('--tls-cert and --tls-key go together: give both or neither');
  if (config['tlsRequireClientCert'] === true && !has('tlsCa')) {
    problems.push('--tls-require-client-cert needs --tls-ca, the CA that client certificates are checked against');
  }
  if (has('tlsCa') && !has('tlsCert'))
    problems.push('--tls-ca needs --tls-cert and --tls-key (it only applies to a TLS server)');
  if (has('clientTlsCert') !== has('clientTlsKey')) {
    problems.push(
      '--client-tls-cert and --client-tls-key (QUANTA_CLIENT_TLS_CERT, QUANTA_CLIENT_TLS_KEY) ' +
        'go together: give both or neither',
    );
  }
  return problems;
}

/** The createService options that the shared fields decide. */
export function serviceOptionsFromConfig(
  config: ServiceConfig,
): Pick<ServiceOptions, 'host' | 'port' | 'tls' | 'maxReceiveMessageLength' | 'shutdownGraceMs' | 'flowControlWindow'> {
  return {
    host: config.host,
    port: config.port,
    maxReceiveMessageLength: config.maxReceiveMessageBytes,
    shutdownGraceMs: config.shutdownGrace,
    ...(config.flowControlWindow === undefined ? {} : { flowControlWindow: config.flowControlWindow }),
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
