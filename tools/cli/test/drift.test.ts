// Drift detection end to end: a real inference server (real onnxruntime sessions, wired from its
// config as main.ts wires it: records and sampled input summaries to monitoring) reporting to a
// real monitoring server, real gRPC requests, and the real `quanta` command freezing baselines
// (from live traffic and from .npy files) and reading the drift.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { createMemorySigningKeyStore, createTokenIssuer, createTokenVerifier } from '@quanta/auth';
import { inference as ipb, monitoring as mpb, unaryCaller } from '@quanta/contracts';
import { createSyncWiring, inferenceConfig, startInferenceServer } from '@quanta/inference';
import type { InferenceServer } from '@quanta/inference';
import { monitoringConfig, startMonitoringServer } from '@quanta/monitoring';
import type { MonitoringServer } from '@quanta/monitoring';
import { buildMlp } from '@quanta/onnx';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeNpy } from '../src/npy.js';

const bin = join(import.meta.dirname, '..', 'bin', 'quanta.mjs');
const run = promisify(execFile);
const ROWS = 16;
const FEATURES = 4;
const REQUESTS = 120;
/** Values each phase sends: every one is sampled (the budget is far above the traffic). */
const VALUES = REQUESTS * ROWS * FEATURES;

let dir: string;
let monitoring: MonitoringServer;
let server: InferenceServer;
let client: ipb.GRPCInferenceServiceClient;
let inferToken: string;
let cliToken: string;

async function quanta(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = {
    ...process.env,
    QUANTA_MONITORING_ADDR: `127.0.0.1:${monitoring.port}`,
    QUANTA_TOKEN: cliToken,
    QUANTA_HOME: dir,
  };
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], { env });
    return { code: 0, stdout, stderr };
  } catch (error: unknown) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** Normal values from a fixed generator (Box–Muller), so every run sends the same numbers. */
function normals(n: number, mean: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const r = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Float32Array.from({ length: n }, () => mean + Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r()));
}

/** REQUESTS real ModelInfer calls of ROWS×FEATURES values drawn around `mean`, eight at a time. */
async function traffic(mean: number, seed: number): Promise<void> {
  const infer = unaryCaller(client, ipb.GRPCInferenceServiceService, { deadlineMs: 30_000 });
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${inferToken}`);
  const values = normals(REQUESTS * ROWS * FEATURES, mean, seed);
  for (let i = 0; i < REQUESTS; i += 8) {
    await Promise.all(
      Array.from({ length: Math.min(8, REQUESTS - i) }, async (_, k) => {
        const rows = values.subarray((i + k) * ROWS * FEATURES, (i + k + 1) * ROWS * FEATURES);
        const reply = await infer(
          'modelInfer',
          {
            modelName: 'mlp',
            modelVersion: '',
            id: `r${i + k}`,
            parameters: {},
            inputs: [{ name: 'input', datatype: 'FP32', shape: [BigInt(ROWS), BigInt(FEATURES)], parameters: {} }],
            outputs: [],
            rawInputContents: [Buffer.from(rows.buffer, rows.byteOffset, rows.byteLength)],
          },
          { metadata },
        );
        expect(reply.outputs[0]?.shape).toEqual([BigInt(ROWS), 3n]);
      }),
    );
  }
}

/** Waits until monitoring holds `count` sampled values of mlp's input since `fromMs`. */
async function summarized(fromMs: number, count: number): Promise<void> {
  const giveUp = Date.now() + 30_000;
  for (;;) {
    const span = { start: Math.floor(fromMs / 1000), end: Math.floor(Date.now() / 1000) + 1 };
    const got = monitoring.drift.store.inputs('acme', 'mlp', '', span).get('input')?.count ?? 0;
    if (got >= count) return;
    if (Date.now() > giveUp) throw new Error(`monitoring holds ${got} of ${count} sampled values after 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Sleeps past the next second boundary, so a later window starts after what came before. */
const nextSecond = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 1100 - (Date.now() % 1000)));

/** `--range` from `fromMs` to now (however long the CLI takes to start). */
const since = (fromMs: number): string => `${new Date(fromMs).toISOString()}..`;

