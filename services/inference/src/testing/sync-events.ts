// Test instrumentation: an event log whose `until` resolves when a matching event has happened
// (already or later), so tests wait on what the sync did instead of sleeping.
import type { ModelManager, ServingConfig } from '../core/types.js';

export interface EventLog<E> {
  readonly events: readonly E[];
  push(event: E): void;
  /** Resolves with the first event at or after index `from` that matches. */
  until(match: (event: E) => boolean, from?: number): Promise<E>;
}

export function createEventLog<E>(): EventLog<E> {
  const events: E[] = [];
  const waiters: { match: (event: E) => boolean; from: number; resolve: (event: E) => void }[] = [];
  return {
    events,
    push(event) {
      events.push(event);
      for (const w of [...waiters]) {
        if (events.length - 1 >= w.from && w.match(event)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(event);
        }
      }
    },
    until(match, from = 0) {
      const found = events.slice(from).find(match);
      if (found !== undefined) return Promise.resolve(found);
      return new Promise<E>((resolve) => waiters.push({ match, from, resolve }));
    },
  };
}

export interface ManagerEvent {
  readonly op: 'load' | 'activate' | 'unload' | 'markFailed';
  readonly tenant: string;
  readonly name: string;
  readonly version: string | undefined;
  readonly config?: ServingConfig;
  readonly reason?: string;
}

/** The real manager, with every finished load, activate, unload and markFailed logged. */
export function recordingManager(manager: ModelManager): { manager: ModelManager; log: EventLog<ManagerEvent> } {
  const log = createEventLog<ManagerEvent>();
  return {
    log,
    manager: {
      ...manager,
      async load(tenant, name, version, bytes, config) {
        const model = await manager.load(tenant, name, version, bytes, config);
        log.push({ op: 'load', tenant, name, version, config });
        return model;
      },
      async activate(tenant, name, version, options) {
        await manager.activate(tenant, name, version, options);
        log.push({ op: 'activate', tenant, name, version });
      },
      async unload(tenant, name, version) {
        await manager.unload(tenant, name, version);
        log.push({ op: 'unload', tenant, name, version });
      },
      markFailed(tenant, name, version, reason) {
        manager.markFailed(tenant, name, version, reason);
        log.push({ op: 'markFailed', tenant, name, version, reason });
      },
    },
  };
}
