import * as grpc from '@grpc/grpc-js';
import type { inference as pb } from '@quanta/contracts';
import { LSTM_NAMES, buildCnn, buildLstm, buildMlp } from '@quanta/onnx';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../testing/harness.js';
import {
  bearer,
  call,
  openInferStream,
  failure,
  fp32Input,
  fp32Output,
  inferRequest,
  ocrClassifier,
  runOrt,
  seededFloats,
  startHarness,
} from '../testing/harness.js';

const MLP = buildMlp();
const CNN = buildCnn();
const LSTM = buildLstm();
const OCR = ocrClassifier();
const LSTM_STATE = [
  { input: LSTM_NAMES.h, output: LSTM_NAMES.hn },
  { input: LSTM_NAMES.c, output: LSTM_NAMES.cn },
];

/** Every value within `tol` of the second source's (onnxruntime called directly). */
function expectClose(actual: Float32Array, expected: Float32Array | undefined, tol = 1e-5): void {
  expect(expected).toBeDefined();
  expect(actual.length).toBe(expected!.length);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected![i]!));
  expect(worst).toBeLessThanOrEqual(tol);
}

let h: Harness;
let token: string;

beforeAll(async () => {
  h = await startHarness();
  await Promise.all([
    h.deploy('acme', 'mlp', '1', MLP),
    h.deploy('acme', 'cnn', '1', CNN),
    h.deploy('acme', 'ocr-cls', '1', OCR),
    h.deploy('acme', 'lstm', '1', LSTM, { sequenceState: LSTM_STATE }),
    h.deploy('globex', 'mlp', '7', buildMlp({ seed: 2 })),
  ]);
  token = await h.token('acme', ['infer', 'models:read']);
});
afterAll(() => h.close());

const models: {
  name: string;
  bytes: () => Uint8Array;
  input: string;
  shape: number[];
  output: string;
  classes: number;
}[] = [
  { name: 'mlp', bytes: () => MLP, input: 'input', shape: [3, 4], output: 'output', classes: 3 },
  { name: 'cnn', bytes: () => CNN, input: 'input', shape: [2, 3, 32, 32], output: 'output', classes: 10 },
  { name: 'ocr-cls', bytes: () => OCR, input: 'x', shape: [2, 3, 48, 192], output: 'softmax_0.tmp_0', classes: 2 },
];

