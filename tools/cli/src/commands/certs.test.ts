import { execFile } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { health } from '@quanta/contracts';
import { createService, type QuantaService, type ServerTlsOptions } from '@quanta/service-kit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const cli = join(root, 'tools/cli/bin/quanta.mjs');
const exec = promisify(execFile);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** The real `quanta` command, run from the repository root (where the launcher finds tsx). */
async function quanta(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const clean = { ...process.env };
  for (const name of [
    'QUANTA_TOKEN',
    'QUANTA_CLIENT_TLS',
    'QUANTA_CLIENT_TLS_CA',
    'QUANTA_CLIENT_TLS_CERT',
    'QUANTA_CLIENT_TLS_KEY',
    'QUANTA_OPENSSL',
  ])
    delete clean[name];
  try {
    const { stdout, stderr } = await exec(process.execPath, [cli, ...args], { cwd: root, env: { ...clean, ...env } });
    return { code: 0, stdout, stderr };
  } catch (error: unknown) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

let home = '';
let dir = '';
const file = (name: string): string => join(dir, name);

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'quanta-certs-'));
  dir = join(home, 'certs');
  const made = await quanta(['--home', home, 'certs', 'dev', '--host', 'inference.quanta']);
  expect(made.stderr).toBe('');
  expect(made.code).toBe(0);
  expect(made.stdout).toContain(`export QUANTA_REGISTRY_TLS_CERT=${file('server.crt')}`);
  // Every service's listener by its own prefix, and one client setting for the services and the CLI.
  for (const prefix of ['QUANTA_CRYPTO', 'QUANTA_MONITORING', 'QUANTA_INFERENCE'])
    expect(made.stdout).toContain(`export ${prefix}_TLS_KEY=${file('server.key')}`);
  expect(made.stdout).toContain(`export QUANTA_CLIENT_TLS_CA=${file('ca.crt')}`);
  expect(made.stdout).toContain(`export QUANTA_CLIENT_TLS_CERT=${file('client.crt')}`);
}, 60_000);

afterAll(async () => {
  await rm(home, { recursive: true, force: true });
});

let service: QuantaService | undefined;
const clients: grpc.Client[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await service?.stop({ graceMs: 0 });
  service = undefined;
});

/** A real service-kit service (health only) serving TLS from the generated files. */
async function serve(tls: ServerTlsOptions): Promise<string> {
  service = createService({ name: 'certs-test', port: 0, tls });
  const { port } = await service.start();
  return `127.0.0.1:${port}`;
}

function check(address: string, credentials: grpc.ChannelCredentials): Promise<health.HealthCheckResponse> {
  const client = new health.HealthClient(address, credentials);
  clients.push(client);
  return new Promise((resolveCall, reject) => {
    client.check({ service: '' }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (error, reply) =>
      error ? reject(error) : resolveCall(reply),
    );
  });
}

const pem = (name: string): Promise<Buffer> => readFile(file(name));

describe('quanta certs dev', () => {
  it(
    'writes a CA and certificates it signed (checked by node:crypto), ' + 'with the SANs asked for and keys 0600',
    async () => {
      const ca = new X509Certificate(await pem('ca.crt'));
      const server = new X509Certificate(await pem('server.crt'));
      const client = new X509Certificate(await pem('client.crt'));
      expect(ca.ca).toBe(true);
      expect(server.ca).toBe(false);
      expect(server.verify(ca.publicKey)).toBe(true);
      expect(client.verify(ca.publicKey)).toBe(true);
      expect(server.checkIssued(ca)).toBe(true);
      expect(server.subjectAltName?.split(', ')).toEqual([
        'DNS:localhost',
        'IP Address:127.0.0.1',
        'IP Address:0:0:0:0:0:0:0:1',
        'DNS:inference.quanta',
      ]);
      expect(server.checkIP('::1')).toBe('::1');
      expect(server.checkPrivateKey(createPrivateKey(await pem('server.key')))).toBe(true);
      expect(client.checkPrivateKey(createPrivateKey(await pem('client.key')))).toBe(true);
      expect(ca.checkPrivateKey(createPrivateKey(await pem('ca.key')))).toBe(true);
      for (const key of ['ca.key', 'server.key', 'client.key']) {
        expect(((await stat(file(key))).mode & 0o777).toString(8), key).toBe('600');
      }
    },
  );

  it('a TLS service on these files answers a client that trusts the CA and fails one that does not', async () => {
    const address = await serve({ certFile: file('server.crt'), keyFile: file('server.key') });
    const reply = await check(address, grpc.credentials.createSsl(await pem('ca.crt')));
    expect(reply.status).toBe(health.HealthCheckResponse_ServingStatus.SERVING);
    // The system roots do not know the development CA.
    await expect(check(address, grpc.credentials.createSsl())).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    // The CLI with --tls-ca gets through; without it (plaintext) it does not.
    const ok = await quanta(['--json', '--crypto-addr', address, '--tls-ca', file('ca.crt'), 'ping', 'crypto']);
    expect(JSON.parse(ok.stdout)).toMatchObject([{ status: 'SERVING' }]);
    const plain = await quanta(['--json', '--crypto-addr', address, 'ping', 'crypto']);
    expect(plain.code).toBe(1);
    expect(JSON.parse(plain.stdout)).toMatchObject([{ status: 'UNREACHABLE' }]);
  });

  it('with mTLS the service refuses a client without a certificate and accepts the generated one', async () => {
    const address = await serve({
      certFile: file('server.crt'),
      keyFile: file('server.key'),
      caFile: file('ca.crt'),
      requireClientCert: true,
    });
    await expect(check(address, grpc.credentials.createSsl(await pem('ca.crt')))).rejects.toMatchObject({
      code: grpc.status.UNAVAILABLE,
    });
    const reply = await check(
      address,
      grpc.credentials.createSsl(await pem('ca.crt'), await pem('client.key'), await pem('client.crt')),
    );
    expect(reply.status).toBe(health.HealthCheckResponse_ServingStatus.SERVING);
    // The CLI takes its client certificate from the environment.
    const ok = await quanta(['--json', 'ping', 'crypto'], {
      QUANTA_CRYPTO_ADDR: address,
      QUANTA_CLIENT_TLS_CA: file('ca.crt'),
      QUANTA_CLIENT_TLS_CERT: file('client.crt'),
      QUANTA_CLIENT_TLS_KEY: file('client.key'),
    });
    expect(JSON.parse(ok.stdout)).toMatchObject([{ status: 'SERVING' }]);
    const without = await quanta(['--json', 'ping', 'crypto'], {
      QUANTA_CRYPTO_ADDR: address,
      QUANTA_CLIENT_TLS_CA: file('ca.crt'),
    });
    expect(JSON.parse(without.stdout)).toMatchObject([{ status: 'UNREACHABLE' }]);
  });

  it('refuses to overwrite certificates without --force, and says so when openssl is missing', async () => {
    const again = await quanta(['--home', home, 'certs', 'dev']);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/already holds certificates .*--force/);
    const other = join(home, 'elsewhere');
    const missing = await quanta(['certs', 'dev', '--out', other], { QUANTA_OPENSSL: join(home, 'no-openssl-here') });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/needs the openssl command.*not found/);
  });
});
