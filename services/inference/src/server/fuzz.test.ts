// Random malformed requests from a seeded RNG: every one must be answered, with a non-OK status
// that is the caller's fault (never INTERNAL) or with the right answer, and the server must stay
// up with a heap that does not grow with the number of requests.
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import * as grpc from '@grpc/grpc-js';
import type { inference as pb } from '@quanta/contracts';
import { buildMlp, buildScalarModel, createRng, type Rng } from '@quanta/onnx';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../testing/harness.js';
import { call, openInferStream, emptyContents, inferRequest, startHarness } from '../testing/harness.js';

const SEED = Number(process.env['QUANTA_FUZZ_SEED'] ?? 20261129);
const GRPC_REQUESTS = 10_000;
const STREAM_REQUESTS = 500;
const REST_REQUESTS = 600;
const CONCURRENCY = 32;
// Timeouts are generous for a loaded shared machine; a quiet one runs the file in well under 15 s.

const MLP = buildMlp();
const SCALAR = buildScalarModel();

/** Statuses that say the request was wrong, absent, or could not run in time: never a server bug. */
const CALLER_FAULTS = new Set([
  grpc.status.INVALID_ARGUMENT,
  grpc.status.NOT_FOUND,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.FAILED_PRECONDITION,
]);
const REST_FAULTS = new Set([400, 404, 413, 429, 504]);

const DATATYPES = [
  'BOOL',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'FP16',
  'BF16',
  'FP32',
  'FP64',
  'BYTES',
];
const JUNK_TYPES = ['', 'fp32', 'FLOAT', 'FP33', 'INT128', 'FP32 ', 'bytes', '\u0000', 'STRING'];
const NAMES = ['input', 'x', 's', 'output', 'y', 'total', '', 'inptu', 'input\u0000', 'ünïcødé', 'a'.repeat(300)];
const DIMS = [0n, 1n, 2n, 3n, 4n, 5n, 8n, -1n, -2n, 1n << 31n, 1n << 40n, 1n << 53n, (1n << 63n) - 1n, -(1n << 63n)];
const PARAM_KEYS = ['sequence_id', 'sequence_start', 'sequence_end', 'timeout', 'priority', 'binary_data', 'x'];

const pick = <T>(rng: Rng, items: readonly T[]): T => items[Math.floor(rng() * items.length)]!;
const int = (rng: Rng, n: number): number => Math.floor(rng() * n);

function randomString(rng: Rng): string {
  return Array.from({ length: int(rng, 12) }, () => String.fromCharCode(32 + int(rng, 95))).join('');
}

function randomFloat(rng: Rng): number {
  return pick(rng, [0, -0, 1.5, -2.25, NaN, Infinity, -Infinity, 3.4e38, 1e-45, rng() * 10 - 5]);
}

function randomShape(rng: Rng): bigint[] {
  if (rng() < 0.5) return [BigInt(1 + int(rng, 4)), 4n];
  return Array.from({ length: int(rng, 5) }, () => pick(rng, DIMS));
}

function randomContents(rng: Rng, count: number): pb.InferTensorContents | undefined {
  if (rng() < 0.15) return undefined;
  const contents = emptyContents();
  const n = rng() < 0.6 ? count : int(rng, 20);
  switch (int(rng, 8)) {
    case 0:
      contents.boolContents = Array.from({ length: n }, () => rng() < 0.5);
      break;
    case 1:
      contents.intContents = Array.from({ length: n }, () =>
        pick(rng, [0, 1, -1, 127, 128, -129, 2 ** 31 - 1, -(2 ** 31)]),
      );
      break;
    case 2:
      contents.int64Contents = Array.from({ length: n }, () => pick(rng, [0n, -1n, 1n << 62n, -(1n << 63n)]));
      break;
    case 3:
      contents.uintContents = Array.from({ length: n }, () => pick(rng, [0, 1, 255, 256, 65536, 2 ** 32 - 1]));
      break;
    case 4:
      contents.uint64Contents = Array.from({ length: n }, () => pick(rng, [0n, 1n, (1n << 64n) - 1n]));
      break;
    case 5:
      contents.fp64Contents = Array.from({ length: n }, () => randomFloat(rng));
      break;
    case 6:
      contents.bytesContents = Array.from({ length: n }, () => Buffer.from(randomString(rng)));
      break;
    default:
      contents.fp32Contents = Array.from({ length: n }, () => Math.fround(randomFloat(rng)));
  }
  // Sometimes a second field too.
  if (rng() < 0.1) contents.fp32Contents = [1, 2, 3];
  return contents;
}

