import { readdirSync } from 'node:fs';
import { statusName } from '../core/queries.js';
import type { Sample } from '../core/sample.js';

/** Seconds; Prometheus's defaults stretched down to 0.5 ms, since model latencies start there. */
export const DURATION_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
] as const;
export const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256] as const;

class Histogram {
  /** Non-cumulative counts per bound; the last slot is +Inf. */
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(readonly bounds: readonly number[]) {
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }
  observe(v: number): void {
    let i = 0;
    while (i < this.bounds.length && v > (this.bounds[i] ?? 0)) i++;
    this.counts[i] = (this.counts[i] ?? 0) + 1;
    this.sum += v;
    this.count++;
  }
}

interface SeriesMetrics {
  readonly labels: { tenant: string; model: string; version: string };
  readonly requests: Map<number, number>;
  readonly total: Histogram;
  readonly queue: Histogram;
  readonly compute: Histogram;
  readonly batch: Histogram;
  bytesIn: number;
  bytesOut: number;
  cacheHits: number;
  cacheMisses: number;
  /** Shadow records compared with the primary, and their top-1 rows (agreed or not). */
  shadowCompared: number;
  top1Rows: number;
  top1Agreed: number;
}

/** Counters since the process started, as Prometheus wants them (never reset, unlike the windows). */
export interface PromMetrics {
  observe(s: Sample): void;
  countIngest(accepted: number, rejected: number): void;
  /** The exposition text; `tenant` limits it to one tenant's series, undefined shows all. */
  render(options?: { tenant?: string; extraGauges?: readonly { name: string; help: string; value: number }[] }): string;
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function labelText(labels: Record<string, string>): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

/** Prometheus's float format: integers plainly, +Inf spelled out. */
function num(v: number): string {
  if (v === Number.POSITIVE_INFINITY) return '+Inf';
  if (v === Number.NEGATIVE_INFINITY) return '-Inf';
  if (Number.isNaN(v)) return 'NaN';
  return String(v);
}

function openFds(): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return undefined;
  }
}

