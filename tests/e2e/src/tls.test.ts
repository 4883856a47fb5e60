// TLS on every listener and mTLS between the services, on the certificates and the settings that
// `quanta certs dev` makes and prints: crypto, model-registry and monitoring as processes.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { health, monitoring, type registry } from '@quanta/contracts';
import { buildMlp } from '@quanta/onnx';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, connectClients, eventually, grpcCode, pushModel, type Clients } from './clients.js';
import { REPO_ROOT, startStack, type Stack } from './stack.js';

/** `quanta --json certs dev`: the files it wrote and the variables it prints as `export` lines. */
interface CertsDev {
  readonly files: { readonly caCert: string; readonly clientCert: string; readonly clientKey: string };
  readonly env: {
    readonly server: Record<string, string>;
    readonly mtls: Record<string, string>;
    readonly client: Record<string, string>;
    readonly clientMtls: Record<string, string>;
  };
}

let certDir = '';
let certs: CertsDev;
let stack: Stack | undefined;
let clients: Clients | undefined;
let mtls: grpc.ChannelCredentials;

beforeAll(async () => {
  certDir = await mkdtemp(join(tmpdir(), 'quanta-e2e-certs-'));
  const made = await promisify(execFile)(
    process.execPath,
    [join(REPO_ROOT, 'tools', 'cli', 'bin', 'quanta.mjs'), '--json', 'certs', 'dev', '--out', certDir],
    {
      cwd: REPO_ROOT,
    },
  );
  certs = JSON.parse(made.stdout) as CertsDev;
  stack = await startStack({
    services: ['crypto', 'model-registry', 'monitoring'],
    env: { ...certs.env.server, ...certs.env.mtls, ...certs.env.client, ...certs.env.clientMtls },
  });
  const [ca, key, cert] = await Promise.all([
    readFile(certs.files.caCert),
    readFile(certs.files.clientKey),
    readFile(certs.files.clientCert),
  ]);
  mtls = grpc.credentials.createSsl(ca, key, cert);
  clients = connectClients(stack, mtls);
}, 180_000);

afterAll(async () => {
  clients?.close();
  await stack?.close();
  await rm(certDir, { recursive: true, force: true });
});

function started(): { stack: Stack; clients: Clients } {
  if (stack === undefined || clients === undefined) throw new Error('the stack did not start');
  return { stack, clients };
}

/** One grpc.health.v1 Check on a fresh channel: the status, or the gRPC error code. */
async function healthCheck(
  address: string,
  credentials: grpc.ChannelCredentials,
): Promise<{ status?: health.HealthCheckResponse_ServingStatus; code?: number }> {
  const client = new health.HealthClient(address, credentials);
  try {
    return await new Promise((resolve) => {
      client.check({ service: '' }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (error, reply) =>
        resolve(error === null ? { status: reply.status } : { code: error.code }),
      );
    });
  } finally {
    client.close();
  }
}

function download(
  c: Clients,
  token: string,
  ref: string,
): Promise<{ version: registry.ModelVersion | undefined; bytes: Buffer }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let version: registry.ModelVersion | undefined;
    const call = c.registry.downloadVersion({ ref, chunkSizeBytes: 0, tenant: '' }, bearer(token), {
      deadline: Date.now() + 60_000,
    });
    call.on('data', (message: registry.DownloadVersionResponse) => {
      if (message.part?.$case === 'header') version = message.part.value.version;
      else if (message.part?.$case === 'chunk') chunks.push(message.part.value);
    });
    call.on('error', reject);
    call.on('end', () => resolve({ version, bytes: Buffer.concat(chunks) }));
  });
}

describe('TLS and mTLS between the services (quanta certs dev)', () => {
  it('the registry stores a model under a data key from crypto over mTLS, and gives the same bytes back', async () => {
    const { stack: s, clients: c } = started();
    const bytes = buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 2, seed: 7 });
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const pushed = await pushModel(c, s.adminToken, 'tls-mlp', bytes);
    expect(pushed.version).toMatchObject({ version: 1, sha256, sizeBytes: BigInt(bytes.length) });
    // Downloading decrypts with the data key that crypto unwraps: crypto over mTLS again.
    const back = await download(c, s.adminToken, 'tls-mlp:1');
    expect(back.version?.sha256).toBe(sha256);
    expect(Buffer.compare(back.bytes, Buffer.from(bytes))).toBe(0);
  });

  it("monitoring checks tokens against crypto's keys and sees crypto and the registry SERVING, over mTLS", async () => {
    const { stack: s, clients: c } = started();
    let board: monitoring.ServiceHealth[] = [];
    await eventually(
      'crypto and registry SERVING on the health board',
      async () => {
        board = (
          await c.rpc.monitoring('getHealthBoard', {}, { metadata: bearer(s.adminToken), deadline: Date.now() + 5000 })
        ).services;
        const status = (name: string) => board.find((e) => e.name === name)?.status;
        return (
          status('crypto') === monitoring.ServiceHealthStatus.SERVICE_HEALTH_STATUS_SERVING &&
          status('registry') === monitoring.ServiceHealthStatus.SERVICE_HEALTH_STATUS_SERVING
        );
      },
      30_000,
    );
    expect(board.find((e) => e.name === 'registry')).toMatchObject({ address: s.addr.registry, error: '' });
  }, 45_000);

  it('every listener refuses a plaintext client and a TLS client without a client certificate', async () => {
    const { stack: s } = started();
    const ca = await readFile(certs.files.caCert);
    for (const address of [s.addr.crypto, s.addr.registry, s.addr.monitoring]) {
      expect(await healthCheck(address, mtls)).toEqual({ status: health.HealthCheckResponse_ServingStatus.SERVING });
      expect(await healthCheck(address, grpc.credentials.createInsecure())).toEqual({ code: grpc.status.UNAVAILABLE });
      expect(await healthCheck(address, grpc.credentials.createSsl(ca))).toEqual({ code: grpc.status.UNAVAILABLE });
    }
  });

  it('a token call without a client certificate never reaches crypto', async () => {
    const { stack: s } = started();
    const ca = await readFile(certs.files.caCert);
    const anonymous = connectClients(s, grpc.credentials.createSsl(ca));
    try {
      const error = await anonymous.rpc
        .crypto(
          'issueToken',
          { tenant: 'x', subject: 'x', scopes: ['infer'], ttlSeconds: 60n },
          { metadata: bearer(s.adminToken), deadline: Date.now() + 5000 },
        )
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(grpcCode(error)).toBe(grpc.status.UNAVAILABLE);
    } finally {
      anonymous.close();
    }
  });
});