function randomParameters(rng: Rng): { [key: string]: pb.InferParameter } {
  const out: { [key: string]: pb.InferParameter } = {};
  for (let i = int(rng, 4); i > 0; i--) {
    const choice: pb.InferParameter['parameterChoice'] = pick(rng, [
      { $case: 'boolParam' as const, value: rng() < 0.5 },
      { $case: 'int64Param' as const, value: pick(rng, [0n, 1n, -1n, 7n, 1n << 62n, -(1n << 63n)]) },
      { $case: 'uint64Param' as const, value: pick(rng, [0n, 5n, (1n << 64n) - 1n]) },
      { $case: 'stringParam' as const, value: randomString(rng) },
      { $case: 'doubleParam' as const, value: randomFloat(rng) },
      undefined,
    ]);
    out[pick(rng, PARAM_KEYS)] = { parameterChoice: choice };
  }
  return out;
}

/** A well-formed request for the MLP or the scalar model, to be mutated or sent as it is. */
function validRequest(rng: Rng): pb.ModelInferRequest {
  const raw = rng() < 0.5;
  if (rng() < 0.7) {
    const n = 1 + int(rng, 4);
    const data = Float32Array.from({ length: n * 4 }, () => rng() * 2 - 1);
    const input: pb.ModelInferRequest_InferInputTensor = {
      name: 'input',
      datatype: 'FP32',
      shape: [BigInt(n), 4n],
      parameters: {},
      contents: raw ? undefined : { ...emptyContents(), fp32Contents: Array.from(data) },
    };
    return inferRequest({ modelName: 'mlp', inputs: [input], rawInputContents: raw ? [Buffer.from(data.buffer)] : [] });
  }
  const n = int(rng, 5);
  const x = Float32Array.from({ length: n }, () => rng() * 4 - 2);
  const s = Float32Array.of(rng() * 2);
  const tensor = (name: string, shape: bigint[], data: Float32Array): pb.ModelInferRequest_InferInputTensor => ({
    name,
    datatype: 'FP32',
    shape,
    parameters: {},
    contents: raw ? undefined : { ...emptyContents(), fp32Contents: Array.from(data) },
  });
  return inferRequest({
    modelName: 'scalar',
    inputs: [tensor('x', [BigInt(n)], x), tensor('s', [], s)],
    rawInputContents: raw ? [Buffer.from(x.buffer), Buffer.from(s.buffer)] : [],
  });
}

function randomRequest(rng: Rng): pb.ModelInferRequest {
  const request = validRequest(rng);
  const mutations = rng() < 0.1 ? 0 : 1 + int(rng, 3);
  for (let m = 0; m < mutations; m++) {
    const input = request.inputs[int(rng, Math.max(1, request.inputs.length))];
    switch (int(rng, 12)) {
      case 0:
        request.modelName = pick(rng, ['nope', '', 'secret', randomString(rng), 'MLP']);
        break;
      case 1:
        request.modelVersion = pick(rng, ['2', '0', '-1', randomString(rng)]);
        break;
      case 2:
        if (input !== undefined) input.name = pick(rng, NAMES);
        break;
      case 3:
        if (input !== undefined) input.datatype = rng() < 0.7 ? pick(rng, DATATYPES) : pick(rng, JUNK_TYPES);
        break;
      case 4:
        if (input !== undefined) input.shape = randomShape(rng);
        break;
      case 5:
        if (input !== undefined) input.contents = randomContents(rng, 4 + int(rng, 8));
        break;
      case 6: {
        const count = rng() < 0.5 ? request.inputs.length : int(rng, 4);
        request.rawInputContents = Array.from({ length: count }, () =>
          Buffer.alloc(pick(rng, [0, 1, 3, 4, 15, 16, 31, 32, 64, 333])),
        );
        break;
      }
      case 7:
        request.inputs.push({
          name: pick(rng, NAMES),
          datatype: pick(rng, DATATYPES),
          shape: randomShape(rng),
          parameters: {},
          contents: randomContents(rng, 4),
        });
        break;
      case 8:
        request.inputs.splice(int(rng, request.inputs.length + 1), 1);
        break;
      case 9:
        request.outputs = Array.from({ length: 1 + int(rng, 3) }, () => ({
          name: pick(rng, NAMES),
          parameters: randomParameters(rng),
        }));
        break;
      case 10:
        request.parameters = randomParameters(rng);
        break;
      default:
        request.id = randomString(rng);
    }
  }
  return request;
}

