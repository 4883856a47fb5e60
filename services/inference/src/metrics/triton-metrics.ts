// Triton's per-model Prometheus metrics (names, types, HELP text and labels as Triton's
// metrics.cc and metric_model_reporter.cc give them), read at scrape time from the same
// statistics that ModelStatistics answers with: one snapshot per model version per scrape, so the
// two never disagree and a request pays nothing for the metrics.
//
// Labels: Triton's `model` and `version`, and `tenant`, since two tenants may each serve a model
// "cifar" version "1" on one replica (Triton has one model namespace per server). The failure
// counter adds Triton's `reason`, each reason's series present from the start at 0. The response
// cache's counters are there only for versions with a cache, as Triton has them only for models
// whose config enables the cache.
import { Counter, Gauge, Registry } from 'prom-client';
import { loadedVersions } from '../core/model-manager.js';
import { FAILURE_REASONS, type ModelManager, type ModelStats } from '../core/types.js';

export interface TritonMetrics {
  /** The exposition format's content type (text 0.0.4). */
  readonly contentType: string;
  /** Every loaded model version's series, or one tenant's when `tenant` is given. */
  render(view?: { readonly tenant?: string | undefined }): Promise<string>;
}

/** One model version as a scrape reads it. */
interface Row {
  readonly labels: { readonly model: string; readonly tenant: string; readonly version: string };
  readonly stats: ModelStats;
  readonly pending: number;
  readonly loadNs: bigint;
  /** Whether the version keeps a response cache. */
  readonly cached: boolean;
}

/** Triton's latency counters are whole microseconds. */
const us = (ns: bigint): bigint => ns / 1000n;

const LABELS = ['model', 'tenant', 'version'] as const;

/** Triton's counters other than the failure counter, in Triton's order. */
const COUNTERS: readonly {
  readonly name: string;
  readonly help: string;
  readonly value: (stats: ModelStats) => bigint;
}[] = [
  {
    name: 'nv_inference_request_success',
    help: 'Number of successful inference requests, all batch sizes',
    value: (s) => s.success.count,
  },
  {
    name: 'nv_inference_count',
    help: 'Number of inferences performed (does not include cached requests)',
    value: (s) => s.inferenceCount,
  },
  {
    name: 'nv_inference_exec_count',
    help: 'Number of model executions performed (does not include cached requests)',
    value: (s) => s.executionCount,
  },
  {
    name: 'nv_inference_request_duration_us',
    help: 'Cumulative inference request duration in microseconds (includes cached requests)',
    value: (s) => us(s.success.ns),
  },
  {
    name: 'nv_inference_queue_duration_us',
    help: 'Cumulative inference queuing duration in microseconds (includes cached requests)',
    value: (s) => us(s.queue.ns),
  },
  {
    name: 'nv_inference_compute_input_duration_us',
    help: 'Cumulative compute input duration in microseconds (does not include cached requests)',
    value: (s) => us(s.computeInput.ns),
  },
  {
    name: 'nv_inference_compute_infer_duration_us',
    help: 'Cumulative compute inference duration in microseconds (does not include cached requests)',
    value: (s) => us(s.computeInfer.ns),
  },
  {
    name: 'nv_inference_compute_output_duration_us',
    help: 'Cumulative inference compute output duration in microseconds (does not include cached requests)',
    value: (s) => us(s.computeOutput.ns),
  },
];

/** Triton's response-cache counters per model. */
const CACHE_COUNTERS: readonly {
  readonly name: string;
  readonly help: string;
  readonly value: (stats: ModelStats) => bigint;
}[] = [
  { name: 'nv_cache_num_hits_per_model', help: 'Number of cache hits per model', value: (s) => s.cacheHit.count },
  { name: 'nv_cache_num_misses_per_model', help: 'Number of cache misses per model', value: (s) => s.cacheMiss.count },
  {
    name: 'nv_cache_hit_duration_per_model',
    help: 'Total cache hit duration per model, in microseconds',
    value: (s) => us(s.cacheHit.ns),
  },
  {
    name: 'nv_cache_miss_duration_per_model',
    help: 'Total cache miss (insert+lookup) duration per model, in microseconds',
    value: (s) => us(s.cacheMiss.ns),
  },
];

export function createTritonMetrics(manager: ModelManager): TritonMetrics {
  return {
    contentType: Registry.PROMETHEUS_CONTENT_TYPE,
    render(view = {}) {
      const rows: Row[] = loadedVersions(manager, view.tenant).map((model) => ({
        labels: { model: model.name, tenant: model.tenant, version: model.version },
        stats: model.stats(),
        pending: model.pendingRequests(),
        loadNs: model.loadNs,
        cached: (model.config.responseCacheBytes ?? 0) > 0 && model.config.sequenceState.length === 0,
      }));
      // A registry per scrape, filled from this scrape's snapshots: a version unloaded since the
      // last scrape leaves no series behind, as Triton removes its reporter.
      const registry = new Registry();
      const counter = (name: string, help: string, labelNames: readonly string[]): Counter =>
        new Counter({ name, help, labelNames, registers: [registry] });
      const first = COUNTERS[0]!;
      const success = counter(first.name, first.help, LABELS);
      const failure = counter('nv_inference_request_failure', 'Number of failed inference requests, all batch sizes', [
        'model',
        'reason',
        'tenant',
        'version',
      ]);
      const rest = COUNTERS.slice(1).map((spec) => ({ spec, metric: counter(spec.name, spec.help, LABELS) }));
      const pending = new Gauge({
        name: 'nv_inference_pending_request_count',
        help: 'Instantaneous number of pending requests awaiting execution per-model.',
        labelNames: LABELS,
        registers: [registry],
      });
      const load = new Gauge({
        name: 'nv_model_load_duration_secs',
        help: 'Model load time in seconds',
        labelNames: LABELS,
        registers: [registry],
      });
      for (const row of rows) {
        success.inc(row.labels, Number(first.value(row.stats)));
        for (const reason of FAILURE_REASONS) {
          const { model, tenant, version } = row.labels;
          failure.inc({ model, reason, tenant, version }, Number(row.stats.failures[reason]));
        }
        for (const { spec, metric } of rest) metric.inc(row.labels, Number(spec.value(row.stats)));
        pending.set(row.labels, row.pending);
        load.set(row.labels, Number(row.loadNs) / 1e9);
      }
      const cachedRows = rows.filter((row) => row.cached);
      if (cachedRows.length > 0) {
        for (const spec of CACHE_COUNTERS) {
          const metric = counter(spec.name, spec.help, LABELS);
          for (const row of cachedRows) metric.inc(row.labels, Number(spec.value(row.stats)));
        }
      }
      return registry.metrics();
    },
  };
}
