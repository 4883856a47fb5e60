// What both front ends do, in their common terms: the gRPC handlers and the REST routes only
// translate their wire forms to and from these calls. Every call is scoped to one tenant, and
// every failure is a ServiceError (the gRPC status; REST maps it to HTTP).
import type { inferenceConfig } from '@quanta/contracts';
import { invalidArgument, notFound, unimplemented } from '@quanta/service-kit';
import { loadedVersions } from '../core/model-manager.js';
import { createShadowRunner } from '../core/traffic.js';
import type {
  InferRequest,
  InferResult,
  LoadedModel,
  ModelManager,
  ModelStats,
  RepositoryEntry,
  Routed,
  TensorSpec,
} from '../core/types.js';
import { mapErrors, toDomainError } from './errors.js';
import { PLATFORM, describeModelConfig } from './model-config.js';
import type { RepositoryLoader } from './repository-loader.js';

export const SERVER_NAME = 'quanta';

export interface ModelMetadata {
  readonly name: string;
  /** The versions this replica serves for the caller's tenant. */
  readonly versions: string[];
  readonly platform: string;
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
}

export interface InferenceApiOptions {
  readonly manager: ModelManager;
  /** The registry sync; without it, load and unload answer UNIMPLEMENTED. */
  readonly loader?: RepositoryLoader | undefined;
  /** Whether the replica has converged on what it must serve (ServerReady); default always. */
  readonly ready?: (() => boolean) | undefined;
  /** The server version in ServerMetadata. */
  readonly version: string;
  /** Shadow copies running at once; beyond it copies are dropped. Default DEFAULT_MAX_SHADOWS_IN_FLIGHT. */
  readonly maxShadowsInFlight?: number;
}

export interface InferenceApi {
  ready(): boolean;
  serverMetadata(): { name: string; version: string; extensions: string[] };
  modelReady(tenant: string, name: string, version: string): boolean;
  modelMetadata(tenant: string, name: string, version: string): ModelMetadata;
  /** Triton's model configuration of (tenant, name, version); '' is the current version. */
  modelConfig(tenant: string, name: string, version: string): inferenceConfig.ModelConfig;
  /** Runs one request on (tenant, name, version); '' is the current version. */
  infer(tenant: string, name: string, version: string, request: InferRequest): Promise<InferResult>;
  /** Statistics of one version, every version of one model ('' version), or every model ('' name). */
  stats(tenant: string, name: string, version: string): ModelStats[];
  index(tenant: string, readyOnly: boolean): RepositoryEntry[];
  load(tenant: string, name: string, parameters: Record<string, string>): Promise<void>;
  unload(tenant: string, name: string, unloadDependents: boolean): Promise<void>;
}

const rethrowMapped = (error: unknown): never => {
  throw toDomainError(error);
};

// eslint-disable-next-line @typescript-eslint/require-await -- an async function turns the throw into a rejection
async function failed(error: unknown): Promise<never> {
  throw toDomainError(error);
}

const ignore = (): void => undefined;

