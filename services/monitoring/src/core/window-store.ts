import { invalidArgument } from '@quanta/service-kit';
import { Aggregate } from './aggregate.js';
import type { Sample } from './sample.js';
import { MAX_FUTURE_MS } from './sample.js';

interface Bucket {
  /** The second (or, in `minutes`, the minute) since the epoch that it holds. */
  readonly at: number;
  readonly agg: Aggregate;
}

/**
 * The buckets of one (tenant, model, version): a ring of 1-second buckets indexed by second
 * modulo the horizon, and a ring of 1-minute roll-ups fed by the same records, so that a query
 * over an hour merges about 60 + 2·59 buckets instead of 3600.
 */
export interface Series {
  readonly tenant: string;
  readonly model: string;
  readonly version: string;
  readonly ring: (Bucket | undefined)[];
  readonly minutes: (Bucket | undefined)[];
  newest: number;
  /**
   * The whole minutes [first, end) of recent queries merged once, for the next query over the
   * same minutes (a 1 h window asks for the same 59 closed minutes for a minute on end). Emptied
   * when a record lands in a minute before `end` or a new minute bucket is made (which may take
   * the slot of a cached minute), so an entry always equals merging its minutes again.
   */
  readonly closed: ClosedMinutes[];
}

interface ClosedMinutes {
  readonly first: number;
  readonly end: number;
  readonly agg: Aggregate;
}

/** Cached spans of closed minutes kept per series (e.g. a 1 h and a 5 min window side by side). */
const CLOSED_ENTRIES = 2;
/** Fewer whole minutes than this are merged directly, not cached. */
const CLOSED_MIN_MINUTES = 4;

const mod = (a: number, n: number): number => ((a % n) + n) % n;

function bucketIn(ring: (Bucket | undefined)[], at: number): Aggregate {
  const slot = mod(at, ring.length);
  let bucket = ring[slot];
  if (bucket === undefined || bucket.at !== at) {
    // What this slot held has left the horizon (the caller refuses records older than it).
    bucket = { at, agg: new Aggregate() };
    ring[slot] = bucket;
  }
  return bucket.agg;
}

/** A span of whole seconds, [start, end). */
export interface SecondSpan {
  readonly start: number;
  readonly end: number;
}

export interface WindowStoreOptions {
  /** How many 1-second buckets each series keeps; default 3600 (1 h). */
  readonly horizonSeconds?: number;
  /**
   * How far ahead of the clock a record may be (the ingest accepts MAX_FUTURE_MS); the rings get
   * that many spare slots, so such a record never takes the slot of a second (or minute) that is
   * still inside the horizon. Default 300 s.
   */
  readonly futureSeconds?: number;
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
  /**
   * The same as `aggregate`, merged into one aggregate that the store keeps and empties for each
   * call: a query allocates nothing in proportion to its window. The result is only valid until
   * the next call (read it at once, never keep it).
   */
  aggregateScratch(series: readonly Series[], span: SecondSpan): Aggregate;
  /** Every tenant with data. */
  tenants(): string[];
  /** Drops series with no bucket inside the horizon; returns how many went. */
  sweep(): number;
}

const keyOf = (tenant: string, model: string, version: string): string => `${tenant}\u0000${model}\u0000${version}`;

