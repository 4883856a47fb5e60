// inference.GRPCInferenceService (KServe v2 + Triton's extensions) over the InferenceApi. Health
// RPCs are public like Triton's; everything else needs a token, and sees only its tenant's models.
import type { handleUnaryCall } from '@grpc/grpc-js';
import {
  decodeModelInferRequest,
  encodeModelInferResponse,
  encodeModelStreamInferResponse,
  inference as pb,
} from '@quanta/contracts';
import type { CallContext, Principal } from '@quanta/service-kit';
import { bidiStreamingCall, isDomainError, unary, unauthenticated, unimplemented } from '@quanta/service-kit';
import { mapErrors, toDomainError } from './errors.js';
import {
  type DecodedInfer,
  decodeInferRequest,
  encodeIndexEntry,
  encodeInferResponse,
  encodeModelMetadata,
  encodeModelStatistics,
  repositoryParameters,
} from './grpc-convert.js';
import type { InferenceApi } from './inference-api.js';
import { pumpStream } from './stream-pipeline.js';

/** How many requests of one ModelStreamInfer run at once; responses still go back in request order. */
export const STREAM_PIPELINE_DEPTH = 32;

function tenantOf(ctx: CallContext): string {
  const principal: Principal | undefined = ctx.principal;
  if (principal === undefined) throw unauthenticated(`${ctx.method} needs a token`);
  return principal.tenant;
}

function notSupported<Req, Res>(what: string): handleUnaryCall<Req, Res> {
  return unary<Req, Res>(() => Promise.reject(unimplemented(`${what} is not supported by Quanta inference`)));
}

const rethrowMapped = (error: unknown): never => {
  throw toDomainError(error);
};

// eslint-disable-next-line @typescript-eslint/require-await -- an async function turns the throw into a rejection
async function failed(error: unknown): Promise<never> {
  throw toDomainError(error);
}

/** One ModelInfer: a plain promise chain (no async wrappers: this runs for every request). */
function infer(api: InferenceApi, message: pb.ModelInferRequest, ctx: CallContext): Promise<pb.ModelInferResponse> {
  let raw: DecodedInfer['raw'];
  let result: ReturnType<InferenceApi['infer']>;
  try {
    const tenant = tenantOf(ctx);
    const decoded = decodeInferRequest(message, ctx);
    raw = decoded.raw;
    result = api.infer(tenant, decoded.name, decoded.version, decoded.request);
  } catch (error: unknown) {
    return failed(error);
  }
  return result.then((inferred) => {
    try {
      return encodeInferResponse(inferred, raw);
    } catch (error: unknown) {
      return rethrowMapped(error);
    }
  }, rethrowMapped);
}

/**
 * One request of a ModelStreamInfer: its response, or its error as a response. Errors travel in the
 * stream, which goes on (Triton). Only our own errors carry their message; anything else is a bug
 * whose details stay in the log. Never rejects.
 */
function streamInfer(
  api: InferenceApi,
  message: pb.ModelInferRequest,
  ctx: CallContext,
): Promise<pb.ModelStreamInferResponse> {
  return infer(api, message, ctx).then(
    (inferResponse) => ({ errorMessage: '', inferResponse }),
    (error: unknown) => {
      const mapped = toDomainError(error);
      if (isDomainError(mapped)) return { errorMessage: mapped.message, inferResponse: undefined };
      ctx.logger.error({ err: error, request_id: message.id }, 'ModelStreamInfer request failed');
      return { errorMessage: 'internal error', inferResponse: undefined };
    },
  );
}

/**
 * The service definition the server registers: the generated one, with the hand-written codecs of
 * @quanta/contracts on ModelInfer and ModelStreamInfer (requests and responses). The same messages and
 * bytes as the generated codecs, but raw_input_contents are views of the received message (no copy
 * of the tensor bytes) and raw outputs are copied once into the response: fewer and smaller buffers
 * to allocate and collect per request, since garbage collection is a large share of a request's CPU
 * beside the model (measured in tools/bench/README.md, "Where a ModelInfer's server CPU goes").
 */
