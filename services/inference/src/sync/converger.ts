import { registry as pb } from '@quanta/contracts';
import type { Logger } from 'pino';
import type { ModelManager, ServingConfig, TrafficShare } from '../core/types.js';
import type { Backoff } from './backoff.js';
import { createBackoff } from './backoff.js';
import type { ModelFetcher } from './model-fetcher.js';
import type { ServingDefaults } from './serving-config.js';
import { configKey, servedName, servingConfig } from './serving-config.js';

/** A deployment's canary or shadow: the version its reference resolved to, and its share. */
interface SideTarget {
  /** `name:N`, pinned like the primary's. */
  readonly ref: string;
  readonly expected: pb.ModelVersion | undefined;
  readonly percent: number;
}

/** What one (tenant, model) should serve: a deployment's resolved version, or a model loaded by hand. */
interface Target {
  readonly source: 'deployment' | 'manual';
  /** The deployment's name; '' for a model loaded by hand. */
  readonly deployment: string;
  /** What to download: `name:N` for a deployment (its resolved version), `name` (latest READY) by hand. */
  readonly ref: string;
  readonly expected: pb.ModelVersion | undefined;
  readonly config: ServingConfig;
  readonly configKey: string;
  /** Loaded beside the primary under the same name, with the same serving config. */
  readonly canary: SideTarget | undefined;
  readonly shadow: SideTarget | undefined;
}

/** One version this replica holds for a (tenant, model), as the converger loaded it. */
interface LoadedVersion {
  readonly sha256: string;
  readonly configKey: string;
}

/** What this replica serves now for one (tenant, model), as the converger put it there. */
interface Applied {
  readonly version: string;
  readonly sha256: string;
  readonly configKey: string;
  readonly source: Target['source'];
  deployment: string;
  /** Every version loaded for it (the primary, a canary, a shadow, by version). */
  readonly loaded: ReadonlyMap<string, LoadedVersion>;
  /** The traffic activated with the primary, compared to know when it changes. */
  readonly trafficKey: string;
}

interface Waiter {
  resolve(): void;
  reject(error: unknown): void;
}

interface Slot {
  readonly key: string;
  readonly tenant: string;
  readonly name: string;
  current: Applied | undefined;
  /** A newer desired state arrived: the loop looks again (so a queued older state is never applied). */
  dirty: boolean;
  running: boolean;
  waiters: Waiter[];
  failures: number;
  retry: NodeJS.Timeout | undefined;
  /** Loaded by hand (RepositoryModelLoad) with no deployment. */
  manual: Target | undefined;
  /** Unloaded by hand: this deployment state stays unloaded until the deployment changes. */
  suppressed: string | undefined;
}

export interface ConvergerOptions {
  readonly manager: ModelManager;
  readonly fetcher: ModelFetcher;
  readonly logger: Logger;
  /** Delay between retries of a failed load. Default 1 s doubling to 60 s. */
  readonly retryBackoff?: Backoff;
  /** Settings every model gets that a deployment does not say. */
  readonly servingDefaults?: ServingDefaults;
}

export interface Converger {
  /** A (re)connection's whole set: every (tenant, model) converges to it, including ones it no longer lists. */
  applySnapshot(deployments: readonly pb.Deployment[]): void;
  applyChange(change: pb.DeploymentChange): void;
  /** True once the first snapshot has been converged (failed loads included: they are FAILED in the index). */
  ready(): boolean;
  whenReady(): Promise<void>;
  /** Resolves when no load or unload is running or queued (retry timers aside). */
  settled(): Promise<void>;
  /** The deployment whose model serves (tenant, name) now, or undefined. */
  deploymentOf(tenant: string, name: string): string | undefined;
  /** Loads the model's deployment, or by hand its latest READY version; rejects with why it failed. */
  load(tenant: string, name: string): Promise<void>;
  /** Unloads the model; a deployment of it stays unloaded until it changes. */
  unload(tenant: string, name: string): Promise<void>;
  /** Stops retries and waits for the running loads; leaves loaded models to the manager's close. */
  close(): Promise<void>;
}

