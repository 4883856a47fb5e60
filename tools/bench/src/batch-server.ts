// The inference service of the batch benchmark, in a process of its own: the CNN and the MLP
// loaded for one tenant, real EdDSA tokens. Prints one JSON line {port, token} once it serves,
// and stops on SIGTERM.
import { buildCnn, buildMlp } from '@quanta/onnx';
import { startBenchInferenceServer } from './bench-inference-models.js';

const TENANT = 'bench';

const { server, issuer } = await startBenchInferenceServer({ threadsPerInstance: 1, execution: 'auto' });
const models: Record<string, Uint8Array> = {
  cnn: buildCnn({ softmax: true, seed: 3 }),
  mlp: buildMlp({ inputSize: 256, hiddenSizes: [1024, 1024], outputSize: 10, seed: 1 }),
};
for (const [name, bytes] of Object.entries(models)) {
  await server.manager.load(TENANT, name, '1', bytes, {
    maxBatchSize: 64,
    maxQueueDelayUs: 1000,
    instanceCount: 1,
    maxQueueSize: 0,
    sequenceState: [],
    sequenceIdleTimeoutMs: 0,
  });
  await server.manager.activate(TENANT, name, '1');
}
const token = await issuer.issue({
  tenant: TENANT,
  subject: 'bench',
  scopes: ['infer', 'models:read'],
  ttlSeconds: 3600,
});
process.stdout.write(`${JSON.stringify({ port: server.port, token })}\n`);
process.once('SIGTERM', () => void server.stop({ graceMs: 1000 }).then(() => process.exit(0)));
