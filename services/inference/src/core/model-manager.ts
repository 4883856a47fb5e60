import type { Logger } from 'pino';
import { createCallerLimiter, type CallerLimiter } from './caller-limits.js';
import { systemClock, type Clock } from './clock.js';
import { createLoadedModel, type LoadedModelHandle } from './loaded-model.js';
import { chooseRoute, takesShadow } from './traffic.js';
import {
  InferError,
  type InferObserver,
  type InferRequest,
  type LoadedModel,
  type ModelBytes,
  type ModelManager,
  type RepositoryEntry,
  type Routed,
  type ServingConfig,
  type Traffic,
} from './types.js';

// Every model version this replica serves, per (tenant, name), and which one is current.
// `activate` switches the current version in one assignment, so a request never sees "none";
// the replaced version drains (queued and running requests finish) before its sessions go.

export interface ModelManagerOptions {
  /** Told about every request, success or failure (monitoring records, metrics). */
  readonly observer?: InferObserver;
  readonly logger?: Logger;
  /** Wall clock for deadlines, last_inference and sequence idle timeouts; default Date.now. */
  readonly clock?: Clock;
}

interface ModelEntry {
  readonly tenant: string;
  readonly name: string;
  /** Loaded versions, READY or draining (UNLOADING) until their sessions are released. */
  readonly versions: Map<string, LoadedModelHandle>;
  readonly loading: Set<string>;
  readonly failed: Map<string, string>;
  /** The deployment's caller limits, shared by its versions; the latest loaded config sets them. */
  readonly limiter: CallerLimiter;
  current: string | undefined;
  /** The canary and the shadow of requests that name no version; replaced with `current`. */
  traffic: Traffic | undefined;
}

function byVersion(a: string, b: string): number {
  const na = Number(a);
  const nb = Number(b);
  if (Number.isFinite(na) && Number.isFinite(nb) && na !== nb) return na - nb;
  return a < b ? -1 : a > b ? 1 : 0;
}

