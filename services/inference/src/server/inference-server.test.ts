import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { health, inference as pb } from '@quanta/contracts';
import { buildMlp } from '@quanta/onnx';
import { createTestPki } from '@quanta/service-kit/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createModelManager } from '../core/model-manager.js';
import type { ModelManager } from '../core/types.js';
import { InferError } from '../core/types.js';
import type { SyncContext } from './inference-server.js';
import { INFERENCE_HEALTH_SERVICE } from './inference-server.js';
import type { Harness } from '../testing/harness.js';
import {
  SERVING,
  call,
  failure,
  fp32Input,
  fp32Output,
  inferRequest,
  runOrt,
  seededFloats,
  startHarness,
  watchedManager,
} from '../testing/harness.js';

const MLP = buildMlp();
let h: Harness | undefined;

afterEach(async () => {
  await h?.close();
  h = undefined;
});

/**
 * A real manager whose models tell the test when a request reaches them (so the test knows a
 * request is in flight without sleeping); everything else is the manager itself.
 */
function observedManager(): { manager: ModelManager; arrivals: () => Promise<void>[] } {
  const waiting: (() => void)[] = [];
  const arrived: Promise<void>[] = [];
  const expect = (n: number): void => {
    for (let i = 0; i < n; i++) arrived.push(new Promise<void>((resolve) => waiting.push(resolve)));
  };
  expect(16);
  const manager = watchedManager(createModelManager(), (run) => {
    waiting.shift()?.();
    return run();
  });
  return { manager, arrivals: () => arrived };
}

describe('graceful stop', () => {
  it('lets accepted gRPC and REST requests finish, refuses new ones, then closes the sync and manager', async () => {
    const { manager, arrivals } = observedManager();
    const events: string[] = [];
    h = await startHarness({
      config: { shutdownGrace: 5000 },
      server: {
        manager,
        sync: () => ({
          close: () => {
            events.push(`sync closed, ${manager.index().length} models loaded`);
            return Promise.resolve();
          },
        }),
      },
    });
    // A batch waits up to 1 s to fill, lone requests included (loneRequestsWait): these requests
    // are queued when the stop begins (the stop lets them finish, at the latest when the delay ends).
    await h.deploy('acme', 'mlp', '1', MLP, { maxBatchSize: 8, maxQueueDelayUs: 1_000_000, loneRequestsWait: true });
    const token = await h.token('acme', ['infer']);
    const x = seededFloats(4, 2);
    const settled = { grpc: false, rest: false };
    const viaGrpc = call(
      h.client,
      'modelInfer',
      inferRequest({ modelName: 'mlp', inputs: [fp32Input('input', [1, 4], x, false).input] }),
      token,
    ).finally(() => (settled.grpc = true));
    const viaRest = h
      .rest('POST', '/v2/models/mlp/infer', {
        token,
        body: { inputs: [{ name: 'input', shape: [1, 4], datatype: 'FP32', data: Array.from(x) }] },
      })
      .finally(() => (settled.rest = true));
    await Promise.all(arrivals().slice(0, 2));
    expect(settled).toEqual({ grpc: false, rest: false });

    const stopping = h.server.stop();
    const lateGrpc = await failure(call(h.client, 'serverLive', {}));
    expect([grpc.status.UNAVAILABLE, grpc.status.CANCELLED]).toContain(lateGrpc.code);
    const lateRest = await h.rest('GET', '/v2/health/live').catch(() => ({ status: 0 }));
    expect([0, 503]).toContain(lateRest.status);

    const expected = (await runOrt(MLP, { input: { dims: [1, 4], data: x } }))['output']!;
    const answer = await viaGrpc;
    expect(Array.from(fp32Output(answer, 0))).toEqual(Array.from(expected));
    const rest = await viaRest;
    expect(rest.status).toBe(200);
    await stopping;
    expect(events).toEqual(['sync closed, 1 models loaded']);
    expect(manager.index()).toEqual([]);
    h.client.close();
    h = undefined;
  });
});

