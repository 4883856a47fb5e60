import { existsSync } from 'node:fs';
import { monitoring as pb } from '@quanta/contracts';
import { InputAccumulator } from '@quanta/monitoring-client';
import type { QuantaService } from '@quanta/service-kit';
import { createService } from '@quanta/service-kit';
import { pino } from 'pino';
import type { Browser } from 'playwright-core';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../testing/harness.js';
import { T0, bearer, call, ingest, record, startHarness } from '../testing/harness.js';

/** A summary of cifar's input `pixels` holding `values`, at `timeMs`. */
function pixels(values: number[], timeMs: number): pb.InputSummary {
  const acc = new InputAccumulator();
  for (const v of values) acc.addValue(v);
  return acc.toSummary({
    tenant: 'acme',
    model: 'cifar',
    version: '1',
    deployment: '',
    input: 'pixels',
    time: new Date(timeMs),
  });
}

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  console.warn(
    `dashboard browser test skipped: ${CHROMIUM} is absent (install it: apt-get update && apt-get install -y chromium)`,
  );
}

describe.skipIf(!haveChromium)('dashboard in headless Chromium', () => {
  let h: Harness;
  let target: QuantaService;
  let browser: Browser;

  beforeAll(async () => {
    target = createService({ name: 'target', port: 0, logger: pino({ level: 'silent' }) });
    const { port } = await target.start();
    h = await startHarness({
      config: { dashboardPublic: true },
      targets: [{ name: 'registry', address: `127.0.0.1:${port}` }],
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  });
  afterAll(async () => {
    await browser?.close();
    await h?.close();
    await target?.stop({ graceMs: 0 });
  });

  it(
    'draws the records fed through gRPC: ' + 'throughput, latency, errors, batch size, health and firing alerts',
    async () => {
      h.now.ms = T0 + 30_000;
      const page = await browser.newPage();
      const consoleErrors: string[] = [];
      page.on('pageerror', (e) => consoleErrors.push(e.message));
      await page.goto(`${h.server.http.url}?window=60&step=5`);
      await page.waitForSelector('#models td.empty');
      expect(await page.locator('svg[data-chart="throughput"] polyline').count()).toBe(0);

      // Feed: cifar 120 requests over 30 s (12 failed), bert 30 requests, another tenant's 7.
      const admin = await h.token('platform', ['admin']);
      const cifar = Array.from({ length: 120 }, (_, i) =>
        record(T0 + (i % 30) * 1000, {
          totalUs: BigInt(2000 + i * 100),
          statusCode: i % 10 === 0 ? 14 : 0,
          batchSize: 4,
        }),
      );
      const bert = Array.from({ length: 30 }, (_, i) =>
        record(T0 + i * 1000, { model: 'bert', totalUs: 50_000n, batchSize: 1 }),
      );
      const other = Array.from({ length: 7 }, () => record(T0 + 1000, { tenant: 'globex', model: 'resnet' }));
      const reply = await ingest(h.client, admin, [cifar, bert, other]);
      expect(reply.accepted).toBe(157n);

      const reader = await h.token('acme', ['monitoring:read', 'alerts:write']);
      await call(
        h.client,
        'createAlertRule',
        {
          rule: {
            name: 'bert-slow',
            model: 'bert',
            version: '',
            metric: pb.AlertMetric.ALERT_METRIC_P99_LATENCY_US,
            comparison: pb.AlertComparison.ALERT_COMPARISON_ABOVE,
            threshold: 20_000,
            window: { seconds: 60n, nanos: 0 },
            forDuration: { seconds: 0n, nanos: 0 },
            description: '',
            input: '',
            webhooks: [],
          },
        },
        reader,
      );
      h.server.alerts.evaluate();
      await h.server.board.checkNow();

      // The page refreshes by itself (every 2 s): wait for the new data to be drawn.
      const throughput = 'svg[data-chart="throughput"] polyline';
      await page.waitForSelector(`${throughput}[data-key="acme/cifar"][data-total="120"]`, { timeout: 15_000 });
      expect(await page.getAttribute(`${throughput}[data-key="acme/bert"]`, 'data-total')).toBe('30');
      expect(await page.getAttribute(`${throughput}[data-key="globex/resnet"]`, 'data-total')).toBe('7');
      expect(await page.getAttribute(`${throughput}[data-key="acme/cifar"]`, 'data-points')).toBe('12'); // 60 s / 5 s
      // The polyline's points are the drawn series: 12 x,y pairs; the steps before T0 are empty
      // (at the bottom), those from T0 on carry the traffic (higher up: SVG y grows downwards).
      const points = (await page.getAttribute(`${throughput}[data-key="acme/cifar"]`, 'points'))?.split(' ') ?? [];
      expect(points).toHaveLength(12);
      const ys = points.map((p) => Number(p.split(',')[1]));
      expect(new Set(ys.slice(0, 5)).size).toBe(1);
      expect(Math.max(...ys.slice(6))).toBeLessThan(ys[0] ?? 0);

      expect(await page.locator('svg[data-chart="latency"] polyline').count()).toBe(9); // p50/p95/p99 × 3 models
      expect(await page.getAttribute('svg[data-chart="errors"] polyline[data-key="acme/cifar"]', 'data-total')).toBe(
        '12',
      );
      expect(await page.locator('svg[data-chart="batch"] polyline').count()).toBe(3);
      expect(await page.getAttribute('#models tr[data-model="cifar"]', 'data-count')).toBe('120');
      expect(await page.getAttribute('#health tr[data-service="registry"]', 'data-status')).toBe('SERVING');
      expect(await page.getAttribute('#alerts tr[data-rule="bert-slow"]', 'data-state')).toBe('FIRING');

      // Drift: a baseline of values in [0, 1), then a window of values in [3, 4): a major shift.
      expect(await page.textContent('#drift td.empty')).toMatch(/no model has a drift baseline/);
      const base = Array.from({ length: 1000 }, (_, i) => i / 1000);
      const source = { $case: 'inputs' as const, value: { summaries: [pixels(base, 0)] } };
      await call(h.client, 'setDriftBaseline', { model: 'cifar', version: '', source }, reader);
      await new Promise<void>((resolve, reject) => {
        const stream = h.client.ingest(bearer(admin), (error) => (error ? reject(error) : resolve()));
        stream.write({
          records: [],
          inputSummaries: [
            pixels(
              base.map((v) => v + 3),
              T0 + 20_000,
            ),
          ],
        });
        stream.end();
      });
      await page.waitForSelector('#drift tr[data-model="cifar"][data-input="pixels"][data-verdict="major"]', {
        timeout: 15_000,
      });

      // A tenant's token shows that tenant only.
      const own = await browser.newPage();
      await own.goto(`${h.server.http.url}?window=60&step=5&token=${reader}`);
      await own.waitForSelector(`${throughput}[data-key="acme/cifar"]`);
      expect(await own.locator(throughput).count()).toBe(2);
      expect(own.url()).not.toContain('token='); // kept for the tab, dropped from the address bar
      expect(consoleErrors).toEqual([]);
    },
  );
  it('lists each version with its route, and a shadow with its agreement with the primary', async () => {
    h.now.ms = T0 + 30_000;
    const page = await browser.newPage();
    await page.goto(`${h.server.http.url}?window=60&step=5`);
    const admin = await h.token('platform', ['admin']);
    const at = (i: number): number => T0 + (i % 20) * 1000;
    await ingest(h.client, admin, [
      [
        ...Array.from({ length: 20 }, (_, i) => record(at(i), { model: 'ranker', version: '1', route: 'primary' })),
        ...Array.from({ length: 20 }, (_, i) =>
          record(at(i), {
            model: 'ranker',
            version: '2',
            route: 'shadow',
            shadow: {
              primaryVersion: '1',
              maxAbsError: i < 10 ? 0.5 : 0.25,
              top1Rows: 1,
              top1AgreedRows: i < 15 ? 1 : 0,
            },
          }),
        ),
      ],
    ]);
    const shadow = '#versions tr[data-model="ranker"][data-version="2"]';
    await page.waitForSelector(shadow, { timeout: 15_000 });
    expect(await page.getAttribute(shadow, 'data-route')).toBe('shadow');
    expect(await page.textContent(shadow)).toContain('20 compared, max err 0.500, mean 0.375, top-1 75.0%');
    expect(await page.getAttribute('#versions tr[data-model="ranker"][data-version="1"]', 'data-route')).toBe(
      'primary',
    );
    await page.close();
  });
});
