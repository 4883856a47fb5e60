import { checkServiceConfig, fields, loadConfig, loadConfigOrExit, serviceConfigFields } from '@quanta/service-kit';
import type { ConfigOf, ConfigSource } from '@quanta/service-kit';
import { BLOB_URL_FORMS, parseBlobUrl } from './core/blob-url.js';

/** The registry's settings: flags (`--port 9001`) or QUANTA_* environment variables. */
export const registryConfigSchema = {
  home: fields.string({
    env: 'QUANTA_HOME',
    default: '.quanta',
    doc: 'data folder: blobs in $QUANTA_HOME/blobs, embedded database in $QUANTA_HOME/registry-db',
  }),
  ...serviceConfigFields({ envPrefix: 'QUANTA_REGISTRY', port: 9001, maxReceiveMessageLength: 8 * 1024 * 1024 }),
  blobUrl: fields.string({
    env: 'QUANTA_BLOB_URL',
    doc:
      `where sealed model files are: ${BLOB_URL_FORMS} (credentials from AWS_ACCESS_KEY_ID / ` +
      `AWS_SECRET_ACCESS_KEY); default: the folder $QUANTA_HOME/blobs`,
  }),
  databaseUrl: fields.string({
    env: 'QUANTA_DATABASE_URL',
    doc: 'postgres://… for PostgreSQL; default: embedded database in $QUANTA_HOME/registry-db',
  }),
  cryptoAddr: fields.string({
    env: 'QUANTA_CRYPTO_ADDR',
    default: '127.0.0.1:9002',
    doc: 'crypto service address: data keys and token verification keys',
  }),
  serviceToken: fields.string({
    env: 'QUANTA_SERVICE_TOKEN',
    doc:
      'token for calls to the crypto service (scopes keys:use, and keys:admin to create the registry key); ' +
      'default: $QUANTA_HOME/admin.token',
  }),
  keyName: fields.string({
    env: 'QUANTA_REGISTRY_KEY',
    default: 'model-registry',
    doc: 'the crypto key that wraps the data keys of model files (created when missing)',
  }),
  maxUploadBytes: fields.int({
    env: 'QUANTA_REGISTRY_MAX_UPLOAD_BYTES',
    default: 2 * 1024 * 1024 * 1024,
    min: 1,
    doc: 'largest model file accepted, in bytes',
  }),
};

export type RegistryConfig = ConfigOf<typeof registryConfigSchema>;

/** The service's checks, and QUANTA_BLOB_URL's form (whether the bucket is there is checked at start). */
function checkRegistryConfig(config: Record<string, unknown>): string[] {
  const problems = checkServiceConfig(config);
  const blobUrl = config['blobUrl'];
  if (typeof blobUrl === 'string') {
    try {
      parseBlobUrl(blobUrl);
    } catch (error: unknown) {
      problems.push(`QUANTA_BLOB_URL: "${blobUrl}" ${(error as Error).message}`);
    }
  }
  return problems;
}

/** Throws service-kit's ConfigError listing every problem. */
export function loadRegistryConfig(source: ConfigSource = {}): RegistryConfig {
  return loadConfig(registryConfigSchema, { check: checkRegistryConfig, ...source });
}

/** For main: help on --help, a clear message and exit 2 on bad settings. */
export function loadRegistryConfigOrExit(source: ConfigSource = {}): RegistryConfig {
  return loadConfigOrExit(registryConfigSchema, { program: 'model-registry', check: checkRegistryConfig, ...source });
}
