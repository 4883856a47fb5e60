// The platform beyond one machine, under faults: PostgreSQL-backed crypto, two registry replicas
// on one PostgreSQL, three inference replicas and monitoring, as processes. A partner SDK client
// balances ModelInfer over the three inference replicas (round_robin) while one inference replica
// and one registry replica are SIGKILLed. Then: every failure is one the SDK's retry policy may not
// retry (in flight on the killed replica); the survivors serve every deployment; every version
// reads back with its sha256; a change written through the surviving registry reaches the survivors.
import { createHash } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { startTestS3, type TestS3 } from '@quanta/model-registry/testing';
import { buildCnn, buildMlp } from '@quanta/onnx';
import {
  createQuantaClient,
  inferRequest,
  isRetryable,
  monitoring,
  outputTensor,
  QuantaClientError,
  registry,
  tensorValues,
  type QuantaClient,
  type RetryEvent,
} from '@quanta/sdk';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deploymentSpec, eventually, randomImage } from './clients.js';
import { startReplicatedStack, type Replica, type ReplicatedStack } from './replicas.js';

const SCOPES = ['models:read', 'models:write', 'infer', 'monitoring:read'];
const MODEL_INFER = '/inference.GRPCInferenceService/ModelInfer';
const MODEL_METADATA = '/inference.GRPCInferenceService/ModelMetadata';
/** Where the registries keep sealed model files in the bucket. */
const BLOB_PREFIX = 'models/';
/** Concurrent ModelInfer loops of the load, and ModelMetadata loops beside them. */
const WORKERS = 4;
const READERS = 2;
/** Distinct inputs per model; every answer is checked against onnxruntime's for its input. */
const INPUTS = 6;
/** Successful requests before the kills, and after the survivors serve the moved alias. */
const BEFORE_KILL = 90;
const AFTER_MOVE = 120;

interface ModelCase {
  readonly name: string;
  /** The bytes pushed, by version. */
  readonly versions: readonly Uint8Array[];
  readonly shape: readonly number[];
  readonly input: (seed: number) => Float32Array;
}

const cifar: ModelCase = {
  name: 'cifar',
  versions: [buildCnn({ softmax: true, seed: 1 }), buildCnn({ softmax: true, seed: 2 })],
  shape: [1, 3, 32, 32],
  input: (seed) => randomImage(seed + 1),
};
const tabular: ModelCase = {
  name: 'tabular',
  versions: [buildMlp({ inputSize: 8, hiddenSizes: [32], outputSize: 4, seed: 3 })],
  shape: [1, 8],
  input: (seed) => Float32Array.from({ length: 8 }, (_, i) => Math.sin(seed * 8 + i)),
};
/** Pushed and deployed through the surviving registry after the kills. */
const late: ModelCase = {
  name: 'late',
  versions: [buildMlp({ inputSize: 8, hiddenSizes: [16, 16], outputSize: 2, seed: 4 })],
  shape: [1, 8],
  input: tabular.input,
};
/** The models of the load. */
const MODELS = [cifar, tabular];
const ALL_MODELS = [cifar, tabular, late];

/** onnxruntime's output in this process, per model, version (1-based, as served) and input seed. */
const expected = new Map<string, Float32Array>();
const key = (model: string, version: string, seed: number): string => `${model}:${version}:${seed}`;

async function computeReferences(): Promise<void> {
  for (const m of ALL_MODELS) {
    for (const [v, bytes] of m.versions.entries()) {
      const session = await ort.InferenceSession.create(bytes);
      try {
        for (let seed = 0; seed < INPUTS; seed++) {
          const out = await session.run({ input: new ort.Tensor('float32', m.input(seed), [...m.shape]) });
          expected.set(key(m.name, String(v + 1), seed), out['output']?.data as Float32Array);
        }
      } finally {
        await session.release();
      }
    }
  }
}

/** Infers `seed` on `model` and checks the answer against onnxruntime's for the version that ran. */
async function inferChecked(client: QuantaClient, m: ModelCase, seed: number): Promise<string> {
  const response = await client.inference.modelInfer(
    inferRequest(m.name, [{ name: 'input', data: m.input(seed), shape: m.shape }]),
  );
  const want = expected.get(key(m.name, response.modelVersion, seed));
  if (want === undefined)
    throw new Error(`${m.name} answered as version "${response.modelVersion}", which was never pushed`);
  const got = tensorValues(outputTensor(response, 'output'));
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs((got[i] ?? NaN) - (want[i] ?? NaN)));
  if (!(got.length === want.length && worst < 1e-5))
    throw new Error(`${m.name}:${response.modelVersion} input ${seed} differs from onnxruntime by ${worst}`);
  return response.modelVersion;
}

