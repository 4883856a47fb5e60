// The demo that `npm start` deploys (unless --no-demo): a CIFAR-shaped CNN served with dynamic
// batching under the alias `production`, and a stateful LSTM whose state the server carries
// between the requests of a sequence. Both are built by @quanta/onnx with fixed weights, so a
// restart finds them already registered and deploys nothing twice.
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { LeanRegistryServiceClient, inference, registry, unaryCaller } from '@quanta/contracts';
import { buildCnn, buildLstm } from '@quanta/onnx';

export interface DemoModel {
  readonly model: string;
  readonly bytes: Uint8Array;
  /** The alias the deployment follows, if any. */
  readonly alias?: string;
  readonly deployment: registry.DeploymentSpec;
}

export function demoSpecs(): DemoModel[] {
  return [
    {
      model: 'cifar',
      bytes: buildCnn({ softmax: true }),
      alias: 'production',
      deployment: {
        modelRef: 'cifar@production',
        maxBatchSize: 32,
        maxQueueDelayUs: 2000,
        instanceCount: 1,
        maxQueueSize: 1024,
        sequenceState: [],
        sequenceIdleTimeoutMs: 0,
        // Inference measures on live traffic which batch size runs the CNN fastest per row, and
        // sends such a batch as soon as it is queued instead of waiting the 2 ms.
        preferredBatchSizes: [],
        tunePreferredBatchSize: true,
        responseCacheBytes: 0n,
        priorityLevels: 0,
        defaultPriorityLevel: 0,
        priorityQueuePolicies: {},
        callerLimitOverrides: {},
      },
    },
    {
      model: 'lstm',
      bytes: buildLstm(),
      deployment: {
        modelRef: 'lstm',
        maxBatchSize: 0,
        maxQueueDelayUs: 0,
        instanceCount: 1,
        maxQueueSize: 1024,
        sequenceState: [
          { inputName: 'h', outputName: 'hn' },
          { inputName: 'c', outputName: 'cn' },
        ],
        sequenceIdleTimeoutMs: 0,
        preferredBatchSizes: [],
        tunePreferredBatchSize: false,
        responseCacheBytes: 0n,
        priorityLevels: 0,
        defaultPriorityLevel: 0,
        priorityQueuePolicies: {},
        callerLimitOverrides: {},
      },
    },
  ];
}

export interface DemoOptions {
  readonly registryAddr: string;
  readonly inferenceAddr?: string;
  readonly token: string;
  /** Where the example input files go. */
  readonly dir: string;
  readonly log: (line: string) => void;
  /** How long to wait for inference to report the models ready; default 120 s. */
  readonly readyTimeoutMs?: number;
  /** TLS/mTLS towards the services; plaintext by default. */
  readonly credentials?: grpc.ChannelCredentials;
}

function bearer(token: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  return md;
}

function isCode(error: unknown, code: grpc.status): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === code;
}

