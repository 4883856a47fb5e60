// batchInfer against a real grpc-js server of GRPCInferenceService whose model is small enough to
// know every answer: y = 2x per row, and for sequences a running sum carried between requests.
// The server can reject rows (negative values) and break a stream once, so that every path of the
// engine (order, window, stacking, one-by-one retries, stream retries, stop and resume) is run.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { inference, inferenceConfig } from '@quanta/contracts';
import { createTensor, tensorFromWire, tensorToWire, type Tensor } from '@quanta/tensor/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createQuantaClient, type QuantaClient } from '../client.js';
import { BatchError, batchInfer } from './engine.js';
import { PlainFile } from './outputs.js';
import { errorsSink, jsonlSink } from './sinks.js';
import type { BatchRecord, BatchSource } from './types.js';

interface ServerState {
  /** Requests in flight on streams at once, at most. */
  maxInFlight: number;
  inFlight: number;
  streamRequests: number;
  unaryRequests: number;
  /** Break the next stream after this many answers (UNAVAILABLE), once. */
  breakAfter: number | undefined;
  /** Running sums per sequence. */
  sums: Map<string, number>;
  /** The ModelConfig's max_batch_size; undefined: the server has no ModelConfig (UNIMPLEMENTED). */
  maxBatchSize?: number;
}

function run(request: inference.ModelInferRequest, state: ServerState): inference.ModelInferResponse {
  const wire = request.inputs[0]!;
  const x = tensorFromWire(wire, request.rawInputContents[0]) as Tensor & { data: Float32Array };
  if (x.data.some((v) => v < 0))
    throw new Error(`model "m" input "x": negative value in rows of shape [${x.shape.join(',')}]`);
  const param = (name: string): unknown => request.parameters[name]?.parameterChoice?.value;
  const sequence = param('sequence_id');
  let y: Float32Array;
  if (sequence !== undefined) {
    const id = typeof sequence === 'bigint' || typeof sequence === 'string' ? String(sequence) : '?';
    if (param('sequence_start') !== true && !state.sums.has(id))
      throw new Error(`sequence ${id} must start with the START flag`);
    const sum = (param('sequence_start') === true ? 0 : state.sums.get(id)!) + x.data.reduce((a, b) => a + b, 0);
    state.sums.set(id, sum);
    if (param('sequence_end') === true) state.sums.delete(id);
    y = Float32Array.of(sum, sum);
  } else y = x.data.map((v) => 2 * v);
  const out = tensorToWire(createTensor('FP32', x.shape, y), { raw: true });
  return {
    modelName: 'm',
    modelVersion: '1',
    id: request.id,
    parameters: {},
    outputs: [{ name: 'y', datatype: 'FP32', shape: out.wire.shape, parameters: {}, contents: undefined }],
    rawOutputContents: [out.raw!],
  };
}

async function startServer(state: ServerState): Promise<{ address: string; server: grpc.Server }> {
  const server = new grpc.Server();
  server.addService(inference.GRPCInferenceServiceService, {
    modelMetadata: (
      _call: grpc.ServerUnaryCall<unknown, unknown>,
      callback: grpc.sendUnaryData<inference.ModelMetadataResponse>,
    ) =>
      callback(null, {
        name: 'm',
        versions: ['1'],
        platform: 'test',
        inputs: [{ name: 'x', datatype: 'FP32', shape: [-1n, 2n] }],
        outputs: [{ name: 'y', datatype: 'FP32', shape: [-1n, 2n] }],
      }),
    modelConfig: (
      _call: grpc.ServerUnaryCall<unknown, unknown>,
      callback: grpc.sendUnaryData<inference.ModelConfigResponse>,
    ) => {
      if (state.maxBatchSize === undefined) {
        callback({ code: grpc.status.UNIMPLEMENTED, details: 'ModelConfig is not implemented' });
        return;
      }
      const config = inferenceConfig.ModelConfig.fromPartial({ name: 'm', maxBatchSize: state.maxBatchSize });
      callback(null, { config });
    },
    modelInfer: (
      call: grpc.ServerUnaryCall<inference.ModelInferRequest, unknown>,
      callback: grpc.sendUnaryData<inference.ModelInferResponse>,
    ) => {
      state.unaryRequests += 1;
      try {
        callback(null, run(call.request, state));
      } catch (error: unknown) {
        callback({ code: grpc.status.INVALID_ARGUMENT, details: (error as Error).message });
      }
    },
    modelStreamInfer: (
      call: grpc.ServerDuplexStream<inference.ModelInferRequest, inference.ModelStreamInferResponse>,
    ) => {
      let answered = 0;
      const breakAt = state.breakAfter;
      state.breakAfter = undefined;
      call.on('data', (request: inference.ModelInferRequest) => {
        state.streamRequests += 1;
        state.inFlight += 1;
        state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
        // Answered a little later, in order, as a server with a queue would.
        setTimeout(() => {
          state.inFlight -= 1;
          if (breakAt !== undefined && answered === breakAt) {
            call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'broken on purpose' });
            return;
          }
          answered += 1;
          try {
            call.write({ errorMessage: '', inferResponse: run(request, state) });
          } catch (error: unknown) {
            call.write({ errorMessage: (error as Error).message, inferResponse: undefined });
          }
        }, 1);
      });
      call.on('end', () => setTimeout(() => call.end(), 20));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, p) =>
      error ? reject(error) : resolve(p),
    ),
  );
  return { address: `127.0.0.1:${port}`, server };
}

