import { fields, loadConfig, loadConfigOrExit } from '@quanta/service-kit';
import type { ConfigSource } from '@quanta/service-kit';

/** The crypto service's settings: flags (`--port 9002`) or QUANTA_* environment variables. */
export const cryptoConfigSchema = {
  home: fields.string({
    env: 'QUANTA_HOME',
    default: '.quanta',
    doc: 'data and credentials folder (embedded database, dev master key, admin token)',
  }),
  host: fields.string({
    env: 'QUANTA_CRYPTO_HOST',
    default: '127.0.0.1',
    doc: 'listen address (0.0.0.0 in a container)',
  }),
  port: fields.port({ env: 'QUANTA_CRYPTO_PORT', default: 9002, doc: 'gRPC port' }),
  databaseUrl: fields.string({
    env: 'QUANTA_DATABASE_URL',
    doc: 'postgres://… for PostgreSQL; default: embedded database in $QUANTA_HOME/db',
  }),
  maxPayloadBytes: fields.int({
    env: 'QUANTA_CRYPTO_MAX_PAYLOAD_BYTES',
    default: 2 * 1024 * 1024,
    min: 1024,
    max: 48 * 1024 * 1024,
    doc:
      'largest payload of a unary call (larger ones go through EncryptStream/DecryptStream); 2 MiB keeps every ' +
      'reply under the 4 MiB default message limit of gRPC clients',
  }),
  maxMessageBytes: fields.int({
    env: 'QUANTA_CRYPTO_MAX_MESSAGE_BYTES',
    default: 64 * 1024 * 1024,
    min: 1024 * 1024,
    max: 1024 * 1024 * 1024,
    doc:
      'largest gRPC message accepted; payloads between the payload limit and this get a RESOURCE_EXHAUSTED that ' +
      'names the streaming RPC',
  }),
  adminTokenTtl: fields.duration({
    env: 'QUANTA_ADMIN_TOKEN_TTL',
    default: 30 * 24 * 3600 * 1000,
    doc: 'lifetime of the admin token written on first start (at most --max-token-ttl)',
  }),
  maxTokenTtl: fields.duration({
    env: 'QUANTA_CRYPTO_MAX_TOKEN_TTL',
    default: 365 * 24 * 3600 * 1000,
    doc:
      'the longest lifetime of an access token; also how long a replaced signing key stays in the JWKS, and a ' +
      'revocation by jti is kept',
  }),
  signingKeyRotationPeriod: fields.duration({
    env: 'QUANTA_CRYPTO_SIGNING_KEY_ROTATION_PERIOD',
    doc: 'rotate the token signing key when it is this old (like 30d); default: only on RotateSigningKey',
  }),
  tlsCert: fields.string({
    env: 'QUANTA_TLS_CERT',
    doc: 'server certificate (PEM); TLS is off without it (also QUANTA_CRYPTO_TLS_CERT)',
  }),
  tlsKey: fields.string({ env: 'QUANTA_TLS_KEY', doc: 'server private key (PEM) (also QUANTA_CRYPTO_TLS_KEY)' }),
  tlsCa: fields.string({
    env: 'QUANTA_TLS_CA',
    doc: 'CA to check client certificates against; requires them (mTLS) (also QUANTA_CRYPTO_TLS_CA)',
  }),
};

/** The loaded settings; fields with defaults are always present. */
export interface CryptoConfig {
  home: string;
  host: string;
  port: number;
  databaseUrl: string | undefined;
  maxPayloadBytes: number;
  maxMessageBytes: number;
  /** Milliseconds. */
  adminTokenTtl: number;
  /** Milliseconds; default one year. */
  maxTokenTtl?: number;
  /** Milliseconds; undefined: rotate on request only. */
  signingKeyRotationPeriod?: number | undefined;
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  tlsCa: string | undefined;
}

/**
 * QUANTA_CRYPTO_TLS_CERT|KEY|CA, named like the other services' (QUANTA_<SERVICE>_TLS_*), win over
 * the older QUANTA_TLS_* names, which keep working.
 */
function withServiceTlsNames(source: ConfigSource | undefined): ConfigSource {
  const env = { ...(source?.env ?? process.env) };
  for (const part of ['CERT', 'KEY', 'CA']) {
    const value = env[`QUANTA_CRYPTO_TLS_${part}`];
    if (value !== undefined) env[`QUANTA_TLS_${part}`] = value;
  }
  return { ...source, env };
}

/** Throws service-kit's ConfigError listing every problem. */
export function loadCryptoConfig(source?: ConfigSource): CryptoConfig {
  return loadConfig(cryptoConfigSchema, withServiceTlsNames(source));
}

/**
 * A whole config from the schema's defaults with `overrides` on top, for a server started
 * in-process (tests, benchmarks): no flags or environment are read, and a field added to the
 * schema reaches every such caller with its default.
 */
export function cryptoConfig(overrides: Partial<CryptoConfig> = {}): CryptoConfig {
  return { ...loadCryptoConfig({ argv: [], env: {} }), ...overrides };
}

/** For main: help on --help, a clear message and exit 2 on bad settings. */
export function loadCryptoConfigOrExit(source?: ConfigSource): CryptoConfig {
  return loadConfigOrExit(cryptoConfigSchema, { program: 'crypto', ...withServiceTlsNames(source) });
}
