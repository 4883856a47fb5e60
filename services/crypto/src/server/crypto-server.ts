import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createTokenIssuer, createTokenVerifier } from '@quanta/auth';
import type { TokenIssuer, TokenVerifier } from '@quanta/auth';
import { crypto as pb } from '@quanta/contracts';
import { createAuditor, createService } from '@quanta/service-kit';
import type { Authenticator, QuantaService } from '@quanta/service-kit';
import { openStore } from '@quanta/store';
import type { Store } from '@quanta/store';
import type { Telemetry } from '@quanta/telemetry';
import type { Logger } from 'pino';
import type { CryptoConfig } from '../config.js';
import { recordAudit } from '../core/audit.js';
import { createKeyManager, loadMasterKey } from '../core/index.js';
import type { KeyManager } from '../core/index.js';
import { CRYPTO_ACCESS } from './access.js';
import { ensureAdminToken } from './admin-token.js';
import { createPayloadLimit } from './context.js';
import { createDataHandlers } from './handlers-data.js';
import { createKeyHandlers } from './handlers-keys.js';
import { createStreamHandlers } from './handlers-stream.js';
import { createTokenHandlers } from './handlers-tokens.js';
import { createRevocationStore } from './revocation-store.js';
import { followSigningKeys, scheduleSigningKeyRotation } from './signing-key-rotation.js';
import { createTokenAdmin } from './token-admin.js';
import type { TokenAdmin } from './token-admin.js';
import { createStoredSigningKeyStore } from './token-key-store.js';

/** Audit operation names of the token RPCs, in the style of the key operations (`encrypt`, `rotate`). */
const TOKEN_OPERATIONS: Readonly<Record<string, string>> = {
  IssueToken: 'issue-token',
  RevokeToken: 'revoke-token',
  RotateSigningKey: 'rotate-signing-key',
};

export interface CryptoServerOptions {
  telemetry?: Telemetry;
  logger?: Logger;
  env?: NodeJS.ProcessEnv;
  /** An open store to use (tests); otherwise one is opened from the config and closed on stop. */
  store?: Store;
  /** The master key (tests); otherwise from QUANTA_MASTER_KEY(_FILE) or the dev key in $QUANTA_HOME. */
  masterKey?: Buffer;
  /** Milliseconds since the epoch, for token times (tests). */
  clock?: () => number;
}

export interface CryptoServer {
  readonly port: number;
  readonly address: string;
  readonly service: QuantaService;
  readonly keys: KeyManager;
  readonly issuer: TokenIssuer;
  /** Checks tokens locally: this service holds the signing keys and the revocations. */
  readonly authenticator: TokenVerifier;
  /** Issue, revoke, rotate the signing key. */
  readonly tokens: TokenAdmin;
  readonly adminTokenPath: string;
  stop(options?: { graceMs?: number }): Promise<void>;
}