/** Rows i = 0..n-1 of x = [i, i + 0.5]; `bad` rows negative; `sequence` names each row's sequence. */
function rows(
  n: number,
  options: { bad?: readonly number[]; sequence?: (i: number) => string | undefined } = {},
): BatchSource {
  return {
    total: () => n,
    async *records() {
      for (let i = 0; i < n; i++) {
        const sign = options.bad?.includes(i) === true ? -1 : 1;
        const x = { ...createTensor('FP32', [1, 2], Float32Array.of(sign * i, sign * (i + 0.5))), name: 'x' };
        const sequenceId = options.sequence?.(i);
        const record: BatchRecord =
          sequenceId === undefined ? { id: `r${i}`, inputs: [x] } : { id: `r${i}`, inputs: [x], sequenceId };
        yield record;
        await Promise.resolve();
      }
    },
  };
}

async function lines(path: string): Promise<{ id: string; outputs: { data: number[] }[] }[]> {
  const text = await readFile(path, 'utf8');
  return text
    .trim()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { id: string; outputs: { data: number[] }[] });
}

let state: ServerState;
let server: grpc.Server;
let client: QuantaClient;
let dir: string;

beforeEach(async () => {
  state = { maxInFlight: 0, inFlight: 0, streamRequests: 0, unaryRequests: 0, breakAfter: undefined, sums: new Map() };
  const started = await startServer(state);
  server = started.server;
  client = createQuantaClient({ address: started.address, retry: { initialBackoffMs: 10, maxBackoffMs: 20 } });
  dir = await mkdtemp(join(tmpdir(), 'quanta-batch-engine-'));
});

afterEach(async () => {
  client.close();
  server.forceShutdown();
  await rm(dir, { recursive: true, force: true });
});