interface DriftJson {
  maxPsi: number;
  inputs: { input: string; psi: number; count: number; mean: number; baselineMean: number }[];
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'quanta-cli-drift-'));
  const issuer = await createTokenIssuer({ store: createMemorySigningKeyStore() });
  const authenticator = createTokenVerifier({ fetchJwks: () => issuer.jwks(), minRefreshIntervalMs: 0 });
  const logger = pino({ level: process.env['QUANTA_LOG_LEVEL'] ?? 'silent' });
  // Monitoring with its own timers (alerts evaluated every second) and its embedded store under home.
  monitoring = await startMonitoringServer(
    monitoringConfig({ port: 0, httpPort: 0, shutdownGrace: 1000, cryptoAddr: '127.0.0.1:1', home: join(dir, 'm') }),
    { authenticator, logger },
  );
  const config = inferenceConfig({
    home: dir,
    port: 0,
    shutdownGrace: 1000,
    httpPort: 0,
    metricsPort: undefined,
    cryptoAddr: '127.0.0.1:1',
    registryAddr: '127.0.0.1:1',
    monitoringAddr: `127.0.0.1:${monitoring.port}`,
    serviceToken: await issuer.issue({ tenant: 'platform', subject: 'inference', scopes: ['admin'], ttlSeconds: 3600 }),
    driftSampleRate: 10_000_000,
    driftFlushInterval: 200,
    threadsPerInstance: 1,
    execution: 'worker',
    watch: false,
  });
  server = await startInferenceServer(config, { authenticator, logger, ...createSyncWiring(config) });
  await server.manager.load('acme', 'mlp', '1', buildMlp({ seed: 3 }), {
    maxBatchSize: 0,
    maxQueueDelayUs: 0,
    instanceCount: 1,
    maxQueueSize: 0,
    sequenceState: [],
    sequenceIdleTimeoutMs: 0,
    threadsPerInstance: 1,
  });
  await server.manager.activate('acme', 'mlp', '1');
  client = new ipb.GRPCInferenceServiceClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  inferToken = await issuer.issue({ tenant: 'acme', subject: 'app', scopes: ['infer'], ttlSeconds: 3600 });
  cliToken = await issuer.issue({
    tenant: 'acme',
    subject: 'cli',
    scopes: ['monitoring:read', 'alerts:write'],
    ttlSeconds: 3600,
  });
}, 120_000);

afterAll(async () => {
  client?.close();
  await server?.stop({ graceMs: 1000 });
  await monitoring?.stop({ graceMs: 1000 });
  rmSync(dir, { recursive: true, force: true });
});

