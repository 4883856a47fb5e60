import { TraceFlags, trace, type Link } from '@opentelemetry/api';
import { monitoring as pb } from '@quanta/contracts';
import type { CallContext } from '@quanta/service-kit';
import {
  audited,
  clientStreaming,
  createAuditor,
  hasScope,
  internal,
  invalidArgument,
  serverStreaming,
  unary,
} from '@quanta/service-kit';
import { AuditPageTokenError, listAuditEvents, recordAuditEvent } from '@quanta/store';
import type { Queryable } from '@quanta/store';
import type { AlertEngine } from '../core/alerts.js';
import type { DriftEngine } from '../core/drift.js';
import { validateSummary } from '../core/drift-validate.js';
import { durationMs } from '../core/durations.js';
import type { HealthBoard } from '../core/health-board.js';
import { modelStats, timeSeries, topModels, versionStats } from '../core/queries.js';
import type { SpanRequest } from '../core/span.js';
import { resolveSpan } from '../core/span.js';
import { validateRecord } from '../core/validate.js';
import type { Sample } from '../core/sample.js';
import type { WindowStore } from '../core/window-store.js';

export const MAX_REJECTIONS = 100;
/** Links one ingest span keeps to the requests whose records it took (OpenTelemetry's default limit). */
export const MAX_LINKS = 128;
// Looked up per use, not at import: initTelemetry replaces the global provider, and a tracer
// taken before it would stay a no-op.
const tracer = (): ReturnType<typeof trace.getTracer> => trace.getTracer('quanta-monitoring');
const TRACE_ID = /^(?!0{32})[0-9a-f]{32}$/;
const SPAN_ID = /^(?!0{16})[0-9a-f]{16}$/;

/** Links to the traced requests of a batch: the ingest is linked to them, never a child of theirs. */
function linksOf(records: readonly pb.InferenceRecord[]): Link[] {
  const links: Link[] = [];
  for (const r of records) {
    if (links.length === MAX_LINKS) break;
    if (TRACE_ID.test(r.traceId) && SPAN_ID.test(r.spanId)) {
      links.push({ context: { traceId: r.traceId, spanId: r.spanId, traceFlags: TraceFlags.SAMPLED, isRemote: true } });
    }
  }
  return links;
}
const DEFAULT_PAGE = 50;
const MAX_PAGE = 1000;

export interface MonitoringCore {
  readonly store: WindowStore;
  readonly alerts: AlertEngine;
  readonly board: HealthBoard;
  /** Input summaries (drift detection) and drift baselines. */
  readonly drift: DriftEngine;
  /** Every accepted sample goes here (windows and Prometheus counters). */
  accept(sample: Sample): void;
  countIngest(accepted: number, rejected: number): void;
  /** Resolves when the service stops, ending the watch streams. */
  readonly stopped: AbortSignal;
  /** Where alert-rule changes are audited; undefined when the service keeps no store (nothing is recorded). */
  readonly auditStore?: Queryable | undefined;
}

function tenantOf(ctx: CallContext): string {
  const tenant = ctx.principal?.tenant;
  if (tenant === undefined) throw internal('no principal on an authenticated call');
  return tenant;
}

type SpanField =
  { $case: 'window'; value: { seconds: bigint; nanos: number } } | { $case: 'range'; value: pb.TimeRange } | undefined;

export function spanRequest(span: SpanField): SpanRequest | undefined {
  if (span === undefined) return undefined;
  if (span.$case === 'window') return { windowMs: durationMs(span.value) };
  const start = span.value.startTime;
  if (start === undefined) throw invalidArgument('range.start_time is missing');
  const end = span.value.endTime;
  return end === undefined ? { startMs: start.getTime() } : { startMs: start.getTime(), endMs: end.getTime() };
}