describe('batchInfer', () => {
  it('writes every row in input order with at most `window` requests in flight', async () => {
    const out = join(dir, 'out.jsonl');
    const summary = await batchInfer(client, 'm', rows(500), jsonlSink(new PlainFile(out)), { window: 7 });
    expect(summary).toMatchObject({ records: 500, succeeded: 500, failures: 0, requests: 500, version: '1' });
    expect(state.maxInFlight).toBeLessThanOrEqual(7);
    expect(state.maxInFlight).toBeGreaterThan(1);
    const written = await lines(out);
    expect(written.map((l) => l.id)).toEqual(Array.from({ length: 500 }, (_, i) => `r${i}`));
    written.forEach((l, i) => expect(l.outputs[0]!.data).toEqual([2 * i, 2 * i + 1]));
  });

  it('stacks rows with batchRows auto only where the server batches along dim 0', async () => {
    const auto = async (maxBatchSize: number | undefined): Promise<number> => {
      state.maxBatchSize = maxBatchSize;
      state.streamRequests = 0;
      const out = join(dir, `auto-${maxBatchSize}.jsonl`);
      const summary = await batchInfer(client, 'm', rows(100), jsonlSink(new PlainFile(out)), { batchRows: 'auto' });
      expect(summary).toMatchObject({ records: 100, succeeded: 100, failures: 0 });
      const written = await lines(out);
      written.forEach((l, i) => expect(l.outputs[0]!.data).toEqual([2 * i, 2 * i + 1]));
      return state.streamRequests;
    };
    expect(await auto(8)).toBe(13); // ceil(100 / 8): at most the server's max batch
    expect(await auto(64)).toBe(4); // ceil(100 / 32): at most AUTO_BATCH_ROWS
    expect(await auto(0)).toBe(100); // the server does not batch: one row per request
    expect(await auto(undefined)).toBe(100); // no ModelConfig: one row per request
  });

  it('stacks rows into one request and splits the answer; a rejected request is retried row by row', async () => {
    const out = join(dir, 'out.jsonl');
    const errors = join(dir, 'errors.jsonl');
    const summary = await batchInfer(client, 'm', rows(100, { bad: [13, 77] }), jsonlSink(new PlainFile(out)), {
      batchRows: 10,
      errors: errorsSink(errors),
    });
    expect(summary).toMatchObject({ records: 100, succeeded: 98, failures: 2 });
    expect(state.streamRequests).toBe(10);
    expect(state.unaryRequests).toBe(20); // the two rejected requests, one row at a time
    const written = await lines(out);
    expect(written.map((l) => l.id)).toEqual(
      Array.from({ length: 100 }, (_, i) => `r${i}`).filter((id) => id !== 'r13' && id !== 'r77'),
    );
    const failed = (await readFile(errors, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as unknown);
    expect(failed).toEqual([
      {
        id: 'r13',
        index: 13,
        code: 'INVALID_ARGUMENT',
        message: 'model "m" input "x": negative value in rows of shape [1,2]',
      },
      {
        id: 'r77',
        index: 77,
        code: 'INVALID_ARGUMENT',
        message: 'model "m" input "x": negative value in rows of shape [1,2]',
      },
    ]);
  });

  it('opens a broken stream again and sends its unanswered requests again: no row lost or doubled', async () => {
    state.breakAfter = 40;
    const out = join(dir, 'out.jsonl');
    const summary = await batchInfer(client, 'm', rows(200), jsonlSink(new PlainFile(out)), { window: 16 });
    expect(summary).toMatchObject({ records: 200, succeeded: 200, failures: 0 });
    expect(state.streamRequests).toBeGreaterThan(200);
    expect((await lines(out)).map((l) => l.id)).toEqual(Array.from({ length: 200 }, (_, i) => `r${i}`));
  });

  it('a sequence in flight when its stream breaks stops the job instead of running a step twice', async () => {
    state.breakAfter = 5;
    const error = await batchInfer(
      client,
      'm',
      rows(20, { sequence: () => 'seq' }),
      jsonlSink(new PlainFile(join(dir, 'o.jsonl'))),
      {
        window: 4,
      },
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BatchError);
    expect((error as BatchError).message).toMatch(/a sequence had requests in flight: resume to replay it/);
  });

  it('stops after maxFailures with the failures counted exactly', async () => {
    const error = await batchInfer(
      client,
      'm',
      rows(50, { bad: [3, 4, 5, 6, 7, 8] }),
      jsonlSink(new PlainFile(join(dir, 'o.jsonl'))),
      {
        maxFailures: 2,
      },
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BatchError);
    expect((error as BatchError).reason).toBe('max-failures');
    expect((error as BatchError).summary).toMatchObject({ failures: 3, records: 6, stopped: 'max-failures' });
  });

  it('stopped mid-sequence, resumed: the open sequence replays from its start, no row written twice', async () => {
    // Sequences of 30 rows each; the running sum of a row depends on every row before it in its sequence.
    const sequence = (i: number): string => `s${Math.floor(i / 30)}`;
    const expected = (i: number): number => {
      let sum = 0;
      for (let k = i - (i % 30); k <= i; k++) sum += k + (k + 0.5);
      return sum;
    };
    const out = join(dir, 'seq.jsonl');
    const checkpoint = join(dir, 'seq.checkpoint.json');
    const controller = new AbortController();
    const options = { window: 8, checkpoint, checkpointIntervalMs: 0 };
    const stopped = await batchInfer(client, 'm', rows(120, { sequence }), jsonlSink(new PlainFile(out)), {
      ...options,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.records >= 45) controller.abort();
      },
      progressIntervalMs: 0,
    }).catch((e: unknown) => e);
    expect((stopped as BatchError).reason).toBe('aborted');
    const done = (stopped as BatchError).summary!.records;
    expect(done).toBeGreaterThanOrEqual(45);
    expect(done % 30).not.toBe(0); // stopped inside a sequence

    state.sums.clear(); // a server that lost the sequence's state (restarted): the replay rebuilds it
    const resumed = await batchInfer(client, 'm', rows(120, { sequence }), jsonlSink(new PlainFile(out)), {
      ...options,
      resume: true,
    });
    expect(resumed).toMatchObject({ records: 120, resumedFrom: done, failures: 0 });
    const written = await lines(out);
    expect(written.map((l) => l.id)).toEqual(Array.from({ length: 120 }, (_, i) => `r${i}`));
    written.forEach((l, i) => expect(l.outputs[0]!.data[0], `row ${i}`).toBeCloseTo(expected(i), 3));
  });

  it('refuses to resume a checkpoint of another job', async () => {
    const checkpoint = join(dir, 'c.json');
    await batchInfer(client, 'm', rows(10), jsonlSink(new PlainFile(join(dir, 'a.jsonl'))), {
      checkpoint,
      fingerprint: { input: 'a' },
    });
    const error = await batchInfer(client, 'm', rows(10), jsonlSink(new PlainFile(join(dir, 'a.jsonl'))), {
      checkpoint,
      resume: true,
      fingerprint: { input: 'b' },
    }).catch((e: unknown) => e);
    expect((error as BatchError).reason).toBe('usage');
    expect((error as BatchError).message).toMatch(/input was "a", now "b"/);
  });
});
