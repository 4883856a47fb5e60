import * as grpc from '@grpc/grpc-js';
import { health, monitoring as pb } from '@quanta/contracts';
import { toDuration } from './durations.js';

export interface HealthBoardOptions {
  readonly targets: readonly { readonly name: string; readonly address: string }[];
  /** How checks connect (TLS, mTLS); plaintext by default. */
  readonly credentials?: grpc.ChannelCredentials;
  /** Between rounds of checks; default 5 s. */
  readonly intervalMs?: number;
  /** Deadline of one check; default 2 s. */
  readonly timeoutMs?: number;
  readonly clock?: () => number;
  /** Called when a service's status changes. */
  readonly onChange?: (entry: pb.ServiceHealth) => void;
}

export interface HealthBoard {
  readonly intervalMs: number;
  /** Every target, ordered by name. */
  board(): pb.ServiceHealth[];
  /** One round of checks now; resolves when every check has finished. */
  checkNow(): Promise<void>;
  /** Checks at once, then every interval. */
  start(): void;
  stop(): void;
}

interface CheckResult {
  status: pb.ServiceHealthStatus;
  error: string;
}

/**
 * Checks `grpc.health.v1.Health/Check` of every target. Each check opens a fresh channel: a
 * service that comes back is seen at the very next check, not after grpc-js's reconnect backoff
 * (up to two minutes), and a check costs one loopback connection every few seconds.
 */
export function createHealthBoard(options: HealthBoardOptions): HealthBoard {
  const clock = options.clock ?? Date.now;
  const intervalMs = options.intervalMs ?? 5000;
  const timeoutMs = options.timeoutMs ?? 2000;
  const credentials = options.credentials ?? grpc.credentials.createInsecure();
  const entries = new Map<string, pb.ServiceHealth>(
    options.targets.map((t) => [
      t.name,
      { name: t.name, address: t.address, status: pb.ServiceHealthStatus.SERVICE_HEALTH_STATUS_UNKNOWN, error: '' },
    ]),
  );
  let timer: NodeJS.Timeout | undefined;
  let round: Promise<void> | undefined;

  function checkOne(address: string): Promise<CheckResult> {
    const client = new health.HealthClient(address, credentials);
    return new Promise<CheckResult>((resolve) => {
      client.check(
        { service: '' },
        new grpc.Metadata(),
        { deadline: new Date(Date.now() + timeoutMs) },
        (error, reply) => {
          client.close();
          if (error !== null) {
            // grpc-js ends some details with an empty "Resolution note:": noise on the board.
            const details = error.details.replace(/\.?\s*Resolution note:\s*$/, '');
            resolve({
              status: pb.ServiceHealthStatus.SERVICE_HEALTH_STATUS_UNREACHABLE,
              error: `${grpc.status[error.code] ?? error.code}: ${details}`,
            });
          } else if (reply.status === health.HealthCheckResponse_ServingStatus.SERVING) {
            resolve({ status: pb.ServiceHealthStatus.SERVICE_HEALTH_STATUS_SERVING, error: '' });
          } else {
            resolve({
              status: pb.ServiceHealthStatus.SERVICE_HEALTH_STATUS_NOT_SERVING,
              error: `health check answered ${health.healthCheckResponse_ServingStatusToJSON(reply.status)}`,
            });
          }
        },
      );
    });
  }

  async function runRound(): Promise<void> {
    await Promise.all(
      [...entries.values()].map(async (entry) => {
        const started = performance.now();
        const result = await checkOne(entry.address);
        const latencyMs = performance.now() - started;
        const now = new Date(clock());
        const changed = result.status !== entry.status;
        const next: pb.ServiceHealth = {
          ...entry,
          status: result.status,
          error: result.error,
          lastCheckTime: now,
          latency: toDuration(latencyMs),
          lastChangeTime: changed ? now : entry.lastChangeTime,
        };
        entries.set(entry.name, next);
        if (changed) options.onChange?.(next);
      }),
    );
  }

  const checkNow = (): Promise<void> => {
    // Rounds never overlap: a caller during a round waits for it and then runs its own.
    const previous = round ?? Promise.resolve();
    const mine = previous.then(runRound);
    round = mine;
    mine
      .finally(() => {
        if (round === mine) round = undefined;
      })
      .catch(() => undefined); // the caller gets the rejection through `mine`
    return mine;
  };

  return {
    intervalMs,
    board: () => [...entries.values()].sort((a, b) => (a.name < b.name ? -1 : 1)).map((e) => ({ ...e })),
    checkNow,
    start() {
      if (timer !== undefined) return;
      void checkNow();
      timer = setInterval(() => {
        if (round === undefined) void checkNow();
      }, intervalMs);
      timer.unref();
    },
    stop() {
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
    },
  };
}
