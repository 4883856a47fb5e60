// The Python client (clients/python) against a live stack: this file starts the four services,
// builds the models, runs them with onnxruntime-node on the inputs it writes (Debian has no
// onnxruntime for Python), and runs the client's pytest suite with the stack's QUANTA_* variables,
// a tenant token, and the folder of models, inputs and expected outputs. The suite's unit tests
// (tensors byte for byte, settings, an in-process gRPC server) run in the same pytest call.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCnn, buildLstm, encodeModel, LSTM_NAMES, OnnxDataType, type ModelSpec } from '@quanta/onnx';
import { createTensor, tensorFromOrt, tensorToOrt, writeNpy, type Tensor } from '@quanta/tensor';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClients, issueToken, randomImage } from './clients.js';
import { REPO_ROOT, startStack, type Stack } from './stack.js';

const SCOPES = ['models:read', 'models:write', 'infer', 'monitoring:read', 'keys:use', 'keys:admin'];

/** The first Python that has Debian's grpcio, numpy and pytest: QUANTA_PYTHON, python3 on PATH, /usr/bin/python3. */
function findPython(): string {
  const candidates = [process.env['QUANTA_PYTHON'], 'python3', '/usr/bin/python3'].filter(
    (c): c is string => c !== undefined && c !== '',
  );
  for (const candidate of candidates) {
    const probe = spawnSync(candidate, ['-c', 'import grpc, numpy, pytest, google.protobuf'], { stdio: 'ignore' });
    if (probe.status === 0) return candidate;
  }
  throw new Error(
    `no Python with grpcio, numpy and pytest among ${candidates.join(', ')}: ` +
      'apt-get install python3-grpcio python3-numpy python3-pytest (or set QUANTA_PYTHON)',
  );
}

/** One input per datatype onnxruntime-node can feed (all but BF16), two rows of three: the extremes of each. */
const DATATYPE_INPUTS: readonly { onnx: number; tensor: Tensor }[] = [
  { onnx: OnnxDataType.BOOL, tensor: createTensor('BOOL', [2, 3], Uint8Array.from([1, 0, 1, 1, 0, 0])) },
  { onnx: OnnxDataType.UINT8, tensor: createTensor('UINT8', [2, 3], Uint8Array.from([0, 1, 127, 128, 254, 255])) },
  {
    onnx: OnnxDataType.UINT16,
    tensor: createTensor('UINT16', [2, 3], Uint16Array.from([0, 1, 255, 256, 65534, 65535])),
  },
  {
    onnx: OnnxDataType.UINT32,
    tensor: createTensor('UINT32', [2, 3], Uint32Array.from([0, 1, 65536, 2 ** 31, 2 ** 32 - 2, 2 ** 32 - 1])),
  },
  {
    onnx: OnnxDataType.UINT64,
    tensor: createTensor(
      'UINT64',
      [2, 3],
      BigUint64Array.from([0n, 1n, 2n ** 32n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n]),
    ),
  },
  { onnx: OnnxDataType.INT8, tensor: createTensor('INT8', [2, 3], Int8Array.from([-128, -1, 0, 1, 64, 127])) },
  { onnx: OnnxDataType.INT16, tensor: createTensor('INT16', [2, 3], Int16Array.from([-32768, -1, 0, 1, 256, 32767])) },
  {
    onnx: OnnxDataType.INT32,
    tensor: createTensor('INT32', [2, 3], Int32Array.from([-(2 ** 31), -1, 0, 1, 65536, 2 ** 31 - 1])),
  },
  {
    onnx: OnnxDataType.INT64,
    tensor: createTensor(
      'INT64',
      [2, 3],
      BigInt64Array.from([-(2n ** 63n), -1n, 0n, 1n, 2n ** 53n + 1n, 2n ** 63n - 1n]),
    ),
  },
  // FP16 bit patterns: 0, -0, 1, -2, 65504 (the largest), the smallest subnormal.
  {
    onnx: OnnxDataType.FLOAT16,
    tensor: createTensor('FP16', [2, 3], Uint16Array.from([0x0000, 0x8000, 0x3c00, 0xc000, 0x7bff, 0x0001])),
  },
  {
    onnx: OnnxDataType.FLOAT,
    tensor: createTensor(
      'FP32',
      [2, 3],
      Float32Array.from([0, -0, 1.5, -3.4028234663852886e38, 1.401298464324817e-45, 0.1]),
    ),
  },
  {
    onnx: OnnxDataType.DOUBLE,
    tensor: createTensor('FP64', [2, 3], Float64Array.from([0, -0, Math.PI, -1e308, 5e-324, 0.1])),
  },
  {
    onnx: OnnxDataType.STRING,
    tensor: createTensor(
      'BYTES',
      [2, 3],
      ['', 'a', 'quanta', 'héllo', '日本語', 'x'.repeat(300)].map((s) => Buffer.from(s, 'utf8')),
    ),
  },
];