const slotKey = (tenant: string, name: string): string => `${tenant}\u0000${name}`;
const deploymentKey = (d: pb.Deployment): string => `${d.tenant}\u0000${d.name}`;
/** A deployment's state as of now; a changed one lifts a by-hand unload. */
const deploymentState = (d: pb.Deployment): string => `${d.name}#${d.generation}#${d.createTime?.getTime() ?? 0}`;
const reasonOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/** A canary's or shadow's target, when the spec has one and the registry resolved it. */
function sideTarget(
  name: string,
  target: pb.TrafficTarget | undefined,
  resolved: pb.ModelVersion | undefined,
): SideTarget | undefined {
  if (target === undefined || resolved === undefined || resolved.version <= 0) return undefined;
  return {
    ref: `${name}:${resolved.version}`,
    expected: resolved.sha256 !== '' ? resolved : undefined,
    percent: target.percent,
  };
}

function deploymentTarget(d: pb.Deployment, defaults: ServingDefaults): Target {
  const name = servedName(d);
  const resolved = d.resolvedVersion;
  const config = servingConfig(d.spec, defaults);
  return {
    source: 'deployment',
    deployment: d.name,
    // Pinned to the version the event resolved: an alias that moves mid-download cannot mix versions.
    ref: resolved !== undefined && resolved.version > 0 ? `${name}:${resolved.version}` : (d.spec?.modelRef ?? name),
    expected: resolved !== undefined && resolved.sha256 !== '' ? resolved : undefined,
    config,
    configKey: configKey(config),
    canary: sideTarget(name, d.spec?.canary, d.canaryVersion),
    shadow: sideTarget(name, d.spec?.shadow, d.shadowVersion),
  };
}

/** A model loaded by hand (RepositoryModelLoad) with no deployment: one instance, no batching. */
function manualTarget(name: string, defaults: ServingDefaults): Target {
  const config = servingConfig(undefined, defaults);
  return {
    source: 'manual',
    deployment: '',
    ref: name,
    expected: undefined,
    config,
    configKey: configKey(config),
    canary: undefined,
    shadow: undefined,
  };
}

/**
 * Turns the registry's deployments into loaded models: for each (tenant, model) it loads the
 * resolved version beside the one serving, activates it atomically (the old one drains), and
 * unloads what is no longer deployed. Work is serialized per (tenant, model); while one load runs,
 * newer desired states collapse into one, so a queued older state is never applied.
 */
