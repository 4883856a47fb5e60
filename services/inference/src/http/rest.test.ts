import { request as httpRequest } from 'node:http';
import { LSTM_NAMES, buildCnn, buildLstm, buildMlp } from '@quanta/onnx';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../testing/harness.js';
import { ocrClassifier, runOrt, seededFloats, startHarness } from '../testing/harness.js';

const MLP = buildMlp();
const CNN = buildCnn();
const LSTM = buildLstm();
const OCR = ocrClassifier();

function expectClose(actual: unknown, expected: Float32Array | undefined, tol = 1e-5): void {
  expect(Array.isArray(actual)).toBe(true);
  const values = actual as number[];
  expect(values.length).toBe(expected!.length);
  let worst = 0;
  for (let i = 0; i < values.length; i++) worst = Math.max(worst, Math.abs(values[i]! - expected![i]!));
  expect(worst).toBeLessThanOrEqual(tol);
}

type JsonOutput = { name: string; datatype: string; shape: number[]; data: unknown[] };

let h: Harness;
let token: string;
let ready = true;

beforeAll(async () => {
  h = await startHarness({ config: { maxBodyBytes: 1024 * 1024 }, server: { ready: () => ready } });
  await Promise.all([
    h.deploy('acme', 'mlp', '1', MLP),
    h.deploy('acme', 'cnn', '1', CNN),
    h.deploy('acme', 'ocr-cls', '1', OCR),
    h.deploy('acme', 'lstm', '1', LSTM, {
      sequenceState: [
        { input: LSTM_NAMES.h, output: LSTM_NAMES.hn },
        { input: LSTM_NAMES.c, output: LSTM_NAMES.cn },
      ],
    }),
    h.deploy('globex', 'secret', '1', buildMlp({ seed: 5 })),
  ]);
  token = await h.token('acme', ['infer', 'models:read']);
});
afterAll(() => h.close());

describe('KServe v2 REST inference matches onnxruntime called directly', () => {
  const models = [
    { name: 'mlp', bytes: () => MLP, input: 'input', shape: [3, 4], output: 'output' },
    { name: 'cnn', bytes: () => CNN, input: 'input', shape: [2, 3, 32, 32], output: 'output' },
    { name: 'ocr-cls', bytes: () => OCR, input: 'x', shape: [1, 3, 48, 192], output: 'softmax_0.tmp_0' },
  ];
  for (const model of models) {
    it(model.name, async () => {
      const data = seededFloats(
        model.shape.reduce((a, b) => a * b, 1),
        3,
      );
      const { status, body } = await h.rest('POST', `/v2/models/${model.name}/infer`, {
        token,
        body: {
          id: 'r1',
          inputs: [{ name: model.input, shape: model.shape, datatype: 'FP32', data: Array.from(data) }],
        },
      });
      expect(status).toBe(200);
      expect(body['model_name']).toBe(model.name);
      expect(body['model_version']).toBe('1');
      expect(body['id']).toBe('r1');
      const outputs = body['outputs'] as JsonOutput[];
      expect(outputs.map((o) => [o.name, o.datatype])).toEqual([[model.output, 'FP32']]);
      const expected = await runOrt(model.bytes(), { [model.input]: { dims: model.shape, data } });
      expectClose(outputs[0]!.data, expected[model.output]);
    });
  }

  it('carries an LSTM state across a sequence; requested outputs in order; a version in the path', async () => {
    let hs: Float32Array = new Float32Array(8);
    let cs: Float32Array = new Float32Array(8);
    for (let step = 0; step < 3; step++) {
      const x = seededFloats(4, 30 + step);
      const { status, body } = await h.rest('POST', '/v2/models/lstm/versions/1/infer', {
        token,
        body: {
          parameters: { sequence_id: 'abc', sequence_start: step === 0, sequence_end: step === 2 },
          inputs: [{ name: 'x', shape: [1, 1, 4], datatype: 'FP32', data: Array.from(x) }],
          outputs: [{ name: 'cn' }, { name: 'hn' }],
        },
      });
      expect(status).toBe(200);
      const outputs = body['outputs'] as JsonOutput[];
      expect(outputs.map((o) => o.name)).toEqual(['cn', 'hn']);
      const expected = await runOrt(LSTM, {
        x: { dims: [1, 1, 4], data: x },
        h: { dims: [1, 1, 8], data: hs },
        c: { dims: [1, 1, 8], data: cs },
      });
      expectClose(outputs[0]!.data, expected['cn']);
      expectClose(outputs[1]!.data, expected['hn']);
      hs = expected['hn']!;
      cs = expected['cn']!;
    }
  });
});