describe('ModelInfer matches onnxruntime called directly', () => {
  for (const model of models) {
    for (const raw of [false, true]) {
      it(`${model.name}, ${raw ? 'raw' : 'typed'} inputs and outputs`, async () => {
        const count = model.shape.reduce((a, b) => a * b, 1);
        const data = seededFloats(count, 7);
        const { input, raw: bytes } = fp32Input(model.input, model.shape, data, raw);
        const response = await call(
          h.client,
          'modelInfer',
          inferRequest({
            modelName: model.name,
            id: `req-${model.name}`,
            inputs: [input],
            rawInputContents: bytes === undefined ? [] : [bytes],
          }),
          token,
        );
        expect(response.modelName).toBe(model.name);
        expect(response.modelVersion).toBe('1');
        expect(response.id).toBe(`req-${model.name}`);
        expect(response.outputs.map((o) => [o.name, o.datatype])).toEqual([[model.output, 'FP32']]);
        expect(response.rawOutputContents.length).toBe(raw ? 1 : 0);
        if (raw) expect(response.outputs[0]!.contents).toBeUndefined();
        const expected = await runOrt(model.bytes(), { [model.input]: { dims: model.shape, data } });
        expect(response.outputs[0]!.shape.map(Number)).toEqual([model.shape[0], model.classes]);
        expectClose(fp32Output(response, 0), expected[model.output]);
      });
    }
  }

  it('honours the requested outputs and their order, and binary_data', async () => {
    const x = seededFloats(2 * 1 * 4, 3);
    const h0 = seededFloats(8, 4);
    const c0 = seededFloats(8, 5);
    const inputs = [
      fp32Input('x', [2, 1, 4], x, false).input,
      fp32Input('h', [1, 1, 8], h0, false).input,
      fp32Input('c', [1, 1, 8], c0, false).input,
    ];
    const binary = { binary_data: { parameterChoice: { $case: 'boolParam' as const, value: true } } };
    const response = await call(
      h.client,
      'modelInfer',
      inferRequest({
        modelName: 'lstm',
        inputs,
        outputs: [
          { name: 'cn', parameters: binary },
          { name: 'y', parameters: binary },
        ],
      }),
      token,
    );
    expect(response.outputs.map((o) => o.name)).toEqual(['cn', 'y']);
    expect(response.rawOutputContents.length).toBe(2);
    const expected = await runOrt(LSTM, {
      x: { dims: [2, 1, 4], data: x },
      h: { dims: [1, 1, 8], data: h0 },
      c: { dims: [1, 1, 8], data: c0 },
    });
    expectClose(fp32Output(response, 0), expected['cn']);
    expectClose(fp32Output(response, 1), expected['y']);
  });

  it('carries an LSTM state across a sequence (sequence_id, sequence_start, sequence_end)', async () => {
    const steps = [seededFloats(8, 11), seededFloats(8, 12), seededFloats(8, 13)];
    let h0: Float32Array = new Float32Array(8);
    let c0: Float32Array = new Float32Array(8);
    for (const [i, x] of steps.entries()) {
      const parameters: Record<string, pb.InferParameter> = {
        sequence_id: { parameterChoice: { $case: 'uint64Param', value: 42n } },
        sequence_start: { parameterChoice: { $case: 'boolParam', value: i === 0 } },
        sequence_end: { parameterChoice: { $case: 'boolParam', value: i === steps.length - 1 } },
      };
      const { input, raw } = fp32Input('x', [2, 1, 4], x, true);
      const response = await call(
        h.client,
        'modelInfer',
        inferRequest({ modelName: 'lstm', parameters, inputs: [input], rawInputContents: [raw!] }),
        token,
      );
      const expected = await runOrt(LSTM, {
        x: { dims: [2, 1, 4], data: x },
        h: { dims: [1, 1, 8], data: h0 },
        c: { dims: [1, 1, 8], data: c0 },
      });
      const names = response.outputs.map((o) => o.name);
      expectClose(fp32Output(response, names.indexOf('y')), expected['y']);
      expectClose(fp32Output(response, names.indexOf('hn')), expected['hn']);
      h0 = expected['hn']!;
      c0 = expected['cn']!;
    }
  });

  it('keeps two sequences apart (string and int64 ids)', async () => {
    const xa = seededFloats(4, 21);
    const xb = seededFloats(4, 22);
    const step = (id: pb.InferParameter, x: Float32Array, start: boolean) =>
      call(
        h.client,
        'modelInfer',
        inferRequest({
          modelName: 'lstm',
          parameters: { sequence_id: id, sequence_start: { parameterChoice: { $case: 'boolParam', value: start } } },
          inputs: [fp32Input('x', [1, 1, 4], x, false).input],
          outputs: [
            { name: 'hn', parameters: {} },
            { name: 'cn', parameters: {} },
          ],
        }),
        token,
      );
    const a: pb.InferParameter = { parameterChoice: { $case: 'stringParam', value: 'session-a' } };
    const b: pb.InferParameter = { parameterChoice: { $case: 'int64Param', value: 7n } };
    await step(a, xa, true);
    await step(b, xb, true);
    const second = await step(a, xb, false);
    const first = await runOrt(LSTM, {
      x: { dims: [1, 1, 4], data: xa },
      h: { dims: [1, 1, 8], data: new Float32Array(8) },
      c: { dims: [1, 1, 8], data: new Float32Array(8) },
    });
    const expected = await runOrt(LSTM, {
      x: { dims: [1, 1, 4], data: xb },
      h: { dims: [1, 1, 8], data: first['hn']! },
      c: { dims: [1, 1, 8], data: first['cn']! },
    });
    expectClose(fp32Output(second, 0), expected['hn']);
  });
});

