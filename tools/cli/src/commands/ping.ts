import * as grpc from '@grpc/grpc-js';
import { health } from '@quanta/contracts';
import type { Command } from 'commander';
import { CliError, describeError } from '../errors.js';
import { connect, deadline } from '../grpc.js';
import { table } from '../output.js';
import { action } from '../action.js';
import { SERVICE_NAMES, type ServiceName } from '../settings.js';

interface PingResult {
  service: ServiceName;
  address: string;
  status: string;
  latencyMs: number;
  error?: string;
}

export function registerPingCommand(program: Command): void {
  program
    .command('ping')
    .description("check services' grpc.health.v1.Health directly (all four when none is named)")
    .argument('[services...]', `any of ${SERVICE_NAMES.join(', ')}`)
    .action(
      action(async ({ settings, out }, services: string[]) => {
        const unknown = services.filter((s) => !(SERVICE_NAMES as string[]).includes(s));
        if (unknown.length > 0)
          throw new CliError(
            `unknown service ${unknown.map((s) => `"${s}"`).join(', ')}; known: ${SERVICE_NAMES.join(', ')}`,
            2,
          );
        const targets = services.length > 0 ? (services as ServiceName[]) : SERVICE_NAMES;
        const results = await Promise.all(
          targets.map(async (service): Promise<PingResult> => {
            const address = settings.address(service);
            const client = connect(health.HealthClient, settings, service);
            const started = performance.now();
            try {
              const reply = await new Promise<health.HealthCheckResponse>((resolve, reject) => {
                client.check({ service: '' }, new grpc.Metadata(), deadline(5), (error, response) =>
                  error ? reject(error) : resolve(response),
                );
              });
              const status = health.healthCheckResponse_ServingStatusToJSON(reply.status);
              return { service, address, status, latencyMs: Math.round((performance.now() - started) * 10) / 10 };
            } catch (error: unknown) {
              return {
                service,
                address,
                status: 'UNREACHABLE',
                latencyMs: Math.round((performance.now() - started) * 10) / 10,
                error: describeError(error, address),
              };
            } finally {
              client.close();
            }
          }),
        );
        out.result(results, () =>
          table(
            ['SERVICE', 'ADDRESS', 'STATUS', 'LATENCY'],
            results.map((r) => [
              r.service,
              r.address,
              r.error ? `${r.status}: ${r.error}` : r.status,
              `${r.latencyMs} ms`,
            ]),
          ),
        );
        if (results.some((r) => r.status !== 'SERVING')) process.exitCode = 1;
      }),
    );
}
