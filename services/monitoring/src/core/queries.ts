import { monitoring as pb } from '@quanta/contracts';
import { ERROR_CODES, invalidArgument } from '@quanta/service-kit';
import type { Aggregate, ShadowTotals } from './aggregate.js';
import type { SecondSpan, Series, WindowStore } from './window-store.js';

/** Status names by gRPC status code: OK, then the error codes, which follow gRPC's numbering. */
const STATUS_NAMES: readonly string[] = ['OK', ...ERROR_CODES];

/** The name of a gRPC status code, e.g. 8 → RESOURCE_EXHAUSTED. */
export function statusName(code: number): string {
  return (Number.isInteger(code) ? STATUS_NAMES[code] : undefined) ?? `CODE_${code}`;
}

export function latencySummary(s: Aggregate['total']): pb.LatencySummary {
  const [p50, p95, p99] = s.quantiles([0.5, 0.95, 0.99]);
  return { p50Us: p50 ?? 0, p95Us: p95 ?? 0, p99Us: p99 ?? 0, meanUs: s.mean, maxUs: s.max };
}

export function toModelStats(model: string, version: string, span: SecondSpan, agg: Aggregate): pb.ModelStats {
  const seconds = span.end - span.start;
  return {
    model,
    version,
    startTime: new Date(span.start * 1000),
    endTime: new Date(span.end * 1000),
    count: BigInt(agg.count),
    errorCount: BigInt(agg.errorCount),
    errorRate: agg.count === 0 ? 0 : agg.errorCount / agg.count,
    throughputRps: agg.count / seconds,
    statuses: [...agg.statuses.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([code, count]) => ({ statusCode: code, statusName: statusName(code), count: BigInt(count) })),
    queue: latencySummary(agg.queue),
    compute: latencySummary(agg.compute),
    total: latencySummary(agg.total),
    batchSizes: [...agg.batchSizes.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([batchSize, count]) => ({ batchSize, count: BigInt(count) })),
    bytesIn: BigInt(agg.bytesIn),
    bytesOut: BigInt(agg.bytesOut),
    cacheHitCount: BigInt(agg.cacheHits),
    cacheMissCount: BigInt(agg.cacheMisses),
    // A route belongs to a version: statistics of every version together have none.
    route: version === '' ? '' : agg.route,
    ...(agg.shadow === null ? {} : { shadow: shadowAgreement(agg.shadow) }),
  };
}

export function shadowAgreement(t: ShadowTotals): pb.ShadowAgreement {
  return {
    compared: BigInt(t.compared),
    maxAbsError: t.max,
    meanAbsError: t.finiteCount === 0 ? 0 : t.finiteSum / t.finiteCount,
    top1Rows: BigInt(t.top1Rows),
    top1Agreement: t.top1Rows === 0 ? 0 : t.top1Agreed / t.top1Rows,
  };
}

/** Versions ordered as numbers where both are, else as text. */
export function byVersionOrder(a: string, b: string): number {
  const [na, nb] = [Number(a), Number(b)];
  if (a !== '' && b !== '' && Number.isFinite(na) && Number.isFinite(nb) && na !== nb) return na - nb;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Each version of a model that had requests in the span, separately, ordered by version. */
export function versionStats(store: WindowStore, tenant: string, model: string, span: SecondSpan): pb.ModelStats[] {
  const out: pb.ModelStats[] = [];
  for (const s of store.series({ tenant, model })) {
    // Read at once: the scratch aggregate is the next version's.
    const agg = store.aggregateScratch([s], span);
    if (agg.count > 0) out.push(toModelStats(model, s.version, span, agg));
  }
  return out.sort((a, b) => byVersionOrder(a.version, b.version));
}

/** A model's (or one version's) statistics over a span. */
export function modelStats(
  store: WindowStore,
  tenant: string,
  model: string,
  version: string,
  span: SecondSpan,
): pb.ModelStats {
  const series = store.series({ tenant, model, version });
  return toModelStats(model, version, span, store.aggregateScratch(series, span));
}

export const MAX_POINTS = 3600;

/** One point per `stepSeconds`, oldest first; steps without requests are zeros. */
export function timeSeries(
  store: WindowStore,
  tenant: string,
  model: string,
  version: string,
  span: SecondSpan,
  stepSeconds: number,
): pb.TimeSeriesPoint[] {
  if (!Number.isInteger(stepSeconds) || stepSeconds < 1)
    throw invalidArgument(`step must be a whole number of seconds >= 1, got ${stepSeconds} s`);
  const points = Math.ceil((span.end - span.start) / stepSeconds);
  if (points > MAX_POINTS) {
    throw invalidArgument(
      `step ${stepSeconds} s gives ${points} points over ${span.end - span.start} s; ` +
        `at most ${MAX_POINTS}: use a larger step`,
    );
  }
  const series = store.series({ tenant, model, version });
  const out: pb.TimeSeriesPoint[] = [];
  // Points are aligned to the end (now), so the newest point is always a full step.
  for (let end = span.end; end > span.start; end -= stepSeconds) {
    const start = Math.max(span.start, end - stepSeconds);
    const agg = store.aggregateScratch(series, { start, end });
    out.push({
      time: new Date(start * 1000),
      count: BigInt(agg.count),
      errorCount: BigInt(agg.errorCount),
      throughputRps: agg.count / (end - start),
      queue: latencySummary(agg.queue),
      compute: latencySummary(agg.compute),
      total: latencySummary(agg.total),
      meanBatchSize: agg.meanBatchSize,
    });
  }
  return out.reverse();
}

/** The models (or model versions) ranked by traffic, p99 of the total time, or error rate. */
export function topModels(
  store: WindowStore,
  tenant: string,
  span: SecondSpan,
  order: pb.TopModelsOrder,
  limit: number,
  byVersion: boolean,
): pb.ModelStats[] {
  if (limit > 1000) throw invalidArgument(`limit must be at most 1000, got ${limit}`);
  const groups = new Map<string, { model: string; version: string; series: Series[] }>();
  for (const s of store.series({ tenant })) {
    const version = byVersion ? s.version : '';
    const key = `${s.model}\u0000${version}`;
    const g = groups.get(key);
    if (g === undefined) groups.set(key, { model: s.model, version, series: [s] });
    else g.series.push(s);
  }
  const ranked: pb.ModelStats[] = [];
  for (const g of groups.values()) {
    // Read at once: the scratch aggregate is the next group's.
    const agg = store.aggregateScratch(g.series, span);
    if (agg.count > 0) ranked.push(toModelStats(g.model, g.version, span, agg));
  }
  const key = (m: pb.ModelStats): number =>
    order === pb.TopModelsOrder.TOP_MODELS_ORDER_P99_LATENCY
      ? (m.total?.p99Us ?? 0)
      : order === pb.TopModelsOrder.TOP_MODELS_ORDER_ERROR_RATE
        ? m.errorRate
        : Number(m.count);
  ranked.sort((a, b) => key(b) - key(a) || a.model.localeCompare(b.model) || a.version.localeCompare(b.version));
  return ranked.slice(0, limit === 0 ? 10 : limit);
}
