import { DDSketch } from './dd-sketch.js';

/** One accepted inference record, in the units the windows keep (µs as numbers, ms since epoch). */
export interface Sample {
  readonly tenant: string;
  readonly model: string;
  readonly version: string;
  readonly statusCode: number;
  readonly queueUs: number;
  readonly computeUs: number;
  readonly totalUs: number;
  readonly batchSize: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly timeMs: number;
}

/** What a span of buckets adds up to; a 1-second bucket is one of these too. */
export class Aggregate {
  count = 0;
  /** Status code → requests (OK included). */
  readonly statuses = new Map<number, number>();
  readonly queue = new DDSketch();
  readonly compute = new DDSketch();
  readonly total = new DDSketch();
  /** Batch size → requests. */
  readonly batchSizes = new Map<number, number>();
  bytesIn = 0;
  bytesOut = 0;

  get errorCount(): number {
    return this.count - (this.statuses.get(0) ?? 0);
  }

  add(s: Sample): void {
    this.count++;
    this.statuses.set(s.statusCode, (this.statuses.get(s.statusCode) ?? 0) + 1);
    this.queue.add(s.queueUs);
    this.compute.add(s.computeUs);
    this.total.add(s.totalUs);
    this.batchSizes.set(s.batchSize, (this.batchSizes.get(s.batchSize) ?? 0) + 1);
    this.bytesIn += s.bytesIn;
    this.bytesOut += s.bytesOut;
  }

  merge(o: Aggregate): void {
    if (o.count === 0) return;
    this.count += o.count;
    for (const [k, v] of o.statuses) this.statuses.set(k, (this.statuses.get(k) ?? 0) + v);
    this.queue.merge(o.queue);
    this.compute.merge(o.compute);
    this.total.merge(o.total);
    for (const [k, v] of o.batchSizes) this.batchSizes.set(k, (this.batchSizes.get(k) ?? 0) + v);
    this.bytesIn += o.bytesIn;
    this.bytesOut += o.bytesOut;
  }

  get meanBatchSize(): number {
    if (this.count === 0) return 0;
    let sum = 0;
    for (const [size, n] of this.batchSizes) sum += size * n;
    return sum / this.count;
  }
}

interface Bucket {
  second: number;
  readonly agg: Aggregate;
}

/** The buckets of one (tenant, model, version): a ring indexed by second modulo the horizon. */
export interface Series {
  readonly tenant: string;
  readonly model: string;
  readonly version: string;
  readonly ring: (Bucket | undefined)[];
  newest: number;
}

/** A span of whole seconds, [start, end). */
export interface SecondSpan {
  readonly start: number;
  readonly end: number;
}

export interface WindowStoreOptions {
  /** How many 1-second buckets each series keeps; default 3600 (1 h). */
  readonly horizonSeconds?: number;
  /** Milliseconds since the epoch; tests move it. */
  readonly clock?: () => number;
}

export interface SeriesFilter {
  readonly tenant: string;
  /** Undefined: every model of the tenant. */
  readonly model?: string;
  /** Undefined or empty: every version. */
  readonly version?: string;
}

export interface WindowStore {
  readonly horizonSeconds: number;
  readonly clock: () => number;
  add(sample: Sample): void;
  /** The oldest second still kept, given now. */
  oldestSecond(): number;
  /** The series that match, in no particular order. */
  series(filter: SeriesFilter): Series[];
  /** The buckets of `series` in `span` merged into one aggregate. */
  aggregate(series: readonly Series[], span: SecondSpan): Aggregate;
  /** Every tenant with data. */
  tenants(): string[];
  /** Drops series with no bucket inside the horizon; returns how many went. */
  sweep(): number;
}

const keyOf = (tenant: string, model: string, version: string): string => `${tenant}\u0000${model}\u0000${version}`;

export function createWindowStore(options: WindowStoreOptions = {}): WindowStore {
  const horizon = options.horizonSeconds ?? 3600;
  if (!Number.isInteger(horizon) || horizon < 1) throw new RangeError(`horizon must be a whole number of seconds >= 1, got ${horizon}`);
  const clock = options.clock ?? Date.now;
  const all = new Map<string, Series>();
  /** tenant → model → series of its versions. */
  const byTenant = new Map<string, Map<string, Series[]>>();

  const nowSecond = (): number => Math.floor(clock() / 1000);
  const oldestSecond = (): number => nowSecond() - horizon + 1;

  function seriesFor(tenant: string, model: string, version: string): Series {
    const key = keyOf(tenant, model, version);
    let s = all.get(key);
    if (s === undefined) {
      s = { tenant, model, version, ring: new Array<Bucket | undefined>(horizon), newest: Number.NEGATIVE_INFINITY };
      all.set(key, s);
      let models = byTenant.get(tenant);
      if (models === undefined) byTenant.set(tenant, (models = new Map<string, Series[]>()));
      const versions = models.get(model);
      if (versions === undefined) models.set(model, [s]);
      else versions.push(s);
    }
    return s;
  }

  return {
    horizonSeconds: horizon,
    clock,
    oldestSecond,
    add(sample) {
      const second = Math.floor(sample.timeMs / 1000);
      const s = seriesFor(sample.tenant, sample.model, sample.version);
      const slot = ((second % horizon) + horizon) % horizon;
      let bucket = s.ring[slot];
      if (bucket === undefined || bucket.second !== second) {
        // An older second in this slot has left the horizon (the caller refuses records older than it).
        bucket = { second, agg: new Aggregate() };
        s.ring[slot] = bucket;
      }
      bucket.agg.add(sample);
      if (second > s.newest) s.newest = second;
    },
    series(filter) {
      const models = byTenant.get(filter.tenant);
      if (models === undefined) return [];
      const lists = filter.model === undefined ? [...models.values()] : [models.get(filter.model) ?? []];
      const version = filter.version ?? '';
      return lists.flat().filter((s) => version === '' || s.version === version);
    },
    aggregate(series, span) {
      const out = new Aggregate();
      const start = Math.max(span.start, oldestSecond());
      const length = span.end - start;
      for (const s of series) {
        if (s.newest < start) continue;
        if (length >= horizon) {
          // The whole ring: visit each slot once.
          for (const b of s.ring) if (b !== undefined && b.second >= start && b.second < span.end) out.merge(b.agg);
        } else {
          for (let sec = start; sec < span.end; sec++) {
            const b = s.ring[((sec % horizon) + horizon) % horizon];
            if (b !== undefined && b.second === sec) out.merge(b.agg);
          }
        }
      }
      return out;
    },
    tenants: () => [...byTenant.keys()],
    sweep() {
      const oldest = oldestSecond();
      let removed = 0;
      for (const [key, s] of all) {
        if (s.newest >= oldest) continue;
        all.delete(key);
        removed++;
        const models = byTenant.get(s.tenant);
        const versions = models?.get(s.model)?.filter((v) => v !== s) ?? [];
        if (versions.length > 0) models?.set(s.model, versions);
        else models?.delete(s.model);
        if (models?.size === 0) byTenant.delete(s.tenant);
      }
      return removed;
    },
  };
}
