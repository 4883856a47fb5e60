import * as grpc from '@grpc/grpc-js';
import { monitoring as pb } from '@quanta/contracts';
import { InputAccumulator, populationStabilityIndex } from '@quanta/monitoring-client';
import type { Store } from '@quanta/store';
import { testBackends } from '@quanta/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../testing/harness.js';
import { T0, alertRule, bearer, call, failure, seconds, startHarness, window } from '../testing/harness.js';

const S = pb.AlertState;

/** Normal values (Box–Muller on a fixed generator), so every run sees the same numbers. */
function normals(n: number, mean: number, sd: number, seed: number): number[] {
  let a = seed >>> 0;
  const r = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Array.from({ length: n }, () => mean + sd * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r()));
}

function accumulate(values: readonly number[]): InputAccumulator {
  const acc = new InputAccumulator();
  for (const v of values) acc.addValue(v);
  return acc;
}

/** A summary of `values` for input `input` of acme's cifar:1 at `timeMs`. */
function summary(timeMs: number, input: string, values: readonly number[], over: Partial<pb.InputSummary> = {}) {
  return {
    ...accumulate(values).toSummary({
      tenant: 'acme',
      model: 'cifar',
      version: '1',
      deployment: 'cifar-prod',
      input,
      time: new Date(timeMs),
    }),
    ...over,
  };
}

/** Sends summaries (and no records) over one Ingest stream. */
function send(h: Harness, token: string, summaries: pb.InputSummary[]): Promise<pb.IngestResponse> {
  return new Promise((resolve, reject) => {
    const stream = h.client.ingest(bearer(token), (error, response) => (error ? reject(error) : resolve(response)));
    stream.write({ records: [], inputSummaries: summaries });
    stream.end();
  });
}

