// Triton's clients against Quanta: this file starts the four services, pushes and deploys a
// stateless model (with dynamic batching), a stateful one (an LSTM whose state the server
// carries) and a third for repository load/unload, computes the expected outputs with
// onnxruntime-node, and runs the pytest suite in tests/e2e/triton-compat, which makes the calls
// of NVIDIA's tritonclient (gRPC and HTTP) and checks the answers field by field. Then: REST
// requests with a W3C traceparent are traced as gRPC ones are, into registry and crypto.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildLstm, buildMlp, LSTM_NAMES } from '@quanta/onnx';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '@quanta/telemetry/testing';
import { createTensor, tensorFromOrt, tensorToOrt, writeNpy, type Tensor } from '@quanta/tensor';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bearer,
  connectClients,
  deploymentSpec,
  eventually,
  issueToken,
  pushModel,
  randomImage,
  rootTraceparent,
  waitServed,
  type Clients,
} from './clients.js';
import { REPO_ROOT, startStack, type Stack } from './stack.js';

const SCOPES = ['models:read', 'models:write', 'infer'];
const MLP = buildMlp({ seed: 7 });
const LSTM = buildLstm({ seed: 9 });
const BATCHING = {
  maxBatchSize: 8,
  maxQueueDelayUs: 500,
  preferredBatchSizes: [4],
  maxQueueSize: 32,
  instanceCount: 2,
};
const IDLE_MS = 5000;

/**
 * The first Python with Debian's grpcio, grpc_tools, numpy and pytest: QUANTA_PYTHON, python3 on
 * PATH, /usr/bin/python3.
 */
function findPython(): string {
  const candidates = [process.env['QUANTA_PYTHON'], 'python3', '/usr/bin/python3'].filter(
    (c): c is string => c !== undefined && c !== '',
  );
  for (const candidate of candidates) {
    if (spawnSync(candidate, ['-c', 'import grpc, grpc_tools, numpy, pytest'], { stdio: 'ignore' }).status === 0)
      return candidate;
  }
  throw new Error(
    `no Python with grpcio, grpc_tools, numpy and pytest among ${candidates.join(', ')}: ` +
      'apt-get install python3-grpcio python3-grpc-tools python3-numpy python3-pytest (or set QUANTA_PYTHON)',
  );
}

async function runOrt(model: Uint8Array, inputs: Readonly<Record<string, Tensor>>): Promise<Record<string, Tensor>> {
  const session = await ort.InferenceSession.create(model);
  try {
    const out = await session.run(
      Object.fromEntries(Object.entries(inputs).map(([name, t]) => [name, tensorToOrt(t)])),
    );
    return Object.fromEntries(
      Object.entries(out).map(([name, value]) => [name, structuredClone(tensorFromOrt(value))]),
    );
  } finally {
    await session.release();
  }
}