describe('drift: PSI rises when the input distribution moves', { timeout: 180_000 }, () => {
  it('baseline from live traffic: the same distribution stable, a shifted one major, and an alert fires', async () => {
    const none = await quanta(['drift', 'baseline', 'mlp', '--window', '1m']);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/no input summaries of model "mlp" \(every version\)/);

    // Distribution A, frozen as the baseline.
    const a1 = Date.now();
    await traffic(0, 1);
    await summarized(a1, VALUES);
    const set = await quanta(['drift', 'baseline', 'mlp', '--window', '5m', '--json']);
    expect(set.stderr).toBe('');
    const baseline = JSON.parse(set.stdout) as { inputs: { input: string; count: number }[] };
    expect(baseline.inputs.map((i) => [i.input, i.count])).toEqual([['input', VALUES]]);

    const rule = await quanta([
      'alerts',
      'create',
      'mlp-drift',
      '--model',
      'mlp',
      '--metric',
      'drift_psi',
      '--input',
      'input',
      '--threshold',
      '0.25',
      '--window',
      '30s',
    ]);
    expect(rule.stderr).toBe('');

    // A again (another sample of it): stable.
    await nextSecond();
    const a2 = Date.now();
    await traffic(0, 2);
    await summarized(a2, VALUES);
    const same = JSON.parse((await quanta(['drift', 'mlp', '--range', since(a2), '--json'])).stdout) as DriftJson;
    expect(same.inputs[0]).toMatchObject({ input: 'input', count: VALUES });
    expect(same.inputs[0]!.psi).toBeLessThan(0.1);
    expect(same.maxPsi).toBeLessThan(0.1);
    const text = await quanta(['drift', 'mlp', '--range', since(a2)]);
    expect(text.stdout).toMatch(/^input\s+0\.0\d\d\s+stable\s+/m);
    // Evaluated every second over 30 s of stable input: the rule does not hold.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(monitoring.alerts.listAlerts('acme')).toEqual([]);

    // Shifted by two standard deviations: a major shift, and the rule fires naming the input.
    await nextSecond();
    const b = Date.now();
    await traffic(2, 3);
    await summarized(b, VALUES);
    const shifted = JSON.parse((await quanta(['drift', 'mlp', '--range', since(b), '--json'])).stdout) as DriftJson;
    expect(shifted.inputs[0]!.count).toBe(VALUES);
    expect(shifted.inputs[0]!.psi).toBeGreaterThan(0.25);
    expect(shifted.inputs[0]!.mean - shifted.inputs[0]!.baselineMean).toBeGreaterThan(1.5);
    expect((await quanta(['drift', 'mlp', '--range', since(b)])).stdout).toMatch(/^input\s+\d+\.\d{3}\s+major\s+/m);
    const giveUp = Date.now() + 20_000;
    while (!monitoring.alerts.listAlerts('acme').some((x) => x.state === mpb.AlertState.ALERT_STATE_FIRING)) {
      if (Date.now() > giveUp) throw new Error('the drift alert never fired');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const firing = JSON.parse((await quanta(['alerts', 'list', '--state', 'firing', '--json'])).stdout) as {
      ruleName: string;
      input: string;
      value: number;
      message: string;
    }[];
    expect(firing).toHaveLength(1);
    expect(firing[0]).toMatchObject({ ruleName: 'mlp-drift', input: 'input' });
    expect(firing[0]!.value).toBeGreaterThan(0.25);
    expect(firing[0]!.message).toMatch(/drift PSI of input "input"/);

    // A baseline from .npy files of distribution A (a folder, and files with --input) judges the
    // same shifted traffic the same way.
    const npy = join(dir, 'npy');
    mkdirSync(npy);
    writeFileSync(
      join(npy, 'input.npy'),
      writeNpy({ datatype: 'FP32', shape: [2000, FEATURES], data: normals(8000, 0, 4) }),
    );
    const fromFolder = JSON.parse((await quanta(['drift', 'baseline', 'mlp', '--from-npy', npy, '--json'])).stdout) as {
      inputs: { input: string; count: number }[];
      startTime?: string;
    };
    expect(fromFolder.inputs.map((i) => [i.input, i.count])).toEqual([['input', 8000]]);
    expect(fromFolder.startTime).toBeUndefined();
    writeFileSync(
      join(dir, 'a.npy'),
      writeNpy({ datatype: 'FP64', shape: [500, FEATURES], data: Float64Array.from(normals(2000, 0, 5)) }),
    );
    const files = await quanta([
      'drift',
      'baseline',
      'mlp',
      '--from-npy',
      join(dir, 'a.npy'),
      join(npy, 'input.npy'),
      '--input',
      'input',
    ]);
    expect(files.stderr).toBe('');
    expect(files.stdout).toMatch(/^input\s+10000\s+/m);
    const againstNpy = JSON.parse((await quanta(['drift', 'mlp', '--range', since(b), '--json'])).stdout) as DriftJson;
    expect(againstNpy.inputs[0]!.psi).toBeGreaterThan(0.25);
    expect(Math.abs(againstNpy.inputs[0]!.baselineMean)).toBeLessThan(0.1);
  });

  it('answers bad input with a clear error, and deletes a baseline once', async () => {
    const both = await quanta(['drift', 'baseline', 'mlp', '--window', '1m', '--from-npy', dir]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/exactly one of --window, --range or --from-npy/);
    const missing = await quanta(['drift', 'baseline', 'mlp', '--from-npy', join(dir, 'nothing.npy')]);
    expect(missing.stderr).toMatch(/nothing\.npy: no such file or folder/);
    const range = await quanta(['drift', 'baseline', 'mlp', '--range', 'yesterday']);
    expect(range.stderr).toMatch(/--range "yesterday" is not START\.\.END/);
    const notDrift = await quanta([
      'alerts',
      'create',
      'x',
      '--model',
      'mlp',
      '--metric',
      'p99',
      '--threshold',
      '1',
      '--input',
      'input',
    ]);
    expect(notDrift.code).toBe(2);
    expect(notDrift.stderr).toMatch(/--input goes with --metric drift_psi/);

    const shown = JSON.parse((await quanta(['drift', 'show-baseline', 'mlp', '--json'])).stdout) as {
      model: string;
      inputs: { input: string; count: number }[];
    };
    expect(shown).toMatchObject({ model: 'mlp', inputs: [{ input: 'input', count: 10_000 }] });
    const version = await quanta(['drift', 'show-baseline', 'mlp', '--model-version', '1']);
    expect(version.stderr).toMatch(/model "mlp" version 1 has no drift baseline/);
    const deleted = await quanta(['drift', 'delete', 'mlp']);
    expect(deleted.stdout).toMatch(/drift baseline of mlp deleted/);
    const again = await quanta(['drift', 'delete', 'mlp']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/model "mlp" \(every version\) has no drift baseline/);
    const noBaseline = await quanta(['drift', 'mlp']);
    expect(noBaseline.code).toBe(1);
    expect(noBaseline.stderr).toMatch(/has no drift baseline.*quanta drift baseline mlp/);
  });
});
