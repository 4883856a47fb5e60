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

/** Splits a gRPC method path (`/pkg.Service/Method`) into the span name and the rpc.* attributes. */
export function rpcNameFromPath(path: string): RpcName {
  const trimmed = path.startsWith('/') ? path.slice(1) : path;
  const slash = trimmed.lastIndexOf('/');
  const service = slash >= 0 ? trimmed.slice(0, slash) : '';
  const method = slash >= 0 ? trimmed.slice(slash + 1) : trimmed;
  return {
    spanName: trimmed,
    attributes: { [ATTR_RPC_SYSTEM]: 'grpc', [ATTR_RPC_SERVICE]: service, [ATTR_RPC_METHOD]: method },
  };
}