/** POSTs a Triton binary-tensor body: the JSON, then the raw tensors. */
async function binaryInfer(
  path: string,
  json: unknown,
  tensors: Uint8Array[],
  headerLength?: number,
): Promise<{ status: number; json: Record<string, unknown>; binary: Buffer }> {
  const text = Buffer.from(JSON.stringify(json));
  const response = await fetch(`${h.server.http.url}${path}`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'inference-header-content-length': String(headerLength ?? text.length),
      'content-type': 'application/octet-stream',
    },
    body: Buffer.concat([text, ...tensors]),
  });
  const bytes = Buffer.from(await response.arrayBuffer());
  const length = Number(response.headers.get('inference-header-content-length') ?? bytes.length);
  return {
    status: response.status,
    json: JSON.parse(bytes.subarray(0, length).toString('utf8')) as Record<string, unknown>,
    binary: bytes.subarray(length),
  };
}

const f32 = (bytes: Buffer): Float32Array =>
  new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));

describe("Triton's binary tensor data extension", () => {
  it('binary inputs and outputs: the same as onnxruntime', async () => {
    const data = seededFloats(2 * 3 * 32 * 32, 8);
    const raw = new Uint8Array(data.buffer);
    const { status, json, binary } = await binaryInfer(
      '/v2/models/cnn/infer',
      {
        inputs: [
          { name: 'input', shape: [2, 3, 32, 32], datatype: 'FP32', parameters: { binary_data_size: raw.length } },
        ],
        outputs: [{ name: 'output', parameters: { binary_data: true } }],
      },
      [raw],
    );
    expect(status).toBe(200);
    const outputs = json['outputs'] as {
      name: string;
      shape: number[];
      parameters: { binary_data_size: number };
      data?: unknown;
    }[];
    expect(outputs[0]).toMatchObject({ name: 'output', shape: [2, 10], parameters: { binary_data_size: 80 } });
    expect(outputs[0]!.data).toBeUndefined();
    expect(binary.length).toBe(80);
    const expected = await runOrt(CNN, { input: { dims: [2, 3, 32, 32], data } });
    expectClose(Array.from(f32(binary)), expected['output']);
  });

  it('JSON inputs with binary_data_output, and binary inputs with JSON outputs', async () => {
    const x = seededFloats(8, 9);
    const expected = (await runOrt(MLP, { input: { dims: [2, 4], data: x } }))['output'];
    const allBinary = await binaryInfer(
      '/v2/models/mlp/infer',
      {
        parameters: { binary_data_output: true },
        inputs: [{ name: 'input', shape: [2, 4], datatype: 'FP32', data: Array.from(x) }],
      },
      [],
    );
    expect(allBinary.status).toBe(200);
    expectClose(Array.from(f32(allBinary.binary)), expected);
    const jsonOut = await binaryInfer(
      '/v2/models/mlp/infer',
      { inputs: [{ name: 'input', shape: [2, 4], datatype: 'FP32', parameters: { binary_data_size: 32 } }] },
      [new Uint8Array(x.buffer)],
    );
    expect(jsonOut.status).toBe(200);
    expect(jsonOut.binary.length).toBe(0);
    expectClose((jsonOut.json['outputs'] as JsonOutput[])[0]!.data, expected);
  });

  it('refuses binary parts that do not add up, naming the input', async () => {
    const raw = new Uint8Array(new Float32Array(8).buffer);
    const head = (size: number) => ({
      inputs: [{ name: 'input', shape: [2, 4], datatype: 'FP32', parameters: { binary_data_size: size } }],
    });
    const cases = [
      { json: head(64), tensors: [raw], error: /"input".*64.*32 bytes/ },
      { json: head(32), tensors: [raw, raw.subarray(0, 16)], error: /16 bytes of binary data follow/ },
      { json: head(28), tensors: [raw.subarray(0, 28)], error: /"input".*32 bytes.*28/ },
      {
        json: {
          inputs: [{ name: 'input', shape: [2, 4], datatype: 'FP32', data: [1], parameters: { binary_data_size: 32 } }],
        },
        tensors: [raw],
        error: /"input" has both/,
      },
    ];
    for (const c of cases) {
      const { status, json } = await binaryInfer('/v2/models/mlp/infer', c.json, c.tensors);
      expect(status).toBe(400);
      expect(json['error']).toMatch(c.error);
    }
    const response = await fetch(`${h.server.http.url}/v2/models/mlp/infer`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'inference-header-content-length': '9999' },
      body: '{}',
    });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: string }).error).toMatch(/Inference-Header-Content-Length/);
  });
});