function upload(
  client: registry.RegistryServiceClient,
  token: string,
  model: string,
  bytes: Uint8Array,
  sha256: string,
): Promise<registry.UploadVersionResponse> {
  return new Promise((resolve, reject) => {
    const call = client.uploadVersion(bearer(token), { deadline: Date.now() + 120_000 }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
    call.write({
      part: {
        $case: 'header',
        value: {
          model,
          description: `demo model deployed by npm start`,
          tags: { demo: 'true' },
          expectedSha256: sha256,
          expectedSizeBytes: BigInt(bytes.length),
          createModel: true,
          lineage: undefined,
        },
      },
    });
    // Each chunk a view of `bytes`: the lean client's encoder copies it once, into its message.
    for (let at = 0; at < bytes.length; at += 1 << 20) {
      call.write({
        part: {
          $case: 'chunk',
          value: Buffer.from(bytes.buffer, bytes.byteOffset + at, Math.min(1 << 20, bytes.length - at)),
        },
      });
    }
    call.end();
  });
}

/** The version holding exactly `bytes`, uploading it when the model has no such version yet. */
async function ensureVersion(
  client: registry.RegistryServiceClient,
  token: string,
  demo: DemoModel,
  log: (line: string) => void,
): Promise<number> {
  const rpc = unaryCaller(client, registry.RegistryServiceService);
  const sha256 = createHash('sha256').update(demo.bytes).digest('hex');
  const metadata = bearer(token);
  try {
    const versions = await rpc(
      'listVersions',
      {
        model: demo.model,
        pageSize: 100,
        pageToken: '',
        status: registry.VersionStatus.VERSION_STATUS_READY,
        tags: {},
      },
      { metadata },
    );
    const same = versions.versions.find(
      (v) => v.sha256 === sha256 && v.status === registry.VersionStatus.VERSION_STATUS_READY,
    );
    if (same !== undefined) return same.version;
  } catch (error: unknown) {
    if (!isCode(error, grpc.status.NOT_FOUND)) throw error;
  }
  const response = await upload(client, token, demo.model, demo.bytes, sha256);
  const version = response.version?.version ?? 0;
  log(`demo: pushed ${demo.model}:${version} (${demo.bytes.length} bytes)`);
  return version;
}

async function ensureDeployment(
  client: registry.RegistryServiceClient,
  token: string,
  demo: DemoModel,
  version: number,
  log: (line: string) => void,
): Promise<void> {
  const rpc = unaryCaller(client, registry.RegistryServiceService);
  const metadata = bearer(token);
  if (demo.alias !== undefined) {
    const model = await rpc('getModel', { name: demo.model }, { metadata });
    if (model.model?.aliases[demo.alias] !== version) {
      await rpc('setAlias', { model: demo.model, alias: demo.alias, version }, { metadata });
      log(`demo: ${demo.model}@${demo.alias} -> ${version}`);
    }
  }
  try {
    await rpc('getDeployment', { name: demo.model }, { metadata });
  } catch (error: unknown) {
    if (!isCode(error, grpc.status.NOT_FOUND)) throw error;
    await rpc('createDeployment', { name: demo.model, spec: demo.deployment }, { metadata });
    log(`demo: deployed ${demo.model} (${demo.deployment.modelRef})`);
  }
}

/** Example inputs for the printed commands, in the CLI's JSON tensor form. */
async function writeInputs(dir: string): Promise<{ cifar: string; lstm: string }> {
  await mkdir(dir, { recursive: true });
  const image = Array.from({ length: 3 * 32 * 32 }, (_, i) => Math.round(Math.sin(i / 50) * 1000) / 1000);
  const sequence = Array.from({ length: 3 * 4 }, (_, i) => Math.round(Math.cos(i / 3) * 1000) / 1000);
  const cifar = join(dir, 'cifar-input.json');
  const lstm = join(dir, 'lstm-x.json');
  await writeFile(cifar, JSON.stringify({ shape: [1, 3, 32, 32], datatype: 'FP32', data: image }));
  await writeFile(lstm, JSON.stringify({ shape: [3, 1, 4], datatype: 'FP32', data: sequence }));
  return { cifar, lstm };
}

async function waitModelReady(
  address: string,
  token: string,
  model: string,
  timeoutMs: number,
  credentials: grpc.ChannelCredentials,
): Promise<boolean> {
  const client = new inference.GRPCInferenceServiceClient(address, credentials);
  const rpc = unaryCaller(client, inference.GRPCInferenceServiceService);
  const until = Date.now() + timeoutMs;
  try {
    while (Date.now() < until) {
      try {
        const reply = await rpc(
          'modelReady',
          { name: model, version: '' },
          { metadata: bearer(token), deadline: Date.now() + 2000 },
        );
        if (reply.ready) return true;
      } catch {
        // not loaded yet, or inference still starting
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    return false;
  } finally {
    client.close();
  }
}

/** Registers and deploys the demo models (idempotent) and writes example inputs; returns their paths. */
export async function deployDemo(options: DemoOptions): Promise<{ cifar: string; lstm: string }> {
  const credentials = options.credentials ?? grpc.credentials.createInsecure();
  const client = new LeanRegistryServiceClient(options.registryAddr, credentials);
  try {
    for (const demo of demoSpecs()) {
      const version = await ensureVersion(client, options.token, demo, options.log);
      await ensureDeployment(client, options.token, demo, version, options.log);
    }
  } finally {
    client.close();
  }
  const inputs = await writeInputs(options.dir);
  if (options.inferenceAddr !== undefined) {
    for (const demo of demoSpecs()) {
      const ready = await waitModelReady(
        options.inferenceAddr,
        options.token,
        demo.model,
        options.readyTimeoutMs ?? 120_000,
        credentials,
      );
      options.log(
        ready
          ? `demo: ${demo.model} is ready on inference`
          : `demo: ${demo.model} is not ready on inference yet (see its log)`,
      );
    }
  }
  return inputs;
}
