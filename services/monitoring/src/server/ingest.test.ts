import * as grpc from '@grpc/grpc-js';
import { monitoring as pb } from '@quanta/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../testing/harness.js';
import { T0, call, failure, ingest, record, startHarness, window } from '../testing/harness.js';

describe('monitoring gRPC: ingest and queries', () => {
  let h: Harness;
  let writer: string;
  let admin: string;
  let reader: string;

  beforeAll(async () => {
    h = await startHarness();
    writer = await h.token('platform', ['monitoring:write']);
    admin = await h.token('platform', ['admin']);
    reader = await h.token('acme', ['monitoring:read']);
  });
  afterAll(async () => h.close());

  it('keeps every good record of a batch, rejects the bad ones with reasons, and counts exactly', async () => {
    h.now.ms = T0 + 10_000;
    const good = Array.from({ length: 1000 }, (_, i) =>
      record(T0 + (i % 10) * 1000, {
        requestId: `g${i}`,
        totalUs: BigInt(1000 + i),
        statusCode: i % 100 === 0 ? 13 : 0,
        batchSize: (i % 4) + 1,
      }),
    );
    const bad = [
      record(T0, { requestId: 'b1', statusCode: 42 }),
      record(T0, { requestId: 'b2', totalUs: -5n }),
      record(T0 + 3_600_000, { requestId: 'b3' }),
      record(T0 - 7_200_000, { requestId: 'b4' }),
      record(T0, { requestId: 'b5', model: '' }),
      record(T0, { requestId: 'b6', time: undefined }),
      record(T0, { requestId: 'b7', batchSize: 0 }),
      record(T0, { requestId: 'b8', queueUs: -1n }),
    ];
    // Bad records sit in the middle of the batches they belong to.
    const reply = await ingest(h.client, writer, [
      good.slice(0, 500),
      [...bad.slice(0, 4), ...good.slice(500, 1000), ...bad.slice(4)],
    ]);
    expect(reply.accepted).toBe(1000n);
    expect(reply.rejected).toBe(8n);
    const reasons = Object.fromEntries(reply.rejections.map((r) => [r.requestId, r.reason]));
    expect(reasons['b1']).toMatch(/status_code 42 is not a gRPC status code/);
    expect(reasons['b2']).toBe('total_us is negative (-5)');
    expect(reasons['b3']).toMatch(/in the future/);
    expect(reasons['b4']).toMatch(/older than the horizon/);
    expect(reasons['b5']).toBe('model is missing');
    expect(reasons['b6']).toBe('time is missing');
    expect(reasons['b7']).toMatch(/batch_size is 0/);
    expect(reasons['b8']).toBe('queue_us is negative (-1)');
    expect(reply.rejections.find((r) => r.requestId === 'b5')).toMatchObject({ batchIndex: 1, recordIndex: 504 });

    const { stats } = await call(
      h.client,
      'getModelStats',
      { model: 'cifar', version: '', byVersion: false, span: window(60) },
      reader,
    );
    expect(stats?.count).toBe(1000n);
    expect(stats?.errorCount).toBe(10n);
    expect(stats?.statuses).toEqual([
      { statusCode: 0, statusName: 'OK', count: 990n },
      { statusCode: 13, statusName: 'INTERNAL', count: 10n },
    ]);
    expect(stats?.batchSizes.map((b) => [b.batchSize, b.count])).toEqual([
      [1, 250n],
      [2, 250n],
      [3, 250n],
      [4, 250n],
    ]);
    expect(stats?.bytesIn).toBe(100_000n);
    expect(stats?.total?.maxUs).toBe(1999);
    // Exact p99 of 1000..1999 with rank floor(0.99 * 999) = 989 is 1989.
    expect(Math.abs((stats?.total?.p99Us ?? 0) - 1989) / 1989).toBeLessThanOrEqual(0.01);
  });

  it('answers a time series and the top models', async () => {
    h.now.ms = T0 + 10_000;
    const series = await call(
      h.client,
      'getTimeSeries',
      { model: 'cifar', version: '1', span: window(20), step: { seconds: 5n, nanos: 0 } },
      reader,
    );
    // Steps end at now's second (T0+10 s, included): [T0-9, T0-4), [T0-4, T0+1), [T0+1, T0+6), [T0+6, T0+11).
    expect(series.points.map((p) => p.count)).toEqual([0n, 100n, 500n, 400n]);
    expect(series.points[0]?.time?.getTime()).toBe(T0 - 9000);
    // admin satisfies monitoring:write too.
    await ingest(h.client, admin, [[record(T0, { model: 'other' })]]);
    const top = await call(
      h.client,
      'topModels',
      { span: window(60), orderBy: pb.TopModelsOrder.TOP_MODELS_ORDER_TRAFFIC, limit: 0, byVersion: false },
      reader,
    );
    expect(top.models.map((m) => [m.model, m.count])).toEqual([
      ['cifar', 1000n],
      ['other', 1n],
    ]);
  });

  it("scopes statistics to the caller's tenant", async () => {
    const stranger = await h.token('globex', ['monitoring:read']);
    const { stats } = await call(
      h.client,
      'getModelStats',
      { model: 'cifar', version: '', byVersion: false, span: window(60) },
      stranger,
    );
    expect(stats?.count).toBe(0n);
  });

  it('refuses bad queries and callers without the scope', async () => {
    const inverted = await failure(
      call(
        h.client,
        'getModelStats',
        {
          model: 'cifar',
          version: '',
          byVersion: false,
          span: { $case: 'range', value: { startTime: new Date(T0 + 5000), endTime: new Date(T0) } },
        },
        reader,
      ),
    );
    expect(inverted.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(inverted.details).toMatch(/empty or inverted/);
    const step = await failure(
      call(
        h.client,
        'getTimeSeries',
        { model: 'cifar', version: '', span: window(3600), step: { seconds: 0n, nanos: 500_000_000 } },
        reader,
      ),
    );
    expect(step.code).toBe(grpc.status.INVALID_ARGUMENT);
    const noModel = await failure(
      call(h.client, 'getModelStats', { model: '', version: '', byVersion: false, span: window(60) }, reader),
    );
    expect(noModel.details).toBe('model is missing');
    const unauth = await failure(
      call(h.client, 'getModelStats', { model: 'cifar', version: '', byVersion: false, span: window(60) }),
    );
    expect(unauth.code).toBe(grpc.status.UNAUTHENTICATED);
    const denied = await failure(ingest(h.client, reader, [[record(T0)]]));
    expect(denied.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(denied.details).toMatch(/needs scope "monitoring:write"/);
  });

  it('clamps a window beyond the horizon and says where the data starts', async () => {
    h.now.ms = T0 + 10_000;
    const { stats } = await call(
      h.client,
      'getModelStats',
      { model: 'cifar', version: '', byVersion: false, span: window(86_400) },
      reader,
    );
    expect(stats?.startTime?.getTime()).toBe(T0 + 11_000 - 3_600_000);
    expect(stats?.count).toBe(1000n);
  });

  it('refuses records with an unknown route, a comparison off a shadow, or both cache flags', async () => {
    h.now.ms = T0 + 10_000;
    const cmp = { primaryVersion: '1', maxAbsError: 0.5, top1Rows: 2, top1AgreedRows: 1 };
    const reply = await ingest(h.client, writer, [
      [
        record(T0, { requestId: 'r1', model: 'routes', route: 'blue' }),
        record(T0, { requestId: 'r2', model: 'routes', route: 'canary', shadow: cmp }),
        record(T0, { requestId: 'r3', model: 'routes', route: 'shadow', shadow: { ...cmp, maxAbsError: -1 } }),
        record(T0, { requestId: 'r4', model: 'routes', route: 'shadow', shadow: { ...cmp, top1AgreedRows: 3 } }),
        record(T0, { requestId: 'r5', model: 'routes', cacheHit: true, cacheMiss: true }),
        record(T0, { requestId: 'ok', model: 'routes', route: 'shadow', shadow: { ...cmp, maxAbsError: Infinity } }),
      ],
    ]);
    expect([reply.accepted, reply.rejected]).toEqual([1n, 5n]);
    const reasons = Object.fromEntries(reply.rejections.map((r) => [r.requestId, r.reason]));
    expect(reasons).toEqual({
      r1: 'route "blue" is not one of primary, canary, shadow',
      r2: 'shadow is set on a record whose route is canary, not shadow',
      r3: 'shadow.max_abs_error is -1; it must be at least 0 (Infinity for mismatched outputs)',
      r4: 'shadow.top1_agreed_rows 3 is above shadow.top1_rows 2',
      r5: 'cache_hit and cache_miss are both set',
    });
    // Infinity (an output missing on one side) travels and is the max, not part of the mean.
    const { versions } = await call(
      h.client,
      'getModelStats',
      { model: 'routes', version: '', byVersion: true, span: window(60) },
      reader,
    );
    expect(versions.map((v) => [v.version, v.route, v.shadow?.maxAbsError, v.shadow?.meanAbsError])).toEqual([
      ['1', 'shadow', Infinity, 0],
    ]);
  });
});
