import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { crypto as pb, unaryCaller, type RequestOf, type ResponseOf, type UnaryMethod } from '@quanta/contracts';
import { bearer, failure } from '@quanta/service-kit/testing';
import { openStore } from '@quanta/store';
import { initTelemetry } from '@quanta/telemetry';
import { pino } from 'pino';
import { cryptoConfig, type CryptoConfig } from '../config.js';
import { startCryptoServer } from '../server/crypto-server.js';
import type { CryptoServer } from '../server/crypto-server.js';

export interface Harness {
  server: CryptoServer;
  client: pb.CryptoServiceClient;
  home: string;
  /** Moves the server's clock (tokens, Fernet timestamps, audit times). */
  now: { ms: number };
  token(tenant: string, scopes: string[], ttlSeconds?: number, subject?: string): Promise<string>;
  close(): Promise<void>;
}

/** A real crypto server on 127.0.0.1:0 over an in-memory embedded store, and a client for it. */
export async function startHarness(overrides: Partial<CryptoConfig> = {}): Promise<Harness> {
  const home = await mkdtemp(join(tmpdir(), 'quanta-crypto-'));
  const store = await openStore({});
  const now = { ms: Date.now() };
  const config = cryptoConfig({ home, port: 0, adminTokenTtl: 3600_000, ...overrides });
  // As main does: W3C trace context from callers, spans kept in memory (no exporter configured).
  const telemetry = initTelemetry({ serviceName: 'crypto-test', otlpEndpoint: '' });
  const server = await startCryptoServer(config, {
    telemetry,
    store,
    masterKey: randomBytes(32),
    clock: () => now.ms,
    logger: pino({ level: process.env['QUANTA_LOG_LEVEL'] ?? 'silent' }),
  });
  const client = new pb.CryptoServiceClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
  });
  return {
    server,
    client,
    home,
    now,
    token: (tenant, scopes, ttlSeconds = 3600, subject = `${tenant}-user`) =>
      server.issuer.issue({ tenant, subject, scopes, ttlSeconds }),
    async close() {
      client.close();
      await server.stop({ graceMs: 1000 });
      await store.close();
      await telemetry.shutdown();
      await rm(home, { recursive: true, force: true });
    },
  };
}

export { bearer, failure };

type Definition = typeof pb.CryptoServiceService;

/** Calls a unary method by name with a bearer token; rejects with the grpc ServiceError. */
export function call<K extends UnaryMethod<Definition>>(
  client: pb.CryptoServiceClient,
  method: K,
  request: RequestOf<Definition, K>,
  token?: string,
): Promise<ResponseOf<Definition, K>> {
  return unaryCaller(client, pb.CryptoServiceService)(method, request, { metadata: bearer(token) });
}
