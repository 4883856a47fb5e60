import { monitoring as pb } from '@quanta/contracts';
import type { AlertEngine } from '../core/alerts.js';
import type { DriftEngine } from '../core/drift.js';
import type { HealthBoard } from '../core/health-board.js';
import { timeSeries, toModelStats, versionStats } from '../core/queries.js';
import type { WindowStore } from '../core/window-store.js';

export interface OverviewPoint {
  /** The step's start, ms since the epoch. */
  t: number;
  count: number;
  errors: number;
  rps: number;
  p50: number;
  p95: number;
  p99: number;
  batch: number;
}

export interface OverviewModel {
  tenant: string;
  model: string;
  count: number;
  errorRate: number;
  throughputRps: number;
  p50Us: number;
  p95Us: number;
  p99Us: number;
  meanBatchSize: number;
  points: OverviewPoint[];
  /** Each version with requests in the window, by version: how it was routed, and a shadow's agreement. */
  versions: OverviewVersion[];
}

export interface OverviewVersion {
  version: string;
  /** 'primary', 'canary' or 'shadow' (of the version's newest record). */
  route: string;
  count: number;
  errorRate: number;
  p50Us: number;
  p99Us: number;
  /** Shadow versions only: agreement with the primary's answers. */
  shadow: { compared: number; maxAbsError: number; meanAbsError: number; top1Agreement: number | null } | null;
}

/** What the dashboard draws, as one JSON document (GET /api/overview). */
export interface Overview {
  now: number;
  windowSeconds: number;
  stepSeconds: number;
  /** The tenant shown, or null for every tenant (admin or public view). */
  tenant: string | null;
  models: OverviewModel[];
  health: {
    name: string;
    address: string;
    status: string;
    latencyMs: number;
    lastChange: number | null;
    error: string;
  }[];
  alerts: {
    tenant: string;
    rule: string;
    model: string;
    version: string;
    state: string;
    value: number;
    threshold: number;
    message: string;
    since: number | null;
  }[];
  /** Each input of each model with a drift baseline: its PSI over the window. */
  drift: {
    tenant: string;
    model: string;
    version: string;
    input: string;
    psi: number;
    count: number;
    mean: number;
    baselineMean: number;
  }[];
}

export function buildOverview(
  deps: { store: WindowStore; alerts: AlertEngine; board: HealthBoard; drift?: DriftEngine | undefined },
  options: { tenant: string | undefined; windowSeconds: number; stepSeconds: number },
): Overview {
  const { store } = deps;
  const now = store.clock();
  const windowSeconds = Math.min(options.windowSeconds, store.horizonSeconds);
  const end = Math.floor(now / 1000) + 1;
  const span = { start: end - windowSeconds, end };
  const tenants = options.tenant === undefined ? store.tenants() : [options.tenant];
  const models: OverviewModel[] = [];
  for (const tenant of tenants) {
    const names = [...new Set(store.series({ tenant }).map((s) => s.model))].sort();
    for (const model of names) {
      const agg = store.aggregate(store.series({ tenant, model }), span);
      if (agg.count === 0) continue;
      const stats = toModelStats(model, '', span, agg);
      const points = timeSeries(store, tenant, model, '', span, options.stepSeconds).map((p) => ({
        t: p.time?.getTime() ?? 0,
        count: Number(p.count),
        errors: Number(p.errorCount),
        rps: p.throughputRps,
        p50: p.total?.p50Us ?? 0,
        p95: p.total?.p95Us ?? 0,
        p99: p.total?.p99Us ?? 0,
        batch: p.meanBatchSize,
      }));
      models.push({
        tenant,
        model,
        count: agg.count,
        errorRate: stats.errorRate,
        throughputRps: stats.throughputRps,
        p50Us: stats.total?.p50Us ?? 0,
        p95Us: stats.total?.p95Us ?? 0,
        p99Us: stats.total?.p99Us ?? 0,
        meanBatchSize: agg.meanBatchSize,
        points,
        versions: versionStats(store, tenant, model, span).map((v) => ({
          version: v.version,
          route: v.route,
          count: Number(v.count),
          errorRate: v.errorRate,
          p50Us: v.total?.p50Us ?? 0,
          p99Us: v.total?.p99Us ?? 0,
          shadow:
            v.shadow === undefined
              ? null
              : {
                  compared: Number(v.shadow.compared),
                  maxAbsError: v.shadow.maxAbsError,
                  meanAbsError: v.shadow.meanAbsError,
                  top1Agreement: v.shadow.top1Rows === 0n ? null : v.shadow.top1Agreement,
                },
        })),
      });
    }
  }
  const alertTenants = options.tenant === undefined ? deps.alerts.tenants() : [options.tenant];
  return {
    now,
    windowSeconds,
    stepSeconds: options.stepSeconds,
    tenant: options.tenant ?? null,
    models,
    health: deps.board.board().map((h) => ({
      name: h.name,
      address: h.address,
      status: pb.serviceHealthStatusToJSON(h.status).replace('SERVICE_HEALTH_STATUS_', ''),
      latencyMs: h.latency === undefined ? 0 : Number(h.latency.seconds) * 1000 + h.latency.nanos / 1e6,
      lastChange: h.lastChangeTime?.getTime() ?? null,
      error: h.error,
    })),
    alerts: alertTenants.flatMap((tenant) =>
      deps.alerts.active(tenant).map((a) => ({
        tenant,
        rule: a.ruleName,
        model: a.model,
        version: a.version,
        state: pb.alertStateToJSON(a.state).replace('ALERT_STATE_', ''),
        value: a.value,
        threshold: a.threshold,
        message: a.message,
        since: (a.firingTime ?? a.pendingTime)?.getTime() ?? null,
      })),
    ),
    drift: (deps.drift?.baselines(options.tenant) ?? []).flatMap(({ tenant, baseline }) =>
      deps.drift!.drift(tenant, baseline.model, baseline.version, span).inputs.map((i) => ({
        tenant,
        model: baseline.model,
        version: baseline.version,
        input: i.input,
        psi: i.psi,
        count: Number(i.count),
        mean: i.mean,
        baselineMean: i.baselineMean,
      })),
    ),
  };
}
