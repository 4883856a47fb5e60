import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { health } from '@quanta/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const bin = join(import.meta.dirname, '..', 'bin', 'quanta.mjs');
const run = promisify(execFile);

async function quanta(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], { env: { ...process.env, ...env } });
    return { code: 0, stdout, stderr };
  } catch (error: unknown) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('quanta CLI', () => {
  let server: grpc.Server;
  let port: number;
  const seen: string[] = [];

  beforeAll(async () => {
    server = new grpc.Server();
    server.addService(health.HealthService, {
      check: (
        call: grpc.ServerUnaryCall<health.HealthCheckRequest, health.HealthCheckResponse>,
        callback: grpc.sendUnaryData<health.HealthCheckResponse>,
      ) => {
        seen.push(call.metadata.get('authorization')[0]?.toString() ?? '');
        callback(null, { status: health.HealthCheckResponse_ServingStatus.SERVING });
      },
      watch: (call: grpc.ServerWritableStream<health.HealthCheckRequest, health.HealthCheckResponse>) => call.end(),
    });
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, p) =>
        error ? reject(error) : resolve(p),
      ),
    );
  });

  afterAll(() => {
    server.forceShutdown();
  });

  it('prints help that lists its commands', async () => {
    const { code, stdout } = await quanta(['--help']);
    expect(code).toBe(0);
    expect(stdout).toContain('Usage: quanta');
    expect(stdout).toMatch(/version\s+print the CLI version/);
    expect(stdout).toMatch(/ping \[services\.\.\.\]/);
  });

  it('prints its version as JSON', async () => {
    const { code, stdout } = await quanta(['version', '--json']);
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ version: '0.1.0', node: process.versions.node });
  });

  it('pings a real health service at the address from the environment, sending the token', async () => {
    const { code, stdout } = await quanta(['ping', 'crypto', '--json'], {
      QUANTA_CRYPTO_ADDR: `127.0.0.1:${port}`,
      QUANTA_TOKEN: 'tok-1',
    });
    expect(code).toBe(0);
    const [result] = JSON.parse(stdout) as { service: string; status: string; address: string }[];
    expect(result).toMatchObject({ service: 'crypto', status: 'SERVING', address: `127.0.0.1:${port}` });
    expect(seen).toContain('Bearer tok-1');
  });

  it('flags beat the environment, and the admin token is read from the home folder', async () => {
    const home = mkdtempSync(join(tmpdir(), 'quanta-cli-'));
    writeFileSync(join(home, 'admin.token'), 'from-home\n', { mode: 0o600 });
    const { code, stdout } = await quanta(
      ['--json', '--home', home, '--crypto-addr', `127.0.0.1:${port}`, 'ping', 'crypto'],
      {
        QUANTA_CRYPTO_ADDR: '127.0.0.1:1',
        QUANTA_TOKEN: '',
      },
    );
    expect(code).toBe(0);
    expect(JSON.parse(stdout)[0].status).toBe('SERVING');
    expect(seen).toContain('Bearer from-home');
  });

  it('says which service is unreachable and exits non-zero', async () => {
    const closed = new grpc.Server();
    const freePort = await new Promise<number>((resolve, reject) =>
      closed.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, p) =>
        error ? reject(error) : resolve(p),
      ),
    );
    closed.forceShutdown();
    const { code, stdout } = await quanta(['ping', 'registry'], { QUANTA_REGISTRY_ADDR: `127.0.0.1:${freePort}` });
    expect(code).toBe(1);
    expect(stdout).toContain(`cannot reach 127.0.0.1:${freePort}`);
    expect(stdout).toContain('UNREACHABLE');
  });

  it('rejects an unknown service name with a usage error', async () => {
    const { code, stderr } = await quanta(['ping', 'nope']);
    expect(code).toBe(2);
    expect(stderr).toContain('unknown service "nope"');
  });
});
