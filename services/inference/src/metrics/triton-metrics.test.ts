// Triton's metrics on a real inference server: real onnxruntime runs, successful and failing
// requests over gRPC and REST, then GET /metrics over HTTP, read by a strict exposition parser
// and checked field by field against ModelStatistics from the gRPC API.
import { createServer } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { inference as pb } from '@quanta/contracts';
import { buildMlp } from '@quanta/onnx';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../testing/harness.js';
import { bearer, call, failure, fp32Input, inferRequest, seededFloats, startHarness } from '../testing/harness.js';
import { parsePromText, type PromFamily } from '../testing/prom-text.js';

const MLP = buildMlp();

/** Triton's per-model families: type and HELP as its metrics.cc registers them. */
const TRITON_FAMILIES: Record<string, { type: string; help: string }> = {
  nv_inference_request_success: { type: 'counter', help: 'Number of successful inference requests, all batch sizes' },
  nv_inference_request_failure: { type: 'counter', help: 'Number of failed inference requests, all batch sizes' },
  nv_inference_count: { type: 'counter', help: 'Number of inferences performed (does not include cached requests)' },
  nv_inference_exec_count: {
    type: 'counter',
    help: 'Number of model executions performed (does not include cached requests)',
  },
  nv_inference_request_duration_us: {
    type: 'counter',
    help: 'Cumulative inference request duration in microseconds (includes cached requests)',
  },
  nv_inference_queue_duration_us: {
    type: 'counter',
    help: 'Cumulative inference queuing duration in microseconds (includes cached requests)',
  },
  nv_inference_compute_input_duration_us: {
    type: 'counter',
    help: 'Cumulative compute input duration in microseconds (does not include cached requests)',
  },
  nv_inference_compute_infer_duration_us: {
    type: 'counter',
    help: 'Cumulative compute inference duration in microseconds (does not include cached requests)',
  },
  nv_inference_compute_output_duration_us: {
    type: 'counter',
    help: 'Cumulative inference compute output duration in microseconds (does not include cached requests)',
  },
  nv_inference_pending_request_count: {
    type: 'gauge',
    help: 'Instantaneous number of pending requests awaiting execution per-model.',
  },
  nv_model_load_duration_secs: { type: 'gauge', help: 'Model load time in seconds' },
};
const REASONS = ['BACKEND', 'CANCELED', 'OTHER', 'REJECTED'];

interface Scrape {
  readonly status: number;
  readonly contentType: string | null;
  readonly text: string;
}

