// Rotation never strands a stored model: with the four services as processes, rotate the
// registry's wrapping key, rewrap every stored data key, raise min_decryption_version, restart
// inference (so it downloads again) and the model still downloads byte for byte and serves the
// answers onnxruntime gives.
import { createHash } from 'node:crypto';
import type { registry } from '@quanta/contracts';
import { buildCnn } from '@quanta/onnx';
import { createTensor, type Tensor } from '@quanta/tensor';
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

const CNN = buildCnn({ seed: 21 });
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const image = (seed: number): Tensor => ({ ...createTensor('FP32', [1, 3, 32, 32], randomImage(seed)), name: 'input' });

async function download(clients: Clients, token: string, ref: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const m of clients.registry.downloadVersion(
    { ref, tenant: '', chunkSizeBytes: 0 },
    bearer(token),
  ) as AsyncIterable<registry.DownloadVersionResponse>) {
    if (m.part?.$case === 'chunk') parts.push(m.part.value);
  }
  return Buffer.concat(parts);
}

async function served(clients: Clients, token: string): Promise<Float32Array> {
  const { outputs } = await inferRaw(clients, token, 'cifar', [image(3)]);
  return outputs[0]!.data as Float32Array;
}

describe('rotate, rewrap, raise: every stored version still downloads and serves', () => {
  let stack: Stack;
  let clients: Clients;
  let acme: string;
  let want: Float32Array;

  beforeAll(async () => {
    stack = await startStack();
    clients = connectClients(stack);
    acme = await issueToken(clients, stack.adminToken, 'acme', ['models:read', 'models:write', 'infer']);
    want = (await reference(CNN, { input: new ort.Tensor('float32', randomImage(3), [1, 3, 32, 32]) }))['output']!;
  }, 240_000);
  afterAll(async () => {
    clients?.close();
    await stack?.close();
  });

  it('serves the same answers after the old key version can no longer decrypt', async () => {
    await pushModel(clients, acme, 'cifar', CNN);
    await clients.rpc.registry(
      'createDeployment',
      { name: 'cifar', spec: deploymentSpec('cifar:1') },
      { metadata: bearer(acme) },
    );
    await waitServed(clients, acme, 'cifar');
    expect(Array.from(await served(clients, acme))).toEqual(Array.from(want));

    const admin = { metadata: bearer(stack.adminToken) };
    await clients.rpc.crypto('rotateKey', { name: 'model-registry' }, admin);
    expect((await clients.rpc.registry('getDataKeyStatus', { belowKeyVersion: 2 }, admin)).versionsBelow).toBe(1n);
    let last: registry.RewrapDataKeysResponse | undefined;
    for await (const m of clients.registry.rewrapDataKeys(
      {},
      bearer(stack.adminToken),
    ) as AsyncIterable<registry.RewrapDataKeysResponse>)
      last = m;
    expect(last).toMatchObject({ done: 1n, total: 1n, rewrapped: 1n, keyVersion: 2 });
    await clients.rpc.crypto('updateKeyConfig', { name: 'model-registry', config: { minDecryptionVersion: 2 } }, admin);

    expect(sha256(await download(clients, acme, 'cifar:1'))).toBe(sha256(CNN));
    // A fresh replica downloads and unwraps the file again under key version 2.
    await stack.processes.get('inference')!.stop();
    await stack.start('inference');
    clients.close();
    clients = connectClients(stack);
    await waitServed(clients, acme, 'cifar');
    expect(Array.from(await served(clients, acme))).toEqual(Array.from(want));
  }, 180_000);
});
