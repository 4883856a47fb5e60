import * as grpc from '@grpc/grpc-js';
import type { inference as pb } from '@quanta/contracts';
import { buildMlp } from '@quanta/onnx';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../testing/harness.js';
import {
  call,
  emptyContents,
  failure,
  fp32Input,
  inferRequest,
  seededFloats,
  startHarness,
} from '../testing/harness.js';

let h: Harness;
let token: string;
const x = seededFloats(8, 1);
/** A good MLP input: FP32 [2,4]. */
const good = (): pb.ModelInferRequest_InferInputTensor => fp32Input('input', [2, 4], x, false).input;
const rawBytes = (): Buffer => fp32Input('input', [2, 4], x, true).raw!;

beforeAll(async () => {
  h = await startHarness();
  await h.deploy('acme', 'mlp', '1', buildMlp());
  await h.deploy('globex', 'secret', '1', buildMlp({ seed: 3 }));
  token = await h.token('acme', ['infer', 'models:read']);
});
afterAll(() => h.close());

const cases: { what: string; request: () => pb.ModelInferRequest; code: grpc.status; names: RegExp }[] = [
  {
    what: 'an unknown model',
    request: () => inferRequest({ modelName: 'nope', inputs: [good()] }),
    code: grpc.status.NOT_FOUND,
    names: /"nope"/,
  },
  {
    what: 'an unknown version',
    request: () => inferRequest({ modelName: 'mlp', modelVersion: '9', inputs: [good()] }),
    code: grpc.status.NOT_FOUND,
    names: /"9"|version 9/,
  },
  {
    what: "another tenant's model",
    request: () => inferRequest({ modelName: 'secret', inputs: [good()] }),
    code: grpc.status.NOT_FOUND,
    names: /"secret"/,
  },
  {
    what: 'an empty model name',
    request: () => inferRequest({ inputs: [good()] }),
    code: grpc.status.INVALID_ARGUMENT,
    names: /model name/,
  },
  {
    what: 'a missing input',
    request: () => inferRequest({ modelName: 'mlp' }),
    code: grpc.status.INVALID_ARGUMENT,
    names: /"input"/,
  },
  {
    what: 'an extra input',
    request: () => inferRequest({ modelName: 'mlp', inputs: [good(), { ...good(), name: 'extra' }] }),
    code: grpc.status.INVALID_ARGUMENT,
    names: /"extra"/,
  },
  {
    what: 'a misnamed input',
    request: () => inferRequest({ modelName: 'mlp', inputs: [{ ...good(), name: 'inptu' }] }),
    code: grpc.status.INVALID_ARGUMENT,
    names: /"inptu"/,
  },
  {
    what: 'an input given twice',
    request: () => inferRequest({ modelName: 'mlp', inputs: [good(), good()] }),
    code: grpc.status.INVALID_ARGUMENT,
    names: /"input"/,
  },
  {
    what: 'the wrong datatype',
    request: () =>
      inferRequest({
        modelName: 'mlp',
        inputs: [
          {
            ...good(),
            datatype: 'INT32',
            contents: { ...emptyContents(), intContents: Array.from({ length: 8 }, () => 1) },
          },
        ],
      }),
    code: grpc.status.INVALID_ARGUMENT,
    names: /"input".*INT32|INT32.*"input"/,
  },
  {
    what: 'an unknown datatype',
    request: () => inferRequest({ modelName: 'mlp', inputs: [{ ...good(), datatype: 'FP33' }] }),
    code: grpc.status.INVALID_ARGUMENT,
    names: /"input".*FP33/,
  },
  {
    what: 'a shape the model does not take',
    request: () => inferRequest({ modelName: 'mlp', inputs: [{ ...good(), shape: [4n, 2n] }] }),
    code: grpc.status.INVALID_ARGUMENT,
    names: /"input"/,
  },
  {
    what: 'a negative dim',
    request: () => inferRequest({ modelName: 'mlp', inputs: [{ ...good(), shape: [-2n, 4n] }] }),
    code: grpc.status.INVALID_ARGUMENT,
    names: /"input".*negative/,
  },
  {
    what: 'a huge shape',
    request: () => inferRequest({ modelName: 'mlp', inputs: [{ ...good(), shape: [1n << 40n, 1n << 40n] }] }),
    code: grpc.status.INVALID_ARGUMENT,
    names: /"input"/,
  },
  {
    what: 'too few typed values for the shape',
    request: () => inferRequest({ modelName: 'mlp', inputs: [{ ...good(), shape: [3n, 4n] }] }),
    code: grpc.status.INVALID_ARGUMENT,
    names: /"input".*12/,
  },
  {
    what: 'values in the wrong contents field',
    request: () =>
      inferRequest({
        modelName: 'mlp',
        inputs: [{ ...good(), contents: { ...emptyContents(), fp64Contents: Array.from(x) } }],
      }),
    code: grpc.status.INVALID_ARGUMENT,
    names: /"input".*fp64_contents/,
  },
  {
    what: 'raw bytes that do not match the shape',
    request: () =>
      inferRequest({
        modelName: 'mlp',
        inputs: [{ ...good(), contents: undefined }],
        rawInputContents: [rawBytes().subarray(0, 30)],
      }),
    code: grpc.status.INVALID_ARGUMENT,
    names: /"input".*32 bytes.*30/,
  },
  {
    what: 'both typed contents and raw bytes',
    request: () => inferRequest({ modelName: 'mlp', inputs: [good()], rawInputContents: [rawBytes()] }),
    code: grpc.status.INVALID_ARGUMENT,
    names: /"input".*both/,
  },
  {
    what: 'more raw entries than inputs',
    request: () =>
      inferRequest({
        modelName: 'mlp',
        inputs: [{ ...good(), contents: undefined }],
        rawInputContents: [rawBytes(), rawBytes()],
      }),
    code: grpc.status.INVALID_ARGUMENT,
    names: /raw_input_contents has 2 entries/,
  },
  {
    what: 'an unknown requested output',
    request: () => inferRequest({ modelName: 'mlp', inputs: [good()], outputs: [{ name: 'nope', parameters: {} }] }),
    code: grpc.status.INVALID_ARGUMENT,
    names: /"nope"/,
  },
  {
    what: 'a sequence_start that is not a bool',
    request: () =>
      inferRequest({
        modelName: 'mlp',
        inputs: [good()],
        parameters: {
          sequence_id: { parameterChoice: { $case: 'uint64Param', value: 1n } },
          sequence_start: { parameterChoice: { $case: 'stringParam', value: 'yes' } },
        },
      }),
    code: grpc.status.INVALID_ARGUMENT,
    names: /"sequence_start"/,
  },
  {
    what: 'a negative sequence_id',
    request: () =>
      inferRequest({
        modelName: 'mlp',
        inputs: [good()],
        parameters: { sequence_id: { parameterChoice: { $case: 'int64Param', value: -5n } } },
      }),
    code: grpc.status.INVALID_ARGUMENT,
    names: /"sequence_id"/,
  },
];

