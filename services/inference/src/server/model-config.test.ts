import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { inferenceConfig as tc, type inference as pb } from '@quanta/contracts';
import { LSTM_NAMES, buildLstm, buildMlp } from '@quanta/onnx';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../testing/harness.js';
import { startHarness } from '../testing/harness.js';

let h: Harness;
let token: string;

beforeAll(async () => {
  h = await startHarness();
  await Promise.all([
    h.deploy('acme', 'mlp', '1', buildMlp(), {
      maxBatchSize: 8,
      maxQueueDelayUs: 500,
      preferredBatchSizes: [4],
      maxQueueSize: 16,
      instanceCount: 2,
    }),
    h.deploy('acme', 'mlp-single', '1', buildMlp()),
    h.deploy('acme', 'lstm', '1', buildLstm(), {
      sequenceState: [
        { input: LSTM_NAMES.h, output: LSTM_NAMES.hn },
        { input: LSTM_NAMES.c, output: LSTM_NAMES.cn },
      ],
      sequenceIdleTimeoutMs: 5000,
    }),
  ]);
  token = await h.token('acme', ['models:read']);
});
afterAll(() => h.close());

function modelConfig(name: string, version = ''): Promise<pb.ModelConfigResponse> {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  const call = promisify<pb.ModelConfigRequest, grpc.Metadata, pb.ModelConfigResponse>(
    h.client.modelConfig.bind(h.client),
  );
  return call({ name, version }, metadata);
}

describe('ModelConfig (gRPC) answers with Triton model configuration', () => {
  it('a batched model: dims without the batch dim, dynamic batching from the deployment', async () => {
    const { config } = await modelConfig('mlp');
    expect(config).toMatchObject({
      name: 'mlp',
      platform: 'onnxruntime_onnx',
      backend: 'onnxruntime',
      maxBatchSize: 8,
    });
    expect(config!.input).toEqual([
      {
        name: 'input',
        dataType: tc.DataType.TYPE_FP32,
        format: tc.ModelInput_Format.FORMAT_NONE,
        dims: [4n],
        allowRaggedBatch: false,
        optional: false,
      },
    ]);
    expect(config!.output.map((o) => [o.name, o.dataType, o.dims.length])).toEqual([
      ['output', tc.DataType.TYPE_FP32, 1],
    ]);
    const scheduling = config!.schedulingChoice;
    expect(scheduling?.$case).toBe('dynamicBatching');
    if (scheduling?.$case !== 'dynamicBatching') return;
    expect(scheduling.value.preferredBatchSize).toEqual([4]);
    expect(scheduling.value.maxQueueDelayMicroseconds).toBe(500n);
    expect(scheduling.value.defaultQueuePolicy?.maxQueueSize).toBe(16);
    expect(config!.instanceGroup).toEqual([
      { name: 'mlp_0', kind: tc.ModelInstanceGroup_Kind.KIND_CPU, count: 2, gpus: [] },
    ]);
  });

  it('an unbatched model: max_batch_size 0, the whole shape, no scheduler', async () => {
    const { config } = await modelConfig('mlp-single', '1');
    expect(config!.maxBatchSize).toBe(0);
    expect(config!.input[0]!.dims).toEqual([-1n, 4n]);
    expect(config!.schedulingChoice).toBeUndefined();
  });

  it('a stateful model: sequence batching with its state, state tensors not among the inputs', async () => {
    const { config } = await modelConfig('lstm');
    expect(config!.maxBatchSize).toBe(0);
    expect(config!.input.map((i) => i.name)).toEqual([LSTM_NAMES.input]);
    expect(config!.output.map((o) => o.name)).toEqual([LSTM_NAMES.output]);
    const scheduling = config!.schedulingChoice;
    expect(scheduling?.$case).toBe('sequenceBatching');
    if (scheduling?.$case !== 'sequenceBatching') return;
    expect(scheduling.value.maxSequenceIdleMicroseconds).toBe(5_000_000n);
    expect(scheduling.value.state.map((s) => [s.inputName, s.outputName, s.dataType, s.dims])).toEqual([
      [LSTM_NAMES.h, LSTM_NAMES.hn, tc.DataType.TYPE_FP32, [1n, -1n, 8n]],
      [LSTM_NAMES.c, LSTM_NAMES.cn, tc.DataType.TYPE_FP32, [1n, -1n, 8n]],
    ]);
  });

  it('an unknown model is NOT_FOUND', async () => {
    await expect(modelConfig('nope')).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });
});

describe('GET /v2/models/{name}/config answers with Triton JSON', () => {
  it('snake_case fields, enum names, 64-bit integers as numbers', async () => {
    const { status, body } = await h.rest('GET', '/v2/models/mlp/versions/1/config', { token });
    expect(status).toBe(200);
    expect(body).toMatchObject({
      name: 'mlp',
      platform: 'onnxruntime_onnx',
      backend: 'onnxruntime',
      max_batch_size: 8,
      input: [{ name: 'input', data_type: 'TYPE_FP32', format: 'FORMAT_NONE', dims: [4], optional: false }],
      dynamic_batching: {
        preferred_batch_size: [4],
        max_queue_delay_microseconds: 500,
        default_queue_policy: { max_queue_size: 16, timeout_action: 'REJECT' },
      },
      instance_group: [{ name: 'mlp_0', kind: 'KIND_CPU', count: 2 }],
    });
    expect(body['sequence_batching']).toBeUndefined();
  });

  it('a stateful model shows its sequence state', async () => {
    const { body } = await h.rest('GET', '/v2/models/lstm/config', { token });
    expect(body['sequence_batching']).toMatchObject({
      max_sequence_idle_microseconds: 5_000_000,
      state: [
        { input_name: 'h', output_name: 'hn', data_type: 'TYPE_FP32', dims: [1, -1, 8] },
        { input_name: 'c', output_name: 'cn', data_type: 'TYPE_FP32', dims: [1, -1, 8] },
      ],
    });
  });

  it('an unknown model is 404 with a message, no token is 401', async () => {
    const missing = await h.rest('GET', '/v2/models/nope/config', { token });
    expect(missing.status).toBe(404);
    expect(String(missing.body['error'])).toContain('nope');
    expect((await h.rest('GET', '/v2/models/mlp/config')).status).toBe(401);
  });
});
