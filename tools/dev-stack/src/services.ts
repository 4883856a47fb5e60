import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** One Quanta service as the dev stack runs it. */
export interface ServiceSpec {
  /** Nx project and folder name under services/. */
  readonly name: string;
  /** The name the CLI uses for it (`quanta ping registry`). */
  readonly cli: string;
  /** The gRPC port, and the variable that sets it. */
  readonly port: number;
  readonly portEnv: string;
  /** The variable other services and the CLI read this service's address from. */
  readonly addrEnv: string;
  /** Other listeners to print (REST, metrics, dashboard), from the environment the services get. */
  readonly extra?: (env: NodeJS.ProcessEnv) => string[];
}

/** A listener's port as the service will read it: the variable when set, else its default. */
function portFrom(env: NodeJS.ProcessEnv, variable: string, fallback: number): string {
  const value = env[variable]?.trim();
  return value !== undefined && value !== '' ? value : String(fallback);
}

/** In start order: crypto first, since every other service checks tokens against its keys. */
export const SERVICES: readonly ServiceSpec[] = [
  { name: 'crypto', cli: 'crypto', port: 9002, portEnv: 'QUANTA_CRYPTO_PORT', addrEnv: 'QUANTA_CRYPTO_ADDR' },
  {
    name: 'model-registry',
    cli: 'registry',
    port: 9001,
    portEnv: 'QUANTA_REGISTRY_PORT',
    addrEnv: 'QUANTA_REGISTRY_ADDR',
  },
  {
    name: 'monitoring',
    cli: 'monitoring',
    port: 9003,
    portEnv: 'QUANTA_MONITORING_PORT',
    addrEnv: 'QUANTA_MONITORING_ADDR',
    extra: (env) => [`dashboard http://127.0.0.1:${portFrom(env, 'QUANTA_MONITORING_HTTP_PORT', 9400)}/`],
  },
  {
    name: 'inference',
    cli: 'inference',
    port: 8001,
    portEnv: 'QUANTA_INFERENCE_PORT',
    addrEnv: 'QUANTA_INFERENCE_ADDR',
    extra: (env) => [
      `REST http://127.0.0.1:${portFrom(env, 'QUANTA_INFERENCE_HTTP_PORT', 8000)}/v2`,
      `metrics http://127.0.0.1:${portFrom(env, 'QUANTA_INFERENCE_METRICS_PORT', 8002)}/metrics`,
    ],
  },
];

/** The services of this checkout that have an entry point (each arrives with its own issue). */
export function availableServices(root: string): ServiceSpec[] {
  return SERVICES.filter((s) => existsSync(join(root, 'services', s.name, 'src', 'main.ts')));
}