export function createModelManager(options: ModelManagerOptions = {}): ModelManager {
  const clock = options.clock ?? systemClock;
  const { logger, observer } = options;
  const entries = new Map<string, ModelEntry>();
  const keyOf = (tenant: string, name: string): string => `${tenant}\u0000${name}`;

  const entryOf = (tenant: string, name: string): ModelEntry => {
    const key = keyOf(tenant, name);
    let entry = entries.get(key);
    if (entry === undefined) {
      entry = {
        tenant,
        name,
        versions: new Map(),
        loading: new Set(),
        failed: new Map(),
        limiter: createCallerLimiter(),
        current: undefined,
        traffic: undefined,
      };
      entries.set(key, entry);
    }
    return entry;
  };

  const forget = (entry: ModelEntry): void => {
    if (entry.versions.size === 0 && entry.loading.size === 0 && entry.failed.size === 0)
      entries.delete(keyOf(entry.tenant, entry.name));
  };

  const ready = (entry: ModelEntry): string[] =>
    [...entry.versions.values()]
      .filter((model) => model.state === 'READY')
      .map((model) => model.version)
      .sort(byVersion);

  const currentOf = (entry: ModelEntry | undefined): LoadedModelHandle | undefined => {
    if (entry?.current === undefined) return undefined;
    const model = entry.versions.get(entry.current);
    return model?.state === 'READY' ? model : undefined;
  };

  function lookup(tenant: string, name: string, version: string | undefined): LoadedModel | InferError {
    const entry = entries.get(keyOf(tenant, name));
    const loaded = entry === undefined ? [] : ready(entry);
    if (entry === undefined || (loaded.length === 0 && currentOf(entry) === undefined)) {
      return new InferError('NOT_FOUND', `model "${name}" is not loaded for this tenant`);
    }
    const current = currentOf(entry);
    if (version === undefined || version === '') {
      return (
        current ??
        new InferError(
          'NOT_FOUND',
          `model "${name}" has no current version; loaded: ${loaded.join(', ')} (none activated)`,
        )
      );
    }
    const model = entry.versions.get(version);
    if (model?.state === 'READY') return model;
    // A version being replaced still answers, through the version that replaces it.
    if (model?.state === 'UNLOADING' && current !== undefined) return current;
    return new InferError(
      'NOT_FOUND',
      `model "${name}" has no version ${version} loaded; loaded: ${loaded.join(', ') || 'none'}`,
    );
  }

  /** A canary's or shadow's version when it is READY; undefined otherwise (its requests go to the primary). */
  const readyVersion = (entry: ModelEntry, version: string | undefined): LoadedModelHandle | undefined => {
    const model = version === undefined ? undefined : entry.versions.get(version);
    return model?.state === 'READY' ? model : undefined;
  };

  function route(tenant: string, name: string, request: InferRequest): Routed | InferError {
    const found = lookup(tenant, name, undefined);
    if (found instanceof InferError) return found;
    const entry = entries.get(keyOf(tenant, name));
    const traffic = entry?.traffic;
    if (entry === undefined || traffic === undefined) return { model: found, route: 'primary', shadow: undefined };
    // A sequence under way stays with the version that holds its state, whatever the weight is now.
    const sequence = request.sequence;
    if (sequence !== undefined && !sequence.start) {
      const canary = readyVersion(entry, traffic.canary?.version);
      if (canary?.holdsSequence(sequence.id) === true) return { model: canary, route: 'canary', shadow: undefined };
      if (currentOf(entry)?.holdsSequence(sequence.id) === true)
        return { model: found, route: 'primary', shadow: undefined };
    }
    const canary =
      chooseRoute(traffic, request) === 'canary' ? readyVersion(entry, traffic.canary?.version) : undefined;
    const shadow = takesShadow(traffic, request) ? readyVersion(entry, traffic.shadow?.version) : undefined;
    return canary === undefined
      ? { model: found, route: 'primary', shadow }
      : { model: canary, route: 'canary', shadow };
  }

  async function unloadModel(model: LoadedModel): Promise<void> {
    await model.unload();
  }

  let closed = false;
  const closedError = (): InferError => new InferError('UNAVAILABLE', 'the model manager is closed');

  const manager: ModelManager = {
    async load(tenant, name, version, bytes: ModelBytes, config: ServingConfig) {
      if (closed) throw closedError();
      const entry = entryOf(tenant, name);
      entry.loading.add(version);
      entry.failed.delete(version);
      let model: LoadedModelHandle;
      try {
        model = await createLoadedModel({
          tenant,
          name,
          version,
          bytes,
          config,
          clock,
          logger,
          observer,
          limiter: entry.limiter,
          redirect: () => currentOf(entries.get(keyOf(tenant, name))),
          onUnload: (unloading) => {
            if (entry.current === unloading.version && entry.versions.get(unloading.version) === unloading)
              entry.current = undefined;
          },
          onReleased: (released) => {
            if (entry.versions.get(released.version) === released) entry.versions.delete(released.version);
            forget(entry);
          },
        });
      } catch (error: unknown) {
        const reason = error instanceof Error ? error.message : String(error);
        entry.failed.set(version, reason);
        logger?.warn(
          { tenant, model: name, version, reason },
          `${tenant}/${name}:${version} failed to load: ${reason}`,
        );
        throw new InferError('INVALID_ARGUMENT', `model "${name}" version ${version} failed to load: ${reason}`);
      } finally {
        entry.loading.delete(version);
      }
      if (closed) {
        // close() ran while this version was loading: it must not outlive the manager.
        await model.unload();
        forget(entry);
        throw closedError();
      }
      const previous = entry.versions.get(version);
      entry.versions.set(version, model);
      entry.limiter.configure(config);
      entry.failed.delete(version);
      // Reloading a version swaps it in place: requests for it (or for the current version, if it
      // was that one) reach the new sessions at once while the old ones drain.
      if (previous !== undefined && previous !== model) void unloadModel(previous);
      logger?.info(
        { tenant, model: name, version, batchable: model.signature.batchable },
        `loaded ${tenant}/${name}:${version}`,
      );
      return model;
    },

    async activate(tenant, name, version, activateOptions = {}) {
      const entry = entries.get(keyOf(tenant, name));
      const model = entry?.versions.get(version);
      if (entry === undefined || model?.state !== 'READY') {
        const loaded = entry === undefined ? [] : ready(entry);
        throw new InferError(
          'NOT_FOUND',
          loaded.length === 0
            ? `model "${name}" is not loaded for this tenant`
            : `model "${name}" has no version ${version} loaded; loaded: ${loaded.join(', ')}`,
        );
      }
      const previous = entry.current === undefined ? undefined : entry.versions.get(entry.current);
      // One step: a request sees the new current version with the traffic that goes with it.
      entry.current = version;
      entry.traffic = activateOptions.traffic;
      logger?.info(
        { tenant, model: name, version, previous: previous?.version },
        `${tenant}/${name} now serves version ${version}${previous === undefined ? '' : ` (was ${previous.version})`}`,
      );
      if (previous !== undefined && previous !== model && activateOptions.keepPrevious !== true)
        await unloadModel(previous);
    },

    async unload(tenant, name, version) {
      const entry = entries.get(keyOf(tenant, name));
      if (entry === undefined) return;
      if (version === undefined) {
        entry.current = undefined;
        entry.traffic = undefined;
        entry.failed.clear();
        await Promise.all([...entry.versions.values()].map(unloadModel));
        forget(entry);
        return;
      }
      entry.failed.delete(version);
      const model = entry.versions.get(version);
      if (model !== undefined) await unloadModel(model);
      forget(entry);
    },

    get(tenant, name, version) {
      const found = lookup(tenant, name, version);
      if (found instanceof InferError) throw found;
      return found;
    },

    find(tenant, name, version) {
      const found = lookup(tenant, name, version);
      return found instanceof InferError ? undefined : found;
    },

    route(tenant, name, request) {
      const routed = route(tenant, name, request);
      if (routed instanceof InferError) throw routed;
      return routed;
    },

    index(tenant) {
      const rows: RepositoryEntry[] = [];
      for (const entry of entries.values()) {
        if (tenant !== undefined && entry.tenant !== tenant) continue;
        const base = { tenant: entry.tenant, name: entry.name };
        const seen = new Set<string>();
        for (const model of entry.versions.values()) {
          seen.add(model.version);
          rows.push({ ...base, version: model.version, state: model.state, reason: '' });
        }
        for (const version of entry.loading) {
          if (!seen.has(version)) rows.push({ ...base, version, state: 'LOADING', reason: '' });
          seen.add(version);
        }
        for (const [version, reason] of entry.failed)
          if (!seen.has(version)) rows.push({ ...base, version, state: 'FAILED', reason });
      }
      return rows.sort((a, b) =>
        a.tenant < b.tenant
          ? -1
          : a.tenant > b.tenant
            ? 1
            : a.name < b.name
              ? -1
              : a.name > b.name
                ? 1
                : byVersion(a.version, b.version),
      );
    },

    markFailed(tenant, name, version, reason) {
      entryOf(tenant, name).failed.set(version, reason);
    },

    async close() {
      closed = true;
      await Promise.all([...entries.values()].map((entry) => manager.unload(entry.tenant, entry.name)));
    },
  };
  return manager;
}

/**
 * Every version `manager` serves now, of one tenant or of all, each once. The index also lists a
 * version being replaced, and `find` answers for it with its replacement: only a version found as
 * itself counts (ModelStatistics and Triton's metrics both list these).
 */
export function loadedVersions(manager: ModelManager, tenant?: string): LoadedModel[] {
  return manager.index(tenant).flatMap((entry) => {
    const model = manager.find(entry.tenant, entry.name, entry.version);
    return model !== undefined && model.version === entry.version && model.tenant === entry.tenant ? [model] : [];
  });
}