describe('health, metadata, statistics and the repository', () => {
  it('health endpoints and server metadata are public; ready follows the replica', async () => {
    expect(await h.rest('GET', '/v2/health/live')).toEqual({ status: 200, body: { live: true } });
    expect(await h.rest('GET', '/v2/health/ready')).toEqual({ status: 200, body: { ready: true } });
    ready = false;
    expect((await h.rest('GET', '/v2/health/ready')).status).toBe(503);
    ready = true;
    const meta = await h.rest('GET', '/v2');
    expect(meta.status).toBe(200);
    expect(meta.body['name']).toBe('quanta');
  });

  it('model metadata and readiness', async () => {
    const { status, body } = await h.rest('GET', '/v2/models/mlp', { token });
    expect(status).toBe(200);
    expect(body).toEqual({
      name: 'mlp',
      versions: ['1'],
      platform: 'onnxruntime_onnx',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 4] }],
      outputs: [{ name: 'output', datatype: 'FP32', shape: [-1, 3] }],
    });
    expect((await h.rest('GET', '/v2/models/mlp/versions/1', { token })).status).toBe(200);
    expect((await h.rest('GET', '/v2/models/mlp/versions/1/ready', { token })).status).toBe(200);
    expect((await h.rest('GET', '/v2/models/mlp/versions/2/ready', { token })).status).toBe(503);
    expect((await h.rest('GET', '/v2/models/mlp/versions/2', { token })).status).toBe(404);
  });

  it("statistics in Triton's JSON layout", async () => {
    const x = Array.from(seededFloats(4, 1));
    for (let i = 0; i < 2; i++)
      await h.rest('POST', '/v2/models/mlp/infer', {
        token,
        body: { inputs: [{ name: 'input', shape: [1, 4], datatype: 'FP32', data: x }] },
      });
    const { status, body } = await h.rest('GET', '/v2/models/mlp/stats', { token });
    expect(status).toBe(200);
    const stats = (body['model_stats'] as Record<string, unknown>[])[0]!;
    expect(stats['name']).toBe('mlp');
    expect(stats['inference_count']).toBeGreaterThanOrEqual(2);
    const inference = stats['inference_stats'] as Record<string, { count: number; ns: number }>;
    expect(Object.keys(inference).sort()).toEqual([
      'cache_hit',
      'cache_miss',
      'compute_infer',
      'compute_input',
      'compute_output',
      'fail',
      'queue',
      'success',
    ]);
    expect(inference['success']!.count).toBeGreaterThanOrEqual(2);
    expect((stats['batch_stats'] as unknown[]).length).toBeGreaterThan(0);
    const all = await h.rest('GET', '/v2/models/stats', { token });
    expect((all.body['model_stats'] as { name: string }[]).map((s) => s.name).sort()).toEqual([
      'cnn',
      'lstm',
      'mlp',
      'ocr-cls',
    ]);
  });

  it('repository index of the caller’s tenant; load/unload need a registry', async () => {
    const index = await h.rest('POST', '/v2/repository/index', { token, body: { ready: true } });
    expect(index.status).toBe(200);
    expect((index.body as unknown as { name: string }[]).map((m) => m.name).sort()).toEqual([
      'cnn',
      'lstm',
      'mlp',
      'ocr-cls',
    ]);
    const writer = await h.token('acme', ['models:write']);
    const load = await h.rest('POST', '/v2/repository/models/mlp/load', { token: writer });
    expect(load.status).toBe(501);
    expect(load.body['error']).toMatch(/registry/);
  });
});