export function createInferenceApi(options: InferenceApiOptions): InferenceApi {
  const { manager, loader } = options;
  const shadows = createShadowRunner(options.maxShadowsInFlight);
  // binary_tensor_data: the REST listener's binary inputs and outputs (gRPC has raw contents).
  const extensions = [
    'binary_tensor_data',
    'model_configuration',
    'sequence',
    'statistics',
    ...(loader === undefined ? [] : ['model_repository', 'model_repository(unload_dependents)']),
  ];

  const requireName = (name: string): void => {
    if (name === '') throw invalidArgument('the model name is empty');
  };
  const get = (tenant: string, name: string, version: string): LoadedModel => {
    requireName(name);
    try {
      return manager.get(tenant, name, version === '' ? undefined : version);
    } catch (error: unknown) {
      throw toDomainError(error);
    }
  };
  const versionsOf = (tenant: string, name: string): string[] =>
    manager
      .index(tenant)
      .filter((e) => e.name === name && e.state === 'READY')
      .map((e) => e.version);
  // Versions unloaded through RepositoryModelUnload, per tenant and model: Triton keeps listing an
  // unloaded model in its repository index (UNAVAILABLE, "unloaded") until it is loaded again.
  const unloaded = new Map<string, RepositoryEntry[]>();
  const unloadedKey = (tenant: string, name: string): string => `${tenant}\u0000${name}`;
  const noRegistry = (what: string): Error =>
    unimplemented(
      `${what} needs the model registry, and none is configured on this replica ` +
        '(start it with QUANTA_INFERENCE_WATCH=true)',
    );

  return {
    ready: () => options.ready?.() ?? true,
    serverMetadata: () => ({ name: SERVER_NAME, version: options.version, extensions: [...extensions] }),
    modelReady(tenant, name, version) {
      requireName(name);
      return manager.find(tenant, name, version === '' ? undefined : version)?.state === 'READY';
    },
    modelMetadata(tenant, name, version) {
      const model = get(tenant, name, version);
      const versions = versionsOf(tenant, name);
      return {
        name: model.name,
        versions: versions.includes(model.version) ? versions : [...versions, model.version],
        platform: PLATFORM,
        inputs: model.signature.inputs,
        outputs: model.signature.outputs,
      };
    },
    modelConfig(tenant, name, version) {
      return describeModelConfig(get(tenant, name, version));
    },
    infer(tenant, name, version, request) {
      let routed: Routed;
      try {
        if (version === '') {
          requireName(name);
          routed = manager.route(tenant, name, request);
        } else routed = { model: get(tenant, name, version), route: 'primary', shadow: undefined };
      } catch (error: unknown) {
        return failed(error);
      }
      const answer = routed.model.infer(routed.route === 'canary' ? { ...request, route: 'canary' } : request);
      const shadow = routed.shadow;
      // The copy starts once the primary answered and is not awaited: the caller's answer and its
      // latency are the primary's alone.
      if (shadow !== undefined) answer.then((result) => shadows.run(shadow, request, result), ignore);
      return answer.catch(rethrowMapped);
    },
    stats(tenant, name, version) {
      if (name === '') return loadedVersions(manager, tenant).map((m) => m.stats());
      if (version !== '') return [get(tenant, name, version).stats()];
      const loaded = loadedVersions(manager, tenant).filter((m) => m.name === name);
      if (loaded.length === 0) throw notFound(`model "${name}" is not loaded on this replica`);
      return loaded.map((m) => m.stats());
    },
    index(tenant, readyOnly) {
      const rows = manager.index(tenant);
      if (readyOnly) return rows.filter((e) => e.state === 'READY');
      const listed = new Set(rows.map((e) => unloadedKey(e.name, e.version)));
      for (const [key, entries] of unloaded) {
        if (!key.startsWith(unloadedKey(tenant, ''))) continue;
        for (const entry of entries) if (!listed.has(unloadedKey(entry.name, entry.version))) rows.push(entry);
      }
      return rows.sort((a, b) =>
        a.name < b.name ? -1 : a.name > b.name ? 1 : a.version.localeCompare(b.version, 'en', { numeric: true }),
      );
    },
    async load(tenant, name, parameters) {
      requireName(name);
      if (loader === undefined) throw noRegistry('RepositoryModelLoad');
      await mapErrors(() => loader.load(tenant, name, parameters));
      unloaded.delete(unloadedKey(tenant, name));
    },
    async unload(tenant, name, unloadDependents) {
      requireName(name);
      if (loader === undefined) throw noRegistry('RepositoryModelUnload');
      const versions = manager.index(tenant).filter((e) => e.name === name);
      await mapErrors(() => loader.unload(tenant, name, unloadDependents));
      if (versions.length > 0)
        unloaded.set(
          unloadedKey(tenant, name),
          versions.map((e) => ({ ...e, state: 'UNAVAILABLE', reason: 'unloaded' })),
        );
    },
  };
}
