import * as grpc from '@grpc/grpc-js';
import type { inference as pb } from '@quanta/contracts';
import { LSTM_NAMES, buildLstm, buildMlp } from '@quanta/onnx';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTritonMetrics } from '../metrics/triton-metrics.js';
import type { Harness } from '../testing/harness.js';
import { parsePromText } from '../testing/prom-text.js';
import { call, failure, fp32Input, fp32Output, inferRequest, seededFloats, startHarness } from '../testing/harness.js';

// The response cache, priorities and caller limits of a deployment, through a real server (gRPC
// and REST, real tokens) and real onnxruntime sessions.

const MLP = buildMlp();
const LSTM = buildLstm();
const CACHE = { responseCacheBytes: 1 << 20 };

let h: Harness;
let acme: string;
let globex: string;

beforeAll(async () => {
  h = await startHarness();
  await Promise.all([
    h.deploy('acme', 'mlp', '1', MLP, CACHE),
    h.deploy('globex', 'mlp', '1', MLP, CACHE),
    h.deploy('acme', 'plain', '1', MLP),
    // Two entries of the MLP's answers (12 bytes of outputs and their overhead each) fit, three do not.
    h.deploy('acme', 'small', '1', MLP, { responseCacheBytes: 700 }),
    h.deploy('acme', 'lstm', '1', LSTM, {
      ...CACHE,
      sequenceState: [
        { input: LSTM_NAMES.h, output: LSTM_NAMES.hn },
        { input: LSTM_NAMES.c, output: LSTM_NAMES.cn },
      ],
    }),
    h.deploy('acme', 'ranked', '1', MLP, {
      priorityLevels: 3,
      defaultPriorityLevel: 2,
      defaultQueuePolicy: { maxQueueSize: 0, timeoutUs: 0, delayOnTimeout: false, allowTimeoutOverride: false },
      priorityQueuePolicies: {
        1: { maxQueueSize: 4, timeoutUs: 50_000, delayOnTimeout: true, allowTimeoutOverride: true },
      },
    }),
    h.deploy('acme', 'limited', '1', MLP, {
      // One request per hundred seconds after a burst of three: the test's own time never refills it.
      callerLimits: { requestsPerSecond: 0.01, burst: 3, maxConcurrency: 0 },
      callerLimitOverrides: { partner: { requestsPerSecond: 0, burst: 0, maxConcurrency: 0 } },
    }),
  ]);
  [acme, globex] = await Promise.all([
    h.token('acme', ['infer', 'models:read']),
    h.token('globex', ['infer', 'models:read']),
  ]);
});
afterAll(() => h.close());

const tokenOf = (subject: string): Promise<string> =>
  h.issuer.issue({ tenant: 'acme', subject, scopes: ['infer', 'models:read'], ttlSeconds: 3600 });

function request(
  model: string,
  seed: number,
  parameters: Record<string, pb.InferParameter> = {},
): pb.ModelInferRequest {
  const { input, raw } = fp32Input('input', [1, 4], seededFloats(4, seed), true);
  return inferRequest({ modelName: model, inputs: [input], rawInputContents: [raw!], parameters });
}

async function stats(model: string, token = acme): Promise<pb.ModelStatistics> {
  const answer = await call(h.client, 'modelStatistics', { name: model, version: '' }, token);
  return answer.modelStats[0]!;
}

const uint = (value: number): pb.InferParameter => ({
  parameterChoice: { $case: 'uint64Param', value: BigInt(value) },
});

