// Clients of the stack's services as a partner builds them from the contracts, plus the steps
// every end-to-end scenario repeats (tokens, push, deploy, wait until served, infer).
import { createHash, randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { crypto, inference, monitoring, registry, unaryCaller } from '@quanta/contracts';
import { tensorFromWire, tensorToWire, type Tensor } from '@quanta/tensor';
import * as ort from 'onnxruntime-node';
import type { Stack } from './stack.js';

export function bearer(token: string, traceparent?: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  if (traceparent !== undefined) md.set('traceparent', traceparent);
  return md;
}

/** A W3C traceparent for a client span of our own: the root of the trace it starts. */
export function rootTraceparent(): { traceparent: string; traceId: string; spanId: string } {
  const traceId = randomBytes(16).toString('hex');
  const spanId = randomBytes(8).toString('hex');
  return { traceparent: `00-${traceId}-${spanId}-01`, traceId, spanId };
}

export interface Clients {
  readonly crypto: crypto.CryptoServiceClient;
  readonly registry: registry.RegistryServiceClient;
  readonly monitoring: monitoring.MonitoringServiceClient;
  readonly inference: inference.GRPCInferenceServiceClient;
  readonly rpc: {
    crypto: ReturnType<typeof unaryCaller<typeof crypto.CryptoServiceService>>;
    registry: ReturnType<typeof unaryCaller<typeof registry.RegistryServiceService>>;
    monitoring: ReturnType<typeof unaryCaller<typeof monitoring.MonitoringServiceService>>;
    inference: ReturnType<typeof unaryCaller<typeof inference.GRPCInferenceServiceService>>;
  };
  close(): void;
}

/** `credentials`: TLS/mTLS towards a stack started with TLS; plaintext by default. */
export function connectClients(
  stack: Stack,
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
): Clients {
  const c = {
    crypto: new crypto.CryptoServiceClient(stack.addr.crypto, credentials),
    registry: new registry.RegistryServiceClient(stack.addr.registry, credentials),
    monitoring: new monitoring.MonitoringServiceClient(stack.addr.monitoring, credentials),
    inference: new inference.GRPCInferenceServiceClient(stack.addr.inference, credentials),
  };
  return {
    ...c,
    rpc: {
      crypto: unaryCaller(c.crypto, crypto.CryptoServiceService),
      registry: unaryCaller(c.registry, registry.RegistryServiceService),
      monitoring: unaryCaller(c.monitoring, monitoring.MonitoringServiceService),
      inference: unaryCaller(c.inference, inference.GRPCInferenceServiceService),
    },
    close() {
      for (const client of Object.values(c)) client.close();
    },
  };
}

export async function issueToken(
  clients: Clients,
  adminToken: string,
  tenant: string,
  scopes: string[],
): Promise<string> {
  const reply = await clients.rpc.crypto(
    'issueToken',
    { tenant, subject: `${tenant}-e2e`, scopes, ttlSeconds: 3600n },
    { metadata: bearer(adminToken) },
  );
  return reply.token;
}

export function pushModel(
  clients: Clients,
  token: string,
  model: string,
  bytes: Uint8Array,
): Promise<registry.UploadVersionResponse> {
  return new Promise((resolve, reject) => {
    const call = clients.registry.uploadVersion(bearer(token), { deadline: Date.now() + 120_000 }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
    call.write({
      part: {
        $case: 'header',
        value: {
          model,
          description: 'e2e',
          tags: {},
          expectedSha256: createHash('sha256').update(bytes).digest('hex'),
          expectedSizeBytes: BigInt(bytes.length),
          createModel: true,
          lineage: undefined,
        },
      },
    });
    for (let at = 0; at < bytes.length; at += 256 << 10)
      call.write({ part: { $case: 'chunk', value: Buffer.from(bytes.subarray(at, at + (256 << 10))) } });
    call.end();
  });
}

export function deploymentSpec(modelRef: string, over: Partial<registry.DeploymentSpec> = {}): registry.DeploymentSpec {
  return {
    modelRef,
    maxBatchSize: 16,
    maxQueueDelayUs: 1000,
    instanceCount: 1,
    maxQueueSize: 0,
    sequenceState: [],
    sequenceIdleTimeoutMs: 0,
    preferredBatchSizes: [],
    tunePreferredBatchSize: false,
    responseCacheBytes: 0n,
    priorityLevels: 0,
    defaultPriorityLevel: 0,
    priorityQueuePolicies: {},
    callerLimitOverrides: {},
    ...over,
  };
}

/** Polls until `check` resolves true (every 200 ms), or fails with `what` after `timeoutMs`. */
export async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await check()) return;
    } catch (error: unknown) {
      last = error;
    }
    if (Date.now() > until)
      throw new Error(
        `${what} did not happen within ${timeoutMs / 1000} s` +
          (last instanceof Error ? ` (last error: ${last.message})` : ''),
      );
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Waits until inference serves `model` at `version` (the current version when it is ''). */
export function waitServed(clients: Clients, token: string, model: string, version = ''): Promise<void> {
  return eventually(`inference serving ${model}${version ? `:${version}` : ''}`, async () => {
    const ready = await clients.rpc.inference(
      'modelReady',
      { name: model, version },
      { metadata: bearer(token), deadline: Date.now() + 2000 },
    );
    if (!ready.ready) return false;
    if (version === '') return true;
    const meta = await clients.rpc.inference(
      'modelMetadata',
      { name: model, version: '' },
      { metadata: bearer(token), deadline: Date.now() + 2000 },
    );
    return meta.versions.includes(version);
  });
}

/** One ModelInfer with raw tensors; the outputs decoded. */
export async function inferRaw(
  clients: Clients,
  token: string,
  model: string,
  inputs: Tensor[],
  options: { traceparent?: string; id?: string } = {},
): Promise<{ response: inference.ModelInferResponse; outputs: Tensor[] }> {
  const wires = inputs.map((t) => tensorToWire(t, { raw: true }));
  const response = await clients.rpc.inference(
    'modelInfer',
    {
      modelName: model,
      modelVersion: '',
      id: options.id ?? '',
      parameters: {},
      inputs: wires.map((w) => ({ ...w.wire, parameters: {}, contents: undefined })),
      outputs: [],
      rawInputContents: wires.map((w) => w.raw ?? Buffer.alloc(0)),
    },
    { metadata: bearer(token, options.traceparent), deadline: Date.now() + 30_000 },
  );
  const outputs = response.outputs.map((o, i) => tensorFromWire(o, response.rawOutputContents[i], 'output'));
  return { response, outputs };
}

/** The model run by onnxruntime in this process: the second source every answer is checked against. */
export async function reference(
  bytes: Uint8Array,
  feeds: Record<string, ort.Tensor>,
): Promise<Record<string, Float32Array>> {
  const session = await ort.InferenceSession.create(bytes);
  try {
    const out = await session.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([name, t]) => [name, t.data as Float32Array]));
  } finally {
    await session.release();
  }
}

export function randomImage(seed: number, batch = 1): Float32Array {
  const data = new Float32Array(batch * 3 * 32 * 32);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < data.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    data[i] = ((x >>> 0) / 2 ** 32) * 2 - 1;
  }
  return data;
}

export function grpcCode(error: unknown): number | undefined {
  return typeof error === 'object' && error !== null ? ((error as { code?: number }).code ?? undefined) : undefined;
}
