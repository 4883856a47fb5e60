import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { inference as ipb, unaryCaller } from '@quanta/contracts';
import type { registry as pb } from '@quanta/contracts';
import type { IngestClient } from '@quanta/monitoring-client';
import { createIngestClient } from '@quanta/monitoring-client';
import { buildMlp, createRng, uniform } from '@quanta/onnx';
import type { Tensor } from '@quanta/tensor';
import { createTensor, tensorFromOrt, tensorToOrt } from '@quanta/tensor';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createModelManager } from '../core/model-manager.js';
import type { ModelManager } from '../core/types.js';
import { createBackoff } from './backoff.js';
import { createIngestObserver } from './ingest-observer.js';
import type { RegistrySync } from './registry-sync.js';
import { createRegistrySync } from './registry-sync.js';
import type { EventLog, ManagerEvent } from '../testing/sync-events.js';
import { createEventLog, recordingManager } from '../testing/sync-events.js';
import type { Proxy, Stack } from '../testing/sync-stack.js';
import { bearer, startProxy, startStack } from '../testing/sync-stack.js';
import { startServiceProcess } from '@quanta/service-kit/testing';

const TENANT = 'acme';
const SPEC: pb.DeploymentSpec = {
  modelRef: 'mlp@production',
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
};

/** The second source: onnxruntime run directly on the same bytes. */
async function runDirect(bytes: Uint8Array, input: Tensor): Promise<number[]> {
  const session = await ort.InferenceSession.create(bytes);
  try {
    const out = await session.run({ input: tensorToOrt(input) });
    const output = out['output'];
    if (output === undefined) throw new Error('no output');
    return Array.from(tensorFromOrt(output).data as Float32Array);
  } finally {
    await session.release();
  }
}