/** Opens the store, the key engine and the token issuer, and serves CryptoService. */
export async function startCryptoServer(
  config: CryptoConfig,
  options: CryptoServerOptions = {},
): Promise<CryptoServer> {
  await mkdir(config.home, { recursive: true, mode: 0o700 });
  // The authenticator needs the issuer, which needs the store: the service gets it through this.
  let verifier: Authenticator | undefined;
  const tls =
    config.tlsCert === undefined || config.tlsKey === undefined
      ? undefined
      : {
          certFile: config.tlsCert,
          keyFile: config.tlsKey,
          ...(config.tlsCa === undefined ? {} : { caFile: config.tlsCa, requireClientCert: true }),
        };
  const service = createService({
    name: 'crypto',
    host: config.host,
    port: config.port,
    maxReceiveMessageLength: config.maxMessageBytes,
    ...(options.telemetry === undefined ? {} : { telemetry: options.telemetry }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
    ...(tls === undefined ? {} : { tls }),
    authenticator: (metadata) => {
      if (verifier === undefined) throw new Error('crypto service: a call arrived before start');
      return verifier(metadata);
    },
  });
  const logger = service.logger;

  const ownStore = options.store === undefined;
  const store =
    options.store ??
    (await openStore(
      config.databaseUrl === undefined ? { dataDir: join(config.home, 'db') } : { url: config.databaseUrl },
    ));
  try {
    const masterKey =
      options.masterKey ??
      loadMasterKey({
        env: options.env ?? process.env,
        home: config.home,
        logger: { warn: (msg) => logger.warn(msg) },
      });
    const keys = await createKeyManager({
      store,
      masterKey,
      ...(options.clock === undefined ? {} : { clock: () => new Date(options.clock!()) }),
    });
    const clock = options.clock ?? Date.now;
    const issuer = await createTokenIssuer({
      store: await createStoredSigningKeyStore(store, masterKey),
      maxTtlSeconds: Math.max(1, Math.floor((config.maxTokenTtl ?? 365 * 24 * 3600_000) / 1000)),
      clock,
    });
    const revocations = await createRevocationStore(store);
    const admin = createTokenAdmin({
      issuer,
      revocations,
      afterRevoke: () => authenticator.refreshRevocations(),
      clock,
      logger,
    });
    // The keys and revocations are in this service's store. The issuer's own keys are in memory, so
    // every unknown kid looks again; it reads the store again too (a key another replica made), at
    // most once a second. RevokeToken refreshes the revocations at once, the poll covers other replicas.
    let lastReload = Number.NEGATIVE_INFINITY;
    const authenticator = createTokenVerifier({
      fetchJwks: async () => {
        if (Date.now() - lastReload >= 1000) {
          lastReload = Date.now();
          await issuer.reload();
        }
        return issuer.jwks();
      },
      fetchRevocations: async (known) => {
        const list = await admin.revocations(known);
        return list.unchanged
          ? { unchanged: true, version: list.version }
          : { unchanged: false, version: list.version, revocations: list.revocations };
      },
      minRefreshIntervalMs: 0,
      logger,
      clock,
    });
    service.onStop(() => authenticator.close());
    verifier = authenticator;
    await authenticator.refreshRevocations();
    const rotation = scheduleSigningKeyRotation({
      admin,
      issuer,
      periodMs: config.signingKeyRotationPeriod,
      clock,
      logger,
    });
    service.onStop(() => rotation.stop());
    const following = followSigningKeys(issuer, logger);
    service.onStop(() => following.stop());
    const adminTokenPath = await ensureAdminToken({
      home: config.home,
      issuer,
      verify: authenticator,
      ttlSeconds: Math.max(1, Math.min(issuer.maxTtlSeconds, Math.round(config.adminTokenTtl / 1000))),
      logger,
    });

    const limit = createPayloadLimit(config.maxPayloadBytes);
    const implementation: pb.CryptoServiceServer = {
      ...createKeyHandlers(keys),
      ...createDataHandlers(keys, limit),
      ...createStreamHandlers(keys),
      // Token and signing-key changes join the key audit (crypto_audit): `key_name` names what changed.
      ...createTokenHandlers(
        issuer,
        admin,
        createAuditor((e) =>
          recordAudit(store, {
            tenant: e.tenant,
            subject: e.subject,
            keyName: e.resource,
            version: 0,
            operation: TOKEN_OPERATIONS[e.action] ?? e.action,
            outcome: e.outcome,
            errorCode: e.errorCode,
            traceId: e.traceId,
            time: e.time,
          }),
        ),
      ),
    };
    service.addService(pb.CryptoServiceService, implementation, CRYPTO_ACCESS);
    if (ownStore) service.onStop(() => store.close());
    const { port, address } = await service.start();
    return {
      port,
      address,
      service,
      keys,
      issuer,
      authenticator,
      tokens: admin,
      adminTokenPath,
      stop: (o) => service.stop(o),
    };
  } catch (error: unknown) {
    if (ownStore) await store.close();
    throw error;
  }
}