export function createPromMetrics(): PromMetrics {
  const series = new Map<string, SeriesMetrics>();
  let accepted = 0;
  let rejected = 0;

  function histogramLines(
    out: string[],
    name: string,
    entries: readonly { labels: Record<string, string>; h: Histogram }[],
  ): void {
    for (const { labels, h } of entries) {
      let cumulative = 0;
      h.bounds.forEach((b, i) => {
        cumulative += h.counts[i] ?? 0;
        out.push(`${name}_bucket${labelText({ ...labels, le: num(b) })} ${cumulative}`);
      });
      out.push(`${name}_bucket${labelText({ ...labels, le: '+Inf' })} ${h.count}`);
      out.push(`${name}_sum${labelText(labels)} ${num(h.sum)}`);
      out.push(`${name}_count${labelText(labels)} ${h.count}`);
    }
  }

  return {
    observe(s) {
      const key = `${s.tenant}\u0000${s.model}\u0000${s.version}`;
      let m = series.get(key);
      if (m === undefined) {
        m = {
          labels: { tenant: s.tenant, model: s.model, version: s.version },
          requests: new Map(),
          total: new Histogram(DURATION_BUCKETS),
          queue: new Histogram(DURATION_BUCKETS),
          compute: new Histogram(DURATION_BUCKETS),
          batch: new Histogram(BATCH_BUCKETS),
          bytesIn: 0,
          bytesOut: 0,
          cacheHits: 0,
          cacheMisses: 0,
          shadowCompared: 0,
          top1Rows: 0,
          top1Agreed: 0,
        };
        series.set(key, m);
      }
      m.requests.set(s.statusCode, (m.requests.get(s.statusCode) ?? 0) + 1);
      m.total.observe(s.totalUs / 1e6);
      m.queue.observe(s.queueUs / 1e6);
      m.compute.observe(s.computeUs / 1e6);
      m.batch.observe(s.batchSize);
      m.bytesIn += s.bytesIn;
      m.bytesOut += s.bytesOut;
      if (s.cacheHit) m.cacheHits++;
      if (s.cacheMiss) m.cacheMisses++;
      if (s.shadow !== undefined) {
        m.shadowCompared++;
        m.top1Rows += s.shadow.top1Rows;
        m.top1Agreed += s.shadow.top1AgreedRows;
      }
    },
    countIngest(a, r) {
      accepted += a;
      rejected += r;
    },
    render(options = {}) {
      const shown = [...series.values()].filter(
        (m) => options.tenant === undefined || m.labels.tenant === options.tenant,
      );
      const out: string[] = [];
      out.push(
        '# HELP quanta_inference_requests_total Inference requests that finished, by model, version and gRPC status.',
      );
      out.push('# TYPE quanta_inference_requests_total counter');
      for (const m of shown) {
        for (const [code, n] of [...m.requests.entries()].sort((a, b) => a[0] - b[0])) {
          out.push(`quanta_inference_requests_total${labelText({ ...m.labels, status: statusName(code) })} ${n}`);
        }
      }
      const hist = (name: string, help: string, pick: (m: SeriesMetrics) => Histogram): void => {
        out.push(`# HELP ${name} ${help}`);
        out.push(`# TYPE ${name} histogram`);
        histogramLines(
          out,
          name,
          shown.map((m) => ({ labels: m.labels, h: pick(m) })),
        );
      };
      hist('quanta_inference_request_duration_seconds', "Time from a request's arrival to its answer.", (m) => m.total);
      hist(
        'quanta_inference_queue_duration_seconds',
        'Time a request waited in the queue before its batch ran.',
        (m) => m.queue,
      );
      hist('quanta_inference_compute_duration_seconds', 'Time the batch of a request took to run.', (m) => m.compute);
      hist('quanta_inference_batch_size', 'Size of the batch each request ran in.', (m) => m.batch);
      out.push('# HELP quanta_inference_request_bytes_total Bytes of request tensors.');
      out.push('# TYPE quanta_inference_request_bytes_total counter');
      for (const m of shown) out.push(`quanta_inference_request_bytes_total${labelText(m.labels)} ${m.bytesIn}`);
      out.push('# HELP quanta_inference_response_bytes_total Bytes of response tensors.');
      out.push('# TYPE quanta_inference_response_bytes_total counter');
      for (const m of shown) out.push(`quanta_inference_response_bytes_total${labelText(m.labels)} ${m.bytesOut}`);
      // Only the series that have any: most models have neither a cache nor a shadow.
      const counter = (name: string, help: string, rows: [Record<string, string>, number][]): void => {
        out.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`);
        for (const [labels, n] of rows) out.push(`${name}${labelText(labels)} ${n}`);
      };
      counter(
        'quanta_inference_cache_requests_total',
        'Requests of a deployment with a response cache, by result (hit: answered from it).',
        shown.flatMap((m): [Record<string, string>, number][] =>
          m.cacheHits + m.cacheMisses === 0
            ? []
            : [
                [{ ...m.labels, result: 'hit' }, m.cacheHits],
                [{ ...m.labels, result: 'miss' }, m.cacheMisses],
              ],
        ),
      );
      const shadows = shown.filter((m) => m.shadowCompared > 0);
      counter(
        'quanta_inference_shadow_comparisons_total',
        "Shadow answers compared with the primary's, by shadow version.",
        shadows.map((m) => [m.labels, m.shadowCompared]),
      );
      counter(
        'quanta_inference_shadow_top1_rows_total',
        "Rows of class-shaped outputs compared, by whether the shadow's arg-max agreed with the primary's.",
        shadows.flatMap((m): [Record<string, string>, number][] => [
          [{ ...m.labels, agreed: 'true' }, m.top1Agreed],
          [{ ...m.labels, agreed: 'false' }, m.top1Rows - m.top1Agreed],
        ]),
      );
      out.push('# HELP quanta_monitoring_ingested_records_total Inference records this service received, by result.');
      out.push('# TYPE quanta_monitoring_ingested_records_total counter');
      out.push(`quanta_monitoring_ingested_records_total{result="accepted"} ${accepted}`);
      out.push(`quanta_monitoring_ingested_records_total{result="rejected"} ${rejected}`);
      for (const g of options.extraGauges ?? []) {
        out.push(`# HELP ${g.name} ${g.help}`, `# TYPE ${g.name} gauge`, `${g.name} ${num(g.value)}`);
      }
      // The service's own process, with the names of Prometheus's client libraries.
      const mem = process.memoryUsage();
      const cpu = process.cpuUsage();
      const gauge = (name: string, help: string, type: 'gauge' | 'counter', value: number): void => {
        out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${num(value)}`);
      };
      gauge(
        'process_cpu_seconds_total',
        'Total user and system CPU time spent in seconds.',
        'counter',
        (cpu.user + cpu.system) / 1e6,
      );
      gauge('process_resident_memory_bytes', 'Resident memory size in bytes.', 'gauge', mem.rss);
      gauge(
        'process_start_time_seconds',
        'Start time of the process since unix epoch in seconds.',
        'gauge',
        Math.round((Date.now() - process.uptime() * 1000) / 1000),
      );
      const fds = openFds();
      if (fds !== undefined) gauge('process_open_fds', 'Number of open file descriptors.', 'gauge', fds);
      gauge('nodejs_heap_size_used_bytes', 'Process heap size used from Node.js in bytes.', 'gauge', mem.heapUsed);
      gauge('nodejs_heap_size_total_bytes', 'Process heap size from Node.js in bytes.', 'gauge', mem.heapTotal);
      return `${out.join('\n')}\n`;
    },
  };
}