async function scrape(url: string, token?: string, init: RequestInit = {}): Promise<Scrape> {
  const response = await fetch(url, {
    ...init,
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
  return { status: response.status, contentType: response.headers.get('content-type'), text: await response.text() };
}

async function families(url: string, token?: string): Promise<Map<string, PromFamily>> {
  const result = await scrape(url, token);
  expect(result.status, result.text).toBe(200);
  expect(result.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
  return parsePromText(result.text);
}

/** The value of one series; fails when it is absent. */
function valueOf(all: Map<string, PromFamily>, name: string, labels: Record<string, string>): number {
  const sample = all
    .get(name)
    ?.samples.find(
      (s) =>
        Object.keys(s.labels).length === Object.keys(labels).length &&
        Object.entries(labels).every(([k, v]) => s.labels[k] === v),
    );
  if (sample === undefined) throw new Error(`no series ${name}${JSON.stringify(labels)}`);
  return sample.value;
}

/** A port that was free on `host` a moment ago. */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const input = (rows: number, seed: number): pb.ModelInferRequest_InferInputTensor =>
  fp32Input('input', [rows, 4], seededFloats(rows * 4, seed), false).input;

describe("Triton's metrics", () => {
  let h: Harness;
  let url: string;
  let admin: string;
  beforeAll(async () => {
    h = await startHarness({ config: { metricsPort: 0 } });
    url = h.server.metrics!.url;
    admin = await h.token('platform', ['admin']);
  });
  afterAll(() => h.close());

  it('counts what ModelStatistics counts, under Triton’s names, types, HELP text and labels', async () => {
    await h.deploy('acme', 'mlp', '1', MLP, { maxBatchSize: 8, maxQueueDelayUs: 2000 });
    // Same name and version under another tenant: the tenant label keeps the two series apart.
    await h.deploy('globex', 'mlp', '1', MLP);
    // A batch here waits 30 s to fill and the queue holds one request: a second is REJECTED.
    await h.deploy('acme', 'queued', '1', MLP, {
      maxBatchSize: 8,
      maxQueueDelayUs: 30_000_000,
      loneRequestsWait: true,
      maxQueueSize: 1,
    });
    const acme = await h.token('acme', ['infer', 'models:read']);
    const globex = await h.token('globex', ['infer', 'models:read']);

    // Successes: gRPC requests of 1 and 3 rows at once (batched), REST ones, and globex's.
    await Promise.all([
      ...Array.from({ length: 6 }, (_, i) =>
        call(
          h.client,
          'modelInfer',
          inferRequest({ modelName: 'mlp', inputs: [input(i % 2 === 0 ? 1 : 3, i + 1)] }),
          acme,
        ),
      ),
      ...Array.from({ length: 2 }, (_, i) =>
        h.rest('POST', '/v2/models/mlp/infer', {
          token: acme,
          body: {
            inputs: [{ name: 'input', shape: [2, 4], datatype: 'FP32', data: Array.from(seededFloats(8, 50 + i)) }],
          },
        }),
      ),
      ...Array.from({ length: 3 }, (_, i) =>
        call(h.client, 'modelInfer', inferRequest({ modelName: 'mlp', inputs: [input(1, 90 + i)] }), globex),
      ),
    ]);
    // Failures the model counts: bad shapes (OTHER), over gRPC and REST.
    expect(
      (
        await failure(
          call(
            h.client,
            'modelInfer',
            inferRequest({ modelName: 'mlp', inputs: [fp32Input('input', [1, 5], seededFloats(5, 7), false).input] }),
            acme,
          ),
        )
      ).code,
    ).toBe(grpc.status.INVALID_ARGUMENT);
    expect(
      (
        await h.rest('POST', '/v2/models/mlp/infer', {
          token: acme,
          body: { inputs: [{ name: 'input', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }] },
        })
      ).status,
    ).toBe(400);

    // One request waits in the queue: the pending gauge shows it; the next finds the queue full
    // (REJECTED); the first is then cancelled (CANCELED).
    const queued = h.client.modelInfer(
      inferRequest({ modelName: 'queued', inputs: [input(1, 3)] }),
      bearer(acme),
      () => undefined,
    );
    await expect
      .poll(async () =>
        valueOf(await families(url, admin), 'nv_inference_pending_request_count', {
          model: 'queued',
          tenant: 'acme',
          version: '1',
        }),
      )
      .toBe(1);
    expect(
      (await failure(call(h.client, 'modelInfer', inferRequest({ modelName: 'queued', inputs: [input(1, 4)] }), acme)))
        .code,
    ).toBe(grpc.status.RESOURCE_EXHAUSTED);
    queued.cancel();
    const failed = async (): Promise<bigint> =>
      (await call(h.client, 'modelStatistics', { name: 'queued', version: '1' }, acme)).modelStats[0]!.inferenceStats!
        .fail!.count;
    await expect.poll(failed).toBe(2n);

    const all = await families(url, admin);
    for (const [name, { type, help }] of Object.entries(TRITON_FAMILIES)) {
      expect({ name, type: all.get(name)?.type, help: all.get(name)?.help }).toEqual({ name, type, help });
      for (const sample of all.get(name)!.samples) {
        expect(Object.keys(sample.labels).sort()).toEqual(
          name === 'nv_inference_request_failure'
            ? ['model', 'reason', 'tenant', 'version']
            : ['model', 'tenant', 'version'],
        );
      }
      // Three model versions; the failure counter has each of Triton's four reasons for each.
      expect(all.get(name)!.samples).toHaveLength(name === 'nv_inference_request_failure' ? 12 : 3);
    }

    const expectedFailures: Record<string, Record<string, number>> = {
      'acme/mlp': { OTHER: 2 },
      'globex/mlp': {},
      'acme/queued': { REJECTED: 1, CANCELED: 1 },
    };
    for (const [tenant, model, token] of [
      ['acme', 'mlp', acme],
      ['globex', 'mlp', globex],
      ['acme', 'queued', acme],
    ] as const) {
      const [stats] = (await call(h.client, 'modelStatistics', { name: model, version: '1' }, token)).modelStats;
      const s = stats!.inferenceStats!;
      const labels = { model, tenant, version: '1' };
      const us = (ns: bigint): number => Number(ns / 1000n);
      const metric = (name: string): number => valueOf(all, name, labels);
      expect({
        success: metric('nv_inference_request_success'),
        count: metric('nv_inference_count'),
        exec: metric('nv_inference_exec_count'),
        request: metric('nv_inference_request_duration_us'),
        queue: metric('nv_inference_queue_duration_us'),
        computeInput: metric('nv_inference_compute_input_duration_us'),
        computeInfer: metric('nv_inference_compute_infer_duration_us'),
        computeOutput: metric('nv_inference_compute_output_duration_us'),
        pending: metric('nv_inference_pending_request_count'),
      }).toEqual({
        success: Number(s.success!.count),
        count: Number(stats!.inferenceCount),
        exec: Number(stats!.executionCount),
        request: us(s.success!.ns),
        queue: us(s.queue!.ns),
        computeInput: us(s.computeInput!.ns),
        computeInfer: us(s.computeInfer!.ns),
        computeOutput: us(s.computeOutput!.ns),
        pending: 0,
      });
      const byReason = Object.fromEntries(
        REASONS.map((reason) => [reason, valueOf(all, 'nv_inference_request_failure', { ...labels, reason })]),
      );
      expect(byReason).toEqual({
        BACKEND: 0,
        CANCELED: 0,
        OTHER: 0,
        REJECTED: 0,
        ...expectedFailures[`${tenant}/${model}`],
      });
      expect(Object.values(byReason).reduce((a, b) => a + b, 0)).toBe(Number(s.fail!.count));
      expect(metric('nv_model_load_duration_secs')).toBeGreaterThan(0);
    }
    // What was sent: acme/mlp 3×1 + 3×3 + 2×2 rows in 8 requests, globex 3×1.
    expect(valueOf(all, 'nv_inference_request_success', { model: 'mlp', tenant: 'acme', version: '1' })).toBe(8);
    expect(valueOf(all, 'nv_inference_count', { model: 'mlp', tenant: 'acme', version: '1' })).toBe(16);
    expect(valueOf(all, 'nv_inference_count', { model: 'mlp', tenant: 'globex', version: '1' })).toBe(3);
    expect(
      valueOf(all, 'nv_inference_request_duration_us', { model: 'mlp', tenant: 'acme', version: '1' }),
    ).toBeGreaterThan(0);
  });

  it('shows a tenant’s token its own models only, and refuses scrapes without the scope', async () => {
    const acmeReader = await h.token('acme', ['monitoring:read']);
    const own = await families(url, acmeReader);
    const tenants = new Set([...own.values()].flatMap((f) => f.samples.map((s) => s.labels['tenant'])));
    expect(tenants).toEqual(new Set(['acme']));
    expect(valueOf(own, 'nv_inference_request_success', { model: 'mlp', tenant: 'acme', version: '1' })).toBe(8);

    const anonymous = await scrape(url);
    expect(anonymous.status).toBe(401);
    expect(JSON.parse(anonymous.text)).toEqual({
      error: expect.stringMatching(/bearer token with scope monitoring:read/) as unknown,
    });
    const inferOnly = await scrape(url, await h.token('acme', ['infer']));
    expect(inferOnly.status).toBe(403);
    expect(inferOnly.text).toMatch(/monitoring:read/);
    expect((await scrape(url, 'not-a-token')).status).toBe(401);
    // A header value HTTP carries but gRPC metadata refuses (a byte above 0x7E) is a 401, not a 500.
    expect((await scrape(url, 'caf\u00e9')).status).toBe(401);
    const post = await scrape(url, admin, { method: 'POST' });
    expect(post.status).toBe(405);
    expect((await scrape(url.replace(/\/metrics$/, '/v2/health/live'), admin)).status).toBe(404);
  });

  it('drops a version’s series once it is unloaded', async () => {
    await h.server.manager.unload('acme', 'queued');
    const all = await families(url, admin);
    expect(
      all
        .get('nv_inference_request_success')!
        .samples.map((s) => `${s.labels['tenant']}/${s.labels['model']}`)
        .sort(),
    ).toEqual(['acme/mlp', 'globex/mlp']);
  });
});

describe('the metrics listener', () => {
  it('with --metrics-public shows every tenant without a token', async () => {
    const h = await startHarness({ config: { metricsPort: 0, metricsPublic: true } });
    try {
      await h.deploy('acme', 'mlp', '1', MLP);
      await h.deploy('globex', 'mlp', '1', MLP);
      const all = await families(h.server.metrics!.url);
      expect(
        all
          .get('nv_inference_request_success')!
          .samples.map((s) => s.labels['tenant'])
          .sort(),
      ).toEqual(['acme', 'globex']);
    } finally {
      await h.close();
    }
  });

  it('listens on the configured host and port, stops with the server, and is absent with --no-metrics', async () => {
    const port = await freePort('127.0.0.2');
    // REST stays on 127.0.0.1; metrics go where --metrics-host says.
    const h = await startHarness({ config: { metricsHost: '127.0.0.2', metricsPort: port, metricsPublic: true } });
    const url = `http://127.0.0.2:${port}/metrics`;
    try {
      expect(h.server.metrics).toEqual({ port, url });
      expect((await scrape(url)).status).toBe(200);
    } finally {
      await h.close();
    }
    await expect(fetch(url)).rejects.toThrow();

    const off = await startHarness({
      config: { metricsHost: '127.0.0.2', metricsPort: port, metricsPublic: true, metrics: false },
    });
    try {
      expect(off.server.metrics).toBeUndefined();
      await expect(fetch(url)).rejects.toThrow();
    } finally {
      await off.close();
    }
  });

  it('a metrics port already taken fails the start, naming the port', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const { port } = taken.address() as { port: number };
    try {
      await expect(startHarness({ config: { metricsPort: port } })).rejects.toThrow(new RegExp(`EADDRINUSE.*${port}`));
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()));
    }
  });
});
