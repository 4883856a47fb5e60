// The platform with the registry's blobs in an S3-protocol server (s3rver on a free port): a model
// pushed is stored sealed in the bucket, deployed, downloaded from there by inference and served.
import { createHash } from 'node:crypto';
import { startTestS3, type TestS3 } from '@quanta/model-registry/testing';
import { buildCnn } from '@quanta/onnx';
import { createTensor } from '@quanta/tensor';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bearer,
  connectClients,
  deploymentSpec,
  inferRaw,
  issueToken,
  pushModel,
  randomImage,
  reference,
  waitServed,
  type Clients,
} from './clients.js';
import { startStack, type Stack } from './stack.js';

const PREFIX = 'quanta/blobs/';
const cnn = buildCnn({ softmax: true, seed: 11 });
const sha256 = createHash('sha256').update(cnn).digest('hex');

let s3: TestS3;
let stack: Stack;
let clients: Clients;
let acme: string;

beforeAll(async () => {
  s3 = await startTestS3();
  // Monitoring is left out: inference records off the request path and carries on without it.
  stack = await startStack({
    blobUrl: s3.blobUrl(PREFIX),
    env: s3.env,
    services: ['crypto', 'model-registry', 'inference'],
  });
  clients = connectClients(stack);
  acme = await issueToken(clients, stack.adminToken, 'acme', ['models:read', 'models:write', 'infer']);
}, 240_000);

afterAll(async () => {
  clients?.close();
  await stack?.close();
  await s3?.close();
}, 60_000);

describe('the registry with its blobs in S3', () => {
  it('push → deploy → infer, the model sealed in the bucket and nothing else left there', async () => {
    const pushed = await pushModel(clients, acme, 'cifar', cnn);
    expect(pushed.version?.sha256).toBe(sha256);

    // One object, at the blob's key, sealed: no 64-byte slice of the model is in it.
    expect(await s3.keys()).toEqual([`${PREFIX}acme/${sha256.slice(0, 2)}/${sha256}`]);
    expect(await s3.uploads()).toEqual([]);
    const stored = await s3.get(`${PREFIX}acme/${sha256.slice(0, 2)}/${sha256}`);
    expect(stored.length).toBeGreaterThan(cnn.length);
    for (const at of [0, 4096, Math.floor(cnn.length / 2), cnn.length - 64])
      expect(stored.includes(Buffer.from(cnn.subarray(at, at + 64)))).toBe(false);

    await clients.rpc.registry(
      'createDeployment',
      { name: 'cifar', spec: deploymentSpec('cifar:1') },
      { metadata: bearer(acme) },
    );
    await waitServed(clients, acme, 'cifar');
    const input = randomImage(3);
    const reply = await inferRaw(clients, acme, 'cifar', [
      { ...createTensor('FP32', [1, 3, 32, 32], input), name: 'input' },
    ]);
    const want = (await reference(cnn, { input: new ort.Tensor('float32', input, [1, 3, 32, 32]) }))['output'];
    const got = reply.outputs[0]?.data as Float32Array;
    expect(got.length).toBe(want?.length);
    let worst = 0;
    for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs((got[i] ?? NaN) - (want?.[i] ?? NaN)));
    expect(worst).toBeLessThan(1e-5);

    // The same content again is stored once.
    await pushModel(clients, acme, 'cifar-copy', cnn);
    expect(await s3.keys()).toHaveLength(1);
  }, 240_000);
});