/** out_<DATATYPE> = Identity(in_<DATATYPE>) for every datatype, each [N, 3]. */
function datatypesModel(): ModelSpec {
  const names = DATATYPE_INPUTS.map(({ onnx, tensor }) => ({ onnx, datatype: tensor.datatype }));
  return {
    producerName: 'quanta-e2e',
    graph: {
      name: 'datatypes',
      nodes: names.map(({ datatype }) => ({
        opType: 'Identity',
        name: `id_${datatype}`,
        inputs: [`in_${datatype}`],
        outputs: [`out_${datatype}`],
      })),
      initializers: [],
      inputs: names.map(({ onnx, datatype }) => ({ name: `in_${datatype}`, dataType: onnx, shape: ['N', 3] })),
      outputs: names.map(({ onnx, datatype }) => ({ name: `out_${datatype}`, dataType: onnx, shape: ['N', 3] })),
    },
  };
}

/** Runs `model` with onnxruntime-node on `inputs`; the outputs as tensors. */
async function runOrt(model: Uint8Array, inputs: Readonly<Record<string, Tensor>>): Promise<Record<string, Tensor>> {
  const session = await ort.InferenceSession.create(model);
  try {
    const feeds = Object.fromEntries(Object.entries(inputs).map(([name, t]) => [name, tensorToOrt(t)]));
    const out = await session.run(feeds);
    // Copies: the results outlive the session.
    return Object.fromEntries(
      Object.entries(out).map(([name, value]) => [name, structuredClone(tensorFromOrt(value))]),
    );
  } finally {
    await session.release();
  }
}

/** Pseudo-random floats in [-1, 1) from `seed`. */
function floats(count: number, seed: number): Float32Array {
  return randomImage(seed).subarray(0, count);
}

/**
 * Writes fixtures into `dir`: .npy for numeric tensors, JSON ({shape, utf8}) for BYTES, which .npy
 * cannot hold without pickles.
 */
function fixtureWriter(dir: string): (name: string, tensor: Tensor) => Promise<string> {
  return async (name, tensor) => {
    if (tensor.datatype === 'BYTES') {
      const file = `${name}.json`;
      const utf8 = tensor.data.map((b) => Buffer.from(b).toString('utf8'));
      await writeFile(join(dir, file), JSON.stringify({ shape: tensor.shape, utf8 }));
      return file;
    }
    const file = `${name}.npy`;
    await writeFile(join(dir, file), writeNpy(tensor));
    return file;
  };
}

