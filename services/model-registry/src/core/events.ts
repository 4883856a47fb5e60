import type { registry as pb } from '@quanta/contracts';

/** One deployment that changed, as WatchDeployments sends it. */
export interface DeploymentEvent {
  readonly type: 'upserted' | 'deleted';
  readonly deployment: pb.Deployment;
  readonly reason: string;
}

/**
 * In-process fan-out of deployment changes to every watcher. Published after the change has
 * committed. (Several registry processes on one database would each see only their own changes.)
 */
export interface EventBus {
  publish(event: DeploymentEvent): void;
  subscribe(listener: (event: DeploymentEvent) => void): () => void;
  readonly listenerCount: number;
}

export function createEventBus(): EventBus {
  const listeners = new Set<(event: DeploymentEvent) => void>();
  return {
    publish(event) {
      for (const listener of [...listeners]) listener(event);
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    get listenerCount() {
      return listeners.size;
    },
  };
}
