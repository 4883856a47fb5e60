// What RepositoryModelLoad / RepositoryModelUnload (gRPC) and POST /v2/repository/models/{m}/load|unload
// (REST) call. The registry sync (src/sync/) provides one: it knows where a model's bytes live, how a
// deployment wants it served, and how to download and decrypt it; the front ends only know the
// caller's tenant and the model's name. Without a loader those calls answer UNIMPLEMENTED.

/**
 * Loads and unloads models on request, by name, within one tenant. Errors thrown should be
 * `InferError`s (their `code` is the gRPC status the caller sees, e.g. NOT_FOUND for a model the
 * registry does not know); any other error reaches the caller as INTERNAL.
 */
export interface RepositoryLoader {
  /**
   * Loads (or reloads) the model the registry deploys under `name` for `tenant` and makes it current;
   * resolves once it serves. `parameters` are the request's repository parameters as strings
   * (bool and int64 values stringified, bytes as base64).
   */
  load(tenant: string, name: string, parameters: Record<string, string>): Promise<void>;
  /**
   * Unloads every version of the model; resolves once its queued and running requests have finished.
   * `unloadDependents` is Triton's `unload_dependents` parameter (ensembles); a loader without
   * ensembles may ignore it.
   */
  unload(tenant: string, name: string, unloadDependents: boolean): Promise<void>;
}
