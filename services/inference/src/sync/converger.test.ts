import * as grpc from '@grpc/grpc-js';
import { registry as pb } from '@quanta/contracts';
import { buildMlp } from '@quanta/onnx';
import type { QuantaService } from '@quanta/service-kit';
import { createService, notFound, serverStreaming } from '@quanta/service-kit';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createModelManager } from '../core/model-manager.js';
import { createBackoff } from './backoff.js';
import { createConverger } from './converger.js';
import { createModelCache } from './model-cache.js';
import { createModelFetcher } from './model-fetcher.js';
import { recordingManager } from '../testing/sync-events.js';
import { readyVersion } from '../testing/sync-fixtures.js';

// The converger against a real gRPC server that answers DownloadVersion from a script (so a test can
// hold a download, or send bytes that do not match their digest) and a real model manager.

const logger = pino({ level: 'silent' });

function deployment(
  tenant: string,
  name: string,
  resolved: pb.ModelVersion,
  generation: number,
  spec: Partial<pb.DeploymentSpec> = {},
): pb.Deployment {
  return {
    name,
    tenant,
    spec: {
      modelRef: `${resolved.model}@prod`,
      maxBatchSize: 0,
      maxQueueDelayUs: 0,
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
      ...spec,
    },
    resolvedVersion: resolved,
    generation: BigInt(generation),
    createTime: new Date(0),
    updateTime: undefined,
  };
}

const upsert = (d: pb.Deployment): pb.DeploymentChange => ({
  type: pb.DeploymentChangeType.DEPLOYMENT_CHANGE_TYPE_UPSERTED,
  deployment: d,
  reason: 'test',
});

