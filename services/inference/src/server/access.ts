import type { AccessTable } from '@quanta/service-kit';

const S = '/inference.GRPCInferenceService';

/**
 * Inference's gRPC access matrix (KServe v2 / Triton), enforced by service-kit before each handler
 * runs. Models are served per tenant: another tenant's model answers NOT_FOUND, statistics and the
 * index show the caller's own. A new RPC must be added here, or the service refuses to start. The
 * REST routes declare theirs in http/rest-routes.ts, the Triton metrics in metrics/metrics-server.ts.
 */
export const INFERENCE_ACCESS: AccessTable = {
  // What a load balancer or a Triton client asks before anything else: no token.
  [`${S}/ServerLive`]: { scope: 'public', tenant: 'none' },
  [`${S}/ServerReady`]: { scope: 'public', tenant: 'none' },
  [`${S}/ServerMetadata`]: { scope: 'public', tenant: 'none' },
  [`${S}/ModelReady`]: { scope: 'models:read', tenant: 'own' },
  [`${S}/ModelMetadata`]: { scope: 'models:read', tenant: 'own' },
  [`${S}/ModelConfig`]: { scope: 'models:read', tenant: 'own' },
  [`${S}/ModelStatistics`]: { scope: 'models:read', tenant: 'own' },
  [`${S}/RepositoryIndex`]: { scope: 'models:read', tenant: 'own' },
  [`${S}/ModelInfer`]: { scope: 'infer', tenant: 'own' },
  [`${S}/ModelStreamInfer`]: { scope: 'infer', tenant: 'own' },
  [`${S}/RepositoryModelLoad`]: { scope: 'models:write', tenant: 'own' },
  [`${S}/RepositoryModelUnload`]: { scope: 'models:write', tenant: 'own' },
  // Not supported (UNIMPLEMENTED), and server-wide settings where they are: the platform's `admin`.
  [`${S}/SystemSharedMemoryStatus`]: { scope: 'admin', tenant: 'none' },
  [`${S}/SystemSharedMemoryRegister`]: { scope: 'admin', tenant: 'none' },
  [`${S}/SystemSharedMemoryUnregister`]: { scope: 'admin', tenant: 'none' },
  [`${S}/CudaSharedMemoryStatus`]: { scope: 'admin', tenant: 'none' },
  [`${S}/CudaSharedMemoryRegister`]: { scope: 'admin', tenant: 'none' },
  [`${S}/CudaSharedMemoryUnregister`]: { scope: 'admin', tenant: 'none' },
  [`${S}/TraceSetting`]: { scope: 'admin', tenant: 'none' },
  [`${S}/LogSettings`]: { scope: 'admin', tenant: 'none' },
};
