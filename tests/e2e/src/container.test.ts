// The container image as an operator runs it: built from the root Dockerfile through
// tools/container/build-image.sh, the four services run as containers of it (host network, the
// stack's free ports and QUANTA_HOME passed in), and a model is pushed, deployed and served through
// them, checked against onnxruntime in this process. Skipped where podman is not installed.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod } from 'node:fs/promises';
import { join } from 'node:path';
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
import { REPO_ROOT, spawnService, startStack, type ServiceName, type ServiceProcess, type Stack } from './stack.js';

const IMAGE = process.env['QUANTA_E2E_IMAGE'] ?? 'localhost/quanta:e2e';
const RUNTIME = process.env['QUANTA_PODMAN_RUNTIME'] ?? 'runc';
const hasPodman = spawnSync('podman', ['--version'], { stdio: 'ignore' }).status === 0;
if (!hasPodman)
  console.warn(
    'container.test.ts skipped: podman is not installed ' +
      '(tools/container/install-podman.sh installs it, as .ci/run does)',
  );

/** Runs a command to its end; rejects with the tail of its output when it fails. */
function run(file: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (output += c.toString('utf8')));
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0
        ? resolve(output)
        : reject(new Error(`${file} ${args.join(' ')} exited ${code}:\n${output.slice(-6000)}`)),
    );
  });
}

const runId = randomBytes(4).toString('hex');
const containerName = (name: ServiceName): string => `quanta-e2e-${runId}-${name}`;

/**
 * Starts `name` as a container of the image: the service's QUANTA_* and OTEL_* settings from the
 * stack go in as environment, QUANTA_HOME is mounted at the same path (the admin token crypto
 * writes there is read by the other services and by this test), and the image's own user
 * (not root) must be able to write it.
 */
async function launchContainer(name: ServiceName, env: NodeJS.ProcessEnv): Promise<ServiceProcess> {
  const home = env['QUANTA_HOME'];
  if (home === undefined) throw new Error('the stack gave no QUANTA_HOME');
  await chmod(home, 0o777);
  const settings = Object.entries(env).flatMap(([key, value]) =>
    value !== undefined && /^(QUANTA|OTEL)_/.test(key) ? ['--env', `${key}=${value}`] : [],
  );
  return spawnService(name, env, {
    file: 'podman',
    args: [
      '--runtime',
      RUNTIME,
      'run',
      '--rm',
      '--name',
      containerName(name),
      '--network',
      'host',
      '--volume',
      `${home}:${home}`,
      ...settings,
      IMAGE,
      name,
    ],
  });
}

describe.skipIf(!hasPodman)('the container image', () => {
  const model = buildCnn({ softmax: true, seed: 3 });
  let stack: Stack | undefined;
  let clients: Clients;
  let token: string;

  beforeAll(async () => {
    const built = Date.now();
    await run('bash', [join(REPO_ROOT, 'tools', 'container', 'build-image.sh'), IMAGE]);
    console.info(
      `container.test.ts: ${IMAGE} built (or found up to date) in ${((Date.now() - built) / 1000).toFixed(0)} s`,
    );
    // The image runs with NODE_ENV=production, where crypto makes no development master key, and
    // monitoring listens on every interface, where its dashboard may not go without a token.
    stack = await startStack({
      launch: launchContainer,
      env: { QUANTA_MASTER_KEY: randomBytes(32).toString('base64'), QUANTA_MONITORING_DASHBOARD_PUBLIC: 'false' },
    });
    clients = connectClients(stack);
    token = await issueToken(clients, stack.adminToken, 'acme', ['models:read', 'models:write', 'infer']);
  }, 1_200_000);

  afterAll(async () => {
    clients?.close();
    await stack?.close();
    // Containers that a failure left behind: killing podman run's client leaves its container running.
    const names = (['crypto', 'model-registry', 'monitoring', 'inference'] as const).map(containerName);
    if (hasPodman)
      await run('podman', ['--runtime', RUNTIME, 'rm', '--force', '--ignore', ...names]).catch((error: unknown) =>
        console.warn(error),
      );
  }, 120_000);

  it('runs each service as its own non-root user, from compiled JavaScript', async () => {
    const out = await run('podman', [
      '--runtime',
      RUNTIME,
      'exec',
      containerName('crypto'),
      'sh',
      '-c',
      'id -u; cat /proc/1/cmdline | tr "\\0" " "; echo; ls /opt/quanta/services/crypto',
    ]);
    const [uid, pid1, files] = out.split('\n');
    expect(uid).toBe('10001');
    expect(pid1).toMatch(/^\/usr\/bin\/tini -- quanta-service crypto/);
    expect(files).toBe('dist');
  }, 60_000);

  it('push → deploy → infer through the containers, equal to onnxruntime', async () => {
    const pushed = await pushModel(clients, token, 'cifar', model);
    expect(pushed.version?.version).toBe(1);
    await clients.rpc.registry(
      'createDeployment',
      { name: 'cifar', spec: deploymentSpec('cifar') },
      { metadata: bearer(token) },
    );
    await waitServed(clients, token, 'cifar');

    const data = randomImage(7);
    const { response, outputs } = await inferRaw(clients, token, 'cifar', [
      { ...createTensor('FP32', [1, 3, 32, 32], data), name: 'input' },
    ]);
    expect(response.modelVersion).toBe('1');
    const want = (await reference(model, { input: new ort.Tensor('float32', data, [1, 3, 32, 32]) }))['output'];
    const got = outputs[0]?.data as Float32Array;
    expect(got.length).toBe(want?.length);
    got.forEach((value, i) => expect(Math.abs(value - (want?.[i] ?? NaN))).toBeLessThan(1e-5));
  }, 180_000);

  it('stops each container cleanly on SIGTERM (tini passes it to node)', async () => {
    const live = stack;
    if (live === undefined) throw new Error('no stack');
    for (const name of ['inference', 'monitoring', 'model-registry', 'crypto'] as const) {
      expect(await live.processes.get(name)?.stop(), name).toBe(0);
    }
  }, 120_000);
});