describe('converger', () => {
  const files = new Map<string, { header: pb.ModelVersion; bytes: Uint8Array }>();
  const gates = new Map<string, Promise<void>>();
  const downloads: string[] = [];
  let service: QuantaService;
  let client: pb.RegistryServiceClient;

  beforeAll(async () => {
    service = createService({ name: 'scripted-registry', port: 0, logger });
    service.addService(pb.RegistryServiceService, {
      downloadVersion: serverStreaming<pb.DownloadVersionRequest, pb.DownloadVersionResponse>(
        { scope: 'public' },
        async function* (req) {
          downloads.push(`${req.tenant}/${req.ref}`);
          await gates.get(req.ref);
          const file = files.get(req.ref);
          if (file === undefined) throw notFound(`model version "${req.ref}" not found`);
          yield { part: { $case: 'header', value: { version: file.header } } };
          yield { part: { $case: 'chunk', value: Buffer.from(file.bytes) } };
        },
      ),
    });
    const { address } = await service.start();
    client = new pb.RegistryServiceClient(address, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    client.close();
    await service.stop({ graceMs: 100 });
  });

  function setup(): ReturnType<typeof recordingManager> & {
    converger: ReturnType<typeof createConverger>;
    close: () => Promise<void>;
  } {
    const recorded = recordingManager(createModelManager());
    const converger = createConverger({
      manager: recorded.manager,
      fetcher: createModelFetcher({ client, cache: createModelCache({ maxBytes: 1 << 24 }) }),
      logger,
      retryBackoff: createBackoff({ initialMs: 20, maxMs: 40 }),
    });
    return {
      ...recorded,
      converger,
      close: async () => {
        await converger.close();
        await recorded.manager.close();
      },
    };
  }

  it('reports a file not matching its digest FAILED, is ready anyway, and retries until the file is good', async () => {
    const good = buildMlp({ seed: 11 });
    const bad = buildMlp({ seed: 12 });
    const v = readyVersion('fraud', 1, good);
    // Same size, other bytes: only the hash can tell.
    const forged = new Uint8Array(good.length);
    forged.set(bad.subarray(0, good.length));
    files.set('fraud:1', { header: v, bytes: forged });
    const { converger, manager, log, close } = setup();
    try {
      converger.applySnapshot([deployment('t', 'fraud-prod', v, 1)]);
      await converger.whenReady();
      expect(converger.ready()).toBe(true);
      const [entry] = manager.index('t');
      expect(entry).toMatchObject({ name: 'fraud', version: '1', state: 'FAILED' });
      expect(entry?.reason).toContain(`the version's is ${v.sha256}`);
      expect(manager.find('t', 'fraud')).toBeUndefined();
      // The registry's file is repaired: the next retry loads it.
      files.set('fraud:1', { header: v, bytes: good });
      await log.until((e) => e.op === 'activate' && e.name === 'fraud');
      expect(manager.index('t')).toEqual([{ tenant: 't', name: 'fraud', version: '1', state: 'READY', reason: '' }]);
    } finally {
      await close();
    }
  });

  it('marks a load failing after the first snapshot (reconnection, change) FAILED, nothing unhandled', async () => {
    const { converger, manager, log, close } = setup();
    try {
      converger.applySnapshot([]);
      await converger.whenReady();
      const missing = readyVersion('gone', 7, buildMlp({ seed: 13 }));
      converger.applySnapshot([deployment('t', 'gone-prod', missing, 1)]);
      await log.until((e) => e.op === 'markFailed' && e.name === 'gone');
      converger.applyChange(upsert(deployment('t', 'gone-prod', missing, 2)));
      await log.until(
        (e) => e.op === 'markFailed' && e.name === 'gone',
        log.events.findIndex((e) => e.op === 'markFailed') + 1,
      );
      expect(manager.index('t')).toEqual([
        {
          tenant: 't',
          name: 'gone',
          version: '7',
          state: 'FAILED',
          reason: expect.stringContaining('"gone:7" not found') as unknown,
        },
      ]);
    } finally {
      await close();
    }
  });

  it('supersedes queued states: while v1 downloads, v2 then v3 arrive, and only v1 and v3 are loaded', async () => {
    const bytes = [1, 2, 3].map((seed) => buildMlp({ seed: 20 + seed }));
    const versions = bytes.map((b, i) => readyVersion('fast', i + 1, b));
    bytes.forEach((b, i) => files.set(`fast:${i + 1}`, { header: versions[i]!, bytes: b }));
    let release!: () => void;
    gates.set('fast:1', new Promise<void>((resolve) => (release = resolve)));
    const { converger, manager, log, close } = setup();
    try {
      const started = downloads.length;
      converger.applySnapshot([deployment('t', 'fast-prod', versions[0]!, 1)]);
      converger.applyChange(upsert(deployment('t', 'fast-prod', versions[1]!, 2)));
      converger.applyChange(upsert(deployment('t', 'fast-prod', versions[2]!, 3)));
      release();
      await log.until((e) => e.op === 'activate' && e.version === '3');
      await converger.settled();
      expect(log.events.filter((e) => e.op === 'load').map((e) => e.version)).toEqual(['1', '3']);
      expect(downloads.slice(started)).toEqual(['t/fast:1', 't/fast:3']);
      expect(manager.get('t', 'fast').version).toBe('3');
      expect(manager.find('t', 'fast', '1')).toBeUndefined();
    } finally {
      gates.delete('fast:1');
      await close();
    }
  });

  it('serves two tenants deploying one file from one download; unloads what a snapshot no longer lists', async () => {
    const b = buildMlp({ seed: 31 });
    files.set('shared:1', { header: readyVersion('shared', 1, b), bytes: b });
    files.set('copy:4', { header: readyVersion('copy', 4, b), bytes: b });
    const { converger, manager, log, close } = setup();
    try {
      const started = downloads.length;
      converger.applySnapshot([
        deployment('a', 'one', readyVersion('shared', 1, b), 1),
        deployment('b', 'two', readyVersion('copy', 4, b), 1),
      ]);
      await converger.whenReady();
      expect(downloads.length - started).toBe(1);
      expect(manager.get('a', 'shared').version).toBe('1');
      expect(manager.get('b', 'copy').version).toBe('4');
      expect(converger.deploymentOf('b', 'copy')).toBe('two');
      converger.applySnapshot([deployment('b', 'two', readyVersion('copy', 4, b), 1)]);
      await log.until((e) => e.op === 'unload' && e.tenant === 'a');
      await converger.settled();
      expect(manager.index().map((e) => `${e.tenant}/${e.name}:${e.version}`)).toEqual(['b/copy:4']);
    } finally {
      await close();
    }
  });

  it('a deployment pointed at another model serves that one and unloads the first', async () => {
    const ba = buildMlp({ seed: 51 });
    const bb = buildMlp({ seed: 52 });
    files.set('first:1', { header: readyVersion('first', 1, ba), bytes: ba });
    files.set('second:1', { header: readyVersion('second', 1, bb), bytes: bb });
    const { converger, manager, log, close } = setup();
    try {
      converger.applySnapshot([deployment('t', 'moving', readyVersion('first', 1, ba), 1)]);
      await converger.whenReady();
      expect(manager.get('t', 'first').version).toBe('1');
      converger.applyChange(upsert(deployment('t', 'moving', readyVersion('second', 1, bb), 2)));
      await log.until((e) => e.op === 'activate' && e.name === 'second');
      await log.until((e) => e.op === 'unload' && e.name === 'first');
      await converger.settled();
      expect(manager.index('t').map((e) => `${e.name}:${e.version}`)).toEqual(['second:1']);
      expect(converger.deploymentOf('t', 'second')).toBe('moving');
    } finally {
      await close();
    }
  });

  it('when two deployments of a tenant name one model, the first by name wins on every replica', async () => {
    const b1 = buildMlp({ seed: 41 });
    const b2 = buildMlp({ seed: 42 });
    files.set('dup:1', { header: readyVersion('dup', 1, b1), bytes: b1 });
    files.set('dup:2', { header: readyVersion('dup', 2, b2), bytes: b2 });
    const replicas = [setup(), setup()];
    try {
      const snapshot = [
        deployment('t', 'zeta', readyVersion('dup', 1, b1), 1),
        deployment('t', 'alpha', readyVersion('dup', 2, b2), 1),
      ];
      replicas[0]!.converger.applySnapshot(snapshot);
      replicas[1]!.converger.applySnapshot([...snapshot].reverse());
      for (const r of replicas) {
        await r.converger.whenReady();
        expect(r.manager.get('t', 'dup').version).toBe('2');
        expect(r.converger.deploymentOf('t', 'dup')).toBe('alpha');
      }
    } finally {
      for (const r of replicas) await r.close();
    }
  });
});
