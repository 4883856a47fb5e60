import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import { CliError } from '../errors.js';
import { action } from '../action.js';

// The machine's `openssl` signs the certificates (keys come from node:crypto): no npm dependency
// tree for a development-only command, and the same tool people use to inspect the result.
const run = promisify(execFile);

/** The files `quanta certs dev` writes, by role. */
export interface DevCertificates {
  readonly dir: string;
  readonly caCert: string;
  readonly caKey: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
}

export interface DevCertificateOptions {
  /** Folder to write into (created when missing). */
  readonly dir: string;
  /** Names and addresses the server certificate is valid for, besides localhost, 127.0.0.1 and ::1. */
  readonly hosts?: readonly string[];
  readonly days?: number;
  /** Replace certificates already in `dir`. */
  readonly force?: boolean;
  /** The openssl executable; default `QUANTA_OPENSSL` or `openssl` on PATH. */
  readonly openssl?: string;
}

const FILES = {
  caCert: 'ca.crt',
  caKey: 'ca.key',
  serverCert: 'server.crt',
  serverKey: 'server.key',
  clientCert: 'client.crt',
  clientKey: 'client.key',
} as const;

const FILE_ROLES: Readonly<Record<string, string>> = {
  [FILES.caCert]: 'the CA: clients and mTLS servers trust this',
  [FILES.caKey]: "the CA's key (signs more certificates; keep it private)",
  [FILES.serverCert]: `every service's certificate`,
  [FILES.serverKey]: "the services' key",
  [FILES.clientCert]: 'a client certificate for mTLS (CLI, partner clients)',
  [FILES.clientKey]: "the client certificate's key",
};

const DEFAULT_HOSTS = ['localhost', '127.0.0.1', '::1'];

function subjectAltNames(hosts: readonly string[]): string {
  return hosts.map((h) => (isIP(h) !== 0 ? `IP:${h}` : `DNS:${h}`)).join(', ');
}

/** One config file for every step: the extensions per certificate role. */
function opensslConfig(hosts: readonly string[]): string {
  return [
    '[req]',
    'distinguished_name = dn',
    'prompt = no',
    '[dn]',
    'CN = unused',
    '[ca_ext]',
    'basicConstraints = critical, CA:TRUE, pathlen:0',
    'keyUsage = critical, keyCertSign, cRLSign',
    'subjectKeyIdentifier = hash',
    '[server_ext]',
    'basicConstraints = critical, CA:FALSE',
    'keyUsage = critical, digitalSignature, keyEncipherment',
    // clientAuth too: a service can present its own certificate when it calls another (mTLS).
    'extendedKeyUsage = serverAuth, clientAuth',
    `subjectAltName = ${subjectAltNames(hosts)}`,
    'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid',
    '[client_ext]',
    'basicConstraints = critical, CA:FALSE',
    'keyUsage = critical, digitalSignature',
    'extendedKeyUsage = clientAuth',
    'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid',
    '',
  ].join('\n');
}

function checkHost(host: string): string {
  if (
    isIP(host) === 0 &&
    !/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(host)
  ) {
    throw new CliError(`--host "${host}" is neither an IP address nor a DNS name`, 2);
  }
  return host;
}

