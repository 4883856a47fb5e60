// The pipeline's compress step as a user runs it: push, deploy a deployment that follows an alias,
// `quanta models compress --alias staging` (the CLI as its own process), and inference swaps to the
// compressed version with no failed request; its answers are checked against onnxruntime running
// the same compressed file, pulled from the registry.
import type { registry } from '@quanta/contracts';
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
import { runCli, startStack, type Stack } from './stack.js';

const cnn = buildCnn({ softmax: true, seed: 3 });

let stack: Stack;
let clients: Clients;
let acme: string;

beforeAll(async () => {
  // Monitoring is left out: inference records off the request path and carries on without it.
  stack = await startStack({ services: ['crypto', 'model-registry', 'inference'] });
  clients = connectClients(stack);
  acme = await issueToken(clients, stack.adminToken, 'acme', ['models:read', 'models:write', 'infer']);
}, 240_000);

afterAll(async () => {
  clients?.close();
  await stack?.close();
}, 60_000);

async function pullBytes(ref: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const message of clients.registry.downloadVersion(
    { ref, chunkSizeBytes: 0, tenant: '' },
    bearer(acme),
  ) as AsyncIterable<registry.DownloadVersionResponse>) {
    if (message.part?.$case === 'chunk') parts.push(message.part.value);
  }
  return Buffer.concat(parts);
}

describe('compress between push and deploy', () => {
  it(
    'compress --alias staging: the deployment swaps to the compressed version, ' +
      'which answers as onnxruntime runs that file',
    async () => {
      await pushModel(clients, acme, 'cifar', cnn);
      await clients.rpc.registry(
        'setAlias',
        { model: 'cifar', alias: 'staging', version: 1 },
        { metadata: bearer(acme) },
      );
      await clients.rpc.registry(
        'createDeployment',
        { name: 'cifar', spec: deploymentSpec('cifar@staging') },
        { metadata: bearer(acme) },
      );
      await waitServed(clients, acme, 'cifar', '1');

      // Requests run all along; none may fail while the alias moves.
      const image = (seed: number) => ({ ...createTensor('FP32', [1, 3, 32, 32], randomImage(seed)), name: 'input' });
      const failures: string[] = [];
      let servedBy2 = 0;
      let stop = false;
      const load = (async () => {
        for (let i = 0; !stop; i++) {
          try {
            const reply = await inferRaw(clients, acme, 'cifar', [image(i)]);
            if (reply.response.modelVersion === '2') servedBy2++;
          } catch (error: unknown) {
            failures.push(error instanceof Error ? error.message : String(error));
          }
        }
      })();

      const compressed = await runCli(
        [
          'models',
          'compress',
          'cifar:1',
          '--method',
          'int8-weights',
          '--alias',
          'staging',
          '--min-cosine',
          '0.99',
          '--min-top1-agreement',
          '0.9',
          '--json',
        ],
        { ...stack.env, QUANTA_TOKEN: acme, QUANTA_REGISTRY_ADDR: stack.addr.registry },
      );
      expect(compressed.stderr).toBe('');
      expect(compressed.code).toBe(0);
      const version = JSON.parse(compressed.stdout) as {
        version: number;
        aliases: string[];
        compression: { outputs: { name: string; cosine: number }[] };
      };
      expect(version).toMatchObject({ version: 2, aliases: ['staging'] });
      expect(version.compression.outputs[0]!.cosine).toBeGreaterThan(0.99);

      await waitServed(clients, acme, 'cifar', '2');
      const until = Date.now() + 30_000;
      while (servedBy2 < 10 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 50));
      stop = true;
      await load;
      expect(failures).toEqual([]);
      expect(servedBy2).toBeGreaterThanOrEqual(10);

      // The second source: onnxruntime in this process on the compressed file as the registry stores it.
      const file = await pullBytes('cifar:2');
      expect(file.length).toBeLessThan(cnn.length * 0.35);
      for (const seed of [101, 102, 103]) {
        const reply = await inferRaw(clients, acme, 'cifar', [image(seed)]);
        expect(reply.response.modelVersion).toBe('2');
        const got = reply.outputs[0]!.data as Float32Array;
        const want = (await reference(file, { input: new ort.Tensor('float32', randomImage(seed), [1, 3, 32, 32]) }))[
          'output'
        ]!;
        expect(got.length).toBe(want.length);
        let worst = 0;
        for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
        expect(worst).toBeLessThan(1e-5);
      }
    },
    240_000,
  );
});
