import { monitoring as pb } from '@quanta/contracts';
import { describe, expect, it } from 'vitest';
import { modelStats, timeSeries, toModelStats, topModels, versionStats } from './queries.js';
import { resolveSpan } from './span.js';
import { Aggregate } from './aggregate.js';
import type { Sample } from './sample.js';
import { createWindowStore } from './window-store.js';

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);

function sample(over: Partial<Sample> = {}): Sample {
  return {
    tenant: 'acme',
    model: 'cifar',
    version: '1',
    statusCode: 0,
    queueUs: 100,
    computeUs: 900,
    totalUs: 1000,
    batchSize: 4,
    bytesIn: 10,
    bytesOut: 20,
    timeMs: T0,
    route: 'primary',
    cacheHit: false,
    cacheMiss: false,
    shadow: undefined,
    ...over,
  };
}

function fixture(horizonSeconds = 3600) {
  const now = { ms: T0 };
  const store = createWindowStore({ horizonSeconds, clock: () => now.ms });
  return { now, store };
}

describe('windows', () => {
  it('counts per second and answers a 1m / 5m / 1h window exactly', () => {
    const { now, store } = fixture();
    // One record per second for 10 minutes, totals 1..600 ms, every 10th an error.
    for (let i = 0; i < 600; i++) {
      store.add(
        sample({
          timeMs: T0 + i * 1000,
          totalUs: (i + 1) * 1000,
          statusCode: i % 10 === 0 ? 8 : 0,
          batchSize: (i % 3) + 1,
        }),
      );
    }
    now.ms = T0 + 599_500;
    const last1m = modelStats(store, 'acme', 'cifar', '', resolveSpan({ windowMs: 60_000 }, now.ms, 3600));
    expect(last1m.count).toBe(60n);
    expect(last1m.errorCount).toBe(6n);
    expect(last1m.throughputRps).toBe(1);
    expect(last1m.total?.maxUs).toBe(600_000);
    // Totals 541..600 ms: exact p50 (lower median) is 570 ms; within 1%.
    expect(Math.abs((last1m.total?.p50Us ?? 0) - 570_000) / 570_000).toBeLessThanOrEqual(0.01);
    const last5m = modelStats(store, 'acme', 'cifar', '', resolveSpan({ windowMs: 300_000 }, now.ms, 3600));
    expect(last5m.count).toBe(300n);
    const lastHour = modelStats(store, 'acme', 'cifar', '', resolveSpan({ windowMs: 3_600_000 }, now.ms, 3600));
    expect(lastHour.count).toBe(600n);
    expect(lastHour.statuses).toEqual([
      { statusCode: 0, statusName: 'OK', count: 540n },
      { statusCode: 8, statusName: 'RESOURCE_EXHAUSTED', count: 60n },
    ]);
    expect(lastHour.batchSizes).toEqual([
      { batchSize: 1, count: 200n },
      { batchSize: 2, count: 200n },
      { batchSize: 3, count: 200n },
    ]);
    expect(lastHour.bytesIn).toBe(6000n);
    expect(lastHour.errorRate).toBeCloseTo(0.1, 12);
  });

  it('keeps versions and tenants apart and merges versions on request', () => {
    const { store } = fixture();
    store.add(sample({ version: '1' }));
    store.add(sample({ version: '2' }));
    store.add(sample({ version: '2' }));
    store.add(sample({ tenant: 'other', version: '1' }));
    const span = resolveSpan({ windowMs: 60_000 }, T0, 3600);
    expect(modelStats(store, 'acme', 'cifar', '', span).count).toBe(3n);
    expect(modelStats(store, 'acme', 'cifar', '2', span).count).toBe(2n);
    expect(modelStats(store, 'other', 'cifar', '', span).count).toBe(1n);
    expect(modelStats(store, 'nobody', 'cifar', '', span).count).toBe(0n);
  });

  it('forgets what leaves the horizon and clamps a longer window to it', () => {
    const { now, store } = fixture(60);
    store.add(sample({ timeMs: T0 }));
    store.add(sample({ timeMs: T0 + 30_000 }));
    now.ms = T0 + 59_999;
    expect(modelStats(store, 'acme', 'cifar', '', resolveSpan({ windowMs: 3_600_000 }, now.ms, 60)).count).toBe(2n);
    now.ms = T0 + 60_000;
    const span = resolveSpan({ windowMs: 3_600_000 }, now.ms, 60);
    expect(span.start).toBe(T0 / 1000 + 1); // clamped to the horizon
    expect(modelStats(store, 'acme', 'cifar', '', span).count).toBe(1n);
    // A newer record in the same ring slot replaces the old second.
    store.add(sample({ timeMs: T0 + 60_000 }));
    expect(modelStats(store, 'acme', 'cifar', '', resolveSpan({ windowMs: 60_000 }, now.ms, 60)).count).toBe(2n);
    now.ms = T0 + 200_000;
    expect(store.sweep()).toBe(1);
    expect(store.series({ tenant: 'acme' })).toHaveLength(0);
  });

  it(
    'keeps every second inside the horizon when a record arrives ' + 'as far ahead of the clock as the ingest allows',
    () => {
      const { now, store } = fixture(60);
      // One record in each second of the last minute, then one 300 s ahead (MAX_FUTURE_MS): with a
      // ring of only the horizon it would land in the slot of a second still being counted.
      for (let i = 0; i < 60; i++) store.add(sample({ timeMs: T0 + i * 1000 }));
      now.ms = T0 + 59_999;
      const lastMinute = (): bigint =>
        modelStats(store, 'acme', 'cifar', '', resolveSpan({ windowMs: 60_000 }, now.ms, 60)).count;
      expect(lastMinute()).toBe(60n);
      for (const ahead of [1_000, 60_000, 120_000, 299_000, 300_000]) store.add(sample({ timeMs: now.ms + ahead }));
      expect(lastMinute()).toBe(60n);
      // The records ahead are counted once the clock reaches them (those 299 s and 300 s ahead here).
      now.ms = T0 + 359_999;
      expect(lastMinute()).toBe(2n);
    },
  );

  it('answers an explicit range and refuses inverted ones', () => {
    const { now, store } = fixture();
    for (let i = 0; i < 10; i++) store.add(sample({ timeMs: T0 + i * 1000 }));
    now.ms = T0 + 20_000;
    const span = resolveSpan({ startMs: T0 + 2000, endMs: T0 + 5000 }, now.ms, 3600);
    expect(modelStats(store, 'acme', 'cifar', '', span).count).toBe(3n);
    expect(() => resolveSpan({ startMs: T0 + 5000, endMs: T0 + 5000 }, now.ms, 3600)).toThrow(/empty or inverted/);
    expect(() => resolveSpan({ windowMs: 0 }, now.ms, 3600)).toThrow(/positive/);
  });

  it('gives a time series at a step, zeros included, aligned to now', () => {
    const { now, store } = fixture();
    for (let i = 0; i < 30; i++) store.add(sample({ timeMs: T0 + i * 1000, batchSize: i < 15 ? 2 : 8 }));
    now.ms = T0 + 59_000;
    const points = timeSeries(store, 'acme', 'cifar', '', resolveSpan({ windowMs: 60_000 }, now.ms, 3600), 15);
    expect(points.map((p) => p.count)).toEqual([15n, 15n, 0n, 0n]);
    expect(points.map((p) => p.meanBatchSize)).toEqual([2, 8, 0, 0]);
    expect(points[0]?.time?.getTime()).toBe(T0);
    expect(() =>
      timeSeries(store, 'acme', 'cifar', '', resolveSpan({ windowMs: 3_600_000 }, now.ms, 3600), 0.5),
    ).toThrow(/whole number/);
  });

  it('ranks models by traffic, p99 and error rate', () => {
    const { store } = fixture();
    for (let i = 0; i < 30; i++) store.add(sample({ model: 'busy', totalUs: 1000 }));
    for (let i = 0; i < 10; i++) store.add(sample({ model: 'slow', totalUs: 90_000, statusCode: i < 1 ? 13 : 0 }));
    for (let i = 0; i < 5; i++) store.add(sample({ model: 'broken', totalUs: 5000, statusCode: 3 }));
    const span = resolveSpan({ windowMs: 60_000 }, T0, 3600);
    const names = (o: pb.TopModelsOrder) => topModels(store, 'acme', span, o, 0, false).map((m) => m.model);
    expect(names(pb.TopModelsOrder.TOP_MODELS_ORDER_TRAFFIC)).toEqual(['busy', 'slow', 'broken']);
    expect(names(pb.TopModelsOrder.TOP_MODELS_ORDER_P99_LATENCY)).toEqual(['slow', 'broken', 'busy']);
    expect(names(pb.TopModelsOrder.TOP_MODELS_ORDER_ERROR_RATE)).toEqual(['broken', 'slow', 'busy']);
    expect(topModels(store, 'acme', span, pb.TopModelsOrder.TOP_MODELS_ORDER_TRAFFIC, 1, false)).toHaveLength(1);
  });

  it('gives the same answer through the minute roll-ups as by adding up the records, for any span', () => {
    const { now, store } = fixture(900);
    const samples: Sample[] = [];
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    for (let i = 0; i < 4000; i++) {
      const s = sample({
        timeMs: T0 + Math.floor(random() * 900_000),
        totalUs: 100 + Math.floor(random() * 50_000),
        statusCode: random() < 0.1 ? 2 : 0,
      });
      samples.push(s);
      store.add(s);
    }
    now.ms = T0 + 899_999;
    for (let k = 0; k < 50; k++) {
      const a = T0 + Math.floor(random() * 900_000);
      const b = T0 + Math.floor(random() * 900_000);
      if (a === b) continue;
      const span = resolveSpan({ startMs: Math.min(a, b), endMs: Math.max(a, b) }, now.ms, 900);
      const inSpan = samples.filter(
        (x) => Math.floor(x.timeMs / 1000) >= span.start && Math.floor(x.timeMs / 1000) < span.end,
      );
      const got = store.aggregate(store.series({ tenant: 'acme' }), span);
      expect(got.count).toBe(inSpan.length);
      expect(got.errorCount).toBe(inSpan.filter((x) => x.statusCode !== 0).length);
      expect(got.total.max).toBe(Math.max(0, ...inSpan.map((x) => x.totalUs)));
      const exact = new Aggregate();
      for (const x of inSpan) exact.add(x);
      expect(got.total.quantiles([0.5, 0.99])).toEqual(exact.total.quantiles([0.5, 0.99]));
    }
  });

  it('keeps answering exactly while records arrive, late and early, and the rings wrap past the horizon', () => {
    // 10 minute horizon; 40 simulated minutes, so both rings wrap four times. Queries between
    // the records use (and must drop) the cached closed minutes.
    const horizon = 600;
    const { now, store } = fixture(horizon);
    const added: Sample[] = [];
    let seed = 3;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    const same = (got: Aggregate, want: Aggregate) => {
      expect([got.count, got.errorCount, got.bytesIn]).toEqual([want.count, want.errorCount, want.bytesIn]);
      expect([got.total.sum, got.total.max, got.total.min, got.queue.sum]).toEqual([
        want.total.sum,
        want.total.max,
        want.total.min,
        want.queue.sum,
      ]);
      expect(got.total.quantiles([0, 0.5, 0.9, 0.99, 1])).toEqual(want.total.quantiles([0, 0.5, 0.9, 0.99, 1]));
      expect([...got.statuses].sort((x, y) => x[0] - y[0])).toEqual([...want.statuses].sort((x, y) => x[0] - y[0]));
    };
    const check = (windowMs: number, early: boolean) => {
      const span = resolveSpan({ windowMs }, now.ms, horizon);
      const got = [
        store.aggregate(store.series({ tenant: 'acme' }), span),
        store.aggregateScratch(store.series({ tenant: 'acme' }), span),
      ];
      // The same records in a new store, never queried before (nothing cached).
      const fresh = createWindowStore({ horizonSeconds: horizon, clock: () => now.ms });
      for (const x of added) fresh.add(x);
      for (const g of got) same(g, fresh.aggregate(fresh.series({ tenant: 'acme' }), span));
      if (early) return;
      // Without records ahead of the clock, that is every record of the span still in the horizon
      // (the newest in each second slot of the ring).
      const oldest = store.oldestSecond();
      const sec = (x: Sample) => Math.floor(x.timeMs / 1000);
      const inSpan = added.filter(
        (x) =>
          sec(x) >= Math.max(oldest, span.start) &&
          sec(x) < span.end &&
          !added.some((y) => sec(y) > sec(x) && sec(y) % horizon === sec(x) % horizon),
      );
      const exact = new Aggregate();
      for (const x of inSpan) exact.add(x);
      for (const g of got) same(g, exact);
    };
    for (let step = 0; step < 40 * 12; step++) {
      // Records ahead of the clock (allowed: clock skew) only in the second half.
      const early = step >= 20 * 12;
      now.ms = T0 + step * 5000 + Math.floor(random() * 5000);
      const n = 1 + Math.floor(random() * 12);
      for (let i = 0; i < n; i++) {
        const r = random();
        // Mostly now; some late (into closed, cached minutes); some up to 4 min ahead, which takes
        // the ring slots of seconds and of a minute still in the horizon.
        const offset =
          r < 0.8 || (r >= 0.95 && !early)
            ? 0
            : r < 0.95
              ? -Math.floor(random() * (horizon - 2) * 1000)
              : Math.floor(random() * 240_000);
        const x = sample({
          timeMs: now.ms + offset,
          totalUs: 100 + Math.floor(random() * 90_000),
          queueUs: Math.floor(random() * 500),
          statusCode: random() < 0.1 ? 14 : 0,
        });
        added.push(x);
        store.add(x);
      }
      if (step % 3 === 0) check(3_600_000, early);
      if (step % 7 === 0) check(300_000, early);
    }
  });

  it('answers through the reused scratch aggregate exactly as through a new one, query after query', () => {
    const { now, store } = fixture(900);
    let seed = 11;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    // A busy model (many records a second), a quiet one (a few in the whole span) and errors.
    for (let i = 0; i < 6000; i++) {
      store.add(
        sample({
          model: 'busy',
          timeMs: T0 + Math.floor(random() * 900_000),
          totalUs: 50 + Math.floor(random() * 80_000),
          statusCode: random() < 0.05 ? 13 : 0,
        }),
      );
    }
    for (let i = 0; i < 5; i++)
      store.add(sample({ model: 'quiet', timeMs: T0 + i * 100_000, totalUs: 1e6 * (i + 1), batchSize: i + 1 }));
    now.ms = T0 + 899_999;
    const spans = [
      resolveSpan({ windowMs: 900_000 }, now.ms, 900),
      resolveSpan({ windowMs: 60_000 }, now.ms, 900),
      resolveSpan({ startMs: T0 + 61_500, endMs: T0 + 400_000 }, now.ms, 900),
      resolveSpan({ startMs: T0 + 10_000, endMs: T0 + 11_000 }, now.ms, 900),
    ];
    // Alternating models and spans: each query follows one that left the scratch in another state.
    for (let k = 0; k < 3; k++) {
      for (const span of spans) {
        for (const model of ['busy', 'quiet', 'nobody', 'busy']) {
          const series = store.series({ tenant: 'acme', model });
          const fresh = store.aggregate(series, span);
          const scratch = store.aggregateScratch(series, span);
          expect(scratch).not.toBe(fresh);
          expect([scratch.count, scratch.errorCount, scratch.bytesIn, scratch.bytesOut]).toEqual([
            fresh.count,
            fresh.errorCount,
            fresh.bytesIn,
            fresh.bytesOut,
          ]);
          expect([...scratch.statuses]).toEqual([...fresh.statuses]);
          expect([...scratch.batchSizes]).toEqual([...fresh.batchSizes]);
          for (const part of ['queue', 'compute', 'total'] as const) {
            expect([scratch[part].count, scratch[part].sum, scratch[part].max, scratch[part].min]).toEqual([
              fresh[part].count,
              fresh[part].sum,
              fresh[part].max,
              fresh[part].min,
            ]);
            expect(scratch[part].quantiles([0, 0.5, 0.95, 0.99, 1])).toEqual(
              fresh[part].quantiles([0, 0.5, 0.95, 0.99, 1]),
            );
          }
          expect(modelStats(store, 'acme', model, '', span)).toEqual(
            toModelStats(model, '', span, store.aggregate(series, span)),
          );
        }
      }
    }
    expect(
      store.aggregateScratch(store.series({ tenant: 'acme', model: 'quiet' }), spans[0] ?? { start: 0, end: 1 }),
    ).toBe(store.aggregateScratch(store.series({ tenant: 'acme', model: 'busy' }), spans[0] ?? { start: 0, end: 1 }));
  });

  it('adds up routes, shadow agreement and cache counts per version, through seconds and minute roll-ups', () => {
    const { now, store } = fixture();
    // Ten minutes: v3 is the primary (every 4th request a cache hit, the others misses), v10 a
    // canary, v4 the shadow of every primary request.
    const errors: number[] = [];
    let agreed = 0;
    let rows = 0;
    for (let i = 0; i < 600; i++) {
      const timeMs = T0 + i * 1000;
      store.add(sample({ version: '3', timeMs, cacheHit: i % 4 === 0, cacheMiss: i % 4 !== 0 }));
      if (i % 10 === 0) store.add(sample({ version: '10', route: 'canary', timeMs }));
      // Every 50th comparison saw an output missing on one side (Infinity): the max, not the mean.
      const maxAbsError = i % 50 === 49 ? Infinity : (i % 7) / 1000;
      if (Number.isFinite(maxAbsError)) errors.push(maxAbsError);
      const top1AgreedRows = i % 3 === 0 ? 1 : 2;
      agreed += top1AgreedRows;
      rows += 2;
      store.add(
        sample({ version: '4', route: 'shadow', timeMs, shadow: { maxAbsError, top1Rows: 2, top1AgreedRows } }),
      );
    }
    now.ms = T0 + 600_000;
    const span = resolveSpan({ windowMs: 3_600_000 }, now.ms, store.horizonSeconds);
    const versions = versionStats(store, 'acme', 'cifar', span);
    expect(versions.map((v) => [v.version, v.route, Number(v.count)])).toEqual([
      ['3', 'primary', 600],
      ['4', 'shadow', 600],
      ['10', 'canary', 60],
    ]);
    const [primary, shadow] = versions;
    expect([primary?.cacheHitCount, primary?.cacheMissCount, primary?.shadow]).toEqual([150n, 450n, undefined]);
    const mean = errors.reduce((a, b) => a + b, 0) / errors.length;
    expect(shadow?.shadow?.compared).toBe(600n);
    expect(shadow?.shadow?.maxAbsError).toBe(Infinity);
    expect(shadow?.shadow?.meanAbsError).toBeCloseTo(mean, 12);
    expect(shadow?.shadow?.top1Rows).toBe(BigInt(rows));
    expect(shadow?.shadow?.top1Agreement).toBeCloseTo(agreed / rows, 12);
    // Every version together: the counts add up and no route is claimed.
    const all = modelStats(store, 'acme', 'cifar', '', span);
    expect([all.count, all.route, all.cacheHitCount, all.shadow?.compared]).toEqual([1260n, '', 150n, 600n]);
    // A 40-second range inside the minutes gives the same agreement as the records in it.
    const inner = resolveSpan({ startMs: T0 + 100_000, endMs: T0 + 140_000 }, now.ms, 3600);
    const part = versionStats(store, 'acme', 'cifar', inner).find((v) => v.version === '4');
    expect(part?.shadow?.compared).toBe(40n);
    expect(part?.shadow?.maxAbsError).toBe(0.006);
  });

  it('takes the route of the newest record of a version', () => {
    const { now, store } = fixture();
    store.add(sample({ version: '4', route: 'canary', timeMs: T0 + 5000 }));
    store.add(sample({ version: '4', route: 'primary', timeMs: T0 + 9000 }));
    store.add(sample({ version: '4', route: 'canary', timeMs: T0 + 7000 }));
    now.ms = T0 + 10_000;
    const span = resolveSpan({ windowMs: 60_000 }, now.ms, store.horizonSeconds);
    expect(versionStats(store, 'acme', 'cifar', span).map((v) => v.route)).toEqual(['primary']);
  });
});