/** The FP32 data of an input of the request, raw or typed. */
function inputData(request: pb.ModelInferRequest, index: number): Float32Array {
  const raw = request.rawInputContents[index];
  if (raw !== undefined) return new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  return Float32Array.from(request.inputs[index]!.contents?.fp32Contents ?? []);
}

let h: Harness;
let token: string;
let sessions: Record<string, ort.InferenceSession>;

/** Checks an OK answer against onnxruntime called directly on the same inputs. */
async function expectCorrect(request: pb.ModelInferRequest, response: pb.ModelInferResponse): Promise<void> {
  const session = sessions[request.modelName]!;
  const feeds: Record<string, ort.Tensor> = {};
  request.inputs.forEach(
    (input, i) => (feeds[input.name] = new ort.Tensor('float32', inputData(request, i), input.shape.map(Number))),
  );
  const expected = await session.run(feeds);
  expect(response.outputs.length).toBeGreaterThan(0);
  response.outputs.forEach((output, i) => {
    const want = expected[output.name]!.data as Float32Array;
    const raw = response.rawOutputContents[i];
    const got =
      raw !== undefined
        ? new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength))
        : Float32Array.from(output.contents?.fp32Contents ?? []);
    expect(got.length).toBe(want.length);
    for (let k = 0; k < got.length; k++)
      expect(Object.is(got[k], want[k]) || Math.abs(got[k]! - want[k]!) <= 1e-5).toBe(true);
  });
}

/** A real gc: --expose-gc when given, else switched on for this process. */
function collector(): () => void {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (existing !== undefined) return existing;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

async function heapAfterGc(gc: () => void): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return process.memoryUsage().heapUsed;
}

/** Runs `count` tasks with `concurrency` at a time. */
async function pool(count: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await task(next++);
    }),
  );
}

beforeAll(async () => {
  h = await startHarness();
  await h.deploy('acme', 'mlp', '1', MLP, { maxBatchSize: 8, maxQueueDelayUs: 200 });
  await h.deploy('acme', 'scalar', '1', SCALAR);
  await h.deploy('globex', 'secret', '1', MLP);
  token = await h.token('acme', ['infer', 'models:read']);
  sessions = { mlp: await ort.InferenceSession.create(MLP), scalar: await ort.InferenceSession.create(SCALAR) };
});
afterAll(async () => {
  await Promise.all(Object.values(sessions).map((s) => s.release()));
  await h.close();
});

