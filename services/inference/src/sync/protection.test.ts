// A deployment's response cache, priorities and caller limits end to end: real crypto, registry and
// monitoring processes, an inference server in this process watching the registry (as main.ts
// wires it), and real onnxruntime sessions.
import * as grpc from '@grpc/grpc-js';
import { inference as ipb } from '@quanta/contracts';
import { registry as pb } from '@quanta/contracts';
import { buildMlp } from '@quanta/onnx';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InferenceServer } from '../server/inference-server.js';
import { startInferenceServer } from '../server/inference-server.js';
import { call, fp32Input, inferRequest, runOrt, seededFloats, testConfig } from '../testing/harness.js';
import type { Stack } from '../testing/sync-stack.js';
import { bearer, startStack } from '../testing/sync-stack.js';
import { createSyncWiring } from './sync-wiring.js';

const TENANT = 'acme';

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    const value = await probe().catch((error: unknown) => void (last = error));
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`, { cause: last });
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('a deployment with a response cache, priorities and caller limits, from the registry', () => {
  const bytes = buildMlp({ seed: 9 });
  const x = seededFloats(4, 3);
  const input = fp32Input('input', [1, 4], x, true);
  let stack: Stack;
  let server: InferenceServer;
  let client: ipb.GRPCInferenceServiceClient;
  let user: string;

  const infer = (token: string, parameters: Record<string, ipb.InferParameter> = {}): Promise<ipb.ModelInferResponse> =>
    call(
      client,
      'modelInfer',
      inferRequest({ modelName: 'mlp', inputs: [input.input], rawInputContents: [input.raw!], parameters }),
      token,
    );

  beforeAll(async () => {
    stack = await startStack({ monitoring: true });
    user = await stack.token(TENANT, ['models:read', 'models:write', 'infer', 'monitoring:read']);
    await stack.push(user, 'mlp', bytes);
    await stack.registry$(
      'createDeployment',
      {
        name: 'mlp-prod',
        spec: pb.DeploymentSpec.fromPartial({
          modelRef: 'mlp',
          maxBatchSize: 8,
          responseCacheBytes: 1n << 20n,
          priorityLevels: 2,
          priorityQueuePolicies: { 1: pb.QueuePolicy.fromPartial({ maxQueueSize: 16 }) },
          callerLimitOverrides: {
            'acme-batch': pb.CallerLimits.fromPartial({ requestsPerSecond: 0.01, burst: 2 }),
          },
        }),
      },
      { metadata: bearer(user) },
    );
    const config = testConfig({
      home: stack.home,
      watch: true,
      registryAddr: stack.registryAddress,
      cryptoAddr: stack.crypto.address,
      monitoringAddr: stack.monitoring!.address,
    });
    server = await startInferenceServer(config, createSyncWiring(config));
    client = new ipb.GRPCInferenceServiceClient(server.address, grpc.credentials.createInsecure());
    await until('the deployment to serve', async () => (await infer(user)).modelVersion || undefined);
  }, 180_000);

  afterAll(async () => {
    client?.close();
    await server?.stop({ graceMs: 0 });
    await stack?.close();
  });

  it('answers repeats from the cache, and monitoring counts the hits and misses', async () => {
    const expected = (await runOrt(bytes, { input: { dims: [1, 4], data: x } }))['output']!;
    for (let i = 0; i < 4; i++) {
      const answer = await infer(user);
      expect(Buffer.from(answer.rawOutputContents[0]!).equals(Buffer.from(expected.buffer))).toBe(true);
    }
    const stats = (await call(client, 'modelStatistics', { name: 'mlp', version: '' }, user)).modelStats[0]!;
    // The first request of beforeAll missed; every later one hit.
    expect(stats.executionCount).toBe(1n);
    expect(stats.inferenceStats!.cacheHit!.count).toBe(4n);
    expect(stats.inferenceStats!.cacheMiss!.count).toBe(1n);
    const monitored = await until('monitoring to count the cache', async () => {
      const r = await stack.monitoring$!(
        'getModelStats',
        { model: 'mlp', version: '', byVersion: false, span: { $case: 'window', value: { seconds: 600n, nanos: 0 } } },
        { metadata: bearer(user) },
      );
      return (r.stats?.cacheHitCount ?? 0n) >= 4n ? r.stats : undefined;
    });
    expect(monitored.cacheHitCount).toBe(4n);
    expect(monitored.cacheMissCount).toBe(1n);
  }, 120_000);

  it('takes the priorities and caller limits of the spec', async () => {
    const { config } = await call(client, 'modelConfig', { name: 'mlp', version: '' }, user);
    expect(config!.responseCache).toEqual({ enable: true });
    const choice = config!.schedulingChoice;
    expect(choice?.$case === 'dynamicBatching' && choice.value.priorityLevels).toBe(2n);
    const refused = await call(client, 'modelInfer', inferRequest({ modelName: 'mlp', parameters: {} }), user).catch(
      (error: grpc.ServiceError) => error,
    );
    expect((refused as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
    const tooHigh = await infer(user, { priority: { parameterChoice: { $case: 'uint64Param', value: 3n } } }).catch(
      (error: grpc.ServiceError) => error,
    );
    expect((tooHigh as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);

    const batch = await stack.token(TENANT, ['infer'], 'acme-batch');
    const outcomes = await Promise.all(
      Array.from({ length: 5 }, () =>
        infer(batch).then(
          () => 'ok',
          (e: grpc.ServiceError) => e,
        ),
      ),
    );
    expect(outcomes.filter((o) => o === 'ok')).toHaveLength(2);
    const over = outcomes.find((o): o is grpc.ServiceError => o !== 'ok')!;
    expect(over.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(Number(over.metadata.get('retry-after-ms')[0])).toBeGreaterThan(0);
    // The user's own requests are not limited.
    for (let i = 0; i < 5; i++) await infer(user);
  }, 60_000);
});