/** Checks that openssl runs, with a message that says what to do when it does not. */
async function checkOpenssl(openssl: string): Promise<void> {
  try {
    await run(openssl, ['version']);
  } catch (error: unknown) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new CliError(
      missing
        ? `quanta certs dev needs the openssl command, and "${openssl}" was not found; ` +
            'install OpenSSL (apt install openssl, brew install openssl) or set QUANTA_OPENSSL to its path'
        : `"${openssl} version" failed: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}

async function writeKey(path: string): Promise<void> {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  await writeFile(path, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  await chmod(path, 0o600); // the mode of writeFile only applies to a new file (--force)
}

/**
 * A development CA and, signed by it, a server certificate (localhost, 127.0.0.1, ::1 and `hosts`)
 * and a client certificate for mTLS. Private keys are written 0600.
 */
export async function createDevCertificates(options: DevCertificateOptions): Promise<DevCertificates> {
  const dir = resolve(options.dir);
  const days = options.days ?? 825;
  if (!Number.isInteger(days) || days < 1 || days > 3650)
    throw new CliError(`--days must be a whole number from 1 to 3650, got ${days}`, 2);
  const hosts = [...new Set([...DEFAULT_HOSTS, ...(options.hosts ?? []).map(checkHost)])];
  const paths = Object.fromEntries(Object.entries(FILES).map(([role, name]) => [role, join(dir, name)])) as Record<
    keyof typeof FILES,
    string
  >;
  const present = Object.values(paths).filter((p) => existsSync(p));
  if (present.length > 0 && options.force !== true) {
    throw new CliError(
      `${dir} already holds certificates (${present.map((p) => p.slice(dir.length + 1)).join(', ')}); ` +
        'give --force to replace them (what the old CA signed stops being trusted)',
      2,
    );
  }
  const openssl = options.openssl ?? process.env['QUANTA_OPENSSL'] ?? 'openssl';
  await checkOpenssl(openssl);

  await mkdir(dir, { recursive: true, mode: 0o700 });
  const work = await mkdtemp(join(tmpdir(), 'quanta-certs-'));
  try {
    const config = join(work, 'openssl.cnf');
    await writeFile(config, opensslConfig(hosts));
    const ssl = async (...args: string[]): Promise<void> => {
      try {
        await run(openssl, args, { cwd: work });
      } catch (error: unknown) {
        const raw = (error as { stderr?: unknown }).stderr;
        const stderr = typeof raw === 'string' ? raw.trim() : '';
        throw new CliError(
          `openssl ${args[0] ?? ''} failed: ${stderr || (error instanceof Error ? error.message : String(error))}`,
        );
      }
    };
    const serial = (): string => `0x${randomBytes(16).toString('hex')}`;
    const common = ['-days', String(days), '-sha256'];

    await writeKey(paths.caKey);
    await ssl(
      'req',
      '-x509',
      '-new',
      '-key',
      paths.caKey,
      '-subj',
      '/O=Quanta/CN=Quanta development CA',
      ...common,
      '-set_serial',
      serial(),
      '-config',
      config,
      '-extensions',
      'ca_ext',
      '-out',
      paths.caCert,
    );

    for (const [role, cn] of [
      ['server', 'localhost'],
      ['client', 'quanta-dev-client'],
    ] as const) {
      const key = role === 'server' ? paths.serverKey : paths.clientKey;
      const cert = role === 'server' ? paths.serverCert : paths.clientCert;
      const csr = join(work, `${role}.csr`);
      await writeKey(key);
      await ssl('req', '-new', '-key', key, '-subj', `/O=Quanta/CN=${cn}`, '-config', config, '-out', csr);
      await ssl(
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        paths.caCert,
        '-CAkey',
        paths.caKey,
        '-set_serial',
        serial(),
        ...common,
        '-extfile',
        config,
        '-extensions',
        `${role}_ext`,
        '-out',
        cert,
      );
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return { dir, ...paths };
}

/** Every service reads QUANTA_<SERVICE>_TLS_* for its listener (crypto also the older QUANTA_TLS_*). */
const SERVICE_PREFIXES = [
  ['crypto', 'QUANTA_CRYPTO'], // crypto requires client certificates whenever it has a CA
  ['registry', 'QUANTA_REGISTRY'],
  ['monitoring', 'QUANTA_MONITORING'],
  ['inference', 'QUANTA_INFERENCE'],
] as const;

/**
 * The variables that put the services and the CLI on these certificates. `client` and `clientMtls`
 * (QUANTA_CLIENT_TLS_*) serve the services' calls to each other and the CLI alike.
 */
export function tlsEnvironment(certs: DevCertificates): {
  server: Record<string, string>;
  mtls: Record<string, string>;
  client: Record<string, string>;
  clientMtls: Record<string, string>;
  /** @deprecated the same as `client` */
  cli: Record<string, string>;
  /** @deprecated the same as `clientMtls` */
  cliMtls: Record<string, string>;
} {
  const server: Record<string, string> = {};
  const mtls: Record<string, string> = {};
  for (const [service, prefix] of SERVICE_PREFIXES) {
    server[`${prefix}_TLS_CERT`] = certs.serverCert;
    server[`${prefix}_TLS_KEY`] = certs.serverKey;
    mtls[`${prefix}_TLS_CA`] = certs.caCert;
    if (service !== 'crypto') mtls[`${prefix}_TLS_REQUIRE_CLIENT_CERT`] = 'true';
  }
  const client = { QUANTA_CLIENT_TLS_CA: certs.caCert };
  const clientMtls = { QUANTA_CLIENT_TLS_CERT: certs.clientCert, QUANTA_CLIENT_TLS_KEY: certs.clientKey };
  return { server, mtls, client, clientMtls, cli: client, cliMtls: clientMtls };
}

const exportLines = (vars: Record<string, string>): string[] =>
  Object.entries(vars).map(([k, v]) => `export ${k}=${v}`);

export function registerCertsCommand(program: Command): void {
  const certs = program.command('certs').description('TLS certificates');
  certs
    .command('dev')
    .description(
      'make a development CA, a server certificate (localhost, 127.0.0.1, ::1) ' +
        'and a client certificate for mTLS, with openssl',
    )
    .option('--out <dir>', 'folder to write into (default $QUANTA_HOME/certs)')
    .option(
      '--host <name>',
      'another DNS name or IP address for the server certificate (repeatable)',
      (v: string, all: string[]) => [...all, v],
      [] as string[],
    )
    .option('--days <n>', 'validity in days', '825')
    .option('--force', 'replace certificates already in the folder')
    .action(
      action(async ({ settings, out }, opts: { out?: string; host: string[]; days: string; force?: boolean }) => {
        if (!/^\d+$/.test(opts.days)) throw new CliError(`--days must be a whole number, got "${opts.days}"`, 2);
        const made = await createDevCertificates({
          dir: opts.out ?? join(settings.home, 'certs'),
          hosts: opts.host,
          days: Number(opts.days),
          ...(opts.force === true ? { force: true } : {}),
        });
        const env = tlsEnvironment(made);
        out.result({ files: made, env }, () =>
          [
            `wrote a development CA and certificates to ${made.dir} (private keys 0600; never use them in production)`,
            ...Object.entries(FILE_ROLES).map(([name, role]) => `  ${name.padEnd(10)}  ${role}`),
            '',
            '# TLS on every service (npx nx serve <service>; or all at once: QUANTA_DEV_TLS=1 npm start):',
            ...exportLines(env.server),
            '# the services calling each other, and the quanta CLI (or its --tls-ca), trust the CA:',
            ...exportLines(env.client),
            '',
            '# mTLS as well: services refuse clients without a certificate from the CA',
            ...exportLines(env.mtls),
            '# and present this client certificate when they call each other; ' +
              'so does the CLI (or --tls-cert, --tls-key):',
            ...exportLines(env.clientMtls),
          ].join('\n'),
        );
      }),
    );
}