/** The models' inputs and onnxruntime's outputs as .npy files in `dir`, and the case file that names them. */
async function writeCase(dir: string, grpcAddr: string, httpUrl: string, token: string): Promise<string> {
  const npy = async (name: string, tensor: Tensor | undefined): Promise<string> => {
    if (tensor === undefined) throw new Error(`no tensor for ${name}`);
    await writeFile(join(dir, `${name}.npy`), writeNpy(tensor));
    return `${name}.npy`;
  };
  const x = createTensor('FP32', [3, 4], randomImage(11).subarray(0, 12));
  const mlpOut = await runOrt(MLP, { input: x });
  const stateless = {
    version: '1',
    input: 'input',
    output: 'output',
    x: await npy('mlp-x', x),
    y: await npy('mlp-y', mlpOut['output']),
    input_dims: [4],
    output_dims: [3],
    max_batch_size: BATCHING.maxBatchSize,
    max_queue_delay_us: BATCHING.maxQueueDelayUs,
    preferred_batch_sizes: BATCHING.preferredBatchSizes,
    max_queue_size: BATCHING.maxQueueSize,
    instance_count: BATCHING.instanceCount,
  };

  // The LSTM step by step, each step's state fed back by hand: what the server's sequence must give.
  let h: Tensor = createTensor('FP32', [1, 1, 8], new Float32Array(8));
  let c: Tensor = createTensor('FP32', [1, 1, 8], new Float32Array(8));
  const steps: { x: string; y: string }[] = [];
  for (let i = 0; i < 3; i++) {
    const xi = createTensor('FP32', [2, 1, 4], randomImage(50 + i).subarray(0, 8));
    const out = await runOrt(LSTM, { [LSTM_NAMES.input]: xi, [LSTM_NAMES.h]: h, [LSTM_NAMES.c]: c });
    steps.push({ x: await npy(`lstm-x${i}`, xi), y: await npy(`lstm-y${i}`, out[LSTM_NAMES.output]) });
    h = out[LSTM_NAMES.hn]!;
    c = out[LSTM_NAMES.cn]!;
  }
  const testCase = {
    grpc: grpcAddr,
    http: httpUrl,
    token,
    stateless: { name: 'tc-mlp', ...stateless },
    repository: { name: 'tc-repo', ...stateless },
    stateful: {
      name: 'tc-lstm',
      version: '1',
      input: LSTM_NAMES.input,
      output: LSTM_NAMES.output,
      state: [
        [LSTM_NAMES.h, LSTM_NAMES.hn],
        [LSTM_NAMES.c, LSTM_NAMES.cn],
      ],
      state_dims: [1, -1, 8],
      idle_ms: IDLE_MS,
      steps,
    },
  };
  const file = join(dir, 'case.json');
  await writeFile(file, JSON.stringify(testCase, null, 2));
  return file;
}

function run(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, output }));
  });
}

async function deploy(
  clients: Clients,
  token: string,
  name: string,
  bytes: Uint8Array,
  spec: Parameters<typeof deploymentSpec>[1],
): Promise<void> {
  await pushModel(clients, token, name, bytes);
  await clients.rpc.registry(
    'createDeployment',
    { name, spec: deploymentSpec(`${name}:1`, spec) },
    { metadata: bearer(token) },
  );
  await waitServed(clients, token, name, '1');
}

let receiver: OtlpReceiver;
let stack: Stack;
let dir: string;
let caseFile: string;
let token: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'quanta-triton-compat-'));
  receiver = await startOtlpReceiver();
  stack = await startStack({
    env: {
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_BSP_SCHEDULE_DELAY: '200',
    },
  });
  const clients = connectClients(stack);
  try {
    token = await issueToken(clients, stack.adminToken, 'partner', SCOPES);
    await Promise.all([
      deploy(clients, token, 'tc-mlp', MLP, BATCHING),
      deploy(clients, token, 'tc-repo', MLP, BATCHING),
      deploy(clients, token, 'tc-lstm', LSTM, {
        maxBatchSize: 0,
        maxQueueDelayUs: 0,
        sequenceIdleTimeoutMs: IDLE_MS,
        sequenceState: [
          { inputName: LSTM_NAMES.h, outputName: LSTM_NAMES.hn },
          { inputName: LSTM_NAMES.c, outputName: LSTM_NAMES.cn },
        ],
      }),
      pushModel(clients, token, 'tc-traced', MLP),
    ]);
    caseFile = await writeCase(dir, stack.addr.inference, stack.http.inference, token);
  } finally {
    clients.close();
  }
}, 240_000);