describe('ModelInfer refuses bad requests with a status and a message naming what is wrong', () => {
  for (const c of cases) {
    it(c.what, async () => {
      const error = await failure(call(h.client, 'modelInfer', c.request(), token));
      expect(grpc.status[error.code]).toBe(grpc.status[c.code]);
      expect(error.details).toMatch(c.names);
    });
  }

  it('still answers correctly afterwards', async () => {
    const response = await call(h.client, 'modelInfer', inferRequest({ modelName: 'mlp', inputs: [good()] }), token);
    expect(response.outputs[0]!.shape).toEqual([2n, 3n]);
  });
});

describe('auth', () => {
  const infer = (t?: string): Promise<unknown> =>
    call(h.client, 'modelInfer', inferRequest({ modelName: 'mlp', inputs: [good()] }), t);

  it('no token: UNAUTHENTICATED', async () => {
    expect((await failure(infer())).code).toBe(grpc.status.UNAUTHENTICATED);
    expect((await failure(call(h.client, 'modelMetadata', { name: 'mlp', version: '' }))).code).toBe(
      grpc.status.UNAUTHENTICATED,
    );
    expect((await failure(call(h.client, 'repositoryIndex', { repositoryName: '', ready: false }))).code).toBe(
      grpc.status.UNAUTHENTICATED,
    );
  });

  it('a forged token: UNAUTHENTICATED', async () => {
    const forged = `${token.slice(0, -4)}AAAA`;
    expect((await failure(infer(forged))).code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('the wrong scope: PERMISSION_DENIED naming it', async () => {
    const reader = await h.token('acme', ['models:read']);
    const runner = await h.token('acme', ['infer']);
    const denied = await failure(infer(reader));
    expect(denied.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(denied.details).toMatch(/"infer"/);
    expect((await failure(call(h.client, 'modelMetadata', { name: 'mlp', version: '' }, runner))).code).toBe(
      grpc.status.PERMISSION_DENIED,
    );
    expect((await failure(call(h.client, 'modelStatistics', { name: 'mlp', version: '' }, runner))).code).toBe(
      grpc.status.PERMISSION_DENIED,
    );
    expect(
      (
        await failure(
          call(h.client, 'repositoryModelLoad', { repositoryName: '', modelName: 'mlp', parameters: {} }, runner),
        )
      ).code,
    ).toBe(grpc.status.PERMISSION_DENIED);
  });

  it('admin grants every scope, within its own tenant', async () => {
    const admin = await h.token('globex', ['admin']);
    const meta = await call(h.client, 'modelMetadata', { name: 'secret', version: '' }, admin);
    expect(meta.name).toBe('secret');
    expect((await failure(infer(admin))).code).toBe(grpc.status.NOT_FOUND);
  });

  it("another tenant's model is NOT_FOUND everywhere", async () => {
    expect((await failure(call(h.client, 'modelMetadata', { name: 'secret', version: '' }, token))).code).toBe(
      grpc.status.NOT_FOUND,
    );
    expect((await failure(call(h.client, 'modelStatistics', { name: 'secret', version: '' }, token))).code).toBe(
      grpc.status.NOT_FOUND,
    );
    expect(await call(h.client, 'modelReady', { name: 'secret', version: '' }, token)).toEqual({ ready: false });
  });
});
