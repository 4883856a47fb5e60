import type * as grpc from '@grpc/grpc-js';
import type { registry as pb } from '@quanta/contracts';
import type { Logger } from 'pino';
import type { Backoff } from './backoff.js';
import { createBackoff, sleep } from './backoff.js';

export interface DeploymentWatcherOptions {
  readonly client: pb.RegistryServiceClient;
  readonly logger: Logger;
  /** Every (re)connection's first message: the whole current set. */
  onSnapshot(deployments: readonly pb.Deployment[]): void;
  onChange(change: pb.DeploymentChange): void;
  /** Told when a stream that had delivered its snapshot ends (logs, metrics, tests). */
  onDisconnect?(): void;
  readonly backoff?: Backoff;
}

export interface DeploymentWatcher {
  /** Snapshots received so far (one per successful connection). */
  readonly snapshots: number;
  /** True while a stream is open and its snapshot has arrived. */
  readonly connected: boolean;
  /** Cancels the stream and stops reconnecting. */
  close(): Promise<void>;
}

/**
 * Follows WatchDeployments{all_tenants} for as long as it runs: when the stream ends or fails (the
 * registry restarts, the network drops) it reconnects after a capped, jittered backoff, and each
 * new connection's snapshot goes to `onSnapshot` so that whatever changed meanwhile is healed.
 */
export function createDeploymentWatcher(options: DeploymentWatcherOptions): DeploymentWatcher {
  const backoff = options.backoff ?? createBackoff({ initialMs: 100, maxMs: 5000 });
  const closing = new AbortController();
  let call: grpc.ClientReadableStream<pb.WatchDeploymentsResponse> | undefined;
  let snapshots = 0;
  let connected = false;

  async function watchOnce(): Promise<boolean> {
    const stream = options.client.watchDeployments({ allTenants: true });
    call = stream;
    let gotSnapshot = false;
    try {
      for await (const message of stream as AsyncIterable<pb.WatchDeploymentsResponse>) {
        const event = message.event;
        if (event?.$case === 'snapshot') {
          gotSnapshot = true;
          connected = true;
          snapshots++;
          options.onSnapshot(event.value.deployments);
        } else if (event?.$case === 'change' && gotSnapshot) {
          options.onChange(event.value);
        }
      }
      if (!closing.signal.aborted) options.logger.warn('the registry ended the deployment watch; reconnecting');
    } catch (error: unknown) {
      if (!closing.signal.aborted) {
        const reason = error instanceof Error ? error.message : String(error);
        // Before the first snapshot this is usually the registry still starting: not worth a warning.
        if (snapshots === 0) options.logger.info({ reason }, `registry not reachable yet (${reason}); retrying`);
        else options.logger.warn({ reason }, `deployment watch failed (${reason}); reconnecting`);
      }
    } finally {
      if (connected) options.onDisconnect?.();
      connected = false;
      call = undefined;
      stream.cancel();
    }
    return gotSnapshot;
  }

  const loop = (async () => {
    let attempt = 0;
    while (!closing.signal.aborted) {
      // A connection that delivered a snapshot was healthy: start the backoff over.
      if (await watchOnce()) attempt = 0;
      if (closing.signal.aborted) break;
      await sleep(backoff.delay(attempt++), closing.signal);
    }
  })();

  return {
    get snapshots() {
      return snapshots;
    },
    get connected() {
      return connected;
    },
    async close() {
      closing.abort();
      call?.cancel();
      await loop;
    },
  };
}
