// Real services for the sync's tests: crypto, model-registry and monitoring as their own processes
// (as `npm start` runs them) on one fresh QUANTA_HOME, so the registry's service token is the admin
// token crypto writes there; plus a TCP proxy that can cut the sync off the registry.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { crypto as cpb, monitoring as mpb, registry as pb, unaryCaller } from '@quanta/contracts';
import type { UnaryCaller } from '@quanta/contracts';
import type { ServiceProcess } from '@quanta/service-kit/testing';
import { startServiceProcess } from '@quanta/service-kit/testing';

export interface Stack {
  readonly home: string;
  readonly adminToken: string;
  readonly registryAddress: string;
  readonly crypto: ServiceProcess;
  registry: ServiceProcess;
  readonly monitoring: ServiceProcess | undefined;
  /** RegistryService and MonitoringService unary calls (pass the bearer token in `metadata`). */
  registry$: UnaryCaller<typeof pb.RegistryServiceService>;
  monitoring$: UnaryCaller<typeof mpb.MonitoringServiceService> | undefined;
  readonly registryClient: pb.RegistryServiceClient;
  /** A token of the crypto service for a tenant with the given scopes (subject: `TENANT-user`). */
  token(tenant: string, scopes: string[], subject?: string): Promise<string>;
  /** Uploads a model file as a new version (UploadVersion, client streaming). */
  push(token: string, model: string, bytes: Uint8Array): Promise<pb.ModelVersion>;
  /** SIGKILL the registry and start it again on the same port and home. */
  restartRegistry(): Promise<void>;
  close(): Promise<void>;
}

export const bearer = (token: string): grpc.Metadata => {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  return metadata;
};

/** A TCP port free now (the registry restarts on it, so the sync's address stays valid). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function startStack(options: { monitoring?: boolean } = {}): Promise<Stack> {
  const home = await mkdtemp(join(tmpdir(), 'quanta-inference-sync-'));
  const crypto = await startServiceProcess('crypto', {
    QUANTA_HOME: home,
    QUANTA_CRYPTO_PORT: '0',
    QUANTA_DATABASE_URL: undefined,
  });
  const adminToken = (await readFile(join(home, 'admin.token'), 'utf8')).trim();
  const registryPort = await freePort();
  const registryEnv = {
    QUANTA_HOME: home,
    QUANTA_REGISTRY_PORT: String(registryPort),
    QUANTA_CRYPTO_ADDR: crypto.address,
    QUANTA_DATABASE_URL: undefined,
  };
  const [registry, monitoring] = await Promise.all([
    startServiceProcess('model-registry', registryEnv),
    options.monitoring === true
      ? startServiceProcess('monitoring', {
          QUANTA_HOME: home,
          QUANTA_MONITORING_PORT: '0',
          QUANTA_MONITORING_HTTP_PORT: '0',
          QUANTA_CRYPTO_ADDR: crypto.address,
          QUANTA_MONITORING_TARGETS: `crypto=${crypto.address}`,
        })
      : Promise.resolve(undefined),
  ]);
  const registryAddress = `127.0.0.1:${registryPort}`;
  const registryClient = new pb.RegistryServiceClient(registryAddress, grpc.credentials.createInsecure());
  const cryptoClient = new cpb.CryptoServiceClient(crypto.address, grpc.credentials.createInsecure());
  const monitoringClient =
    monitoring === undefined
      ? undefined
      : new mpb.MonitoringServiceClient(monitoring.address, grpc.credentials.createInsecure());
  const crypto$ = unaryCaller(cryptoClient, cpb.CryptoServiceService);

  const stack: Stack = {
    home,
    adminToken,
    registryAddress,
    crypto,
    registry,
    monitoring,
    registryClient,
    registry$: unaryCaller(registryClient, pb.RegistryServiceService, { deadlineMs: 20_000 }),
    monitoring$:
      monitoringClient === undefined
        ? undefined
        : unaryCaller(monitoringClient, mpb.MonitoringServiceService, { deadlineMs: 20_000 }),
    async token(tenant, scopes, subject = `${tenant}-user`) {
      return (
        await crypto$('issueToken', { tenant, subject, scopes, ttlSeconds: 3600n }, { metadata: bearer(adminToken) })
      ).token;
    },
    push(token, model, bytes) {
      return new Promise<pb.ModelVersion>((resolve, reject) => {
        const call = registryClient.uploadVersion(bearer(token), (error, response) => {
          if (error) reject(error);
          else if (response?.version === undefined) reject(new Error('UploadVersion answered without a version'));
          else resolve(response.version);
        });
        call.write({
          part: {
            $case: 'header',
            value: {
              model,
              description: '',
              tags: {},
              expectedSha256: '',
              expectedSizeBytes: 0n,
              createModel: true,
              lineage: undefined,
            },
          },
        });
        for (let offset = 0; offset < bytes.length; offset += 64 * 1024)
          call.write({ part: { $case: 'chunk', value: Buffer.from(bytes.subarray(offset, offset + 64 * 1024)) } });
        call.end();
      });
    },
    async restartRegistry() {
      await stack.registry.kill();
      stack.registry = await startServiceProcess('model-registry', registryEnv);
    },
    async close() {
      registryClient.close();
      cryptoClient.close();
      monitoringClient?.close();
      await Promise.all([stack.registry.stop(), monitoring?.stop()]);
      await crypto.stop();
      await rm(home, { recursive: true, force: true });
    },
  };
  return stack;
}

export interface Proxy {
  readonly address: string;
  /** Drops every connection and refuses new ones (a network partition). */
  cut(): void;
  resume(): void;
  close(): Promise<void>;
}

/** A TCP proxy to `target` that the test can cut and resume. */
export async function startProxy(target: string): Promise<Proxy> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const sockets = new Set<Socket>();
  let open = true;
  const server: Server = createServer((client) => {
    if (!open) {
      client.destroy();
      return;
    }
    const upstream = connect(port, host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: listening } = server.address() as { port: number };
  return {
    address: `127.0.0.1:${listening}`,
    cut() {
      open = false;
      for (const s of sockets) s.destroy();
    },
    resume() {
      open = true;
    },
    async close() {
      open = false;
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
