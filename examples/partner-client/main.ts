// A partner's program: asks Quanta for the `cifar` model's signature, sends one random image, and
// prints the top class. Only @quanta/sdk is needed; any KServe v2 / Triton client would work too.
import { readFileSync } from 'node:fs';
import { createQuantaClient, inferRequest, outputTensor, QuantaClientError, tensorValues } from '@quanta/sdk';

const CIFAR_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];
const model = process.env['QUANTA_MODEL'] ?? 'cifar';
const ca = process.env['QUANTA_CLIENT_TLS_CA'];

const quanta = createQuantaClient({
  address: process.env['QUANTA_ADDR'] ?? '127.0.0.1:8001', // the inference service
  ...(process.env['QUANTA_TOKEN'] ? { token: process.env['QUANTA_TOKEN'] } : {}),
  ...(ca ? { tls: { ca: readFileSync(ca) } } : {}),
  deadlineMs: 10_000,
});

try {
  const metadata = await quanta.inference.modelMetadata({ name: model });
  const input = metadata.inputs[0];
  const output = metadata.outputs[0];
  if (input === undefined || output === undefined) throw new Error(`model "${model}" has no inputs or outputs`);
  // A dynamic dimension (-1, the batch) becomes 1: one image.
  const shape = input.shape.map((d) => (d < 0n ? 1 : Number(d)));
  const versions = metadata.versions.join(', ');
  console.log(
    `${metadata.name} (versions ${versions}): ${input.name} ${input.datatype} [${shape.join(',')}] -> ${output.name}`,
  );

  const pixels = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => Math.random());
  const started = performance.now();
  const reply = await quanta.inference.modelInfer(
    inferRequest(model, [{ name: input.name, data: pixels, shape, datatype: 'FP32' }], { outputs: [output.name] }),
  );
  const scores = tensorValues(outputTensor(reply, output.name));
  const top = scores.reduce((best, score, i) => (score > (scores[best] ?? -Infinity) ? i : best), 0);
  const label = scores.length === CIFAR_CLASSES.length ? ` (${CIFAR_CLASSES[top]})` : '';
  const elapsedMs = (performance.now() - started).toFixed(1);
  console.log(
    `top class ${top}${label}, score ${scores[top]?.toFixed(4)}, version ${reply.modelVersion}, ${elapsedMs} ms`,
  );
} catch (error: unknown) {
  // QuantaClientError says which method failed, with which gRPC status, after how many attempts.
  console.error(error instanceof QuantaClientError ? error.message : error);
  process.exitCode = 1;
} finally {
  quanta.close();
}
