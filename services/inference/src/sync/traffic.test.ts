// Canary and shadow rollouts end to end: real crypto, registry and monitoring processes, an
// inference server in this process watching the registry (as main.ts wires it), real onnxruntime
// sessions, and every answer checked against onnxruntime run directly on the version's bytes.
import * as grpc from '@grpc/grpc-js';
import { inference as ipb } from '@quanta/contracts';
import type { registry as pb } from '@quanta/contracts';
import { LSTM_NAMES, buildLstm, buildMlp } from '@quanta/onnx';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InferenceServer } from '../server/inference-server.js';
import { startInferenceServer } from '../server/inference-server.js';
import { call, fp32Input, inferRequest, runOrt, seededFloats, testConfig } from '../testing/harness.js';
import type { Stack } from '../testing/sync-stack.js';
import { bearer, startStack } from '../testing/sync-stack.js';
import { createSyncWiring } from './sync-wiring.js';

const TENANT = 'acme';
const spec = (modelRef: string, extra: Partial<pb.DeploymentSpec> = {}): pb.DeploymentSpec => ({
  modelRef,
  maxBatchSize: 8,
  maxQueueDelayUs: 500,
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
  ...extra,
});

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    // A probe that fails (the model not loaded yet) is asked again, like one that says "not yet".
    const value = await probe().catch((error: unknown) => void (last = error));
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`, { cause: last });
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('canary and shadow traffic through a replica that watches the registry', () => {
  const mlp = { '1': buildMlp({ seed: 1 }), '2': buildMlp({ seed: 2 }) };
  const x = seededFloats(4, 7);
  const rawInput = fp32Input('input', [1, 4], x, true);
  /** Each version's answer to `x`, from onnxruntime directly, as raw bytes. */
  const expected = new Map<string, Buffer>();
  let stack: Stack;
  let server: InferenceServer;
  let client: ipb.GRPCInferenceServiceClient;
  let user: string;
  /** The generation of mlp-prod, for updates that expect it. */
  let generation = 0n;

  const registry = <K extends 'createDeployment' | 'updateDeployment'>(
    method: K,
    request: Parameters<Stack['registry$']>[1],
  ): Promise<pb.Deployment> =>
    stack.registry$(method, request as never, { metadata: bearer(user) }).then((r) => {
      const d = r.deployment!;
      if (d.name === 'mlp-prod') generation = d.generation;
      return d;
    });

  /** One ModelInfer of `x` naming no version: the version that answered, its answer checked. */
  async function infer(model = 'mlp'): Promise<string> {
    const response = await call(
      client,
      'modelInfer',
      inferRequest({ modelName: model, inputs: [rawInput.input], rawInputContents: [rawInput.raw!] }),
      user,
    );
    const raw = response.rawOutputContents[0];
    expect(raw !== undefined && Buffer.from(raw).equals(expected.get(response.modelVersion)!)).toBe(true);
    return response.modelVersion;
  }

  /** `count` requests, `concurrency` at a time: how many each version answered. */
  async function burst(count: number, concurrency: number): Promise<Map<string, number>> {
    const answered = new Map<string, number>();
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next++ < count) {
          const version = await infer();
          answered.set(version, (answered.get(version) ?? 0) + 1);
        }
      }),
    );
    return answered;
  }

  beforeAll(async () => {
    stack = await startStack({ monitoring: true });
    user = await stack.token(TENANT, ['models:read', 'models:write', 'infer', 'monitoring:read']);
    for (const [version, bytes] of Object.entries(mlp)) {
      const out = (await runOrt(bytes, { input: { dims: [1, 4], data: x } }))['output']!;
      expected.set(version, Buffer.from(out.buffer, out.byteOffset, out.byteLength));
      expect((await stack.push(user, 'mlp', bytes)).version).toBe(Number(version));
    }
    expect(expected.get('1')!.equals(expected.get('2')!)).toBe(false);
    const config = testConfig({
      home: stack.home,
      watch: true,
      registryAddr: stack.registryAddress,
      cryptoAddr: stack.crypto.address,
      monitoringAddr: stack.monitoring!.address,
    });
    server = await startInferenceServer(config, createSyncWiring(config));
    client = new ipb.GRPCInferenceServiceClient(server.address, grpc.credentials.createInsecure());
  }, 180_000);

  afterAll(async () => {
    client?.close();
    await server?.stop({ graceMs: 0 });
    await stack?.close();
  });

  it('sends the canary its share of requests, within 5 points over 1,000 requests', async () => {
    await registry('createDeployment', {
      name: 'mlp-prod',
      spec: spec('mlp:1', { canary: { modelRef: 'mlp:2', percent: 30 } }),
    });
    await until('the canary to answer', async () => ((await infer()) === '2' ? true : undefined));
    const answered = await burst(1000, 16);
    expect((answered.get('1') ?? 0) + (answered.get('2') ?? 0)).toBe(1000);
    expect(Math.abs((answered.get('2') ?? 0) / 10 - 30)).toBeLessThanOrEqual(5);
    // A request naming a version gets that version, whatever the split.
    for (const version of ['1', '2']) {
      const response = await call(
        client,
        'modelInfer',
        inferRequest({
          modelName: 'mlp',
          modelVersion: version,
          inputs: [rawInput.input],
          rawInputContents: [rawInput.raw!],
        }),
        user,
      );
      expect(response.modelVersion).toBe(version);
    }
  }, 120_000);

  it('changes the weight and promotes the canary with requests in flight and no failure', async () => {
    let stop = false;
    const failures: unknown[] = [];
    const seen: string[] = [];
    const load = Promise.all(
      Array.from({ length: 8 }, async () => {
        while (!stop) {
          try {
            seen.push(await infer());
          } catch (error: unknown) {
            failures.push(error);
          }
        }
      }),
    );
    try {
      await registry('updateDeployment', {
        name: 'mlp-prod',
        spec: spec('mlp:1', { canary: { modelRef: 'mlp:2', percent: 90 } }),
        expectedGeneration: generation,
      });
      // The new weight shows: over 100 answers, far more than 30% from the canary.
      await until('the 90% weight', async () => {
        const from = seen.length;
        while (seen.length < from + 100) await new Promise((resolve) => setTimeout(resolve, 20));
        const canary = seen.slice(from, from + 100).filter((v) => v === '2').length;
        return canary >= 75 ? true : undefined;
      });
      // Promote as the CLI does: the canary's reference becomes the primary's.
      await registry('updateDeployment', { name: 'mlp-prod', spec: spec('mlp:2'), expectedGeneration: generation });
      await until('only version 2 to answer', async () => {
        const from = seen.length;
        while (seen.length < from + 100) await new Promise((resolve) => setTimeout(resolve, 20));
        return seen.slice(from, from + 100).every((v) => v === '2') ? true : undefined;
      });
      // Version 1 drains and unloads.
      await until('version 1 to unload', () =>
        Promise.resolve(
          server.manager.index(TENANT).some((e) => e.name === 'mlp' && e.version === '1') ? undefined : true,
        ),
      );
    } finally {
      stop = true;
      await load;
    }
    expect(failures).toEqual([]);
    expect(seen.length).toBeGreaterThan(200);
  }, 120_000);

  it('never changes a sequence’s version', async () => {
    const lstm = { '1': buildLstm({ seed: 3 }), '2': buildLstm({ seed: 4 }) };
    for (const bytes of Object.values(lstm)) await stack.push(user, 'lstm', bytes);
    await registry('createDeployment', {
      name: 'lstm-prod',
      spec: spec('lstm:1', {
        maxBatchSize: 0,
        sequenceState: [
          { inputName: LSTM_NAMES.h, outputName: LSTM_NAMES.hn },
          { inputName: LSTM_NAMES.c, outputName: LSTM_NAMES.cn },
        ],
        canary: { modelRef: 'lstm:2', percent: 50 },
      }),
    });
    await until('both lstm versions', () => {
      const ready = server.manager.index(TENANT).filter((e) => e.name === 'lstm' && e.state === 'READY');
      return Promise.resolve(ready.length === 2 ? true : undefined);
    });
    const step = fp32Input('x', [1, 1, 4], seededFloats(4, 11), false).input;
    const versionsBySequence = new Map<number, Set<string>>();
    await Promise.all(
      Array.from({ length: 24 }, async (_, s) => {
        const versions = new Set<string>();
        for (let i = 0; i < 4; i++) {
          const response = await call(
            client,
            'modelInfer',
            inferRequest({
              modelName: 'lstm',
              inputs: [step],
              parameters: {
                sequence_id: { parameterChoice: { $case: 'uint64Param', value: BigInt(1000 + s) } },
                sequence_start: { parameterChoice: { $case: 'boolParam', value: i === 0 } },
                sequence_end: { parameterChoice: { $case: 'boolParam', value: i === 3 } },
              },
            }),
            user,
          );
          versions.add(response.modelVersion);
        }
        versionsBySequence.set(s, versions);
      }),
    );
    expect([...versionsBySequence.values()].every((v) => v.size === 1)).toBe(true);
    const used = new Set([...versionsBySequence.values()].flatMap((v) => [...v]));
    expect([...used].sort()).toEqual(['1', '2']);
  }, 120_000);

  it('keeps the primary serving every request while its canary cannot load', async () => {
    // An MLP pushed as lstm:3 passes the registry, but inference cannot give it the LSTM's state.
    await stack.push(user, 'lstm', buildMlp({ seed: 9 }));
    await registry('updateDeployment', {
      name: 'lstm-prod',
      spec: spec('lstm:1', {
        maxBatchSize: 0,
        sequenceState: [
          { inputName: LSTM_NAMES.h, outputName: LSTM_NAMES.hn },
          { inputName: LSTM_NAMES.c, outputName: LSTM_NAMES.cn },
        ],
        canary: { modelRef: 'lstm:3', percent: 50 },
      }),
      expectedGeneration: 0n,
    });
    const lstmVersions = (): Map<string, string> =>
      new Map(server.manager.index(TENANT).flatMap((e) => (e.name === 'lstm' ? [[e.version, e.state]] : [])));
    await until('version 3 FAILED and version 2 gone', () =>
      Promise.resolve(lstmVersions().get('3') === 'FAILED' && !lstmVersions().has('2') ? true : undefined),
    );
    const step = fp32Input('x', [1, 1, 4], seededFloats(4, 12), false).input;
    for (let s = 0; s < 12; s++) {
      for (let i = 0; i < 2; i++) {
        const response = await call(
          client,
          'modelInfer',
          inferRequest({
            modelName: 'lstm',
            inputs: [step],
            parameters: {
              sequence_id: { parameterChoice: { $case: 'uint64Param', value: BigInt(5000 + s) } },
              sequence_start: { parameterChoice: { $case: 'boolParam', value: i === 0 } },
              sequence_end: { parameterChoice: { $case: 'boolParam', value: i === 1 } },
            },
          }),
          user,
        );
        expect(response.modelVersion).toBe('1');
      }
    }
  }, 120_000);

  it('answers with the primary while a shadow runs a copy, and monitoring gets the comparison', async () => {
    const statsOf = async (version: string): Promise<bigint> =>
      (await call(client, 'modelStatistics', { name: 'mlp', version }, user)).modelStats[0]?.inferenceCount ?? 0n;
    await registry('updateDeployment', {
      name: 'mlp-prod',
      spec: spec('mlp:1', { shadow: { modelRef: 'mlp:2', percent: 0 } }),
      expectedGeneration: generation,
    });
    await until('version 1 primary with version 2 as shadow', async () => {
      const ready = server.manager.index(TENANT).filter((e) => e.name === 'mlp' && e.state === 'READY');
      return ready.length === 2 && (await infer()) === '1' ? true : undefined;
    });
    const shadowBefore = await statsOf('2');
    // Every answer is the primary's, byte for byte (infer checks the bytes of the version named).
    const answered = await burst(200, 8);
    expect([...answered]).toEqual([['1', 200]]);
    // The shadow ran copies (at least the 200, counted on its own version in ModelStatistics).
    await until('the shadow copies to be counted', async () =>
      (await statsOf('2')) - shadowBefore >= 200n ? true : undefined,
    );

    // The comparison, computed another way: onnxruntime's outputs of both versions for x.
    const [a, b] = [expected.get('1')!, expected.get('2')!].map(
      (buf) => new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength)),
    );
    let maxAbsError = 0;
    for (let i = 0; i < a!.length; i++) maxAbsError = Math.max(maxAbsError, Math.abs(a![i]! - b![i]!));
    const argMax = (v: Float32Array): number => v.indexOf(Math.max(...v));
    const agreed = argMax(a!) === argMax(b!) ? 1 : 0;

    const monitoring$ = stack.monitoring$!;
    const stats = await until('the shadow records in monitoring', async () => {
      const r = await monitoring$(
        'getModelStats',
        { model: 'mlp', version: '', byVersion: true, span: { $case: 'window', value: { seconds: 600n, nanos: 0 } } },
        { metadata: bearer(user) },
      );
      const shadow = r.versions.find((v) => v.version === '2' && v.route === 'shadow');
      return shadow?.shadow !== undefined && shadow.shadow.compared >= 200n ? r : undefined;
    });
    expect(stats.versions.map((v) => v.version)).toEqual(['1', '2']);
    const shadow = stats.versions[1]!;
    expect(shadow.shadow!.maxAbsError).toBeCloseTo(maxAbsError, 6);
    expect(shadow.shadow!.maxAbsError).toBeGreaterThan(0);
    expect(shadow.shadow!.meanAbsError).toBeCloseTo(maxAbsError, 6);
    expect(shadow.shadow!.top1Agreement).toBe(agreed);
    expect(stats.versions[0]!.route).toBe('primary');
    expect(stats.versions[0]!.shadow).toBeUndefined();
  }, 120_000);
});