async function writeFixtures(dir: string): Promise<void> {
  const write = fixtureWriter(dir);
  const files = async (prefix: string, tensors: Readonly<Record<string, Tensor>>): Promise<Record<string, string>> =>
    Object.fromEntries(
      await Promise.all(
        Object.entries(tensors).map(async ([name, t]) => [name, await write(`${prefix}-${name}`, t)] as const),
      ),
    );

  const cnn = buildCnn({ softmax: true, seed: 3 });
  await writeFile(join(dir, 'cnn.onnx'), cnn);
  const cnnInputs = { input: createTensor('FP32', [2, 3, 32, 32], randomImage(31, 2)) };
  const cnnOut = await runOrt(cnn, cnnInputs);

  const datatypes = encodeModel(datatypesModel());
  await writeFile(join(dir, 'datatypes.onnx'), datatypes);
  const typeInputs = Object.fromEntries(DATATYPE_INPUTS.map(({ tensor }) => [`in_${tensor.datatype}`, tensor]));
  const typeOut = await runOrt(datatypes, typeInputs);
  expect(Object.keys(typeOut).sort()).toEqual(DATATYPE_INPUTS.map(({ tensor }) => `out_${tensor.datatype}`).sort());

  // The LSTM run step by step, each step's state fed back by hand: what a sequence must give.
  const lstm = buildLstm({ seed: 5 });
  await writeFile(join(dir, 'lstm.onnx'), lstm);
  let h: Tensor = createTensor('FP32', [1, 1, 8], new Float32Array(8));
  let c: Tensor = createTensor('FP32', [1, 1, 8], new Float32Array(8));
  const steps: { inputs: Record<string, string>; expected: Record<string, string> }[] = [];
  for (let i = 0; i < 4; i++) {
    const x = createTensor('FP32', [1, 1, 4], floats(4, 100 + i));
    const out = await runOrt(lstm, { [LSTM_NAMES.input]: x, [LSTM_NAMES.h]: h, [LSTM_NAMES.c]: c });
    const { y, hn, cn } = out as Record<'y' | 'hn' | 'cn', Tensor>;
    steps.push({ inputs: await files(`lstm-${i}`, { x }), expected: await files(`lstm-${i}-out`, { y, hn, cn }) });
    h = hn;
    c = cn;
  }

  const manifest = {
    cnn: { model: 'cnn.onnx', inputs: await files('cnn', cnnInputs), expected: await files('cnn-out', cnnOut) },
    datatypes: {
      model: 'datatypes.onnx',
      inputs: await files('types', typeInputs),
      expected: await files('types-out', typeOut),
    },
    lstm: { model: 'lstm.onnx', state: { [LSTM_NAMES.h]: LSTM_NAMES.hn, [LSTM_NAMES.c]: LSTM_NAMES.cn }, steps },
  };
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2));
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

let stack: Stack;
let dir: string;
let token: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'quanta-pyclient-'));
  await writeFixtures(dir);
  stack = await startStack();
  const clients = connectClients(stack);
  try {
    token = await issueToken(clients, stack.adminToken, 'partner', SCOPES);
  } finally {
    clients.close();
  }
}, 240_000);

afterAll(async () => {
  await stack?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
}, 60_000);

describe('the Python client against a live stack', () => {
  it('passes its pytest suite: push, deploy, infer (every datatype, sequences), crypto, stats, errors', async () => {
    const python = findPython();
    const junit = join(dir, 'junit.xml');
    const { code, output } = await run(
      python,
      ['-m', 'pytest', 'clients/python/tests', '-q', '-p', 'no:cacheprovider', `--junitxml=${junit}`],
      {
        ...stack.env,
        QUANTA_TOKEN: token,
        QUANTA_PYCLIENT_FIXTURES: dir,
        PYTHONDONTWRITEBYTECODE: '1',
      },
    );
    expect(code, output).toBe(0);
    // Every test ran, the live ones included: none skipped (a live test skips only without the fixtures).
    const xml = await readFile(junit, 'utf8');
    const suite = /<testsuite [^>]*>/.exec(xml)?.[0] ?? '';
    const count = (name: string): number => Number(new RegExp(`${name}="(\\d+)"`).exec(suite)?.[1] ?? NaN);
    expect({ errors: count('errors'), failures: count('failures'), skipped: count('skipped') }, output).toEqual({
      errors: 0,
      failures: 0,
      skipped: 0,
    });
    expect(xml.match(/<testcase classname="tests\.test_live"/g)?.length ?? 0, output).toBeGreaterThanOrEqual(10);
  }, 300_000);
});