describe('ModelStreamInfer', () => {
  it('answers in order, with errors in the stream that goes on', async () => {
    const x = seededFloats(4, 9);
    const good = inferRequest({ modelName: 'mlp', id: 'a', inputs: [fp32Input('input', [1, 4], x, false).input] });
    const { stream, responses, ended } = openInferStream(h.client, token);
    stream.write(good);
    stream.write(inferRequest({ modelName: 'nope', id: 'b', inputs: good.inputs }));
    stream.write(inferRequest({ modelName: 'mlp', id: 'c', inputs: [fp32Input('wrong', [1, 4], x, false).input] }));
    stream.write({ ...good, id: 'd' });
    stream.end();
    await ended;
    expect(responses.map((r) => r.inferResponse?.id ?? r.errorMessage)).toEqual([
      'a',
      expect.stringContaining('"nope"'),
      expect.stringContaining('"wrong"'),
      'd',
    ]);
    const expected = await runOrt(MLP, { input: { dims: [1, 4], data: x } });
    expectClose(fp32Output(responses[3]!.inferResponse!, 0), expected['output']);
  });

  it('runs a whole LSTM sequence written at once in order (requests reach the core as they arrive)', async () => {
    const steps = Array.from({ length: 6 }, (_, i) => seededFloats(4, 100 + i));
    const { stream, responses, ended } = openInferStream(h.client, token);
    for (const [i, x] of steps.entries()) {
      stream.write(
        inferRequest({
          modelName: 'lstm',
          id: `step${i}`,
          parameters: {
            sequence_id: { parameterChoice: { $case: 'stringParam', value: 'streamed' } },
            sequence_start: { parameterChoice: { $case: 'boolParam', value: i === 0 } },
            sequence_end: { parameterChoice: { $case: 'boolParam', value: i === steps.length - 1 } },
          },
          inputs: [fp32Input('x', [1, 1, 4], x, false).input],
          outputs: [
            { name: 'hn', parameters: {} },
            { name: 'cn', parameters: {} },
          ],
        }),
      );
    }
    stream.end();
    await ended;
    let hs: Float32Array = new Float32Array(8);
    let cs: Float32Array = new Float32Array(8);
    for (const [i, x] of steps.entries()) {
      const response = responses[i]!;
      expect(response.errorMessage).toBe('');
      expect(response.inferResponse!.id).toBe(`step${i}`);
      const expected = await runOrt(LSTM, {
        x: { dims: [1, 1, 4], data: x },
        h: { dims: [1, 1, 8], data: hs },
        c: { dims: [1, 1, 8], data: cs },
      });
      expectClose(fp32Output(response.inferResponse!, 0), expected['hn']);
      hs = expected['hn']!;
      cs = expected['cn']!;
    }
  });

  it('needs the infer scope', async () => {
    const reader = await h.token('acme', ['models:read']);
    const stream = h.client.modelStreamInfer(bearer(reader));
    const error = await new Promise<grpc.ServiceError>((resolve) => {
      stream.on('error', resolve);
      stream.on('data', () => undefined);
      stream.write(inferRequest({ modelName: 'mlp' }));
      stream.end();
    });
    expect(error.code).toBe(grpc.status.PERMISSION_DENIED);
  });
});

