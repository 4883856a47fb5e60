import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { crypto as cpb, registry as pb } from '@quanta/contracts';
import { openStore } from '@quanta/store';
import type { Store } from '@quanta/store';
import { pino } from 'pino';
import type { RegistryConfig } from '../config.js';
import { loadRegistryConfig } from '../config.js';
import { startRegistryServer } from '../server/registry-server.js';
import type { RegistryServer } from '../server/registry-server.js';
import type { Inspector } from '../server/inspector.js';
import type { ServiceProcess } from '@quanta/service-kit/testing';
import { startServiceProcess } from '@quanta/service-kit/testing';
import type { RequestOf, ResponseOf, UnaryName } from './rpc.js';
import { bearerMetadata, rpc } from './rpc.js';

export const PG_URL = process.env['QUANTA_TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

export type Backend = 'embedded' | 'postgres';

/** One crypto process for several harnesses (each crypto start costs seconds). */
export interface SharedCrypto {
  readonly process: ServiceProcess;
  readonly adminToken: string;
  close(): Promise<void>;
}

export async function startSharedCrypto(): Promise<SharedCrypto> {
  const home = await mkdtemp(join(tmpdir(), 'quanta-crypto-'));
  const process = await startServiceProcess('crypto', {
    QUANTA_HOME: home,
    QUANTA_CRYPTO_PORT: '0',
    QUANTA_DATABASE_URL: undefined,
  });
  const adminToken = (await readFile(join(home, 'admin.token'), 'utf8')).trim();
  return {
    process,
    adminToken,
    async close() {
      await process.stop();
      await rm(home, { recursive: true, force: true });
    },
  };
}

export interface Harness {
  readonly home: string;
  readonly crypto: ServiceProcess;
  registry: RegistryServer;
  client: pb.RegistryServiceClient;
  /** A token of the crypto service for a tenant with the given scopes. */
  token(tenant: string, scopes: string[], subject?: string): Promise<string>;
  /** Stops the registry (letting calls finish) and starts a new one on the same home and store. */
  restart(graceMs?: number): Promise<void>;
  close(): Promise<void>;
}

export function bearer(token: string | undefined): grpc.Metadata {
  return bearerMetadata(grpc.Metadata, token);
}

type Registry = typeof pb.RegistryServiceService;

/** Calls a unary RegistryService method by name with a bearer token. */
export function call<K extends UnaryName<Registry>>(
  client: pb.RegistryServiceClient,
  method: K,
  request: RequestOf<Registry, K>,
  token?: string,
): Promise<ResponseOf<Registry, K>> {
  return rpc(client, pb.RegistryServiceService, method, request, bearer(token));
}

async function openTestStore(backend: Backend): Promise<{ store: Store; drop(): Promise<void> }> {
  if (backend === 'embedded') {
    const store = await openStore({});
    return { store, drop: () => store.close() };
  }
  const schema = `test_registry_${randomBytes(6).toString('hex')}`;
  const store = await openStore({ url: PG_URL, schema });
  return {
    store,
    async drop() {
      await store.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await store.close();
    },
  };
}

/**
 * A real crypto service (its own process, as `npm start` runs it) and a registry in this
 * process on 127.0.0.1:0, sharing a fresh QUANTA_HOME; the registry's store is embedded (in
 * memory) or a fresh PostgreSQL schema.
 */
export async function startHarness(
  options: { backend?: Backend; config?: Partial<RegistryConfig>; crypto?: SharedCrypto; inspect?: Inspector } = {},
): Promise<Harness> {
  const home = await mkdtemp(join(tmpdir(), 'quanta-registry-'));
  // A crypto process of our own shares the registry's home, as under `npm start`; a shared one
  // lends its admin token as the service token.
  const crypto =
    options.crypto?.process ??
    (await startServiceProcess('crypto', {
      QUANTA_HOME: home,
      QUANTA_CRYPTO_PORT: '0',
      QUANTA_DATABASE_URL: undefined,
    }));
  const ownCrypto = options.crypto === undefined;
  const testStore = await openTestStore(options.backend ?? 'embedded');
  const store = testStore.store;
  const config: RegistryConfig = {
    ...loadRegistryConfig({
      argv: [],
      env: {
        QUANTA_HOME: home,
        QUANTA_REGISTRY_PORT: '0',
        QUANTA_CRYPTO_ADDR: crypto.address,
        ...(options.crypto === undefined ? {} : { QUANTA_SERVICE_TOKEN: options.crypto.adminToken }),
      },
    }),
    ...options.config,
  };
  const logger = pino({ level: process.env['QUANTA_LOG_LEVEL'] ?? 'silent' });
  const serverOptions = { store, logger, ...(options.inspect === undefined ? {} : { inspect: options.inspect }) };
  const cryptoClient = new cpb.CryptoServiceClient(crypto.address, grpc.credentials.createInsecure());
  const adminToken = options.crypto?.adminToken ?? (await readFile(join(home, 'admin.token'), 'utf8')).trim();
  const connect = (server: RegistryServer): pb.RegistryServiceClient =>
    new pb.RegistryServiceClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 16 << 20,
    });

  const harness: Harness = {
    home,
    crypto,
    registry: await startRegistryServer(config, serverOptions),
    client: undefined as unknown as pb.RegistryServiceClient,
    token: async (tenant, scopes, subject = `${tenant}-user`) =>
      (
        await rpc(
          cryptoClient,
          cpb.CryptoServiceService,
          'issueToken',
          { tenant, subject, scopes, ttlSeconds: 3600n },
          bearer(adminToken),
        )
      ).token,
    async restart(graceMs = 2000) {
      await harness.registry.stop({ graceMs });
      harness.client.close();
      harness.registry = await startRegistryServer(config, serverOptions);
      harness.client = connect(harness.registry);
    },
    async close() {
      harness.client.close();
      cryptoClient.close();
      await harness.registry.stop({ graceMs: 1000 });
      await testStore.drop();
      if (ownCrypto) await crypto.stop();
      await rm(home, { recursive: true, force: true });
    },
  };
  harness.client = connect(harness.registry);
  return harness;
}
