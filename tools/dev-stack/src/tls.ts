import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';

/** The files `quanta certs dev` writes (tools/cli/src/commands/certs.ts). */
export interface DevCertFiles {
  readonly caCert: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
}

export function devCertFiles(dir: string): DevCertFiles {
  return {
    caCert: join(dir, 'ca.crt'),
    serverCert: join(dir, 'server.crt'),
    serverKey: join(dir, 'server.key'),
    clientCert: join(dir, 'client.crt'),
    clientKey: join(dir, 'client.key'),
  };
}

/**
 * The certificates in `dir`, made by `quanta certs dev` when missing. The CLI is run as a process,
 * not imported: tools do not depend on each other, and this is the command a user would type.
 */
export async function ensureDevCertificates(root: string, dir: string): Promise<DevCertFiles> {
  const files = devCertFiles(dir);
  if ([files.caCert, files.serverCert, files.serverKey, files.clientCert, files.clientKey].every((f) => existsSync(f)))
    return files;
  try {
    await promisify(execFile)(
      process.execPath,
      [join(root, 'tools', 'cli', 'bin', 'quanta.mjs'), 'certs', 'dev', '--out', dir],
      { cwd: root },
    );
  } catch (error: unknown) {
    const raw = (error as { stderr?: unknown }).stderr;
    const reason =
      typeof raw === 'string' && raw.trim() !== ''
        ? raw.trim()
        : error instanceof Error
          ? error.message
          : String(error);
    throw new Error(`quanta certs dev --out ${dir} failed: ${reason}`, { cause: error });
  }
  return files;
}

/** Listener names of every service (crypto also reads the older QUANTA_TLS_*). */
const PREFIXES = ['QUANTA_CRYPTO', 'QUANTA_REGISTRY', 'QUANTA_MONITORING', 'QUANTA_INFERENCE'] as const;

/**
 * What `quanta certs dev` prints, as one environment: TLS on every listener, client certificates
 * required (mTLS), and the services' calls to each other (QUANTA_CLIENT_TLS_*) on the client certificate.
 */
export function devTlsEnvironment(files: DevCertFiles): Record<string, string> {
  const env: Record<string, string> = {
    QUANTA_CLIENT_TLS_CA: files.caCert,
    QUANTA_CLIENT_TLS_CERT: files.clientCert,
    QUANTA_CLIENT_TLS_KEY: files.clientKey,
  };
  for (const prefix of PREFIXES) {
    env[`${prefix}_TLS_CERT`] = files.serverCert;
    env[`${prefix}_TLS_KEY`] = files.serverKey;
    env[`${prefix}_TLS_CA`] = files.caCert;
    env[`${prefix}_TLS_REQUIRE_CLIENT_CERT`] = 'true';
  }
  return env;
}

/** Channel credentials of a client that trusts the dev CA and presents the client certificate. */
export function devChannelCredentials(files: DevCertFiles): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(
    readFileSync(files.caCert),
    readFileSync(files.clientKey),
    readFileSync(files.clientCert),
  );
}