describe('metadata, readiness, statistics and the repository', () => {
  it('ServerLive, ServerReady and ServerMetadata need no token', async () => {
    expect(await call(h.client, 'serverLive', {})).toEqual({ live: true });
    expect(await call(h.client, 'serverReady', {})).toEqual({ ready: true });
    const meta = await call(h.client, 'serverMetadata', {});
    expect(meta.name).toBe('quanta');
    expect(meta.extensions).toEqual(expect.arrayContaining(['sequence', 'statistics']));
    // No loader: the repository extension is not offered.
    expect(meta.extensions).not.toContain('model_repository');
  });

  it('ModelMetadata: datatypes, shapes with -1, versions, platform', async () => {
    const meta = await call(h.client, 'modelMetadata', { name: 'lstm', version: '' }, token);
    expect(meta).toEqual({
      name: 'lstm',
      versions: ['1'],
      platform: 'onnxruntime_onnx',
      inputs: [
        { name: 'x', datatype: 'FP32', shape: [-1n, -1n, 4n] },
        { name: 'h', datatype: 'FP32', shape: [1n, -1n, 8n] },
        { name: 'c', datatype: 'FP32', shape: [1n, -1n, 8n] },
      ],
      outputs: [
        { name: 'y', datatype: 'FP32', shape: [-1n, 1n, -1n, 8n] },
        { name: 'hn', datatype: 'FP32', shape: [1n, -1n, 8n] },
        { name: 'cn', datatype: 'FP32', shape: [1n, -1n, 8n] },
      ],
    });
    expect((await failure(call(h.client, 'modelMetadata', { name: 'lstm', version: '9' }, token))).code).toBe(
      grpc.status.NOT_FOUND,
    );
  });

  it('ModelReady: true for a served model, false for an unknown one or another tenant’s', async () => {
    expect(await call(h.client, 'modelReady', { name: 'mlp', version: '' }, token)).toEqual({ ready: true });
    expect(await call(h.client, 'modelReady', { name: 'mlp', version: '1' }, token)).toEqual({ ready: true });
    expect(await call(h.client, 'modelReady', { name: 'mlp', version: '7' }, token)).toEqual({ ready: false });
    expect(await call(h.client, 'modelReady', { name: 'nope', version: '' }, token)).toEqual({ ready: false });
  });

  it('ModelStatistics counts this tenant’s requests in Triton’s layout', async () => {
    const x = seededFloats(4, 1);
    const before = await call(h.client, 'modelStatistics', { name: 'mlp', version: '' }, token);
    for (let i = 0; i < 3; i++)
      await call(
        h.client,
        'modelInfer',
        inferRequest({ modelName: 'mlp', inputs: [fp32Input('input', [1, 4], x, false).input] }),
        token,
      );
    const after = await call(h.client, 'modelStatistics', { name: 'mlp', version: '1' }, token);
    expect(after.modelStats).toHaveLength(1);
    const [b, a] = [before.modelStats[0]!, after.modelStats[0]!];
    expect(a.name).toBe('mlp');
    expect(a.version).toBe('1');
    expect(a.inferenceCount - b.inferenceCount).toBe(3n);
    expect(a.inferenceStats!.success!.count - b.inferenceStats!.success!.count).toBe(3n);
    expect(a.inferenceStats!.computeInfer!.ns).toBeGreaterThan(0n);
    expect(a.lastInference).toBeGreaterThan(0n);
    expect(a.batchStats.length).toBeGreaterThan(0);
    const all = await call(h.client, 'modelStatistics', { name: '', version: '' }, token);
    expect(all.modelStats.map((s) => s.name).sort()).toEqual(['cnn', 'lstm', 'mlp', 'ocr-cls']);
    expect((await failure(call(h.client, 'modelStatistics', { name: 'nope', version: '' }, token))).code).toBe(
      grpc.status.NOT_FOUND,
    );
  });

  it('RepositoryIndex lists the caller’s tenant only', async () => {
    const index = await call(h.client, 'repositoryIndex', { repositoryName: '', ready: true }, token);
    expect(index.models.map((m) => `${m.name}@${m.version}:${m.state}`).sort()).toEqual([
      'cnn@1:READY',
      'lstm@1:READY',
      'mlp@1:READY',
      'ocr-cls@1:READY',
    ]);
    const globex = await call(
      h.client,
      'repositoryIndex',
      { repositoryName: '', ready: false },
      await h.token('globex', ['models:read']),
    );
    expect(globex.models.map((m) => `${m.name}@${m.version}`)).toEqual(['mlp@7']);
  });

  it('RepositoryModelLoad/Unload without a registry: UNIMPLEMENTED saying so', async () => {
    const writer = await h.token('acme', ['models:write']);
    const error = await failure(
      call(h.client, 'repositoryModelLoad', { repositoryName: '', modelName: 'mlp', parameters: {} }, writer),
    );
    expect(error.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(error.details).toMatch(/registry/);
    expect(
      (
        await failure(
          call(h.client, 'repositoryModelUnload', { repositoryName: '', modelName: 'mlp', parameters: {} }, writer),
        )
      ).code,
    ).toBe(grpc.status.UNIMPLEMENTED);
  });

  it('shared memory, trace and log settings: UNIMPLEMENTED with a clear message', async () => {
    // They need the admin scope (the access table), so an infer token is refused before them.
    expect((await failure(call(h.client, 'logSettings', { settings: {} }, token))).code).toBe(
      grpc.status.PERMISSION_DENIED,
    );
    const admin = await h.token('acme', ['admin']);
    const cases = [
      failure(call(h.client, 'systemSharedMemoryStatus', { name: '' }, admin)),
      failure(
        call(
          h.client,
          'cudaSharedMemoryRegister',
          { name: 'r', rawHandle: Buffer.alloc(0), deviceId: 0n, byteSize: 0n },
          admin,
        ),
      ),
      failure(call(h.client, 'traceSetting', { settings: {}, modelName: '' }, admin)),
      failure(call(h.client, 'logSettings', { settings: {} }, admin)),
    ];
    for (const error of await Promise.all(cases)) {
      expect(error.code).toBe(grpc.status.UNIMPLEMENTED);
      expect(error.details).toMatch(/not supported by Quanta inference/);
    }
  });
});
