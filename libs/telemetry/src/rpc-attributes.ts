import type { Attributes } from '@opentelemetry/api';

/** Instrumentation scope name for every span and metric this lib records. */
export const INSTRUMENTATION_SCOPE = '@quanta/telemetry';

export const ATTR_RPC_SYSTEM = 'rpc.system';
export const ATTR_RPC_SERVICE = 'rpc.service';
export const ATTR_RPC_METHOD = 'rpc.method';
export const ATTR_RPC_GRPC_STATUS_CODE = 'rpc.grpc.status_code';

export interface RpcName {
  /** Span name: `package.Service/Method` (the gRPC path without its leading slash). */
  readonly spanName: string;
  readonly attributes: Attributes;
}

// A server or client calls the same few methods over and over: their names are split once. Only
// registered methods reach the interceptors (grpc-js answers unknown paths itself), so this stays small;
// the bound is for a client calling many distinct paths.
const MAX_CACHED_PATHS = 10_000;
const byPath = new Map<string, RpcName>();

/**
 * Splits a gRPC method path (`/pkg.Service/Method`) into the span name and the rpc.* attributes. The
 * result is shared by every call of the method: treat it as read-only.
 */
export function rpcNameFromPath(path: string): RpcName {
  let name = byPath.get(path);
  if (name === undefined) {
    name = splitPath(path);
    if (byPath.size < MAX_CACHED_PATHS) byPath.set(path, name);
  }
  return name;
}

function splitPath(path: string): RpcName {
  const trimmed = path.startsWith('/') ? path.slice(1) : path;
  const slash = trimmed.lastIndexOf('/');
  const service = slash >= 0 ? trimmed.slice(0, slash) : '';
  const method = slash >= 0 ? trimmed.slice(slash + 1) : trimmed;
  return {
    spanName: trimmed,
    attributes: { [ATTR_RPC_SYSTEM]: 'grpc', [ATTR_RPC_SERVICE]: service, [ATTR_RPC_METHOD]: method },
  };
}