describe('deadlines', () => {
  it('a request queued past its gRPC deadline or its timeout parameter fails DEADLINE_EXCEEDED', async () => {
    h = await startHarness();
    await h.deploy('acme', 'mlp', '1', MLP, { maxBatchSize: 8, maxQueueDelayUs: 2_000_000, loneRequestsWait: true });
    const token = await h.token('acme', ['infer', 'models:read']);
    const input = fp32Input('input', [1, 4], seededFloats(4, 1), false).input;
    const timeout = { timeout: { parameterChoice: { $case: 'int64Param' as const, value: 50_000n } } };
    const started = Date.now();
    const error = await failure(
      call(h.client, 'modelInfer', inferRequest({ modelName: 'mlp', inputs: [input], parameters: timeout }), token),
    );
    expect(error.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(error.details).toMatch(/deadline/);
    // Failed by the server at its deadline, not after the batch delay.
    expect(Date.now() - started).toBeLessThan(1500);

    const client = h.client;
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    const viaDeadline = await new Promise<grpc.ServiceError | null>((resolve) =>
      client.modelInfer(
        inferRequest({ modelName: 'mlp', inputs: [input] }),
        metadata,
        { deadline: Date.now() + 100 },
        (e) => resolve(e),
      ),
    );
    expect(viaDeadline?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    // The core saw both fail (the second once its deadline passed in the queue).
    const stats = await call(h.client, 'modelStatistics', { name: 'mlp', version: '' }, token);
    await expect
      .poll(
        async () =>
          (await call(h!.client, 'modelStatistics', { name: 'mlp', version: '' }, token)).modelStats[0]!.inferenceStats!
            .fail!.count,
        { timeout: 3000 },
      )
      .toBe(2n);
    // Nothing ran.
    expect(stats.modelStats[0]!.inferenceStats!.success!.count).toBe(0n);
  });
});

describe('cancellation', () => {
  it('a cancelled call, stream and REST request leave the queue without running; the server goes on', async () => {
    const { manager, arrivals } = observedManager();
    h = await startHarness({ server: { manager } });
    await h.deploy('acme', 'mlp', '1', MLP, { maxBatchSize: 8, maxQueueDelayUs: 5_000_000, loneRequestsWait: true });
    const token = await h.token('acme', ['infer', 'models:read']);
    const request = inferRequest({
      modelName: 'mlp',
      inputs: [fp32Input('input', [1, 4], seededFloats(4, 1), false).input],
    });
    const failed = async (): Promise<bigint> =>
      (await call(h!.client, 'modelStatistics', { name: 'mlp', version: '' }, token)).modelStats[0]!.inferenceStats!
        .fail!.count;

    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    const unaryCall = h.client.modelInfer(request, metadata, () => undefined);
    const stream = h.client.modelStreamInfer(metadata);
    stream.on('error', () => undefined);
    stream.write(request);
    stream.write(request);
    const abort = new AbortController();
    const rest = fetch(`${h.server.http.url}/v2/models/mlp/infer`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
      body: JSON.stringify({ inputs: [{ name: 'input', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }),
      signal: abort.signal,
    }).catch(() => undefined);
    await Promise.all(arrivals().slice(0, 4));
    unaryCall.cancel();
    stream.cancel();
    abort.abort();
    await rest;
    // Queued for up to 5 s, so these failures are the cancellations reaching the core.
    await expect.poll(failed, { timeout: 3000 }).toBe(4n);
    const stats = await call(h.client, 'modelStatistics', { name: 'mlp', version: '' }, token);
    // Nothing ran.
    expect(stats.modelStats[0]!.executionCount).toBe(0n);
    expect(await call(h.client, 'serverLive', {})).toEqual({ live: true });
  });
});

describe('the sync hook and the repository RPCs', () => {
  it('takes the loader and readiness from the sync; load and unload act on the caller’s tenant only', async () => {
    const library = new Map([['mlp', MLP]]);
    let converged = false;
    let context: SyncContext | undefined;
    h = await startHarness({
      server: {
        sync: (ctx) => {
          context = ctx;
          return {
            ready: () => converged,
            // A registry of one model: loads its bytes into the manager it was handed.
            loader: {
              async load(tenant, name, parameters) {
                const bytes = library.get(name);
                if (bytes === undefined) throw new InferError('NOT_FOUND', `the registry has no model "${name}"`);
                const version = parameters['version'] ?? '1';
                await ctx.manager.load(tenant, name, version, bytes, SERVING);
                await ctx.manager.activate(tenant, name, version);
              },
              unload: (tenant, name) => ctx.manager.unload(tenant, name),
            },
            close: () => Promise.resolve(),
          };
        },
      },
    });
    expect(context?.manager).toBe(h.server.manager);
    expect(await call(h.client, 'serverReady', {})).toEqual({ ready: false });
    expect((await h.rest('GET', '/v2/health/ready')).status).toBe(503);
    // grpc.health.v1: the process is live (""), the inference service is not ready yet.
    const healthClient = new health.HealthClient(h.server.address, grpc.credentials.createInsecure());
    const healthOf = (service: string): Promise<health.HealthCheckResponse_ServingStatus> =>
      new Promise((resolve, reject) =>
        healthClient.check({ service }, (error, reply) => (error ? reject(error) : resolve(reply.status))),
      );
    const { SERVING: UP, NOT_SERVING: DOWN } = health.HealthCheckResponse_ServingStatus;
    try {
      expect(await healthOf('')).toBe(UP);
      expect(await healthOf(INFERENCE_HEALTH_SERVICE)).toBe(DOWN);
      converged = true;
      expect(await call(h.client, 'serverReady', {})).toEqual({ ready: true });
      await expect.poll(() => healthOf(INFERENCE_HEALTH_SERVICE), { timeout: 3000 }).toBe(UP);
      converged = false;
      await expect.poll(() => healthOf(INFERENCE_HEALTH_SERVICE), { timeout: 3000 }).toBe(DOWN);
      converged = true;
      await expect.poll(() => healthOf(INFERENCE_HEALTH_SERVICE), { timeout: 3000 }).toBe(UP);
    } finally {
      healthClient.close();
    }
    expect((await call(h.client, 'serverMetadata', {})).extensions).toContain('model_repository');

    const writer = await h.token('acme', ['models:write', 'models:read', 'infer']);
    const other = await h.token('globex', ['models:read']);
    await call(
      h.client,
      'repositoryModelLoad',
      {
        repositoryName: '',
        modelName: 'mlp',
        parameters: { version: { parameterChoice: { $case: 'stringParam', value: '3' } } },
      },
      writer,
    );
    expect(await call(h.client, 'modelReady', { name: 'mlp', version: '3' }, writer)).toEqual({ ready: true });
    expect(await call(h.client, 'modelReady', { name: 'mlp', version: '' }, other)).toEqual({ ready: false });
    const missing = await failure(
      call(h.client, 'repositoryModelLoad', { repositoryName: '', modelName: 'resnet', parameters: {} }, writer),
    );
    expect(missing.code).toBe(grpc.status.NOT_FOUND);
    expect(missing.details).toMatch(/"resnet"/);

    const viaRest = await h.rest('POST', '/v2/repository/models/mlp/unload', { token: writer });
    expect(viaRest.status).toBe(200);
    expect(await call(h.client, 'modelReady', { name: 'mlp', version: '' }, writer)).toEqual({ ready: false });
    expect(
      (
        await h.rest('POST', '/v2/repository/models/mlp/load', {
          token: writer,
          body: { parameters: { version: '4' } },
        })
      ).status,
    ).toBe(200);
    expect((await call(h.client, 'modelMetadata', { name: 'mlp', version: '' }, writer)).versions).toEqual(['4']);
    await call(h.client, 'repositoryModelUnload', { repositoryName: '', modelName: 'mlp', parameters: {} }, writer);
    expect((await call(h.client, 'repositoryIndex', { repositoryName: '', ready: true }, writer)).models).toEqual([]);
    // As Triton: an unloaded model stays listed, UNAVAILABLE, until it is loaded again.
    expect((await call(h.client, 'repositoryIndex', { repositoryName: '', ready: false }, writer)).models).toEqual([
      { name: 'mlp', version: '4', state: 'UNAVAILABLE', reason: 'unloaded' },
    ]);
    expect((await call(h.client, 'repositoryIndex', { repositoryName: '', ready: false }, other)).models).toEqual([]);
  });
});

describe('TLS', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await createTestPki({
      prefix: 'inference-tls-',
      caName: 'inference-test-ca',
      certs: { server: 'subjectAltName=IP:127.0.0.1,DNS:localhost', client: 'subjectAltName=DNS:client.quanta' },
    });
  }, 60_000);
  afterAll(() => rm(dir, { recursive: true, force: true }));

  /** GET over HTTPS; the status, or the connection error's code. */
  const get = (url: string, withClientCert: boolean): Promise<number | string> =>
    new Promise((resolve) => {
      const req = httpsRequest(
        url,
        {
          ca: readFileSync(join(dir, 'ca.pem')),
          ...(withClientCert
            ? { cert: readFileSync(join(dir, 'client.pem')), key: readFileSync(join(dir, 'client.key')) }
            : {}),
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      req.end();
    });

  it('REST and metrics serve the gRPC certificate and ask for the same client certificates (mTLS)', async () => {
    h = await startHarness({
      config: {
        tlsCert: join(dir, 'server.pem'),
        tlsKey: join(dir, 'server.key'),
        tlsCa: join(dir, 'ca.pem'),
        tlsRequireClientCert: true,
        metricsPort: 0,
        metricsPublic: true,
      },
    });
    expect(h.server.http.url).toMatch(/^https:\/\//);
    expect(await get(`${h.server.http.url}/v2/health/live`, true)).toBe(200);
    expect(await get(`${h.server.http.url}/v2/health/live`, false)).not.toBe(200);
    expect(h.server.metrics?.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/metrics$/);
    expect(await get(h.server.metrics!.url, true)).toBe(200);
    expect(await get(h.server.metrics!.url, false)).not.toBe(200);
    const credentials = grpc.credentials.createSsl(
      readFileSync(join(dir, 'ca.pem')),
      readFileSync(join(dir, 'client.key')),
      readFileSync(join(dir, 'client.pem')),
    );
    const client = new pb.GRPCInferenceServiceClient(`127.0.0.1:${h.server.port}`, credentials);
    try {
      expect(await call(client, 'serverLive', {})).toEqual({ live: true });
    } finally {
      client.close();
    }
  });
});