describe('REST errors', () => {
  /** `t`: the token; null sends none. */
  const infer = (body: unknown, t: string | null = token, model = 'mlp') =>
    h.rest('POST', `/v2/models/${model}/infer`, { ...(t === null ? {} : { token: t }), body });
  const input = (over: Record<string, unknown> = {}) => ({
    name: 'input',
    shape: [2, 4],
    datatype: 'FP32',
    data: Array.from({ length: 8 }, () => 0.5),
    ...over,
  });

  const cases: { what: string; body: unknown; model?: string; status: number; names: RegExp }[] = [
    { what: 'unknown model', body: { inputs: [input()] }, model: 'nope', status: 404, names: /"nope"/ },
    { what: "another tenant's model", body: { inputs: [input()] }, model: 'secret', status: 404, names: /"secret"/ },
    { what: 'missing input', body: { inputs: [] }, status: 400, names: /"input"/ },
    { what: 'extra input', body: { inputs: [input(), input({ name: 'extra' })] }, status: 400, names: /"extra"/ },
    { what: 'misnamed input', body: { inputs: [input({ name: 'inptu' })] }, status: 400, names: /"inptu"/ },
    {
      what: 'wrong datatype',
      body: { inputs: [input({ datatype: 'INT32', data: Array.from({ length: 8 }, () => 1) })] },
      status: 400,
      names: /"input".*INT32|INT32.*"input"/,
    },
    {
      what: 'unknown datatype',
      body: { inputs: [input({ datatype: 'FLOAT' })] },
      status: 400,
      names: /"input".*FLOAT/,
    },
    { what: 'bad shape', body: { inputs: [input({ shape: [8] })] }, status: 400, names: /"input"/ },
    { what: 'negative dim', body: { inputs: [input({ shape: [-2, -4] })] }, status: 400, names: /"input"/ },
    {
      what: 'data count not matching the shape',
      body: { inputs: [input({ shape: [3, 4] })] },
      status: 400,
      names: /"input".*12/,
    },
    {
      what: 'a string in FP32 data',
      body: { inputs: [input({ data: ['a', 1, 1, 1, 1, 1, 1, 1] })] },
      status: 400,
      names: /"input"/,
    },
    {
      what: 'unknown requested output',
      body: { inputs: [input()], outputs: [{ name: 'nope' }] },
      status: 400,
      names: /"nope"/,
    },
    { what: 'inputs not an array', body: { inputs: 'x' }, status: 400, names: /"inputs"/ },
    {
      what: 'an input without a name',
      body: { inputs: [{ shape: [1], datatype: 'FP32', data: [1] }] },
      status: 400,
      names: /inputs\[0\]/,
    },
    {
      what: 'a malformed sequence_end',
      body: { inputs: [input()], parameters: { sequence_id: 3, sequence_end: 'yes' } },
      status: 400,
      names: /"sequence_end"/,
    },
    { what: 'invalid JSON', body: '{"inputs": [', status: 400, names: /not valid JSON/ },
  ];
  for (const c of cases) {
    it(`${c.what}: ${c.status}`, async () => {
      const { status, body } = await infer(c.body, token, c.model);
      expect(status).toBe(c.status);
      expect(body['error']).toMatch(c.names);
    });
  }

  it('auth: no token 401, a forged one 401, the wrong scope 403', async () => {
    expect((await infer({ inputs: [input()] }, null)).status).toBe(401);
    expect((await h.rest('GET', '/v2/models/mlp')).status).toBe(401);
    expect((await infer({ inputs: [input()] }, `${token.slice(0, -4)}AAAA`)).status).toBe(401);
    const reader = await h.token('acme', ['models:read']);
    const denied = await infer({ inputs: [input()] }, reader);
    expect(denied.status).toBe(403);
    expect(denied.body['error']).toMatch(/"infer"/);
    expect((await h.rest('POST', '/v2/repository/models/mlp/load', { token })).status).toBe(403);
  });

  it('unknown endpoints 404, wrong methods 405', async () => {
    expect((await h.rest('GET', '/v3/models', { token })).status).toBe(404);
    const wrong = await h.rest('GET', '/v2/models/mlp/infer', { token });
    expect(wrong.status).toBe(405);
    expect(wrong.body['error']).toMatch(/POST/);
  });

  it('a body over the limit: 413, whether announced or streamed', async () => {
    const big = { inputs: [input({ shape: [100_000, 4], data: Array.from({ length: 400_000 }, () => 0.25) })] };
    const announced = await infer(big);
    expect(announced.status).toBe(413);
    expect(announced.body['error']).toMatch(/limit/);
    // Chunked, no content-length: the limit is met while reading.
    const streamed = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        `${h.server.http.url}/v2/models/mlp/infer`,
        { method: 'POST', headers: { authorization: `Bearer ${token}`, 'transfer-encoding': 'chunked' } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      for (let i = 0; i < 20; i++) req.write(chunk);
      req.end();
    });
    expect(streamed).toBe(413);
    // The server is fine afterwards.
    expect((await infer({ inputs: [input()] })).status).toBe(200);
  });
});