export function createConverger(options: ConvergerOptions): Converger {
  const { manager, fetcher, logger } = options;
  const defaults = options.servingDefaults ?? {};
  const retryBackoff = options.retryBackoff ?? createBackoff({ initialMs: 1000, maxMs: 60_000 });
  const deployments = new Map<string, pb.Deployment>();
  /** The deployments by the (tenant, model) they serve, so a lookup does not scan every tenant's. */
  const byModel = new Map<string, Map<string, pb.Deployment>>();
  const modelKeyOf = (d: pb.Deployment): string => slotKey(d.tenant, servedName(d));

  function setDeployment(d: pb.Deployment): void {
    removeDeployment(deploymentKey(d));
    deployments.set(deploymentKey(d), d);
    const key = modelKeyOf(d);
    let group = byModel.get(key);
    if (group === undefined) byModel.set(key, (group = new Map<string, pb.Deployment>()));
    group.set(deploymentKey(d), d);
  }

  function removeDeployment(key: string): void {
    const old = deployments.get(key);
    if (old === undefined) return;
    deployments.delete(key);
    const group = byModel.get(modelKeyOf(old));
    group?.delete(key);
    if (group?.size === 0) byModel.delete(modelKeyOf(old));
  }
  const slots = new Map<string, Slot>();
  const conflictsLogged = new Set<string>();
  const idleWaiters: (() => void)[] = [];
  let closed = false;
  let isReady = false;
  let markReady!: () => void;
  const readyPromise = new Promise<void>((resolve) => (markReady = resolve));

  function slotOf(tenant: string, name: string): Slot {
    const key = slotKey(tenant, name);
    let slot = slots.get(key);
    if (slot === undefined) {
      slot = {
        key,
        tenant,
        name,
        current: undefined,
        dirty: false,
        running: false,
        waiters: [],
        failures: 0,
        retry: undefined,
        manual: undefined,
        suppressed: undefined,
      };
      slots.set(key, slot);
    }
    return slot;
  }

  /** The deployment that serves (tenant, name): the first by name when several name the same model. */
  function deploymentFor(slot: Slot): pb.Deployment | undefined {
    let chosen: pb.Deployment | undefined;
    let count = 0;
    for (const d of byModel.get(slot.key)?.values() ?? []) {
      count++;
      if (chosen === undefined || d.name < chosen.name) chosen = d;
    }
    if (count > 1 && chosen !== undefined) {
      const note = `${slot.key}\u0000${chosen.name}`;
      if (!conflictsLogged.has(note)) {
        conflictsLogged.add(note);
        logger.warn(
          { tenant: slot.tenant, model: slot.name, deployment: chosen.name, deployments: count },
          'several deployments serve one model name; the first by name wins',
        );
      }
    }
    return chosen;
  }

  function desiredFor(slot: Slot): Target | undefined {
    const d = deploymentFor(slot);
    if (d !== undefined) {
      const state = deploymentState(d);
      if (slot.suppressed === state) return undefined;
      slot.suppressed = undefined;
      return deploymentTarget(d, defaults);
    }
    return slot.manual;
  }

  function schedule(slot: Slot, waiter?: Waiter): void {
    if (waiter !== undefined) slot.waiters.push(waiter);
    if (slot.retry !== undefined) clearTimeout(slot.retry);
    slot.retry = undefined;
    slot.dirty = true;
    if (!slot.running) void run(slot);
  }

  function scheduleAndWait(slot: Slot): Promise<void> {
    return new Promise<void>((resolve, reject) => schedule(slot, { resolve, reject }));
  }

  async function run(slot: Slot): Promise<void> {
    slot.running = true;
    while (slot.dirty && !closed) {
      slot.dirty = false;
      const waiters = slot.waiters.splice(0);
      const target = desiredFor(slot);
      try {
        await apply(slot, target);
        slot.failures = 0;
        for (const w of waiters) w.resolve();
      } catch (error: unknown) {
        for (const w of waiters) w.reject(error);
        // A load by hand reports to its caller and is not retried; a deployment is retried later
        // unless a newer desired state is already queued.
        if (target?.source === 'manual') slot.manual = undefined;
        else if (!slot.dirty && !closed && target !== undefined) {
          const delay = retryBackoff.delay(slot.failures++);
          slot.retry = setTimeout(() => {
            slot.retry = undefined;
            schedule(slot);
          }, delay);
          slot.retry.unref();
        }
      }
    }
    for (const w of slot.waiters.splice(0)) w.reject(new Error('the registry sync is closing'));
    slot.running = false;
    if (![...slots.values()].some((s) => s.running)) for (const resolve of idleWaiters.splice(0)) resolve();
  }

  async function apply(slot: Slot, target: Target | undefined): Promise<void> {
    const { tenant, name } = slot;
    if (target === undefined) {
      if (slot.current !== undefined || manager.find(tenant, name) !== undefined) {
        logger.info(
          { tenant, model: name, version: slot.current?.version },
          `unloading ${tenant}/${name}: no deployment serves it`,
        );
        slot.current = undefined;
        await manager.unload(tenant, name);
      }
      return;
    }
    let version = target.expected === undefined ? '' : String(target.expected.version);
    try {
      const fetched = await fetcher.fetch(tenant, target.ref, target.expected);
      version = String(fetched.version.version);
      const primary = version;
      const sides: { role: 'canary' | 'shadow'; side: SideTarget }[] = [];
      if (target.canary !== undefined) sides.push({ role: 'canary', side: target.canary });
      if (target.shadow !== undefined) sides.push({ role: 'shadow', side: target.shadow });
      const wanted = new Map<string, { sha256: string; bytes: Uint8Array }>([
        [primary, { sha256: fetched.version.sha256, bytes: fetched.bytes }],
      ]);
      const traffic: { canary?: TrafficShare; shadow?: TrafficShare } = {};
      // A canary or shadow that cannot be fetched or loaded is left out (marked FAILED, retried
      // later): the primary serves all the requests meanwhile, never none.
      let sideError: unknown;
      const sideFailed = (role: 'canary' | 'shadow', failed: string, error: unknown): void => {
        sideError ??= error;
        if (failed !== '') manager.markFailed(tenant, name, failed, reasonOf(error));
        logger.error(
          { tenant, model: name, version: failed || undefined, role, reason: reasonOf(error) },
          `the ${role} of ${tenant}/${name} failed to load; the primary serves its requests`,
        );
      };
      for (const { role, side } of sides) {
        const expected = side.expected === undefined ? '' : String(side.expected.version);
        try {
          const got = wanted.has(expected) ? undefined : await fetcher.fetch(tenant, side.ref, side.expected);
          const v = got === undefined ? expected : String(got.version.version);
          if (got !== undefined) wanted.set(v, { sha256: got.version.sha256, bytes: got.bytes });
          traffic[role] = { version: v, percent: side.percent };
        } catch (error: unknown) {
          sideFailed(role, expected, error);
        }
      }
      const current = slot.current;
      const loaded = new Map<string, LoadedVersion>();
      const started = performance.now();
      // Loaded beside the versions serving now; activate switches the current version and the
      // traffic in one step, then what no longer serves drains and unloads.
      let reloaded = false;
      for (const [v, want] of wanted) {
        const held = current?.loaded.get(v);
        const same = held?.sha256 === want.sha256 && held.configKey === target.configKey;
        if (!same || manager.find(tenant, name, v)?.version !== v) {
          try {
            await manager.load(tenant, name, v, want.bytes, target.config);
          } catch (error: unknown) {
            if (v === primary) throw error;
            for (const role of ['canary', 'shadow'] as const)
              if (traffic[role]?.version === v) {
                delete traffic[role];
                sideFailed(role, v, error);
              }
            continue;
          }
          reloaded = true;
        }
        loaded.set(v, { sha256: want.sha256, configKey: target.configKey });
      }
      const trafficKey = JSON.stringify([traffic.canary, traffic.shadow]);
      const changed = reloaded || current?.version !== primary || current.trafficKey !== trafficKey;
      // The side's failure is logged and marked already; the outer catch must not mark the primary.
      const retrySides = (): void => {
        if (sideError === undefined) return;
        version = '';
        throw sideError instanceof Error ? sideError : new Error(reasonOf(sideError));
      };
      if (!changed && current !== undefined) {
        current.deployment = target.deployment;
        retrySides();
        return;
      }
      const hasTraffic = traffic.canary !== undefined || traffic.shadow !== undefined;
      // The version serving until now drains within activate unless it stays on (as canary or shadow).
      const keepPrevious = current !== undefined && loaded.has(current.version);
      await manager.activate(tenant, name, primary, { keepPrevious, ...(hasTraffic ? { traffic } : {}) });
      slot.current = {
        version: primary,
        sha256: fetched.version.sha256,
        configKey: target.configKey,
        source: target.source,
        deployment: target.deployment,
        loaded,
        trafficKey,
      };
      for (const v of current?.loaded.keys() ?? []) if (!loaded.has(v)) await manager.unload(tenant, name, v);
      if (target.source === 'deployment') slot.manual = undefined;
      const split = [
        traffic.canary === undefined ? '' : `, canary ${traffic.canary.version} at ${traffic.canary.percent}%`,
        traffic.shadow === undefined ? '' : `, shadow ${traffic.shadow.version} at ${traffic.shadow.percent || 100}%`,
      ].join('');
      logger.info(
        {
          tenant,
          model: name,
          version: primary,
          canary: traffic.canary,
          shadow: traffic.shadow,
          deployment: target.deployment || undefined,
          cached: fetched.cached,
          ms: Math.round(performance.now() - started),
        },
        `serving ${tenant}/${name}:${primary}${split}` +
          `${target.deployment ? ` for deployment ${target.deployment}` : ''}`,
      );
      retrySides();
    } catch (error: unknown) {
      const reason = reasonOf(error);
      // A load by hand of an unknown model has no version to mark: its caller gets the error.
      if (version !== '') manager.markFailed(tenant, name, version, reason);
      logger.error(
        { tenant, model: name, version: version || undefined, deployment: target.deployment || undefined, reason },
        'model load failed',
      );
      throw error;
    }
  }

  function affectedSlot(d: pb.Deployment | undefined): Slot | undefined {
    return d === undefined ? undefined : slotOf(d.tenant, servedName(d));
  }

  return {
    applySnapshot(list) {
      const affected = new Set<Slot>();
      for (const d of deployments.values()) affected.add(affectedSlot(d)!);
      for (const s of slots.values()) if (s.current?.source === 'deployment') affected.add(s);
      deployments.clear();
      byModel.clear();
      for (const d of list) {
        setDeployment(d);
        affected.add(affectedSlot(d)!);
      }
      if (isReady) {
        for (const slot of affected) schedule(slot);
        return;
      }
      // The first snapshot: ready once each of its loads has succeeded or failed (and is marked FAILED).
      void Promise.allSettled([...affected].map((slot) => scheduleAndWait(slot))).then(() => {
        isReady = true;
        markReady();
      });
    },
    applyChange(change) {
      const d = change.deployment;
      if (d === undefined) return;
      const key = deploymentKey(d);
      const before = deployments.get(key);
      if (change.type === pb.DeploymentChangeType.DEPLOYMENT_CHANGE_TYPE_DELETED) removeDeployment(key);
      else if (change.type === pb.DeploymentChangeType.DEPLOYMENT_CHANGE_TYPE_UPSERTED) setDeployment(d);
      else return;
      logger.info(
        { tenant: d.tenant, deployment: d.name, generation: String(d.generation), reason: change.reason || undefined },
        `deployment ${d.tenant}/${d.name} changed${change.reason ? `: ${change.reason}` : ''}`,
      );
      const slots = new Set([affectedSlot(before), affectedSlot(d)]);
      for (const slot of slots) if (slot !== undefined) schedule(slot);
    },
    ready: () => isReady,
    whenReady: () => readyPromise,
    settled() {
      if (![...slots.values()].some((s) => s.running)) return Promise.resolve();
      return new Promise<void>((resolve) => idleWaiters.push(resolve));
    },
    deploymentOf(tenant, name) {
      const deployment = slots.get(slotKey(tenant, name))?.current?.deployment;
      return deployment === '' ? undefined : deployment;
    },
    load(tenant, name) {
      const slot = slotOf(tenant, name);
      if (deploymentFor(slot) !== undefined) slot.suppressed = undefined;
      else slot.manual = manualTarget(name, defaults);
      return scheduleAndWait(slot);
    },
    unload(tenant, name) {
      const slot = slotOf(tenant, name);
      slot.manual = undefined;
      const d = deploymentFor(slot);
      if (d !== undefined) slot.suppressed = deploymentState(d);
      return scheduleAndWait(slot);
    },
    async close() {
      closed = true;
      for (const slot of slots.values()) {
        if (slot.retry !== undefined) clearTimeout(slot.retry);
        slot.retry = undefined;
      }
      if ([...slots.values()].some((s) => s.running)) await new Promise<void>((resolve) => idleWaiters.push(resolve));
    },
  };
}