describe('registry sync against real crypto, registry and monitoring processes', () => {
  const v1 = buildMlp({ seed: 1 });
  const v2 = buildMlp({ seed: 2 });
  const input = { ...createTensor('FP32', [1, 4], Float32Array.from(uniform(createRng(9), 4, 1))), name: 'input' };
  const expected = new Map<string, number[]>();
  /** Requests sent per version, for the monitoring counts. */
  const sent = new Map<string, number>();
  let stack: Stack;
  let proxy: Proxy;
  let user: string;
  let log: EventLog<ManagerEvent>;
  let manager: ModelManager;
  let sync: RegistrySync;
  let ingest: IngestClient;
  const watch = createEventLog<'snapshot' | 'disconnected'>();

  /** One request through the manager's current version, checked against onnxruntime. */
  async function infer(id: string): Promise<string> {
    const result = await manager.get(TENANT, 'mlp').infer({ id, inputs: new Map([['input', input]]) });
    sent.set(result.version, (sent.get(result.version) ?? 0) + 1);
    const output = result.outputs[0];
    if (output === undefined || output.datatype !== 'FP32') throw new Error('no FP32 output');
    expect(Array.from(output.data)).toEqual(expected.get(result.version));
    return result.version;
  }

  const activated = (version: string, from = 0): Promise<ManagerEvent> =>
    log.until((e) => e.op === 'activate' && e.tenant === TENANT && e.name === 'mlp' && e.version === version, from);

  beforeAll(async () => {
    stack = await startStack({ monitoring: true });
    user = await stack.token(TENANT, ['models:read', 'models:write', 'monitoring:read']);
    expected.set('1', await runDirect(v1, input));
    expected.set('2', await runDirect(v2, input));
    expect(expected.get('1')).not.toEqual(expected.get('2'));
    await stack.push(user, 'mlp', v1);
    await stack.push(user, 'mlp', v2);
    await stack.registry$('setAlias', { model: 'mlp', alias: 'production', version: 1 }, { metadata: bearer(user) });
    await stack.registry$('createDeployment', { name: 'mlp-prod', spec: SPEC }, { metadata: bearer(user) });

    proxy = await startProxy(stack.registryAddress);
    ingest = createIngestClient({ address: stack.monitoring!.address, token: stack.adminToken, flushIntervalMs: 50 });
    const recorded = recordingManager(
      createModelManager({
        observer: createIngestObserver({ client: ingest, deploymentOf: (t, n) => sync.deploymentOf(t, n) }),
      }),
    );
    manager = recorded.manager;
    log = recorded.log;
    sync = createRegistrySync({
      registryAddress: proxy.address,
      token: stack.adminToken,
      manager,
      logger: pino({ level: process.env['QUANTA_LOG_LEVEL'] ?? 'silent' }),
      watchBackoff: createBackoff({ initialMs: 50, maxMs: 400 }),
      retryBackoff: createBackoff({ initialMs: 200, maxMs: 1000 }),
      onWatchEvent: (event) => watch.push(event),
    });
  }, 120_000);

  afterAll(async () => {
    await sync?.close();
    await manager?.close();
    await ingest?.close();
    await proxy?.close();
    await stack?.close();
  }, 60_000);

  it('converges the first snapshot: ready, and the deployed version answers as onnxruntime does', async () => {
    await sync.whenReady();
    expect(sync.ready()).toBe(true);
    expect(manager.get(TENANT, 'mlp').version).toBe('1');
    expect(manager.get(TENANT, 'mlp').config).toMatchObject({
      maxBatchSize: 8,
      maxQueueDelayUs: 500,
      instanceCount: 1,
    });
    expect(sync.deploymentOf(TENANT, 'mlp')).toBe('mlp-prod');
    expect(await infer('first')).toBe('1');
    expect(manager.index(TENANT)).toEqual([{ tenant: TENANT, name: 'mlp', version: '1', state: 'READY', reason: '' }]);

    // A second replica on the same registry converges on its own to the same set.
    const other = createModelManager();
    const replica = createRegistrySync({
      registryAddress: stack.registryAddress,
      token: stack.adminToken,
      manager: other,
      logger: pino({ level: 'silent' }),
    });
    try {
      await replica.whenReady();
      expect(other.index()).toEqual(manager.index());
    } finally {
      await replica.close();
      await other.close();
    }
  });

  /** Runs `action` while 150 requests are in flight at all times, and keeps the load on for 300 answers after it. */
  async function underLoad(action: () => Promise<void>): Promise<{ failures: unknown[]; seen: Map<string, number> }> {
    let stop = false;
    let answered = 0;
    const failures: unknown[] = [];
    const seen = new Map<string, number>();
    const worker = async (w: number): Promise<void> => {
      for (let i = 0; !stop; i++) {
        try {
          const version = await infer(`w${w}-${i}`);
          seen.set(version, (seen.get(version) ?? 0) + 1);
          answered++;
        } catch (error: unknown) {
          failures.push(error);
        }
      }
    };
    const workers = Array.from({ length: 150 }, (_, w) => worker(w));
    try {
      await action();
      // Requests straddle the swap: the ones queued on the old version finish there, later ones reach the new.
      const mark = answered;
      await new Promise<void>((resolve) => {
        const check = (): void => (answered >= mark + 300 ? resolve() : void setImmediate(check));
        check();
      });
    } finally {
      stop = true;
      await Promise.all(workers);
    }
    return { failures, seen };
  }

  it('follows the alias to v2 with 150 requests in flight at all times and not one failure', async () => {
    const from = log.events.length;
    const { failures, seen } = await underLoad(async () => {
      await stack.registry$('setAlias', { model: 'mlp', alias: 'production', version: 2 }, { metadata: bearer(user) });
      await activated('2', from);
    });
    expect(failures.slice(0, 3)).toEqual([]);
    expect(failures.length).toBe(0);
    expect(seen.get('1') ?? 0).toBeGreaterThan(0);
    expect(seen.get('2') ?? 0).toBeGreaterThanOrEqual(300);
    expect(manager.get(TENANT, 'mlp').version).toBe('2');
    // The old version drained and was released.
    expect(manager.find(TENANT, 'mlp', '1')).toBeUndefined();
    // v2 was downloaded once; nothing else was.
    expect(sync.cache.stats().entries).toBe(2);
  }, 60_000);

  it('reloads the same version on a spec change (instances, batch size), under load, without a failure', async () => {
    const from = log.events.length;
    const { failures } = await underLoad(async () => {
      await stack.registry$(
        'updateDeployment',
        { name: 'mlp-prod', spec: { ...SPEC, instanceCount: 2, maxBatchSize: 4 }, expectedGeneration: 0n },
        { metadata: bearer(user) },
      );
      const load = await log.until((e) => e.op === 'load' && e.config?.instanceCount === 2, from);
      expect(load.version).toBe('2');
      await activated('2', from);
    });
    expect(failures.slice(0, 3)).toEqual([]);
    expect(failures.length).toBe(0);
    expect(manager.get(TENANT, 'mlp').config).toMatchObject({ instanceCount: 2, maxBatchSize: 4 });
    expect(await infer('after-spec')).toBe('2');
  }, 60_000);

  it('heals a change missed while cut off: the reconnection snapshot unloads a deleted deployment', async () => {
    const from = log.events.length;
    const watchFrom = watch.events.length;
    proxy.cut();
    await watch.until((e) => e === 'disconnected', watchFrom);
    await stack.registry$('deleteDeployment', { name: 'mlp-prod' }, { metadata: bearer(user) });
    // Still serving: the sync has not heard of the deletion.
    expect(manager.get(TENANT, 'mlp').version).toBe('2');
    proxy.resume();
    await log.until((e) => e.op === 'unload' && e.name === 'mlp', from);
    expect(manager.find(TENANT, 'mlp')).toBeUndefined();
    expect(manager.index(TENANT)).toEqual([]);
    expect(sync.deploymentOf(TENANT, 'mlp')).toBeUndefined();
  });

  it('survives a registry killed and restarted, and follows changes made after it', async () => {
    let from = log.events.length;
    await stack.registry$('createDeployment', { name: 'mlp-prod', spec: SPEC }, { metadata: bearer(user) });
    await activated('2', from);
    const watchFrom = watch.events.length;
    await stack.restartRegistry();
    await watch.until((e) => e === 'disconnected', watchFrom);
    await watch.until((e) => e === 'snapshot', watchFrom);
    // The snapshot after the restart changes nothing.
    await sync.settled();
    expect(manager.get(TENANT, 'mlp').version).toBe('2');
    from = log.events.length;
    await stack.registry$('setAlias', { model: 'mlp', alias: 'production', version: 1 }, { metadata: bearer(user) });
    await activated('1', from);
    expect(await infer('after-restart')).toBe('1');
  }, 60_000);

  it('loads by hand an undeployed model at its latest READY version; an unloaded deployment stays so', async () => {
    await stack.push(user, 'solo', buildMlp({ seed: 3 }));
    await stack.push(user, 'solo', v2);
    await sync.loader.load(TENANT, 'solo', {});
    expect(manager.get(TENANT, 'solo').version).toBe('2');
    await sync.loader.unload(TENANT, 'solo', false);
    expect(manager.find(TENANT, 'solo')).toBeUndefined();

    await expect(sync.loader.load(TENANT, 'nothing', {})).rejects.toMatchObject({
      code: 'NOT_FOUND',
      message: expect.stringContaining('nothing') as unknown,
    });

    // Unloading a deployed model holds across a reconnection snapshot…
    await sync.loader.unload(TENANT, 'mlp', false);
    expect(manager.find(TENANT, 'mlp')).toBeUndefined();
    const watchFrom = watch.events.length;
    proxy.cut();
    await watch.until((e) => e === 'disconnected', watchFrom);
    proxy.resume();
    await watch.until((e) => e === 'snapshot', watchFrom);
    await sync.settled();
    expect(manager.find(TENANT, 'mlp')).toBeUndefined();
    // …until the deployment changes, or a load asks for it.
    const from = log.events.length;
    await stack.registry$('setAlias', { model: 'mlp', alias: 'production', version: 2 }, { metadata: bearer(user) });
    await activated('2', from);
    await sync.loader.unload(TENANT, 'mlp', false);
    await sync.loader.load(TENANT, 'mlp', {});
    expect(manager.get(TENANT, 'mlp').version).toBe('2');
    expect(manager.get(TENANT, 'mlp').config).toMatchObject({ maxBatchSize: 8 });
  }, 60_000);

  /** GetModelStats count of acme/mlp at `version` over the last 10 minutes. */
  async function monitoredCount(version: string): Promise<number> {
    const reader = await stack.token(TENANT, ['monitoring:read']);
    const reply = await stack.monitoring$!(
      'getModelStats',
      { model: 'mlp', version, byVersion: false, span: { $case: 'window', value: { seconds: 600n, nanos: 0 } } },
      { metadata: bearer(reader) },
    );
    expect(Number(reply.stats?.errorCount)).toBe(0);
    return Number(reply.stats?.count);
  }

  it('every request left one record in the monitoring service, per version', async () => {
    await ingest.flush();
    expect(ingest.stats()).toMatchObject({ droppedFull: 0, droppedFailed: 0, rejected: 0 });
    for (const [version, count] of sent)
      expect({ version, count: await monitoredCount(version) }).toEqual({ version, count });
    expect(sent.get('1')).toBeGreaterThan(0);
    expect(sent.get('2')).toBeGreaterThan(0);
  });

  it('main.ts --watch with monitoring: the process serves the deployment; its records reach monitoring', async () => {
    const before = await monitoredCount('2');
    const inference = await startServiceProcess('inference', {
      QUANTA_HOME: stack.home,
      QUANTA_INFERENCE_PORT: '0',
      QUANTA_INFERENCE_HTTP_PORT: '0',
      QUANTA_INFERENCE_METRICS_PORT: '0',
      QUANTA_INFERENCE_WATCH: 'true',
      QUANTA_REGISTRY_ADDR: stack.registryAddress,
      QUANTA_CRYPTO_ADDR: stack.crypto.address,
      QUANTA_MONITORING_ADDR: stack.monitoring!.address,
      QUANTA_INFERENCE_SERVICE_TOKEN: undefined,
    });
    const client = new ipb.GRPCInferenceServiceClient(inference.address, grpc.credentials.createInsecure());
    try {
      const caller = unaryCaller(client, ipb.GRPCInferenceServiceService, { deadlineMs: 20_000 });
      const metadata = bearer(await stack.token(TENANT, ['infer']));
      // ServerReady turns true once the first snapshot is converged: probed as a readiness check would.
      const ready = async (): Promise<boolean> => (await caller('serverReady', {}, { metadata })).ready;
      while (!(await ready())) await new Promise<void>((resolve) => setTimeout(resolve, 100));
      const data = input.data;
      for (let i = 0; i < 5; i++) {
        const reply = await caller(
          'modelInfer',
          {
            modelName: 'mlp',
            modelVersion: '',
            id: `proc-${i}`,
            parameters: {},
            inputs: [{ name: 'input', datatype: 'FP32', shape: [1n, 4n], parameters: {}, contents: undefined }],
            outputs: [],
            rawInputContents: [Buffer.from(data.buffer, data.byteOffset, data.byteLength)],
          },
          { metadata },
        );
        expect(reply.modelVersion).toBe('2');
        const raw = reply.rawOutputContents[0];
        const out =
          raw === undefined
            ? (reply.outputs[0]?.contents?.fp32Contents ?? [])
            : Array.from(new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)));
        expect(Array.from(out)).toEqual(expected.get('2'));
      }
    } finally {
      client.close();
      // SIGTERM: the process flushes its buffered records before it exits.
      await inference.stop();
    }
    expect(inference.child.exitCode).toBe(0);
    expect(await monitoredCount('2')).toBe(before + 5);
    // The process kept the file it downloaded, sealed, for its next start.
    const digest = createHash('sha256').update(v2).digest('hex');
    expect(await readdir(join(stack.home, 'inference', 'cache'))).toEqual([digest]);
    const sealed = await readFile(join(stack.home, 'inference', 'cache', digest));
    expect(sealed.indexOf(Buffer.from(v2.subarray(v2.length - 64)))).toBe(-1);
  }, 60_000);
});
