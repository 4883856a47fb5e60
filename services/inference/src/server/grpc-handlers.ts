// inference.GRPCInferenceService (KServe v2 + Triton's extensions) over the InferenceApi. Health
// RPCs are public like Triton's; everything else needs a token, and sees only its tenant's models.
import type { handleUnaryCall } from '@grpc/grpc-js';
import { decodeModelInferRequest, encodeModelInferResponse, encodeModelStreamInferResponse, inference as pb } from '@quanta/contracts';
import type { CallContext, Principal } from '@quanta/service-kit';
import { bidiStreaming, isServiceError, unary, unauthenticated, unimplemented } from '@quanta/service-kit';
import { mapErrors, toServiceError } from './errors.js';
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

/** How many requests of one ModelStreamInfer run at once; responses still go back in request order. */
export const STREAM_PIPELINE_DEPTH = 32;

function tenantOf(ctx: CallContext): string {
  const principal: Principal | undefined = ctx.principal;
  if (principal === undefined) throw unauthenticated(`${ctx.method} needs a token`);
  return principal.tenant;
}

function notSupported<Req, Res>(what: string): handleUnaryCall<Req, Res> {
  return unary<Req, Res>({ scope: 'public' }, () => Promise.reject(unimplemented(`${what} is not supported by Quanta inference`)));
}

const rethrowMapped = (error: unknown): never => {
  throw toServiceError(error);
};

// eslint-disable-next-line @typescript-eslint/require-await -- an async function turns the throw into a rejection
async function failed(error: unknown): Promise<never> {
  throw toServiceError(error);
}

/** One ModelInfer: a plain promise chain (no async wrappers: this runs for every request). */
function infer(api: InferenceApi, message: pb.ModelInferRequest, ctx: CallContext): Promise<pb.ModelInferResponse> {
  let decoded: DecodedInfer;
  let tenant: string;
  try {
    tenant = tenantOf(ctx);
    decoded = decodeInferRequest(message, ctx);
  } catch (error: unknown) {
    return failed(error);
  }
  const { raw } = decoded;
  return api.infer(tenant, decoded.name, decoded.version, decoded.request).then((result) => {
    try {
      return encodeInferResponse(result, raw);
    } catch (error: unknown) {
      return rethrowMapped(error);
    }
  }, rethrowMapped);
}

const noop = (): undefined => undefined;

/**
 * The responses of a stream, in request order, with up to `depth` requests running at once: a
 * request is handed to the core as soon as it arrives (so a sequence's requests reach it in
 * order), and reading stops while `depth` responses wait to be written.
 */
async function* pipelined<Req, Res>(requests: AsyncIterable<Req>, run: (request: Req) => Promise<Res>, depth: number): AsyncGenerator<Res> {
  const pending: Promise<Res>[] = [];
  const iterator = requests[Symbol.asyncIterator]();
  let done = false;
  let reading: Promise<IteratorResult<Req>> | undefined;
  try {
    while (!done || pending.length > 0) {
      while (!done && pending.length < depth) {
        reading ??= iterator.next();
        // Do not wait for the next request while a response is ready to be written.
        const next = pending.length === 0 ? await reading : await Promise.race([reading, pending[0]!.then(noop, noop)]);
        if (next === undefined) break;
        reading = undefined;
        if (next.done === true) done = true;
        else pending.push(run(next.value));
      }
      const head = pending.shift();
      if (head !== undefined) yield await head;
    }
  } finally {
    // Responses nobody will read: keep their rejections from going unhandled.
    for (const p of pending) p.catch(noop);
    // Not awaited: with a read still pending, an async generator's return() waits for it.
    reading?.catch(noop);
    Promise.resolve(iterator.return?.()).catch(noop);
  }
}

/**
 * The service definition the server registers: the generated one, with the hand-written codecs of
 * @quanta/contracts on ModelInfer and ModelStreamInfer (requests and responses). The same messages and bytes as the
 * generated codecs, but raw_input_contents are views of the received message (no copy of the tensor
 * bytes) and raw outputs are copied once into the response; fewer and smaller buffers to allocate and
 * collect per request (the garbage collector was most of a PP-OCR request's CPU beside the model).
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
    serverLive: unary<pb.ServerLiveRequest, pb.ServerLiveResponse>({ scope: 'public' }, () => Promise.resolve({ live: true })),
    serverReady: unary<pb.ServerReadyRequest, pb.ServerReadyResponse>({ scope: 'public' }, () => Promise.resolve({ ready: api.ready() })),
    modelReady: unary<pb.ModelReadyRequest, pb.ModelReadyResponse>({ scope: 'models:read' }, (req, ctx) =>
      mapErrors(() => ({ ready: api.modelReady(tenantOf(ctx), req.name, req.version) })),
    ),
    serverMetadata: unary<pb.ServerMetadataRequest, pb.ServerMetadataResponse>({ scope: 'public' }, () => Promise.resolve(api.serverMetadata())),
    modelMetadata: unary<pb.ModelMetadataRequest, pb.ModelMetadataResponse>({ scope: 'models:read' }, (req, ctx) =>
      mapErrors(() => encodeModelMetadata(api.modelMetadata(tenantOf(ctx), req.name, req.version))),
    ),
    modelInfer: unary<pb.ModelInferRequest, pb.ModelInferResponse>({ scope: 'infer' }, (req, ctx) => infer(api, req, ctx)),
    modelStreamInfer: bidiStreaming<pb.ModelInferRequest, pb.ModelStreamInferResponse>({ scope: 'infer' }, (requests, ctx) =>
      pipelined(
        requests,
        async (message): Promise<pb.ModelStreamInferResponse> => {
          try {
            return { errorMessage: '', inferResponse: await infer(api, message, ctx) };
          } catch (error: unknown) {
            // Errors travel in the stream, which goes on (Triton). Only our own errors carry
            // their message; anything else is a bug whose details stay in the log.
            const mapped = toServiceError(error);
            if (isServiceError(mapped)) return { errorMessage: mapped.message, inferResponse: undefined };
            ctx.logger.error({ err: error, request_id: message.id }, 'ModelStreamInfer request failed');
            return { errorMessage: 'internal error', inferResponse: undefined };
          }
        },
        STREAM_PIPELINE_DEPTH,
      ),
    ),
    modelStatistics: unary<pb.ModelStatisticsRequest, pb.ModelStatisticsResponse>({ scope: 'models:read' }, (req, ctx) =>
      mapErrors(() => ({ modelStats: api.stats(tenantOf(ctx), req.name, req.version).map(encodeModelStatistics) })),
    ),
    repositoryIndex: unary<pb.RepositoryIndexRequest, pb.RepositoryIndexResponse>({ scope: 'models:read' }, (req, ctx) =>
      mapErrors(() => ({ models: api.index(tenantOf(ctx), req.ready).map(encodeIndexEntry) })),
    ),
    repositoryModelLoad: unary<pb.RepositoryModelLoadRequest, pb.RepositoryModelLoadResponse>({ scope: 'models:write' }, (req, ctx) =>
      mapErrors(async () => {
        await api.load(tenantOf(ctx), req.modelName, repositoryParameters(req.parameters));
        return {};
      }),
    ),
    repositoryModelUnload: unary<pb.RepositoryModelUnloadRequest, pb.RepositoryModelUnloadResponse>({ scope: 'models:write' }, (req, ctx) =>
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