describe('response cache', () => {
  it('answers a repeated request with the same bytes without running the model, and says so', async () => {
    const first = await call(h.client, 'modelInfer', request('mlp', 1), acme);
    const again = await call(h.client, 'modelInfer', request('mlp', 1), acme);
    expect(again.rawOutputContents).toEqual(first.rawOutputContents);
    expect(again.outputs).toEqual(first.outputs);
    const other = await call(h.client, 'modelInfer', request('mlp', 2), acme);
    expect(Array.from(fp32Output(other, 0))).not.toEqual(Array.from(fp32Output(first, 0)));

    const s = await stats('mlp');
    // Triton: a hit is a success, but neither an inference nor an execution.
    expect(s.executionCount).toBe(2n);
    expect(s.inferenceCount).toBe(2n);
    expect(s.inferenceStats!.success!.count).toBe(3n);
    expect(s.inferenceStats!.cacheHit!.count).toBe(1n);
    expect(s.inferenceStats!.cacheMiss!.count).toBe(2n);

    const config = await call(h.client, 'modelConfig', { name: 'mlp', version: '' }, acme);
    expect(config.config!.responseCache).toEqual({ enable: true });
    const plain = await call(h.client, 'modelConfig', { name: 'plain', version: '' }, acme);
    expect(plain.config!.responseCache).toBeUndefined();
  });

  it("counts hits and misses in Triton's cache metrics, only for versions with a cache", async () => {
    const snapshots = await Promise.all(['mlp', 'small'].map((model) => stats(model)));
    const families = parsePromText(await createTritonMetrics(h.server.manager).render({ tenant: 'acme' }));
    const sample = (family: string, model: string): number | undefined =>
      families.get(family)?.samples.find((x) => x.labels['model'] === model)?.value;
    expect(families.get('nv_cache_num_hits_per_model')?.help).toBe('Number of cache hits per model');
    for (const [i, model] of ['mlp', 'small'].entries()) {
      expect(sample('nv_cache_num_hits_per_model', model)).toBe(Number(snapshots[i]!.inferenceStats!.cacheHit!.count));
      expect(sample('nv_cache_num_misses_per_model', model)).toBe(
        Number(snapshots[i]!.inferenceStats!.cacheMiss!.count),
      );
    }
    expect(sample('nv_cache_hit_duration_per_model', 'mlp')).toBeGreaterThanOrEqual(0);
    // No cache, no series (Triton's reporter has none for such a model).
    expect(sample('nv_cache_num_hits_per_model', 'plain')).toBeUndefined();
    expect(sample('nv_inference_count', 'plain')).toBeDefined();
  });

  it('answers REST requests from the same cache', async () => {
    const body = { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: Array.from(seededFloats(4, 1)) }] };
    const before = (await stats('mlp')).inferenceStats!.cacheHit!.count;
    const answer = await h.rest('POST', '/v2/models/mlp/infer', { token: acme, body });
    expect(answer.status).toBe(200);
    expect((await stats('mlp')).inferenceStats!.cacheHit!.count).toBe(before + 1n);
    const config = await h.rest('GET', '/v2/models/mlp/config', { token: acme });
    expect(config.body['response_cache']).toEqual({ enable: true });
    const statistics = await h.rest('GET', '/v2/models/mlp/stats', { token: acme });
    const rest = (statistics.body['model_stats'] as { inference_stats: Record<string, { count: number }> }[])[0]!;
    expect(rest.inference_stats['cache_hit']!.count).toBe(Number(before + 1n));
  });

  it('never answers one tenant from another tenant cache (same model name, same bytes)', async () => {
    const own = await call(h.client, 'modelInfer', request('mlp', 7), acme);
    const theirs = await call(h.client, 'modelInfer', request('mlp', 7), globex);
    expect(theirs.rawOutputContents).toEqual(own.rawOutputContents);
    const s = await stats('mlp', globex);
    expect(s.inferenceStats!.cacheHit!.count).toBe(0n);
    expect(s.inferenceStats!.cacheMiss!.count).toBe(1n);
    expect(s.executionCount).toBe(1n);
  });

  it('drops the least recently used answer at its byte bound', async () => {
    for (const seed of [1, 2, 1, 3, 1, 2]) await call(h.client, 'modelInfer', request('small', seed), acme);
    // 1 miss, 2 miss, 1 hit, 3 miss (drops 2, the least recently used), 1 hit, 2 miss.
    const s = await stats('small');
    expect(s.inferenceStats!.cacheHit!.count).toBe(2n);
    expect(s.inferenceStats!.cacheMiss!.count).toBe(4n);
    expect(s.executionCount).toBe(4n);
  });

  it('is never used for a stateful sequence', async () => {
    const x = seededFloats(8, 5);
    for (let i = 0; i < 2; i++) {
      const { input, raw } = fp32Input('x', [2, 1, 4], x, true);
      await call(
        h.client,
        'modelInfer',
        inferRequest({
          modelName: 'lstm',
          inputs: [input],
          rawInputContents: [raw!],
          parameters: {
            sequence_id: uint(9),
            sequence_start: { parameterChoice: { $case: 'boolParam', value: true } },
          },
        }),
        acme,
      );
    }
    const s = await stats('lstm');
    expect(s.executionCount).toBe(2n);
    expect(s.inferenceStats!.cacheHit!.count).toBe(0n);
    expect(s.inferenceStats!.cacheMiss!.count).toBe(0n);
    const config = await call(h.client, 'modelConfig', { name: 'lstm', version: '' }, acme);
    expect(config.config!.responseCache).toBeUndefined();
  });
});

