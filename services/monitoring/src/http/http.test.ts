import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import type { ParsedFamily } from 'parse-prometheus-text-format';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../testing/harness.js';
import { T0, ingest, record, startHarness } from '../testing/harness.js';
import type { Overview } from './overview.js';
import { parsePrometheusStrict } from '../testing/prom-parser.js';

function family(parsed: ParsedFamily[], name: string): ParsedFamily {
  const f = parsed.find((p) => p.name === name);
  if (f === undefined) throw new Error(`no metric family ${name}`);
  return f;
}

describe('HTTP: /metrics and the dashboard data', () => {
  let h: Harness;
  let base: string;
  let reader: string;
  let admin: string;

  beforeAll(async () => {
    h = await startHarness();
    base = h.server.http.url;
    admin = await h.token('platform', ['admin']);
    reader = await h.token('acme', ['monitoring:read']);
    h.now.ms = T0 + 2000;
    // 40 requests of cifar v1: totals 1..40 ms, 4 failed with RESOURCE_EXHAUSTED; batch sizes 1/8.
    const batch = Array.from({ length: 40 }, (_, i) =>
      record(T0 + (i % 3) * 1000, {
        totalUs: BigInt((i + 1) * 1000),
        queueUs: 500n,
        computeUs: BigInt(i * 1000),
        statusCode: i < 4 ? 8 : 0,
        batchSize: i % 2 === 0 ? 1 : 8,
        bytesIn: 10n,
      }),
    );
    const other = Array.from({ length: 5 }, () => record(T0, { tenant: 'globex', model: 'bert\n"x"' }));
    await ingest(h.client, admin, [batch, other, [record(T0, { totalUs: -1n })]]);
  });
  afterAll(async () => h.close());

  it('serves /metrics in the Prometheus text format with exact counts and histograms', async () => {
    const res = await fetch(`${base}metrics`, { headers: { authorization: `Bearer ${admin}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const parsed = parsePrometheusTextFormat(text);

    const requests = family(parsed, 'quanta_inference_requests_total');
    expect(requests.type).toBe('COUNTER');
    const byStatus = Object.fromEntries(
      requests.metrics
        .filter((m) => m.labels?.['model'] === 'cifar')
        .map((m) => [m.labels?.['status'], Number(m.value)]),
    );
    expect(byStatus).toEqual({ OK: 36, RESOURCE_EXHAUSTED: 4 });
    // Label escaping survives the round trip.
    expect(requests.metrics.find((m) => m.labels?.['tenant'] === 'globex')?.labels?.['model']).toBe('bert\n"x"');

    // Histograms from the strict parser (it also checks cumulative buckets and +Inf = _count).
    const strict = parsePrometheusStrict(text);
    const duration = strict.get('quanta_inference_request_duration_seconds');
    expect(duration?.type).toBe('histogram');
    const cifar = (duration?.samples ?? []).filter((s) => s.labels['model'] === 'cifar');
    const bucket = (le: string) => cifar.find((s) => s.name.endsWith('_bucket') && s.labels['le'] === le)?.value;
    expect(cifar.find((s) => s.name.endsWith('_count'))?.value).toBe(40);
    expect(cifar.find((s) => s.name.endsWith('_sum'))?.value).toBeCloseTo((40 * 41) / 2 / 1000, 9); // 1..40 ms
    // Totals 1..40 ms: 1 under 1 ms, 10 under 10 ms, 25 under 25 ms, all under 50 ms.
    expect([bucket('0.001'), bucket('0.01'), bucket('0.025'), bucket('0.05'), bucket('+Inf')]).toEqual([
      1, 10, 25, 40, 40,
    ]);
    expect(cifar.every((s) => s.labels['tenant'] === 'acme' && s.labels['version'] === '1')).toBe(true);
    const batchSize = (strict.get('quanta_inference_batch_size')?.samples ?? []).filter(
      (s) => s.labels['model'] === 'cifar',
    );
    expect(batchSize.find((s) => s.labels['le'] === '1')?.value).toBe(20);
    expect(batchSize.find((s) => s.labels['le'] === '8')?.value).toBe(40);
    // The strict parser agrees with the npm one on every counter and gauge.
    for (const f of parsed.filter((p) => p.type === 'COUNTER' || p.type === 'GAUGE')) {
      expect(strict.get(f.name)?.samples.map((s) => s.value)).toEqual(f.metrics.map((m) => Number(m.value)));
    }
    for (const name of ['quanta_inference_queue_duration_seconds', 'quanta_inference_compute_duration_seconds'])
      expect(strict.get(name)?.type).toBe('histogram');
    expect(
      family(parsed, 'quanta_inference_request_bytes_total').metrics.find((m) => m.labels?.['model'] === 'cifar')
        ?.value,
    ).toBe('400');
    const ingested = family(parsed, 'quanta_monitoring_ingested_records_total').metrics;
    expect(Object.fromEntries(ingested.map((m) => [m.labels?.['result'], m.value]))).toEqual({
      accepted: '45',
      rejected: '1',
    });

    expect(Number(family(parsed, 'process_resident_memory_bytes').metrics[0]?.value)).toBeGreaterThan(10 * 1024 * 1024);
    expect(family(parsed, 'process_cpu_seconds_total').type).toBe('COUNTER');
    expect(Number(family(parsed, 'process_cpu_seconds_total').metrics[0]?.value)).toBeGreaterThan(0);
    expect(Number(family(parsed, 'process_start_time_seconds').metrics[0]?.value)).toBeGreaterThan(1.7e9);
  });

  it('shows a tenant only its own series, and nothing without a token', async () => {
    const own = await (await fetch(`${base}metrics`, { headers: { authorization: `Bearer ${reader}` } })).text();
    expect(own).toContain('model="cifar"');
    expect(own).not.toContain('globex');
    const none = await fetch(`${base}metrics`);
    expect(none.status).toBe(401);
    expect(((await none.json()) as { error: string }).error).toMatch(/monitoring:read/);
    const noScope = await fetch(`${base}api/overview?token=${await h.token('acme', ['infer'])}`);
    expect(noScope.status).toBe(403);
  });

  it('answers /api/overview with per-model series, and refuses bad parameters', async () => {
    const res = await fetch(`${base}api/overview?window=60&step=1`, { headers: { authorization: `Bearer ${reader}` } });
    expect(res.status).toBe(200);
    const o = (await res.json()) as Overview;
    expect(o.tenant).toBe('acme');
    expect(o.models.map((m) => [m.model, m.count])).toEqual([['cifar', 40]]);
    // Records without a route count as the primary's.
    expect(o.models[0]?.versions.map((v) => [v.version, v.route, v.count, v.shadow])).toEqual([
      ['1', 'primary', 40, null],
    ]);
    const points = o.models[0]?.points ?? [];
    expect(points).toHaveLength(60);
    expect(points.reduce((a, p) => a + p.count, 0)).toBe(40);
    expect(points.filter((p) => p.count > 0).map((p) => p.t)).toEqual([T0, T0 + 1000, T0 + 2000]);
    expect(o.models[0]?.errorRate).toBeCloseTo(0.1, 12);
    const bad = await fetch(`${base}api/overview?window=abc`, { headers: { authorization: `Bearer ${reader}` } });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/window must be a whole number/);
    expect((await fetch(`${base}nope`)).status).toBe(404);
    const page = await fetch(base);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<svg id="chart-throughput"');
  });

  it('the strict parser refuses what the format forbids', () => {
    const ok = '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3\nh_count 2\n';
    expect(parsePrometheusStrict(ok).get('h')?.samples).toHaveLength(4);
    expect(() => parsePrometheusStrict(ok.replace('le="1"} 1', 'le="1"} 5'))).toThrow(/not cumulative/);
    expect(() => parsePrometheusStrict(ok.replace('h_count 2', 'h_count 3'))).toThrow(/\+Inf/);
    expect(() => parsePrometheusStrict('x 1\n')).toThrow(/before its TYPE/);
    expect(() => parsePrometheusStrict('# TYPE x gauge\nx{a="b} 1\n')).toThrow();
    expect(() => parsePrometheusStrict('# TYPE x gauge\nx one\n')).toThrow(/bad value/);
  });
  it('counts cache results and shadow comparisons per version in /metrics', async () => {
    const cmp = { primaryVersion: '1', maxAbsError: 0.1, top1Rows: 4, top1AgreedRows: 3 };
    await ingest(h.client, admin, [
      [
        ...Array.from({ length: 6 }, (_, i) =>
          record(T0, { model: 'ranker', version: '1', cacheHit: i < 2, cacheMiss: i >= 2 }),
        ),
        ...Array.from({ length: 5 }, () => record(T0, { model: 'ranker', version: '2', route: 'shadow', shadow: cmp })),
      ],
    ]);
    const text = await (await fetch(`${base}metrics`, { headers: { authorization: `Bearer ${reader}` } })).text();
    const strict = parsePrometheusStrict(text);
    const value = (name: string, labels: Record<string, string>): number | undefined =>
      strict
        .get(name)
        ?.samples.find(
          (s) => s.labels['model'] === 'ranker' && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
        )?.value;
    expect(value('quanta_inference_cache_requests_total', { version: '1', result: 'hit' })).toBe(2);
    expect(value('quanta_inference_cache_requests_total', { version: '1', result: 'miss' })).toBe(4);
    expect(value('quanta_inference_shadow_comparisons_total', { version: '2' })).toBe(5);
    expect(value('quanta_inference_shadow_top1_rows_total', { version: '2', agreed: 'true' })).toBe(15);
    expect(value('quanta_inference_shadow_top1_rows_total', { version: '2', agreed: 'false' })).toBe(5);
    // A version without a cache or a shadow has no such series.
    expect(value('quanta_inference_shadow_comparisons_total', { version: '1' })).toBeUndefined();
  });
});
