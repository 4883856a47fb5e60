// The platform as a user meets it: four service processes with a fresh QUANTA_HOME, a model
// pushed, deployed and called through gRPC, REST and the CLI, checked against onnxruntime run in
// this process; monitoring's counts; a hot swap under load; tenant isolation; monitoring down;
// one connected trace across the services; SIGTERM under load.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { crypto } from '@quanta/contracts';
import { buildCnn } from '@quanta/onnx';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '@quanta/telemetry/testing';
import { createTensor, type Tensor } from '@quanta/tensor';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bearer,
  connectClients,
  deploymentSpec,
  eventually,
  grpcCode,
  inferRaw,
  issueToken,
  pushModel,
  randomImage,
  reference,
  rootTraceparent,
  waitServed,
  type Clients,
} from './clients.js';
import { runCli, startStack, type Stack } from './stack.js';

const SCOPES = ['models:read', 'models:write', 'infer', 'monitoring:read', 'keys:use', 'keys:admin'];
const cnnV1 = buildCnn({ softmax: true, seed: 1 });
const cnnV2 = buildCnn({ softmax: true, seed: 2 });

let receiver: OtlpReceiver;
let stack: Stack;
let clients: Clients;
let acme: string;
let beta: string;
/** Successful cifar requests acme has sent, which monitoring must count exactly. */
let sent = 0;

function image(seed: number): Tensor {
  return { ...createTensor('FP32', [1, 3, 32, 32], randomImage(seed)), name: 'input' };
}

async function expected(bytes: Uint8Array, seed: number): Promise<Float32Array> {
  const out = await reference(bytes, { input: new ort.Tensor('float32', randomImage(seed), [1, 3, 32, 32]) });
  const output = out['output'];
  if (output === undefined) throw new Error('the reference run has no output');
  return output;
}

function expectClose(actual: ArrayLike<number>, wanted: ArrayLike<number>): void {
  expect(actual.length).toBe(wanted.length);
  let worst = 0;
  for (let i = 0; i < wanted.length; i++) worst = Math.max(worst, Math.abs((actual[i] ?? NaN) - (wanted[i] ?? NaN)));
  expect(worst).toBeLessThan(1e-5);
}

/** Runs `workers` loops of cifar inferences until `until()`; returns every failure's code and message. */
async function underLoad(
  token: string,
  workers: number,
  until: () => boolean,
  onReply?: (version: string) => void,
): Promise<{ ok: number; failures: string[] }> {
  let ok = 0;
  const failures: string[] = [];
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      for (let i = 0; !until(); i++) {
        try {
          const { response } = await inferRaw(clients, token, 'cifar', [image(1000 + w * 7919 + i)]);
          ok++;
          onReply?.(response.modelVersion);
        } catch (error: unknown) {
          failures.push(`${grpcCode(error)}: ${error instanceof Error ? error.message : String(error)}`);
        }
      }
    }),
  );
  return { ok, failures };
}

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  stack = await startStack({
    env: {
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_BSP_SCHEDULE_DELAY: '200',
    },
  });
  clients = connectClients(stack);
  acme = await issueToken(clients, stack.adminToken, 'acme', SCOPES);
  beta = await issueToken(clients, stack.adminToken, 'beta', SCOPES);
}, 240_000);

afterAll(async () => {
  clients?.close();
  await stack?.close();
  await receiver?.stop();
}, 60_000);