describe('priorities', () => {
  it('reads the priority parameter and refuses one above the levels', async () => {
    await call(h.client, 'modelInfer', request('ranked', 1, { priority: uint(1) }), acme);
    await call(h.client, 'modelInfer', request('ranked', 1, { priority: uint(0) }), acme);
    const error = await failure(call(h.client, 'modelInfer', request('ranked', 1, { priority: uint(4) }), acme));
    expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error.details).toMatch(/priority 4 is out of range: the deployment has 3 priority levels/);
    const malformed = await failure(
      call(
        h.client,
        'modelInfer',
        request('ranked', 1, { priority: { parameterChoice: { $case: 'stringParam', value: 'high' } } }),
        acme,
      ),
    );
    expect(malformed.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(malformed.details).toMatch(/parameter "priority" must be a non-negative integer/);
  });

  it("reports the levels and queue policies in ModelConfig's dynamic_batching, batching or not", async () => {
    const { config } = await call(h.client, 'modelConfig', { name: 'ranked', version: '' }, acme);
    const choice = config!.schedulingChoice;
    expect(choice?.$case).toBe('dynamicBatching');
    const batching = choice?.$case === 'dynamicBatching' ? choice.value : undefined;
    expect(batching?.priorityLevels).toBe(3n);
    expect(batching?.defaultPriorityLevel).toBe(2n);
    expect(batching?.priorityQueuePolicy.get(1n)).toEqual({
      timeoutAction: 1, // DELAY
      defaultTimeoutMicroseconds: 50_000n,
      allowTimeoutOverride: true,
      maxQueueSize: 4,
    });
    const rest = await h.rest('GET', '/v2/models/ranked/config', { token: acme });
    expect(rest.body['dynamic_batching']).toMatchObject({
      priority_levels: 3,
      default_priority_level: 2,
      priority_queue_policy: { '1': { timeout_action: 'DELAY', max_queue_size: 4 } },
    });
  });
});

describe('caller limits', () => {
  it("refuses a caller over its rate at once with retry-after-ms; another caller's requests all run", async () => {
    const [greedy, partner, quiet] = await Promise.all([tokenOf('greedy'), tokenOf('partner'), tokenOf('quiet')]);
    const before = (await stats('limited')).executionCount;

    // The partner's latency alone, then beside the greedy caller's burst.
    const partnerRun = async (): Promise<number[]> => {
      const latencies: number[] = [];
      for (let i = 0; i < 20; i++) {
        const started = performance.now();
        await call(h.client, 'modelInfer', request('limited', 100 + i), partner);
        latencies.push(performance.now() - started);
      }
      return latencies;
    };
    const alone = await partnerRun();
    const burst = Array.from({ length: 200 }, (_, i) =>
      call(h.client, 'modelInfer', request('limited', i), greedy).then(
        () => 'ok' as const,
        (error: grpc.ServiceError) => error,
      ),
    );
    const [beside, outcomes] = await Promise.all([partnerRun(), Promise.all(burst)]);

    const refused = outcomes.filter((o): o is grpc.ServiceError => o !== 'ok');
    expect(outcomes.filter((o) => o === 'ok')).toHaveLength(3);
    expect(refused).toHaveLength(197);
    for (const error of refused) {
      expect(error.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(Number(error.metadata.get('retry-after-ms')[0])).toBeGreaterThan(90_000);
    }
    expect(refused[0]!.details).toMatch(/caller "greedy" is over its limit \(0.01 requests per second, burst 3\)/);
    // The refused requests never reached the queue or the model: only the admitted ones ran.
    const after = await stats('limited');
    expect(after.executionCount - before).toBe(3n + 40n);
    expect(after.inferenceStats!.fail!.count).toBe(197n);
    // A caller without an override has a bucket of its own, untouched by the greedy one.
    await call(h.client, 'modelInfer', request('limited', 1), quiet);

    const p50 = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
    // Generous: the burst costs the server only its refusals.
    expect(p50(beside)).toBeLessThan(3 * p50(alone) + 20);
  });

  it('answers HTTP 429 with Retry-After in whole seconds over REST', async () => {
    const token = await tokenOf('rest-app');
    const body = JSON.stringify({
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: [0, 1, 2, 3] }],
    });
    const post = (): Promise<Response> =>
      fetch(`${h.server.http.url}/v2/models/limited/infer`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body,
      });
    const statuses: number[] = [];
    let refused: Response | undefined;
    for (let i = 0; i < 4; i++) {
      const response = await post();
      statuses.push(response.status);
      if (response.status === 429) refused = response;
      else await response.text();
    }
    expect(statuses).toEqual([200, 200, 200, 429]);
    expect(Number(refused!.headers.get('retry-after'))).toBeGreaterThanOrEqual(90);
    expect(Number(refused!.headers.get('retry-after-ms'))).toBeGreaterThan(90_000);
    expect(((await refused!.json()) as { error: string }).error).toMatch(/caller "rest-app" is over its limit/);
  });
});