function page<T>(items: readonly T[], pageSize: number, token: string, what: string): { page: T[]; next: string } {
  if (pageSize > MAX_PAGE) throw invalidArgument(`page_size must be at most ${MAX_PAGE}, got ${pageSize}`);
  const size = pageSize === 0 ? DEFAULT_PAGE : pageSize;
  let offset = 0;
  if (token !== '') {
    const match = /^o(\d+)$/.exec(Buffer.from(token, 'base64url').toString('utf8'));
    if (match === null) throw invalidArgument(`page_token "${token}" is not one this service gave for ${what}`);
    offset = Number(match[1]);
  }
  const slice = items.slice(offset, offset + size);
  const next = offset + size < items.length ? Buffer.from(`o${offset + size}`).toString('base64url') : '';
  return { page: slice, next };
}

/** Streams alert changes until the client cancels or the service stops. */
async function* watchAlerts(
  core: MonitoringCore,
  tenant: string,
  ruleName: string,
  signal: AbortSignal,
): AsyncGenerator<pb.WatchAlertsResponse> {
  const queue: pb.Alert[] = [];
  let wake: (() => void) | undefined;
  const unsubscribe = core.alerts.subscribe((t, alert) => {
    if (t !== tenant || (ruleName !== '' && alert.ruleName !== ruleName)) return;
    queue.push(alert);
    wake?.();
  });
  const onEnd = (): void => wake?.();
  signal.addEventListener('abort', onEnd);
  core.stopped.addEventListener('abort', onEnd);
  try {
    yield { event: { $case: 'snapshot', value: { alerts: core.alerts.active(tenant, ruleName) } } };
    while (!signal.aborted && !core.stopped.aborted) {
      if (queue.length === 0) {
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
      while (queue.length > 0) {
        const change = queue.shift();
        if (change !== undefined) yield { event: { $case: 'change', value: change } };
      }
    }
  } finally {
    unsubscribe();
    signal.removeEventListener('abort', onEnd);
    core.stopped.removeEventListener('abort', onEnd);
  }
}

/** The audit table monitoring's migrations create. */
export const MONITORING_AUDIT_TABLE = 'monitoring_audit';

const OUTCOME = { ok: pb.AuditOutcome.AUDIT_OUTCOME_OK, error: pb.AuditOutcome.AUDIT_OUTCOME_ERROR } as const;

export function createMonitoringHandlers(core: MonitoringCore): pb.MonitoringServiceServer {
  const { store, alerts, board, auditStore, drift } = core;
  const audit = createAuditor(async (entry) => {
    if (auditStore !== undefined) await recordAuditEvent(auditStore, MONITORING_AUDIT_TABLE, entry);
  });
  const ruleOf = (name: string | undefined): string => `alert-rule/${name ?? ''}`;
  // Each method's scope and tenant rule is in access.ts (MONITORING_ACCESS).
  return {
    ingest: clientStreaming<pb.IngestRequest, pb.IngestResponse>(async (requests) => {
      let accepted = 0;
      let rejected = 0;
      let summariesAccepted = 0;
      let summariesRejected = 0;
      const rejections: pb.RejectedRecord[] = [];
      let batchIndex = 0;
      for await (const request of requests) {
        const span = tracer().startSpan('monitoring.ingest_batch', {
          links: linksOf(request.records),
          attributes: { 'quanta.records': request.records.length },
        });
        const now = store.clock();
        const oldestMs = store.oldestSecond() * 1000;
        let batchAccepted = 0;
        request.records.forEach((record, recordIndex) => {
          const result = validateRecord(record, now, oldestMs);
          if (typeof result === 'string') {
            rejected++;
            if (rejections.length < MAX_REJECTIONS)
              rejections.push({ batchIndex, recordIndex, requestId: record.requestId, reason: result });
          } else {
            core.accept(result);
            batchAccepted++;
          }
        });
        // Input summaries: a bad one never drops the others; its reason joins the rejections.
        request.inputSummaries.forEach((summary, index) => {
          const reason = validateSummary(summary, now, oldestMs);
          if (reason === undefined) {
            drift.store.add(summary);
            summariesAccepted++;
          } else {
            summariesRejected++;
            if (rejections.length < MAX_REJECTIONS)
              rejections.push({
                batchIndex,
                recordIndex: index,
                requestId: '',
                reason: `input summary ${index} (input "${summary.input}"): ${reason}`,
              });
          }
        });
        accepted += batchAccepted;
        core.countIngest(batchAccepted, request.records.length - batchAccepted);
        span.setAttribute('quanta.records_rejected', request.records.length - batchAccepted);
        span.end();
        batchIndex++;
      }
      return {
        accepted: BigInt(accepted),
        rejected: BigInt(rejected),
        rejections,
        summariesAccepted: BigInt(summariesAccepted),
        summariesRejected: BigInt(summariesRejected),
      };
    }),

    getModelStats: unary<pb.GetModelStatsRequest, pb.GetModelStatsResponse>(async (req, ctx) => {
      if (req.model === '') throw invalidArgument('model is missing');
      const span = resolveSpan(spanRequest(req.span), store.clock(), store.horizonSeconds);
      const tenant = tenantOf(ctx);
      const stats = modelStats(store, tenant, req.model, req.version, span);
      const versions = req.byVersion && req.version === '' ? versionStats(store, tenant, req.model, span) : [];
      return Promise.resolve({ stats, versions });
    }),

    getTimeSeries: unary<pb.GetTimeSeriesRequest, pb.GetTimeSeriesResponse>(async (req, ctx) => {
      if (req.model === '') throw invalidArgument('model is missing');
      const span = resolveSpan(spanRequest(req.span), store.clock(), store.horizonSeconds);
      const stepMs = req.step === undefined ? 60_000 : durationMs(req.step);
      if (stepMs % 1000 !== 0 || stepMs < 1000)
        throw invalidArgument(`step must be a whole number of seconds >= 1, got ${stepMs / 1000} s`);
      const points = timeSeries(store, tenantOf(ctx), req.model, req.version, span, stepMs / 1000);
      return Promise.resolve({
        model: req.model,
        version: req.version,
        step: { seconds: BigInt(stepMs / 1000), nanos: 0 },
        points,
      });
    }),

    topModels: unary<pb.TopModelsRequest, pb.TopModelsResponse>(async (req, ctx) => {
      const span = resolveSpan(spanRequest(req.span), store.clock(), store.horizonSeconds);
      if (pb.topModelsOrderToJSON(req.orderBy) === 'UNRECOGNIZED')
        throw invalidArgument(`order_by ${req.orderBy} is unknown`);
      return Promise.resolve({ models: topModels(store, tenantOf(ctx), span, req.orderBy, req.limit, req.byVersion) });
    }),

    createAlertRule: unary<pb.CreateAlertRuleRequest, pb.CreateAlertRuleResponse>(
      audited(
        audit,
        (req) => ruleOf(req.rule?.name),
        async (req, ctx) => {
          if (req.rule === undefined) throw invalidArgument('rule is missing');
          return { rule: await alerts.createRule(tenantOf(ctx), req.rule) };
        },
      ),
    ),
    getAlertRule: unary<pb.GetAlertRuleRequest, pb.GetAlertRuleResponse>(async (req, ctx) =>
      Promise.resolve({ rule: alerts.getRule(tenantOf(ctx), req.name) }),
    ),
    listAlertRules: unary<pb.ListAlertRulesRequest, pb.ListAlertRulesResponse>(async (req, ctx) => {
      const { page: rules, next } = page(
        alerts.listRules(tenantOf(ctx), req.model),
        req.pageSize,
        req.pageToken,
        'ListAlertRules',
      );
      return Promise.resolve({ rules, nextPageToken: next });
    }),
    updateAlertRule: unary<pb.UpdateAlertRuleRequest, pb.UpdateAlertRuleResponse>(
      audited(
        audit,
        (req) => ruleOf(req.rule?.name),
        async (req, ctx) => {
          if (req.rule === undefined) throw invalidArgument('rule is missing');
          return { rule: await alerts.updateRule(tenantOf(ctx), req.rule) };
        },
      ),
    ),
    deleteAlertRule: unary<pb.DeleteAlertRuleRequest, pb.DeleteAlertRuleResponse>(
      audited(
        audit,
        (req) => ruleOf(req.name),
        async (req, ctx) => {
          await alerts.deleteRule(tenantOf(ctx), req.name);
          return {};
        },
      ),
    ),
    listAuditEvents: unary<pb.ListAuditEventsRequest, pb.ListAuditEventsResponse>(async (req, ctx) => {
      if (auditStore === undefined) return { events: [], nextPageToken: '' };
      const all = ctx.principal !== undefined && hasScope(ctx.principal, 'admin');
      try {
        const found = await listAuditEvents(auditStore, MONITORING_AUDIT_TABLE, {
          tenant: all ? undefined : tenantOf(ctx),
          since: req.since,
          subject: req.subject,
          action: req.action,
          pageSize: req.pageSize,
          pageToken: req.pageToken,
        });
        return {
          events: found.events.map((e) => ({
            ...e,
            outcome: OUTCOME[e.outcome],
            errorCode: e.errorCode ?? '',
            traceId: e.traceId ?? '',
          })),
          nextPageToken: found.nextPageToken,
        };
      } catch (error: unknown) {
        if (error instanceof AuditPageTokenError) throw invalidArgument(error.message);
        throw error;
      }
    }),
    listAlerts: unary<pb.ListAlertsRequest, pb.ListAlertsResponse>(async (req, ctx) => {
      const all = alerts.listAlerts(tenantOf(ctx), { states: req.states, ruleName: req.ruleName });
      const { page: list, next } = page(all, req.pageSize, req.pageToken, 'ListAlerts');
      return Promise.resolve({ alerts: list, nextPageToken: next });
    }),
    watchAlerts: serverStreaming<pb.WatchAlertsRequest, pb.WatchAlertsResponse>((req, ctx) =>
      watchAlerts(core, tenantOf(ctx), req.ruleName, ctx.signal),
    ),

    setDriftBaseline: unary<pb.SetDriftBaselineRequest, pb.SetDriftBaselineResponse>(
      audited(
        audit,
        (req) => `drift-baseline/${req.model}${req.version === '' ? '' : `:${req.version}`}`,
        async (req, ctx) => {
          if (req.model === '') throw invalidArgument('model is missing');
          const source = req.source;
          if (source === undefined)
            throw invalidArgument('source is missing: give a window, a range or the input summaries');
          const from =
            source.$case === 'inputs'
              ? { summaries: source.value.summaries }
              : { span: resolveSpan(spanRequest(source), store.clock(), drift.store.horizonSeconds) };
          return { baseline: await drift.setBaseline(tenantOf(ctx), req.model, req.version, from) };
        },
      ),
    ),
    getDriftBaseline: unary<pb.GetDriftBaselineRequest, pb.GetDriftBaselineResponse>(async (req, ctx) =>
      Promise.resolve({ baseline: drift.getBaseline(tenantOf(ctx), req.model, req.version) }),
    ),
    deleteDriftBaseline: unary<pb.DeleteDriftBaselineRequest, pb.DeleteDriftBaselineResponse>(
      audited(
        audit,
        (req) => `drift-baseline/${req.model}${req.version === '' ? '' : `:${req.version}`}`,
        async (req, ctx) => {
          await drift.deleteBaseline(tenantOf(ctx), req.model, req.version);
          return {};
        },
      ),
    ),
    getDrift: unary<pb.GetDriftRequest, pb.GetDriftResponse>(async (req, ctx) => {
      if (req.model === '') throw invalidArgument('model is missing');
      const span = resolveSpan(spanRequest(req.span), store.clock(), drift.store.horizonSeconds);
      return Promise.resolve(drift.drift(tenantOf(ctx), req.model, req.version, span));
    }),

    getHealthBoard: unary<pb.GetHealthBoardRequest, pb.GetHealthBoardResponse>(async () =>
      Promise.resolve({
        services: board.board(),
        checkInterval: { seconds: BigInt(Math.floor(board.intervalMs / 1000)), nanos: (board.intervalMs % 1000) * 1e6 },
      }),
    ),
  };
}