describe.each(testBackends('test_monitoring_drift'))('drift detection on $name', (backend) => {
  let store: Store;
  let h: Harness;
  let admin: string;
  let acme: string;
  let acmeReader: string;
  let globex: string;
  const A = normals(4000, 0, 1, 1);
  const A2 = normals(4000, 0, 1, 2);
  const B = normals(4000, 1.5, 1, 3);

  beforeAll(async () => {
    store = await backend.open();
    h = await startHarness({ store });
    admin = await h.token('platform', ['admin']);
    acme = await h.token('acme', ['monitoring:read', 'alerts:write']);
    acmeReader = await h.token('acme', ['monitoring:read']);
    globex = await h.token('globex', ['monitoring:read', 'alerts:write']);
  });
  afterAll(async () => {
    await h.close();
    await backend.cleanup();
  });

  it('takes good summaries, rejects bad ones with reasons, never dropping the others', async () => {
    h.now.ms = T0 + 10_000;
    const good = summary(T0 + 1000, 'pixels', A.slice(0, 2000));
    const reply = await send(h, admin, [
      good,
      summary(T0 + 2000, 'pixels', A.slice(2000)),
      summary(T0 + 2000, 'age', [30, 40, 50]),
      summary(T0 + 2000, '', [1]),
      { ...good, bins: [...good.bins, { index: 400, count: 1n }], count: good.count + 1n },
      { ...good, bins: good.bins.slice(1) },
      { ...good, sum: Number.POSITIVE_INFINITY },
      { ...good, time: new Date(T0 + 3_600_000) },
      { ...good, time: new Date(T0 - 7_200_000) },
      { ...good, time: undefined },
      { ...good, model: '' },
    ]);
    expect(reply.summariesAccepted).toBe(3n);
    expect(reply.summariesRejected).toBe(8n);
    expect(reply.accepted).toBe(0n);
    const reasons = reply.rejections.map((r) => r.reason);
    expect(reply.rejections.every((r) => r.requestId === '' && r.batchIndex === 0)).toBe(true);
    expect(reply.rejections.map((r) => r.recordIndex)).toEqual([3, 4, 5, 6, 7, 8, 9, 10]);
    expect(reasons[0]).toMatch(/input is missing/);
    expect(reasons[1]).toMatch(/bin index 400 is outside -160\.\.160/);
    expect(reasons[2]).toMatch(/the bins hold \d+ values but count is \d+/);
    expect(reasons[3]).toMatch(/sum is not a finite number/);
    expect(reasons[4]).toMatch(/in the future/);
    expect(reasons[5]).toMatch(/older than the horizon/);
    expect(reasons[6]).toMatch(/time is missing/);
    expect(reasons[7]).toMatch(/model is missing/);
  });

  it('answers NOT_FOUND without a baseline, FAILED_PRECONDITION when a window holds no summaries', async () => {
    const noBaseline = await failure(
      call(h.client, 'getDrift', { model: 'cifar', version: '', span: window(60) }, acme),
    );
    expect(noBaseline.code).toBe(grpc.status.NOT_FOUND);
    expect(noBaseline.details).toMatch(/model "cifar" \(every version\) has no drift baseline/);
    const empty = await failure(
      call(h.client, 'setDriftBaseline', { model: 'bert', version: '', source: window(60) }, acme),
    );
    expect(empty.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(empty.details).toMatch(/no input summaries of model "bert".*no baseline was set/);
    // Another tenant sees nothing of acme's summaries.
    const other = await failure(
      call(h.client, 'setDriftBaseline', { model: 'cifar', version: '', source: window(60) }, globex),
    );
    expect(other.code).toBe(grpc.status.FAILED_PRECONDITION);
    const noSource = await failure(call(h.client, 'setDriftBaseline', { model: 'cifar', version: '' }, acme));
    expect(noSource.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(noSource.details).toMatch(/source is missing/);
    const readOnly = await failure(
      call(h.client, 'setDriftBaseline', { model: 'cifar', version: '', source: window(60) }, acmeReader),
    );
    expect(readOnly.code).toBe(grpc.status.PERMISSION_DENIED);
  });

  it('freezes a baseline from a window; GetDrift is ~0 for the same distribution, high for a shifted one', async () => {
    const set = await call(h.client, 'setDriftBaseline', { model: 'cifar', version: '', source: window(60) }, acme);
    const baseline = set.baseline!;
    expect(baseline.inputs.map((i) => [i.input, i.count])).toEqual([
      ['age', 3n],
      ['pixels', 4000n],
    ]);
    expect(baseline.createTime?.getTime()).toBe(T0 + 10_000);
    expect(baseline.endTime!.getTime() - baseline.startTime!.getTime()).toBe(60_000);
    const got = await call(h.client, 'getDriftBaseline', { model: 'cifar', version: '' }, acmeReader);
    expect(got.baseline).toEqual(baseline);

    // The same distribution (another sample of it) an hour's minute later.
    h.now.ms = T0 + 100_000;
    await send(h, admin, [summary(T0 + 95_000, 'pixels', A2), summary(T0 + 95_000, 'age', [30, 40, 50, 40])]);
    const same = await call(h.client, 'getDrift', { model: 'cifar', version: '', span: window(30) }, acmeReader);
    const pixels = same.inputs.find((i) => i.input === 'pixels')!;
    expect(pixels.psi).toBeLessThan(0.1);
    expect(pixels.psi).toBeCloseTo(populationStabilityIndex(accumulate(A2), accumulate(A)), 12);
    expect(pixels.count).toBe(4000n);
    expect(Math.abs(pixels.mean)).toBeLessThan(0.1);
    expect(Math.abs(pixels.stddev - 1)).toBeLessThan(0.1);
    expect(Math.abs(pixels.baselineMean)).toBeLessThan(0.1);
    expect(same.inputs.map((i) => i.input)).toEqual(['age', 'pixels']);
    expect(same.maxPsi).toBe(Math.max(...same.inputs.map((i) => i.psi)));
    expect(same.baselineTime?.getTime()).toBe(T0 + 10_000);
    expect(same.startTime?.getTime()).toBe(T0 + 71_000);

    // Shifted by 1.5 standard deviations.
    h.now.ms = T0 + 200_000;
    await send(h, admin, [summary(T0 + 195_000, 'pixels', B)]);
    const shifted = await call(h.client, 'getDrift', { model: 'cifar', version: '', span: window(30) }, acmeReader);
    const moved = shifted.inputs.find((i) => i.input === 'pixels')!;
    expect(moved.psi).toBeGreaterThan(0.25);
    expect(moved.mean).toBeGreaterThan(1.3);
    // No age values in the window: count 0, psi 0.
    expect(shifted.inputs.find((i) => i.input === 'age')).toMatchObject({ count: 0n, psi: 0 });
    expect(shifted.maxPsi).toBe(moved.psi);
  });

  it('fires a drift_psi alert naming the input, and resolves it when the input is back', async () => {
    const bad = await failure(
      call(
        h.client,
        'createAlertRule',
        { rule: alertRule({ name: 'p99-input', input: 'pixels', threshold: 5 }) },
        acme,
      ),
    );
    expect(bad.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(bad.details).toMatch(/input is only for ALERT_METRIC_DRIFT_PSI/);
    const drift = alertRule({
      name: 'pixels-drift',
      metric: pb.AlertMetric.ALERT_METRIC_DRIFT_PSI,
      threshold: 0.25,
      window: seconds(30),
      forDuration: seconds(0),
    });
    const created = await call(h.client, 'createAlertRule', { rule: { ...drift, input: 'pixels' } }, acme);
    expect(created.rule?.input).toBe('pixels');
    // A rule on a model without a baseline never holds.
    await call(h.client, 'createAlertRule', { rule: { ...drift, name: 'bert-drift', model: 'bert' } }, acme);
    await send(h, admin, [{ ...summary(T0 + 199_000, 'x', B), model: 'bert' }]);

    h.server.alerts.evaluate();
    const firing = await call(h.client, 'listAlerts', { pageSize: 0, pageToken: '', states: [], ruleName: '' }, acme);
    expect(firing.alerts.map((a) => [a.ruleName, a.state, a.input, a.version])).toEqual([
      ['pixels-drift', S.ALERT_STATE_FIRING, 'pixels', '1'],
    ]);
    expect(firing.alerts[0]!.value).toBeGreaterThan(0.25);
    expect(firing.alerts[0]!.message).toMatch(/drift PSI of input "pixels" \d\.\d{3} > 0\.250 over 30 s/);

    h.now.ms = T0 + 300_000;
    await send(h, admin, [summary(T0 + 299_000, 'pixels', A2)]);
    h.server.alerts.evaluate();
    const resolved = await call(h.client, 'listAlerts', { pageSize: 0, pageToken: '', states: [], ruleName: '' }, acme);
    expect(resolved.alerts.map((a) => [a.ruleName, a.state])).toEqual([['pixels-drift', S.ALERT_STATE_RESOLVED]]);
  });

  it('freezes a baseline from summaries the caller sends (per version), validated', async () => {
    const inputs = {
      $case: 'inputs' as const,
      value: { summaries: [summary(0, 'pixels', B.slice(0, 1000)), summary(0, 'pixels', B.slice(1000))] },
    };
    const set = await call(h.client, 'setDriftBaseline', { model: 'cifar', version: '1', source: inputs }, acme);
    expect(set.baseline?.inputs.map((i) => [i.input, i.count])).toEqual([['pixels', 4000n]]);
    expect(set.baseline?.startTime).toBeUndefined();
    // Version 1 is now compared with its own baseline (B), the model's (A) stays for other versions.
    h.now.ms = T0 + 400_000;
    await send(h, admin, [summary(T0 + 399_000, 'pixels', B)]);
    const v1 = await call(h.client, 'getDrift', { model: 'cifar', version: '1', span: window(30) }, acme);
    expect(v1.inputs.map((i) => i.input)).toEqual(['pixels']);
    expect(v1.inputs[0]!.psi).toBe(0);
    const all = await call(h.client, 'getDrift', { model: 'cifar', version: '', span: window(30) }, acme);
    expect(all.maxPsi).toBeGreaterThan(0.25);

    const badBin = await failure(
      call(
        h.client,
        'setDriftBaseline',
        {
          model: 'cifar',
          version: '1',
          source: {
            $case: 'inputs',
            value: { summaries: [{ ...summary(0, 'pixels', [1, 2]), bins: [{ index: -161, count: 2n }] }] },
          },
        },
        acme,
      ),
    );
    expect(badBin.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(badBin.details).toMatch(/inputs\.summaries\[0\] \(input "pixels"\): bin index -161 is outside/);
    const none = await failure(
      call(
        h.client,
        'setDriftBaseline',
        { model: 'cifar', version: '1', source: { $case: 'inputs', value: { summaries: [] } } },
        acme,
      ),
    );
    expect(none.details).toMatch(/inputs\.summaries is empty/);
    const nanOnly = await failure(
      call(
        h.client,
        'setDriftBaseline',
        {
          model: 'cifar',
          version: '1',
          source: { $case: 'inputs', value: { summaries: [summary(0, 'mask', [Number.NaN])] } },
        },
        acme,
      ),
    );
    expect(nanOnly.details).toMatch(/hold no values \(NaN aside\) for input "mask"/);
  });

  it('keeps baselines across a restart; delete answers NOT_FOUND the second time', async () => {
    const before = await call(h.client, 'getDriftBaseline', { model: 'cifar', version: '' }, acme);
    await h.restart();
    const after = await call(h.client, 'getDriftBaseline', { model: 'cifar', version: '' }, acme);
    expect(after.baseline).toEqual(before.baseline);
    const v1 = await call(h.client, 'getDriftBaseline', { model: 'cifar', version: '1' }, acme);
    expect(v1.baseline?.inputs[0]?.count).toBe(4000n);
    const rule = await call(h.client, 'getAlertRule', { name: 'pixels-drift' }, acme);
    expect(rule.rule?.input).toBe('pixels');

    await call(h.client, 'deleteDriftBaseline', { model: 'cifar', version: '1' }, acme);
    const gone = await failure(call(h.client, 'deleteDriftBaseline', { model: 'cifar', version: '1' }, acme));
    expect(gone.code).toBe(grpc.status.NOT_FOUND);
    expect(gone.details).toMatch(/model "cifar" version 1 has no drift baseline/);
    const get = await failure(call(h.client, 'getDriftBaseline', { model: 'cifar', version: '1' }, acme));
    expect(get.code).toBe(grpc.status.NOT_FOUND);
    const otherTenant = await failure(call(h.client, 'getDriftBaseline', { model: 'cifar', version: '' }, globex));
    expect(otherTenant.code).toBe(grpc.status.NOT_FOUND);
    await h.restart();
    await failure(call(h.client, 'getDriftBaseline', { model: 'cifar', version: '1' }, acme));
    expect((await call(h.client, 'getDriftBaseline', { model: 'cifar', version: '' }, acme)).baseline).toBeDefined();
  });
});
