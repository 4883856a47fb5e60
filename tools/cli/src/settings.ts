import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** The services the CLI talks to, with the default address of each (as `npm start` runs them). */
export const SERVICE_DEFAULTS = {
  registry: '127.0.0.1:9001',
  crypto: '127.0.0.1:9002',
  monitoring: '127.0.0.1:9003',
  inference: '127.0.0.1:8001',
} as const;

export type ServiceName = keyof typeof SERVICE_DEFAULTS;

export const SERVICE_NAMES = Object.keys(SERVICE_DEFAULTS) as ServiceName[];

/** Global options as commander parses them (see program.ts). */
export interface GlobalOptions {
  json?: boolean;
  home?: string;
  token?: string;
  registryAddr?: string;
  cryptoAddr?: string;
  monitoringAddr?: string;
  inferenceAddr?: string;
  tls?: boolean;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}

/** TLS towards the services: PEM files; `{}` means TLS with the system's roots. */
export interface TlsSettings {
  readonly caFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
}

/** Where the CLI connects and as whom: flags win over `QUANTA_*` variables, which win over defaults. */
export interface Settings {
  readonly json: boolean;
  /** Data and credentials folder: `--home`, `QUANTA_HOME`, or `.quanta` in the working directory. */
  readonly home: string;
  address(service: ServiceName): string;
  /** Bearer token: `--token`, `QUANTA_TOKEN`, or the admin token that the crypto service wrote into the home folder. */
  token(): string | undefined;
  /**
   * TLS when `--tls`, `--tls-ca` or a client certificate is given (flags, or `QUANTA_CLIENT_TLS`,
   * `QUANTA_CLIENT_TLS_CA|CERT|KEY`); plaintext otherwise. Not QUANTA_TLS_*: the crypto service
   * reads those as its own server certificate and client CA.
   */
  readonly tls: TlsSettings | undefined;
}

export function resolveSettings(options: GlobalOptions, env: NodeJS.ProcessEnv = process.env): Settings {
  const home = resolve(options.home ?? env['QUANTA_HOME'] ?? '.quanta');
  const flagAddr: Record<ServiceName, string | undefined> = {
    registry: options.registryAddr,
    crypto: options.cryptoAddr,
    monitoring: options.monitoringAddr,
    inference: options.inferenceAddr,
  };
  const pick = (flag: string | undefined, name: string): string | undefined => {
    const value = flag ?? env[name];
    return value === undefined || value === '' ? undefined : value;
  };
  const tlsFiles: TlsSettings = {
    ...optional('caFile', pick(options.tlsCa, 'QUANTA_CLIENT_TLS_CA')),
    ...optional('certFile', pick(options.tlsCert, 'QUANTA_CLIENT_TLS_CERT')),
    ...optional('keyFile', pick(options.tlsKey, 'QUANTA_CLIENT_TLS_KEY')),
  };
  const tlsOn =
    options.tls === true ||
    ['1', 'true', 'yes'].includes(env['QUANTA_CLIENT_TLS'] ?? '') ||
    Object.keys(tlsFiles).length > 0;
  return {
    json: options.json === true,
    home,
    tls: tlsOn ? tlsFiles : undefined,
    address: (service) => flagAddr[service] ?? env[`QUANTA_${service.toUpperCase()}_ADDR`] ?? SERVICE_DEFAULTS[service],
    token: () => {
      const explicit = options.token ?? env['QUANTA_TOKEN'];
      if (explicit !== undefined && explicit !== '') return explicit;
      try {
        return readFileSync(join(home, 'admin.token'), 'utf8').trim();
      } catch {
        return undefined;
      }
    },
  };
}

function optional<K extends string>(key: K, value: string | undefined): { [P in K]?: string } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: string };
}
