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
}

/** Where the CLI connects and as whom: flags win over `QUANTA_*` variables, which win over defaults. */
export interface Settings {
  readonly json: boolean;
  /** Data and credentials folder: `--home`, `QUANTA_HOME`, or `.quanta` in the working directory. */
  readonly home: string;
  address(service: ServiceName): string;
  /** Bearer token: `--token`, `QUANTA_TOKEN`, or the admin token that the crypto service wrote into the home folder. */
  token(): string | undefined;
}

export function resolveSettings(options: GlobalOptions, env: NodeJS.ProcessEnv = process.env): Settings {
  const home = resolve(options.home ?? env['QUANTA_HOME'] ?? '.quanta');
  const flagAddr: Record<ServiceName, string | undefined> = {
    registry: options.registryAddr,
    crypto: options.cryptoAddr,
    monitoring: options.monitoringAddr,
    inference: options.inferenceAddr,
  };
  return {
    json: options.json === true,
    home,
    address: (service) =>
      flagAddr[service] ?? env[`QUANTA_${service.toUpperCase()}_ADDR`] ?? SERVICE_DEFAULTS[service],
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
