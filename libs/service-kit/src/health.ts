import type * as grpc from '@grpc/grpc-js';
import { health } from '@quanta/contracts';
import { notFound } from './errors.js';
import { grpcStatusOf } from './status.js';

const ServingStatus = health.HealthCheckResponse_ServingStatus;
type ServingStatus = health.HealthCheckResponse_ServingStatus;

export type HealthStatus = 'SERVING' | 'NOT_SERVING';

/** `grpc.health.v1.Health`: a status per service name, "" being the server as a whole. */
export interface HealthRegistry {
  set(service: string, status: HealthStatus): void;
  get(service: string): HealthStatus | undefined;
  /** Every known service NOT_SERVING (and kept so): shutdown has begun. */
  shutdown(): void;
  /** Ends every Watch stream, so that they do not hold a graceful shutdown open. */
  endWatches(): void;
  readonly implementation: health.HealthServer;
}

const toWire = (status: HealthStatus | undefined): ServingStatus =>
  status === undefined ? ServingStatus.SERVICE_UNKNOWN : ServingStatus[status];

export function createHealthRegistry(): HealthRegistry {
  const statuses = new Map<string, HealthStatus>();
  const watchers = new Map<
    string,
    Set<grpc.ServerWritableStream<health.HealthCheckRequest, health.HealthCheckResponse>>
  >();
  let shuttingDown = false;

  const notify = (service: string): void => {
    const status = toWire(statuses.get(service));
    for (const call of watchers.get(service) ?? []) call.write({ status });
  };

  const implementation: health.HealthServer = {
    check(call, callback) {
      const status = statuses.get(call.request.service);
      if (status === undefined) {
        const error = notFound(`unknown service "${call.request.service}"`);
        callback({ code: grpcStatusOf(error.code), details: error.message });
        return;
      }
      callback(null, { status: toWire(status) });
    },
    watch(call) {
      const service = call.request.service;
      let set = watchers.get(service);
      if (set === undefined) watchers.set(service, (set = new Set()));
      const watching = set;
      watching.add(call);
      const forget = (): void => void watching.delete(call);
      call.once('cancelled', forget);
      call.once('finish', forget);
      // Per the health protocol: the current status first (SERVICE_UNKNOWN for an unknown name), then every change.
      call.write({ status: toWire(statuses.get(service)) });
      if (shuttingDown) call.end();
    },
  };

  return {
    implementation,
    set(service, wanted) {
      // Once shutting down, a late SERVING must not lure clients back.
      const status = shuttingDown ? 'NOT_SERVING' : wanted;
      if (statuses.get(service) === status) return;
      statuses.set(service, status);
      notify(service);
    },
    get: (service) => statuses.get(service),
    shutdown() {
      if (shuttingDown) return;
      shuttingDown = true;
      for (const service of new Set(['', ...statuses.keys()])) {
        statuses.set(service, 'NOT_SERVING');
        notify(service);
      }
    },
    endWatches() {
      for (const set of watchers.values()) for (const call of set) call.end();
      watchers.clear();
    },
  };
}