describe('the platform end to end', () => {
  it('push → deploy → infer through gRPC, REST and the CLI, equal to onnxruntime', async () => {
    const pushed = await pushModel(clients, acme, 'cifar', cnnV1);
    expect(pushed.version?.version).toBe(1);
    await clients.rpc.registry(
      'setAlias',
      { model: 'cifar', alias: 'production', version: 1 },
      { metadata: bearer(acme) },
    );
    await clients.rpc.registry(
      'createDeployment',
      { name: 'cifar', spec: deploymentSpec('cifar@production') },
      { metadata: bearer(acme) },
    );
    await waitServed(clients, acme, 'cifar');

    const want = await expected(cnnV1, 1);
    const grpcReply = await inferRaw(clients, acme, 'cifar', [image(1)], { id: 'e2e-1' });
    sent++;
    expect(grpcReply.response.id).toBe('e2e-1');
    expect(grpcReply.response.modelVersion).toBe('1');
    expectClose(grpcReply.outputs[0]?.data as Float32Array, want);

    const rest = await fetch(`${stack.http.inference}/v2/models/cifar/infer`, {
      method: 'POST',
      headers: { authorization: `Bearer ${acme}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        id: 'rest-1',
        inputs: [{ name: 'input', shape: [1, 3, 32, 32], datatype: 'FP32', data: Array.from(randomImage(1)) }],
      }),
    });
    expect(rest.status).toBe(200);
    sent++;
    const restBody = (await rest.json()) as { id: string; outputs: { name: string; data: number[] }[] };
    expect(restBody.id).toBe('rest-1');
    expectClose(restBody.outputs[0]?.data ?? [], want);

    const dir = await mkdtemp(join(tmpdir(), 'quanta-e2e-cli-'));
    try {
      const file = join(dir, 'input.json');
      await writeFile(
        file,
        JSON.stringify({ shape: [1, 3, 32, 32], datatype: 'FP32', data: Array.from(randomImage(1)) }),
      );
      const cli = await runCli(['--json', 'infer', 'cifar', '--input', `input=${file}`], {
        ...stack.env,
        QUANTA_TOKEN: acme,
      });
      expect(cli.stderr).toBe('');
      expect(cli.code).toBe(0);
      sent++;
      const printed = JSON.parse(cli.stdout) as { outputs: { name: string; data: number[] }[] };
      expectClose(printed.outputs.find((o) => o.name === 'output')?.data ?? [], want);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 240_000);

  it('monitoring counts exactly the requests sent', async () => {
    for (let i = 0; i < 17; i++) {
      await inferRaw(clients, acme, 'cifar', [image(i)]);
      sent++;
    }
    await eventually(
      `monitoring counting ${sent} cifar requests`,
      async () => {
        const reply = await clients.rpc.monitoring(
          'getModelStats',
          {
            model: 'cifar',
            version: '',
            byVersion: false,
            span: { $case: 'window', value: { seconds: 300n, nanos: 0 } },
          },
          { metadata: bearer(acme) },
        );
        const count = Number(reply.stats?.count ?? 0);
        if (count > sent) throw new Error(`monitoring counted ${count} requests, more than the ${sent} sent`);
        return count === sent;
      },
      30_000,
    );
  }, 60_000);

  it('a moved alias swaps the model under load with no failed request', async () => {
    const pushed = await pushModel(clients, acme, 'cifar', cnnV2);
    expect(pushed.version?.version).toBe(2);
    let swapped = false;
    let servedByV2 = 0;
    const load = underLoad(
      acme,
      8,
      () => servedByV2 >= 30,
      (version) => {
        if (version === '2') servedByV2++;
      },
    );
    // Let the load run on v1 first, then move the alias under it.
    await new Promise((resolve) => setTimeout(resolve, 300));
    await clients.rpc.registry(
      'setAlias',
      { model: 'cifar', alias: 'production', version: 2 },
      { metadata: bearer(acme) },
    );
    swapped = true;
    const { ok, failures } = await load;
    expect(swapped).toBe(true);
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(30);
    const after = await inferRaw(clients, acme, 'cifar', [image(5)]);
    expect(after.response.modelVersion).toBe('2');
    expectClose(after.outputs[0]?.data as Float32Array, await expected(cnnV2, 5));
  }, 180_000);

  it("a second tenant sees none of the first tenant's models, keys or stats", async () => {
    const md = bearer(beta);
    await expect(
      clients.rpc.inference('modelMetadata', { name: 'cifar', version: '' }, { metadata: md }),
    ).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    await expect(inferRaw(clients, beta, 'cifar', [image(1)])).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    const index = await clients.rpc.inference(
      'repositoryIndex',
      { repositoryName: '', ready: false },
      { metadata: md },
    );
    expect(index.models.map((m) => m.name)).not.toContain('cifar');
    const models = await clients.rpc.registry(
      'listModels',
      { pageSize: 100, pageToken: '', namePrefix: '', tags: {} },
      { metadata: md },
    );
    expect(models.models).toEqual([]);
    await expect(clients.rpc.registry('getModel', { name: 'cifar' }, { metadata: md })).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
    });

    await clients.rpc.crypto(
      'createKey',
      { name: 'acme-secret', type: crypto.KeyType.KEY_TYPE_AES256_GCM },
      { metadata: bearer(acme) },
    );
    const keys = await clients.rpc.crypto('listKeys', { pageSize: 100, pageToken: '' }, { metadata: md });
    expect(keys.keys.map((k) => k.name)).not.toContain('acme-secret');
    await expect(clients.rpc.crypto('getKey', { name: 'acme-secret' }, { metadata: md })).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
    });

    const stats = await clients.rpc
      .monitoring(
        'getModelStats',
        {
          model: 'cifar',
          version: '',
          byVersion: false,
          span: { $case: 'window', value: { seconds: 300n, nanos: 0 } },
        },
        { metadata: md },
      )
      .catch((error: unknown) => {
        expect(grpcCode(error)).toBe(grpc.status.NOT_FOUND);
        return undefined;
      });
    expect(Number(stats?.stats?.count ?? 0)).toBe(0);

    // Triton's metrics on the inference replica (:8002 in production): each tenant's token shows its own series only.
    const metricsOf = async (token: string): Promise<string> => {
      const response = await fetch(stack.http.inferenceMetrics, { headers: { authorization: `Bearer ${token}` } });
      expect(response.status).toBe(200);
      return response.text();
    };
    expect(await metricsOf(beta)).not.toContain('model="cifar"');
    expect(await metricsOf(acme)).toMatch(
      /^nv_inference_request_success\{model="cifar",tenant="acme",version="\d+"\} [1-9]\d*$/m,
    );
  }, 60_000);

  it('inference keeps serving while monitoring is stopped', async () => {
    await stack.processes.get('monitoring')?.stop();
    for (let i = 0; i < 20; i++) {
      const { outputs } = await inferRaw(clients, acme, 'cifar', [image(i)]);
      expect(outputs[0]?.shape).toEqual([1, 10]);
    }
    await stack.start('monitoring');
    // Records flow again once monitoring is back (the new process starts with empty windows): the
    // ingest client reconnects by itself; each probe is one more request whose record may arrive.
    let probes = 0;
    await eventually(
      'records reaching the restarted monitoring',
      async () => {
        await inferRaw(clients, acme, 'cifar', [image(++probes)]);
        const reply = await clients.rpc.monitoring(
          'getModelStats',
          {
            model: 'cifar',
            version: '',
            byVersion: false,
            span: { $case: 'window', value: { seconds: 300n, nanos: 0 } },
          },
          { metadata: bearer(acme) },
        );
        return Number(reply.stats?.count ?? 0) >= 1;
      },
      90_000,
    );
  }, 120_000);

  it('one trace across the CLI, inference, registry and crypto; the monitoring ingest only linked', async () => {
    await pushModel(clients, acme, 'traced', cnnV1);
    // A partner call that makes inference load a model: its client span (ours) roots the trace.
    const load = rootTraceparent();
    await clients.rpc.inference(
      'repositoryModelLoad',
      { repositoryName: '', modelName: 'traced', parameters: {} },
      { metadata: bearer(acme, load.traceparent), deadline: Date.now() + 120_000 },
    );
    // The infer trace; its record reaches monitoring in the ingest client's next batch, whose span
    // links to it. (Monitoring was restarted by the test before: a record sent while the client was
    // still reconnecting is dropped by design, so a few traced requests may be needed.)
    let infer = rootTraceparent();
    await inferRaw(clients, acme, 'traced', [image(3)], { traceparent: infer.traceparent });
    const spansOf = (traceId: string): ReceivedSpan[] => receiver.spans.filter((s) => s.traceId === traceId);
    const services = (traceId: string): Set<string | undefined> => new Set(spansOf(traceId).map((s) => s.serviceName));
    await eventually('the load trace reaching the receiver from inference, registry and crypto', () =>
      Promise.resolve(['inference', 'model-registry', 'crypto'].every((s) => services(load.traceId).has(s))),
    );
    await eventually('the infer trace reaching the receiver', () =>
      Promise.resolve(services(infer.traceId).has('inference')),
    );
    const linked = (traceId: string): boolean =>
      receiver.spans.some((s) => s.serviceName === 'monitoring' && s.links.some((l) => l.traceId === traceId));
    const roots = [infer];
    await eventually(
      'monitoring linking an ingest span to a traced request',
      async () => {
        if (roots.some((r) => linked(r.traceId))) return true;
        const next = rootTraceparent();
        roots.push(next);
        await inferRaw(clients, acme, 'traced', [image(3)], { traceparent: next.traceparent });
        await new Promise((resolve) => setTimeout(resolve, 1500));
        return roots.some((r) => linked(r.traceId));
      },
      90_000,
    );
    infer = roots.find((r) => linked(r.traceId)) ?? infer;
    await eventually('the linked trace reaching the receiver', () =>
      Promise.resolve(services(infer.traceId).has('inference')),
    );
    for (const root of [load, infer]) {
      const spans = spansOf(root.traceId);
      const ids = new Set([root.spanId, ...spans.map((s) => s.spanId)]);
      // Connected: every span's parent is our root or another span of the trace.
      for (const span of spans)
        expect(ids.has(span.parentSpanId), `${span.serviceName} ${span.name} has a parent outside the trace`).toBe(
          true,
        );
    }
    const inferSpans = spansOf(infer.traceId);
    expect(inferSpans.some((s) => /batch/i.test(s.name))).toBe(true);
    expect(inferSpans.some((s) => /onnxruntime/i.test(s.name))).toBe(true);
    expect(inferSpans.some((s) => s.serviceName === 'monitoring')).toBe(false);

    // The CLI's own client span roots the trace of `quanta infer`.
    const dir = await mkdtemp(join(tmpdir(), 'quanta-e2e-cli-'));
    try {
      const file = join(dir, 'input.json');
      await writeFile(
        file,
        JSON.stringify({ shape: [1, 3, 32, 32], datatype: 'FP32', data: Array.from(randomImage(2)) }),
      );
      const cli = await runCli(['--json', 'infer', 'traced', '--input', `input=${file}`], {
        ...stack.env,
        QUANTA_TOKEN: acme,
        OTEL_TRACES_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      });
      expect(cli.code, cli.stderr).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    let cliRoot: ReceivedSpan | undefined;
    await eventually('the CLI trace with an inference server span under it', () => {
      cliRoot = receiver.spans.find((s) => s.serviceName === 'quanta-cli' && /ModelInfer/.test(s.name));
      return Promise.resolve(
        cliRoot !== undefined &&
          receiver.spans.some((s) => s.serviceName === 'inference' && s.parentSpanId === cliRoot?.spanId),
      );
    });
    expect(cliRoot?.parentSpanId).toBe('');
    expect(cliRoot?.kind).toBe('SPAN_KIND_CLIENT');
  }, 180_000);

  it('SIGTERM to inference under load loses no accepted request', async () => {
    const inference = stack.processes.get('inference');
    if (inference === undefined) throw new Error('inference is not running');
    let exited = false;
    let ok = 0;
    let loaded: () => void = () => undefined;
    const busy = new Promise<void>((resolve) => (loaded = resolve));
    let gaveUp = false;
    const load = underLoad(
      acme,
      8,
      () => exited || gaveUp,
      () => {
        if (++ok === 40) loaded();
      },
    );
    // SIGTERM once the load is flowing, while requests are queued and running.
    const flowing = await Promise.race([
      busy.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 60_000)),
    ]);
    if (!flowing) {
      gaveUp = true;
      throw new Error(`the load never reached 40 answers: ${JSON.stringify((await load).failures.slice(0, 3))}`);
    }
    const code = await inference.stop();
    exited = true;
    const result = await load;
    expect(code).toBe(0);
    expect(result.ok).toBeGreaterThanOrEqual(40);
    // Only calls the server never took may fail: UNAVAILABLE (refused, or the listener closing).
    const lost = result.failures.filter((f) => !f.startsWith(`${grpc.status.UNAVAILABLE}:`));
    expect(lost).toEqual([]);
  }, 120_000);
});