export const grpcInferenceServiceDefinition: typeof pb.GRPCInferenceServiceService = {
  ...pb.GRPCInferenceServiceService,
  modelInfer: {
    ...pb.GRPCInferenceServiceService.modelInfer,
    requestDeserialize: decodeModelInferRequest,
    responseSerialize: encodeModelInferResponse,
  },
  modelStreamInfer: {
    ...pb.GRPCInferenceServiceService.modelStreamInfer,
    requestDeserialize: decodeModelInferRequest,
    responseSerialize: encodeModelStreamInferResponse,
  },
};

export function createGrpcHandlers(api: InferenceApi): pb.GRPCInferenceServiceServer {
  return {
    serverLive: unary<pb.ServerLiveRequest, pb.ServerLiveResponse>(() => Promise.resolve({ live: true })),
    serverReady: unary<pb.ServerReadyRequest, pb.ServerReadyResponse>(() => Promise.resolve({ ready: api.ready() })),
    modelReady: unary<pb.ModelReadyRequest, pb.ModelReadyResponse>((req, ctx) =>
      mapErrors(() => ({ ready: api.modelReady(tenantOf(ctx), req.name, req.version) })),
    ),
    serverMetadata: unary<pb.ServerMetadataRequest, pb.ServerMetadataResponse>(() =>
      Promise.resolve(api.serverMetadata()),
    ),
    modelMetadata: unary<pb.ModelMetadataRequest, pb.ModelMetadataResponse>((req, ctx) =>
      mapErrors(() => encodeModelMetadata(api.modelMetadata(tenantOf(ctx), req.name, req.version))),
    ),
    modelConfig: unary<pb.ModelConfigRequest, pb.ModelConfigResponse>((req, ctx) =>
      mapErrors(() => ({ config: api.modelConfig(tenantOf(ctx), req.name, req.version) })),
    ),
    modelInfer: unary<pb.ModelInferRequest, pb.ModelInferResponse>((req, ctx) => infer(api, req, ctx)),
    modelStreamInfer: bidiStreamingCall<pb.ModelInferRequest, pb.ModelStreamInferResponse>((call, ctx) =>
      pumpStream(call, ctx, (message) => streamInfer(api, message, ctx), STREAM_PIPELINE_DEPTH),
    ),
    modelStatistics: unary<pb.ModelStatisticsRequest, pb.ModelStatisticsResponse>((req, ctx) =>
      mapErrors(() => ({ modelStats: api.stats(tenantOf(ctx), req.name, req.version).map(encodeModelStatistics) })),
    ),
    repositoryIndex: unary<pb.RepositoryIndexRequest, pb.RepositoryIndexResponse>((req, ctx) =>
      mapErrors(() => ({ models: api.index(tenantOf(ctx), req.ready).map(encodeIndexEntry) })),
    ),
    repositoryModelLoad: unary<pb.RepositoryModelLoadRequest, pb.RepositoryModelLoadResponse>((req, ctx) =>
      mapErrors(async () => {
        await api.load(tenantOf(ctx), req.modelName, repositoryParameters(req.parameters));
        return {};
      }),
    ),
    repositoryModelUnload: unary<pb.RepositoryModelUnloadRequest, pb.RepositoryModelUnloadResponse>((req, ctx) =>
      mapErrors(async () => {
        const dependents = req.parameters['unload_dependents']?.parameterChoice;
        await api.unload(tenantOf(ctx), req.modelName, dependents?.$case === 'boolParam' && dependents.value);
        return {};
      }),
    ),
    systemSharedMemoryStatus: notSupported('System shared memory'),
    systemSharedMemoryRegister: notSupported('System shared memory'),
    systemSharedMemoryUnregister: notSupported('System shared memory'),
    cudaSharedMemoryStatus: notSupported('CUDA shared memory'),
    cudaSharedMemoryRegister: notSupported('CUDA shared memory'),
    cudaSharedMemoryUnregister: notSupported('CUDA shared memory'),
    traceSetting: notSupported('TraceSetting (traces are configured with OpenTelemetry: OTEL_* variables)'),
    logSettings: notSupported('LogSettings (logging is configured with QUANTA_LOG_LEVEL)'),
  };
}