afterAll(async () => {
  await stack?.close();
  await receiver?.stop();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("Triton's clients against Quanta", () => {
  it('pass the tritonclient-call suite: health, metadata, config, infer, streams, statistics, repository', async () => {
    const python = findPython();
    const junit = join(dir, 'junit.xml');
    const { code, output } = await run(
      python,
      ['-m', 'pytest', 'tests/e2e/triton-compat', '-q', '-p', 'no:cacheprovider', `--junitxml=${junit}`],
      {
        ...process.env,
        QUANTA_TRITON_CASE: caseFile,
        PYTHONDONTWRITEBYTECODE: '1',
      },
    );
    expect(code, output).toBe(0);
    // Every test ran: a test skips only without the case file.
    const suite = /<testsuite [^>]*>/.exec(await readFile(junit, 'utf8'))?.[0] ?? '';
    const count = (name: string): number => Number(new RegExp(`${name}="(\\d+)"`).exec(suite)?.[1] ?? NaN);
    expect({ errors: count('errors'), failures: count('failures'), skipped: count('skipped') }, output).toEqual({
      errors: 0,
      failures: 0,
      skipped: 0,
    });
    expect(count('tests'), output).toBeGreaterThanOrEqual(34);
  }, 300_000);
});

describe('REST requests are traced as gRPC calls are', () => {
  const spansOf = (traceId: string): ReceivedSpan[] => receiver.spans.filter((s) => s.traceId === traceId);
  const post = (path: string, traceparent: string, body: unknown): Promise<Response> =>
    fetch(`${stack.http.inference}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, traceparent, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  it("a REST load continues the caller's trace into the registry and crypto", async () => {
    const root = rootTraceparent();
    const response = await post('/v2/repository/models/tc-traced/load', root.traceparent, {});
    expect(response.status, await response.text()).toBe(200);
    const isHttp = (s: ReceivedSpan): boolean =>
      s.serviceName === 'inference' && s.name === 'POST /v2/repository/models/{model}/load';
    await eventually('the load trace reaching the receiver from inference (its REST span), registry and crypto', () =>
      Promise.resolve(
        spansOf(root.traceId).some(isHttp) &&
          ['model-registry', 'crypto'].every((s) => spansOf(root.traceId).some((span) => span.serviceName === s)),
      ),
    );
    const spans = spansOf(root.traceId);
    const http = spans.find(isHttp);
    expect(http?.kind).toBe('SPAN_KIND_SERVER');
    expect(http?.parentSpanId).toBe(root.spanId);
    expect(Number(http?.attributes['http.response.status_code'])).toBe(200);
    // Connected: every span's parent is our root or another span of the trace.
    const ids = new Set([root.spanId, ...spans.map((s) => s.spanId)]);
    for (const span of spans)
      expect(ids.has(span.parentSpanId), `${span.serviceName} ${span.name} has a parent outside the trace`).toBe(true);
  }, 120_000);

  it("a REST infer is a server span under the caller's, with the batch and onnxruntime spans under it", async () => {
    const root = rootTraceparent();
    const response = await post('/v2/models/tc-traced/infer', root.traceparent, {
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }],
    });
    expect(response.status, await response.text()).toBe(200);
    const isHttp = (s: ReceivedSpan): boolean => s.name === 'POST /v2/models/{model}[/versions/{version}]/infer';
    await eventually('the infer trace reaching the receiver', () =>
      Promise.resolve(
        spansOf(root.traceId).some(isHttp) && spansOf(root.traceId).some((s) => /onnxruntime/i.test(s.name)),
      ),
    );
    const spans = spansOf(root.traceId);
    const http = spans.find(isHttp);
    expect(http?.parentSpanId).toBe(root.spanId);
    const ids = new Set([root.spanId, ...spans.map((s) => s.spanId)]);
    for (const span of spans)
      expect(ids.has(span.parentSpanId), `${span.serviceName} ${span.name} has a parent outside the trace`).toBe(true);
  }, 120_000);

  it("monitoring's HTTP pages are spans in the caller's trace", async () => {
    const root = rootTraceparent();
    const response = await fetch(`${stack.http.monitoring}/api/overview`, {
      headers: { traceparent: root.traceparent },
    });
    expect(response.status).toBe(200);
    await response.arrayBuffer();
    await eventually('the monitoring span reaching the receiver', () =>
      Promise.resolve(spansOf(root.traceId).some((s) => s.serviceName === 'monitoring')),
    );
    const span = spansOf(root.traceId).find((s) => s.serviceName === 'monitoring');
    expect({ name: span?.name, kind: span?.kind, parent: span?.parentSpanId }).toEqual({
      name: 'GET /api/overview',
      kind: 'SPAN_KIND_SERVER',
      parent: root.spanId,
    });
  }, 60_000);
});