describe(`fuzz (seed ${SEED})`, () => {
  it(`${GRPC_REQUESTS} random ModelInfer calls: a caller-fault status or the right answer; steady heap`, async () => {
    const rng = createRng(SEED);
    const gc = collector();
    const tally = new Map<string, number>();
    const count = (key: string): void => void tally.set(key, (tally.get(key) ?? 0) + 1);
    const problems: string[] = [];
    const one = async (): Promise<void> => {
      const request = randomRequest(rng);
      try {
        const response = await call(h.client, 'modelInfer', request, token);
        await expectCorrect(request, response);
        count('OK');
      } catch (error: unknown) {
        const e = error as grpc.ServiceError;
        if (typeof e.code !== 'number') throw error;
        count(grpc.status[e.code] ?? String(e.code));
        if (!CALLER_FAULTS.has(e.code) || e.details === '') problems.push(`${grpc.status[e.code]}: ${e.details}`);
      }
    };
    await pool(1000, CONCURRENCY, one);
    const before = await heapAfterGc(gc);
    await pool(GRPC_REQUESTS - 1000, CONCURRENCY, one);
    const after = await heapAfterGc(gc);
    expect(problems.slice(0, 5)).toEqual([]);
    expect([...tally.values()].reduce((a, b) => a + b, 0)).toBe(GRPC_REQUESTS);
    // Both kinds happen: the fuzz is not all rejects, nor all answers.
    expect(tally.get('OK') ?? 0).toBeGreaterThan(200);
    expect(tally.get('INVALID_ARGUMENT') ?? 0).toBeGreaterThan(2000);
    // 9000 requests leaking even 2 KiB each would add 18 MB.
    expect(after - before).toBeLessThan(12 * 1024 * 1024);
    // Still serving.
    expect(await call(h.client, 'serverLive', {})).toEqual({ live: true });
  }, 120_000);

  it(`${STREAM_REQUESTS} random requests on ModelStreamInfer: one answer each, in order; it lives`, async () => {
    const rng = createRng(SEED + 1);
    const requests = Array.from({ length: STREAM_REQUESTS }, (_, i) => ({ ...randomRequest(rng), id: `s${i}` }));
    const { stream, responses, ended } = openInferStream(h.client, token);
    for (const r of requests) stream.write(r);
    stream.end();
    await ended;
    expect(responses).toHaveLength(STREAM_REQUESTS);
    for (const [i, response] of responses.entries()) {
      if (response.inferResponse !== undefined) {
        expect(response.inferResponse.id).toBe(`s${i}`);
        await expectCorrect(requests[i]!, response.inferResponse);
      } else {
        expect(response.errorMessage).not.toBe('');
        expect(response.errorMessage).not.toMatch(/internal error/);
      }
    }
  }, 60_000);

  it(`${REST_REQUESTS} random REST bodies: 4xx with an error or the right answer, never 500`, async () => {
    const rng = createRng(SEED + 2);
    const statuses = new Map<number, number>();
    const problems: string[] = [];
    await pool(REST_REQUESTS, 16, async () => {
      const grpcForm = randomRequest(rng);
      let body: unknown;
      const shape = (s: bigint[]): unknown[] =>
        s.map((d) => (rng() < 0.9 ? Number(d) : pick(rng, ['2', null, 1.5, true])));
      switch (int(rng, 10)) {
        case 0:
          body = randomString(rng);
          break;
        case 1:
          body = JSON.stringify(pick(rng, [null, 1, 'x', [], { inputs: null }, { inputs: [null] }, { inputs: [{}] }]));
          break;
        default:
          body = {
            id: rng() < 0.9 ? grpcForm.id : 5,
            inputs: grpcForm.inputs.map((input, i) => ({
              name: input.name,
              datatype: input.datatype,
              shape: shape(input.shape),
              data:
                grpcForm.rawInputContents[i] !== undefined
                  ? Array.from({ length: int(rng, 10) }, () => randomFloat(rng))
                  : (input.contents?.fp32Contents ??
                    pick(rng, [
                      [],
                      [true],
                      ['NaN'],
                      [
                        [1, 2],
                        [3, 4],
                      ],
                    ])),
            })),
            ...(grpcForm.outputs.length > 0 ? { outputs: grpcForm.outputs.map((o) => ({ name: o.name })) } : {}),
            ...(rng() < 0.3
              ? {
                  parameters: pick(rng, [
                    { sequence_id: -1 },
                    { sequence_start: 1 },
                    { timeout: 'x' },
                    { sequence_id: 'a', sequence_end: true },
                    { foo: [] },
                  ]),
                }
              : {}),
          };
      }
      const versionPath = grpcForm.modelVersion === '' ? '' : `/versions/${encodeURIComponent(grpcForm.modelVersion)}`;
      const path = `/v2/models/${encodeURIComponent(grpcForm.modelName)}${versionPath}/infer`;
      const { status, body: answer } = await h.rest('POST', path, { token, body });
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if (status === 200) expect(Array.isArray(answer['outputs'])).toBe(true);
      else if (!REST_FAULTS.has(status) || typeof answer['error'] !== 'string')
        problems.push(`${status}: ${JSON.stringify(answer)}`);
    });
    expect(problems.slice(0, 5)).toEqual([]);
    expect(statuses.get(400) ?? 0).toBeGreaterThan(60);
    expect((await h.rest('GET', '/v2/health/live')).status).toBe(200);
  }, 60_000);
});