export function createWindowStore(options: WindowStoreOptions = {}): WindowStore {
  const horizon = options.horizonSeconds ?? 3600;
  if (!Number.isInteger(horizon) || horizon < 1)
    throw invalidArgument(`horizon must be a whole number of seconds >= 1, got ${horizon}`);
  const future = options.futureSeconds ?? MAX_FUTURE_MS / 1000;
  if (!Number.isInteger(future) || future < 0)
    throw invalidArgument(`futureSeconds must be a whole number of seconds >= 0, got ${future}`);
  // Slots for the horizon plus the seconds a record may be ahead of the clock: the newest record
  // and the oldest second kept are then never more than a ring apart.
  const ringSeconds = horizon + future;
  const clock = options.clock ?? Date.now;
  const all = new Map<string, Series>();
  /** tenant → model → series of its versions. */
  const byTenant = new Map<string, Map<string, Series[]>>();

  const nowSecond = (): number => Math.floor(clock() / 1000);
  const oldestSecond = (): number => nowSecond() - horizon + 1;

  function seriesFor(tenant: string, model: string, version: string): Series {
    // Found through the nested maps first: no key string is built for every record.
    const known = byTenant.get(tenant)?.get(model);
    if (known !== undefined) for (const v of known) if (v.version === version) return v;
    const key = keyOf(tenant, model, version);
    let s = all.get(key);
    if (s === undefined) {
      // One spare minute: a minute slot is reused only once all of its seconds left the horizon.
      const minutes = new Array<Bucket | undefined>(Math.ceil(ringSeconds / 60) + 1);
      s = {
        tenant,
        model,
        version,
        ring: new Array<Bucket | undefined>(ringSeconds),
        minutes,
        newest: Number.NEGATIVE_INFINITY,
        closed: [],
      };
      all.set(key, s);
      let models = byTenant.get(tenant);
      if (models === undefined) byTenant.set(tenant, (models = new Map<string, Series[]>()));
      const versions = models.get(model);
      if (versions === undefined) models.set(model, [s]);
      else versions.push(s);
    }
    return s;
  }

  function mergeMinutes(out: Aggregate, s: Series, first: number, end: number): void {
    for (let m = first; m < end; m++) {
      const b = s.minutes[mod(m, s.minutes.length)];
      if (b !== undefined && b.at === m) out.merge(b.agg);
    }
  }

  /** The minute buckets [first, end) of `s` merged, from the cache or merged now and cached. */
  function closedMinutes(s: Series, first: number, end: number): Aggregate {
    const i = s.closed.findIndex((c) => c.first === first && c.end === end);
    if (i >= 0) return (s.closed[i] as ClosedMinutes).agg;
    const agg = new Aggregate();
    mergeMinutes(agg, s, first, end);
    if (s.closed.length >= CLOSED_ENTRIES) s.closed.shift();
    s.closed.push({ first, end, agg });
    return agg;
  }

  /**
   * Merges the buckets of `series` in `span` into `out` (series by series, in time order). The
   * closed minutes come merged from the cache: the counts, bins, extremes and status and batch
   * tables are the same as merging minute by minute; the latency sums are the same for whole
   * microseconds, which is what the service takes (uint64 fields).
   */
  function mergeInto(out: Aggregate, series: readonly Series[], span: SecondSpan): Aggregate {
    const start = Math.max(span.start, oldestSecond());
    const end = span.end;
    const mergeSeconds = (s: Series, from: number, to: number): void => {
      for (let sec = from; sec < to; sec++) {
        const b = s.ring[mod(sec, ringSeconds)];
        if (b !== undefined && b.at === sec) out.merge(b.agg);
      }
    };
    // Whole minutes inside [start, end) come from the roll-ups, the ragged edges from seconds.
    const firstMinute = Math.ceil(start / 60);
    const endMinute = Math.floor(end / 60);
    for (const s of series) {
      if (s.newest < start) continue;
      if (endMinute <= firstMinute) {
        mergeSeconds(s, start, end);
        continue;
      }
      mergeSeconds(s, start, firstMinute * 60);
      if (endMinute - firstMinute < CLOSED_MIN_MINUTES) mergeMinutes(out, s, firstMinute, endMinute);
      else out.merge(closedMinutes(s, firstMinute, endMinute));
      mergeSeconds(s, endMinute * 60, end);
    }
    return out;
  }

  /** The aggregate `aggregateScratch` reuses. */
  const scratch = new Aggregate();

  return {
    horizonSeconds: horizon,
    clock,
    oldestSecond,
    add(sample) {
      const second = Math.floor(sample.timeMs / 1000);
      const s = seriesFor(sample.tenant, sample.model, sample.version);
      bucketIn(s.ring, second).add(sample);
      const minute = Math.floor(second / 60);
      if (s.closed.length > 0) {
        const held = s.minutes[mod(minute, s.minutes.length)];
        if (held === undefined || held.at !== minute || s.closed.some((c) => minute < c.end)) s.closed.length = 0;
      }
      bucketIn(s.minutes, minute).add(sample);
      if (second > s.newest) s.newest = second;
    },
    series(filter) {
      const models = byTenant.get(filter.tenant);
      if (models === undefined) return [];
      const lists = filter.model === undefined ? [...models.values()] : [models.get(filter.model) ?? []];
      const version = filter.version ?? '';
      return lists.flat().filter((s) => version === '' || s.version === version);
    },
    aggregate: (series, span) => mergeInto(new Aggregate(), series, span),
    aggregateScratch(series, span) {
      scratch.reset();
      return mergeInto(scratch, series, span);
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