/** Ms from `sinceMs` (epoch) to the replica's first deployment snapshot logged after it, from its JSON log. */
function snapshotAfter(replica: Replica, sinceMs: number): number | undefined {
  for (const line of replica.process.output) {
    try {
      const entry = JSON.parse(line) as { time?: number; msg?: string };
      if (
        typeof entry.time === 'number' &&
        entry.time > sinceMs &&
        entry.msg?.startsWith('deployment snapshot') === true
      )
        return entry.time - sinceMs;
    } catch {
      // not a log line
    }
  }
  return undefined;
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

let s3: TestS3;
let stack: ReplicatedStack;
let token: string;
const opened: QuantaClient[] = [];
const connect = (address: string, options: Partial<Parameters<typeof createQuantaClient>[0]> = {}): QuantaClient => {
  const client = createQuantaClient({ address, token, deadlineMs: 20_000, ...options });
  opened.push(client);
  return client;
};
/** One replica, no retries: what it answers itself. */
const direct = (replica: Replica): QuantaClient => connect(replica.addr, { retry: false, deadlineMs: 5000 });

beforeAll(async () => {
  s3 = await startTestS3();
  // Settled both before either failure is thrown, so that afterAll finds the stack to close.
  const [started, references] = await Promise.allSettled([
    startReplicatedStack({ registries: 2, inferences: 3, blobUrl: s3.blobUrl(BLOB_PREFIX), env: s3.env }),
    computeReferences(),
  ]);
  if (started.status === 'rejected') throw started.reason;
  stack = started.value;
  if (references.status === 'rejected') throw references.reason;
  const admin = createQuantaClient({ address: stack.crypto.addr, token: stack.adminToken });
  try {
    ({ token } = await admin.crypto.issueToken({
      tenant: 'acme',
      subject: 'acme-e2e',
      scopes: SCOPES,
      ttlSeconds: 3600n,
    }));
  } finally {
    admin.close();
  }
}, 180_000);

afterAll(async () => {
  for (const client of opened.splice(0)) client.close();
  await stack?.close();
  await s3?.close();
}, 60_000);

/** The processes the test kills. */
const killedInference = (): Replica => stack.inferences[1] as Replica;
const killedRegistry = (): Replica => stack.registries[0] as Replica;
const survivingInferences = (): Replica[] => stack.inferences.filter((r) => r !== killedInference());
const survivingRegistry = (): Replica => stack.registries[1] as Replica;

async function push(client: QuantaClient, m: ModelCase, bytes: Uint8Array): Promise<number> {
  const header = registry.UploadHeader.fromPartial({
    model: m.name,
    expectedSha256: sha256(bytes),
    expectedSizeBytes: BigInt(bytes.length),
    createModel: true,
  });
  const parts: registry.UploadVersionRequest[] = [{ part: { $case: 'header', value: header } }];
  for (let at = 0; at < bytes.length; at += 256 << 10)
    parts.push({ part: { $case: 'chunk', value: Buffer.from(bytes.subarray(at, at + (256 << 10))) } });
  const reply = await client.registry.uploadVersion(parts);
  return reply.version?.version ?? 0;
}

describe('replicas under faults', () => {
  it('pushes and deploys through registry A; all three inference replicas serve both models', async () => {
    const registryA = connect(killedRegistry().addr);
    for (const m of MODELS) {
      for (const [i, bytes] of m.versions.entries()) expect(await push(registryA, m, bytes)).toBe(i + 1);
    }
    await registryA.registry.setAlias({ model: 'cifar', alias: 'production', version: 1 });
    await registryA.registry.createDeployment({ name: 'cifar', spec: deploymentSpec('cifar@production') });
    await registryA.registry.createDeployment({
      name: 'tabular',
      spec: deploymentSpec('tabular', { maxBatchSize: 0 }),
    });
    await Promise.all(
      stack.inferences.map(async (replica) => {
        const client = direct(replica);
        await eventually(`${replica.label} serving cifar:1 and tabular:1`, async () => {
          for (const m of MODELS)
            if ((await client.inference.modelReady({ name: m.name, version: '1' })).ready !== true) return false;
          return true;
        });
      }),
    );
  }, 90_000);

  it(
    'keeps serving a round-robin load through SIGKILLs of an inference and a registry replica, ' + 'and an alias move',
    async () => {
      const retries: RetryEvent[] = [];
      const target = `ipv4:${stack.inferences.map((r) => r.addr).join(',')}`;
      const balanced = connect(target, {
        channelOptions: { 'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }) },
        onRetry: (event) => retries.push(event),
      });

      let succeeded = 0;
      const versions = new Map<string, number>();
      const counts = { infer: { sent: 0, failed: 0 }, read: { sent: 0, failed: 0 } };
      const failures: { kind: 'infer' | 'read'; error: QuantaClientError; startedAt: number; endedAt: number }[] = [];
      const mismatches: string[] = [];
      // Resolved by the load itself when the count of successful ModelInfers reaches a mark: no timers.
      const marks: { at: number; resolve: () => void }[] = [];
      const reached = (more: number): Promise<void> =>
        new Promise((resolve) => marks.push({ at: succeeded + more, resolve }));
      let stop = false;
      const giveUp = (): void => {
        stop = true;
        for (const mark of marks) mark.resolve();
      };

      const loop = async (kind: 'infer' | 'read', w: number): Promise<void> => {
        for (let i = 0; !stop; i++) {
          const m = MODELS[(w + i) % MODELS.length] as ModelCase;
          const startedAt = performance.now();
          counts[kind].sent++;
          try {
            if (kind === 'read') {
              // ModelMetadata only reads: the policy retries it whatever happened to the attempt.
              const meta = await balanced.inference.modelMetadata({ name: m.name });
              if (meta.name !== m.name || meta.inputs[0]?.name !== 'input')
                throw new Error(`${m.name} metadata: ${JSON.stringify(meta)}`);
              continue;
            }
            const version = await inferChecked(balanced, m, (w * 7 + i) % INPUTS);
            succeeded++;
            versions.set(`${m.name}:${version}`, (versions.get(`${m.name}:${version}`) ?? 0) + 1);
            for (const mark of marks) if (succeeded === mark.at) mark.resolve();
          } catch (error: unknown) {
            if (error instanceof QuantaClientError) {
              counts[kind].failed++;
              failures.push({ kind, error, startedAt, endedAt: performance.now() });
            } else mismatches.push(error instanceof Error ? error.message : String(error));
            // Far more failures than one dropped connection explains: stop, and let the checks below
            // say what they were.
            if (failures.length + mismatches.length > 10 * (WORKERS + READERS)) giveUp();
          }
        }
      };
      const loops = [
        ...Array.from({ length: WORKERS }, (_, w) => loop('infer', w)),
        ...Array.from({ length: READERS }, (_, w) => loop('read', w)),
      ];

      let killAt = 0;
      let killWallMs = 0;
      let inferenceGoneAt = 0;
      let movedAt = 0;
      try {
        await reached(BEFORE_KILL);
        // Round robin has spread the load: every replica has run requests of its own.
        for (const replica of stack.inferences) {
          const stats = await direct(replica).inference.modelStatistics({ name: 'cifar' });
          expect(
            stats.modelStats.reduce((n, s) => n + Number(s.inferenceCount), 0),
            replica.label,
          ).toBeGreaterThan(0);
        }
        killAt = performance.now();
        killWallMs = Date.now();
        [inferenceGoneAt] = await Promise.all([
          killedInference()
            .process.kill()
            .then(() => performance.now()),
          killedRegistry().process.kill(),
        ]);
        // Both survivors watched registry A (listed first by replicas 1 and 3): the move reaches them
        // only once their watches have failed over to registry B.
        await connect(survivingRegistry().addr).registry.setAlias({ model: 'cifar', alias: 'production', version: 2 });
        await Promise.all(
          survivingInferences().map(async (replica) => {
            const client = direct(replica);
            await eventually(
              `${replica.label} serving cifar:2`,
              async () => (await client.inference.modelReady({ name: 'cifar', version: '2' })).ready,
            );
          }),
        );
        movedAt = performance.now();
        await reached(AFTER_MOVE);
      } finally {
        // Also when a step above fails: no loop is left running into the closed clients.
        giveUp();
        await Promise.all(loops);
      }

      const figures = {
        modelInfer: counts.infer,
        modelMetadata: counts.read,
        retried: {
          modelInfer: retries.filter((r) => r.method === MODEL_INFER).length,
          modelMetadata: retries.filter((r) => r.method === MODEL_METADATA).length,
        },
        answersByVersion: Object.fromEntries(versions),
        inferenceKillToExitMs: Math.round(inferenceGoneAt - killAt),
        aliasMoveServedAfterKillMs: Math.round(movedAt - killAt),
        watchFailoverMs: Object.fromEntries(survivingInferences().map((r) => [r.label, snapshotAfter(r, killWallMs)])),
        failures: failures.map((f) => ({
          method: f.error.method,
          code: status[f.error.code],
          details: f.error.details,
          attempts: f.error.attempts,
          startedMsAfterKill: Math.round(f.startedAt - killAt),
          endedMsAfterKill: Math.round(f.endedAt - killAt),
        })),
        retries: retries.map((r) => ({
          method: r.method,
          attempt: r.attempt,
          code: status[r.error.code],
          details: r.error.details,
        })),
      };
      console.log(`replicas under faults: ${JSON.stringify(figures)}`);

      expect(mismatches).toEqual([]);
      expect(versions.get('cifar:2') ?? 0).toBeGreaterThan(0);
      // A request the policy may retry never fails: every read succeeded, at worst after retries.
      expect(counts.read.failed).toBe(0);
      // What fails is a ModelInfer that was written to the killed replica's connection and still
      // waited for its answer when that connection dropped (at most one per loop): the server may
      // have run it, so the policy does not send it again. They all end together, with the drop.
      expect(counts.infer.failed).toBeLessThanOrEqual(WORKERS);
      const droppedAt = Math.min(...failures.map((f) => f.endedAt));
      for (const f of failures) {
        expect(isRetryable(f.error.method, f.error), `${f.error.message} is one the policy retries`).toBe(false);
        expect(f.error.code).toBe(status.UNAVAILABLE);
        expect(f.endedAt).toBeGreaterThan(killAt);
        expect(f.startedAt).toBeLessThan(droppedAt);
        expect(f.endedAt - droppedAt).toBeLessThan(100);
      }
      // What was retried is what the dying replica dropped.
      for (const r of retries) expect(status[r.error.code]).toBe('UNAVAILABLE');
    },
    90_000,
  );

  it('serves every deployed model from each surviving inference replica', async () => {
    for (const replica of survivingInferences()) {
      const client = direct(replica);
      for (let seed = 0; seed < INPUTS; seed++) {
        expect(await inferChecked(client, cifar, seed)).toBe('2');
        expect(await inferChecked(client, tabular, seed)).toBe('1');
      }
    }
    await expect(direct(killedInference()).inference.serverLive({})).rejects.toMatchObject({
      code: status.UNAVAILABLE,
    });
  });

  it(
    'a model pushed and deployed through the surviving registry ' + 'reaches the surviving inference replicas',
    async () => {
      const registryB = connect(survivingRegistry().addr);
      expect(await push(registryB, late, late.versions[0] as Uint8Array)).toBe(1);
      await registryB.registry.createDeployment({ name: 'late', spec: deploymentSpec('late') });
      await Promise.all(
        survivingInferences().map(async (replica) => {
          const client = direct(replica);
          await eventually(
            `${replica.label} serving late:1`,
            async () => (await client.inference.modelReady({ name: 'late', version: '1' })).ready,
          );
          for (let seed = 0; seed < INPUTS; seed++) expect(await inferChecked(client, late, seed)).toBe('1');
        }),
      );
    },
    60_000,
  );

  it('loses no version: each one lists READY on the surviving registry and downloads with its sha256', async () => {
    const client = connect(survivingRegistry().addr);
    for (const m of ALL_MODELS) {
      const listed = await client.registry.listVersions({ model: m.name });
      expect(listed.versions.map((v) => v.version).sort()).toEqual(m.versions.map((_, i) => i + 1));
      for (const [i, bytes] of m.versions.entries()) {
        const version = listed.versions.find((v) => v.version === i + 1);
        expect(version?.status).toBe(registry.VersionStatus.VERSION_STATUS_READY);
        expect(version?.sha256).toBe(sha256(bytes));
        const chunks: Buffer[] = [];
        for await (const part of client.registry.downloadVersion({ ref: `${m.name}:${i + 1}` })) {
          if (part.part?.$case === 'chunk') chunks.push(Buffer.from(part.part.value));
        }
        expect(sha256(Buffer.concat(chunks)), `${m.name}:${i + 1}`).toBe(sha256(bytes));
      }
    }
    // The bytes are in the bucket, one sealed object per version, and no upload was left behind.
    const objects = await s3.keys(BLOB_PREFIX);
    for (const m of ALL_MODELS)
      for (const bytes of m.versions) expect(objects.filter((k) => k.endsWith(`/${sha256(bytes)}`))).toHaveLength(1);
    expect(objects.filter((k) => k.startsWith(`${BLOB_PREFIX}.tmp/`))).toEqual([]);
    expect(await s3.uploads(BLOB_PREFIX)).toEqual([]);
  });

  it("monitoring's health board sees the killed replicas down and the survivors serving", async () => {
    const client = connect(stack.monitoring.addr);
    const down = new Set([killedInference().label, killedRegistry().label]);
    await eventually('the health board to show the kills', async () => {
      const board = await client.monitoring.getHealthBoard({});
      return board.services.every((s) =>
        down.has(s.name)
          ? s.status !== monitoring.ServiceHealthStatus.SERVICE_HEALTH_STATUS_SERVING
          : s.status === monitoring.ServiceHealthStatus.SERVICE_HEALTH_STATUS_SERVING,
      );
    });
  });
});
