// The platform as it runs beyond one machine, as processes on this one: crypto, N model-registry
// replicas and monitoring on one PostgreSQL (a database of its own per run, dropped at the end),
// and M inference replicas that each watch the registries through a multi-address target. Every
// process has a home folder of its own, as on separate machines; the registries share only the
// database and the blob store named by `blobUrl` (or, without one, a shared blob folder).
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestDatabase } from '@quanta/store/testing';
import { freePort, spawnService, type ServiceName, type ServiceProcess } from './stack.js';

export interface Replica {
  /** `registry-a`, `inference-2`, ...: the name monitoring's health board knows it by. */
  readonly label: string;
  readonly addr: string;
  readonly env: NodeJS.ProcessEnv;
  readonly process: ServiceProcess;
}

export interface ReplicatedStack {
  readonly root: string;
  readonly adminToken: string;
  /** The run's own PostgreSQL database. */
  readonly databaseUrl: string;
  readonly crypto: Replica;
  readonly monitoring: Replica;
  readonly registries: readonly Replica[];
  readonly inferences: readonly Replica[];
  /** Monitoring's HTTP listener (health board, /metrics). */
  readonly monitoringHttp: string;
  /** Stops what still runs (inference first, crypto last), drops the database and the folders. */
  close(): Promise<void>;
}

export interface ReplicatedStackOptions {
  readonly registries: number;
  readonly inferences: number;
  /** The registries' QUANTA_BLOB_URL; omitted: they share one QUANTA_HOME and its blob folder. */
  readonly blobUrl?: string;
  /** Extra environment for every process (AWS credentials for the blob store, say). */
  readonly env?: NodeJS.ProcessEnv;
}

const letter = (i: number): string => String.fromCharCode(97 + i);

/** Like Promise.all, but settles every start first, so a failed start leaves no process running unseen. */
async function allStarted<T>(starts: Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(starts);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<T>).value);
}

/** The environment of this process without any QUANTA_* or AWS_* setting, which each replica gets explicitly. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.startsWith('QUANTA_') && !key.startsWith('AWS_')),
  );
}

export async function startReplicatedStack(options: ReplicatedStackOptions): Promise<ReplicatedStack> {
  const root = await mkdtemp(join(tmpdir(), 'quanta-replicas-'));
  // A database of its own: LISTEN/NOTIFY channels and the services' `public` schema are per database.
  const database = await createTestDatabase('quanta_e2e');
  const started: ServiceProcess[] = [];
  const stopAll = async (): Promise<void> => {
    for (const name of ['inference', 'monitoring', 'model-registry', 'crypto'] as const) {
      await Promise.all(started.filter((p) => p.name === name).map((p) => p.stop()));
    }
  };
  try {
    const base: NodeJS.ProcessEnv = {
      ...cleanEnv(),
      QUANTA_LOG_LEVEL: 'info',
      OTEL_TRACES_EXPORTER: 'none',
      OTEL_METRICS_EXPORTER: 'none',
      ...options.env,
    };
    const [cryptoPort, monitoringPort, monitoringHttpPort] = await Promise.all([freePort(), freePort(), freePort()]);
    const registryPorts = await Promise.all(Array.from({ length: options.registries }, freePort));
    const inferencePorts = await Promise.all(Array.from({ length: options.inferences }, freePort));
    const cryptoAddr = `127.0.0.1:${cryptoPort}`;
    const monitoringAddr = `127.0.0.1:${monitoringPort}`;
    const registryAddrs = registryPorts.map((p) => `127.0.0.1:${p}`);
    const inferenceAddrs = inferencePorts.map((p) => `127.0.0.1:${p}`);

    const launch = async (name: ServiceName, label: string, addr: string, env: NodeJS.ProcessEnv): Promise<Replica> => {
      const home = join(root, label);
      await mkdir(home, { recursive: true });
      const full = { ...base, QUANTA_HOME: home, ...env };
      const proc = await spawnService(name, full);
      started.push(proc);
      return { label, addr, env: full, process: proc };
    };

    // Crypto first: it makes the admin token every other process uses, and checks their tokens.
    const crypto = await launch('crypto', 'crypto', cryptoAddr, {
      QUANTA_CRYPTO_PORT: String(cryptoPort),
      QUANTA_DATABASE_URL: database.url,
    });
    const adminToken = (await readFile(join(root, 'crypto', 'admin.token'), 'utf8')).trim();
    const common = { QUANTA_CRYPTO_ADDR: cryptoAddr, QUANTA_SERVICE_TOKEN: adminToken };

    const sharedRegistryHome = join(root, 'registry-blobs');
    const registries = await allStarted(
      registryPorts.map((port, i) =>
        launch('model-registry', `registry-${letter(i)}`, registryAddrs[i] ?? '', {
          ...common,
          QUANTA_REGISTRY_PORT: String(port),
          QUANTA_DATABASE_URL: database.url,
          ...(options.blobUrl === undefined
            ? { QUANTA_HOME: sharedRegistryHome }
            : { QUANTA_BLOB_URL: options.blobUrl }),
        }),
      ),
    );

    const targets = [
      `crypto=${cryptoAddr}`,
      ...registries.map((r) => `${r.label}=${r.addr}`),
      ...inferenceAddrs.map((a, i) => `inference-${i + 1}=${a}`),
    ].join(',');
    const monitoring = await launch('monitoring', 'monitoring', monitoringAddr, {
      ...common,
      QUANTA_MONITORING_PORT: String(monitoringPort),
      QUANTA_MONITORING_HTTP_PORT: String(monitoringHttpPort),
      QUANTA_MONITORING_DASHBOARD_PUBLIC: '1',
      QUANTA_MONITORING_TARGETS: targets,
      QUANTA_MONITORING_HEALTH_INTERVAL: '500ms',
      QUANTA_DATABASE_URL: database.url,
    });

    const inferences = await allStarted(
      inferencePorts.map(async (port, i) => {
        // Each replica lists every registry, its own first (pick_first: it watches that one while
        // it answers, and moves to the next when it dies), so the watches spread over the registries.
        const order = registryAddrs.map((_, k) => registryAddrs[(i + k) % registryAddrs.length]);
        return launch('inference', `inference-${i + 1}`, inferenceAddrs[i] ?? '', {
          QUANTA_CRYPTO_ADDR: cryptoAddr,
          QUANTA_INFERENCE_SERVICE_TOKEN: adminToken,
          QUANTA_INFERENCE_PORT: String(port),
          QUANTA_INFERENCE_HTTP_PORT: '0',
          QUANTA_INFERENCE_METRICS_PORT: '0',
          QUANTA_INFERENCE_WATCH: 'true',
          QUANTA_REGISTRY_ADDR: `ipv4:${order.join(',')}`,
          QUANTA_MONITORING_ADDR: monitoringAddr,
        });
      }),
    );

    return {
      root,
      adminToken,
      databaseUrl: database.url,
      crypto,
      monitoring,
      registries,
      inferences,
      monitoringHttp: `http://127.0.0.1:${monitoringHttpPort}`,
      async close() {
        try {
          await stopAll();
        } finally {
          await database.drop();
          await rm(root, { recursive: true, force: true });
        }
      },
    };
  } catch (error: unknown) {
    await Promise.all(started.map((p) => p.kill()));
    await database.drop();
    await rm(root, { recursive: true, force: true });
    throw error;
  }
}
