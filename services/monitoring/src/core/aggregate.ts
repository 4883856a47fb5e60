import { invalidArgument } from '@quanta/service-kit';
import { DDSketch } from './dd-sketch.js';
import type { Sample, ShadowSample } from './sample.js';

/**
 * Small integer key → count, for the few distinct status codes and batch sizes a bucket sees:
 * two short arrays searched linearly, much lighter per bucket than a Map.
 */
export class CountTable {
  private readonly ks: number[] = [];
  private readonly vs: number[] = [];

  get size(): number {
    return this.ks.length;
  }

  get(key: number): number | undefined {
    const i = this.ks.indexOf(key);
    return i < 0 ? undefined : this.vs[i];
  }

  add(key: number, n: number): void {
    const i = this.ks.indexOf(key);
    if (i < 0) {
      this.ks.push(key);
      this.vs.push(n);
    } else this.vs[i] = (this.vs[i] ?? 0) + n;
  }

  clear(): void {
    this.ks.length = 0;
    this.vs.length = 0;
  }

  merge(o: CountTable): void {
    for (let i = 0; i < o.ks.length; i++) this.add(o.ks[i] ?? 0, o.vs[i] ?? 0);
  }

  *entries(): IterableIterator<[number, number]> {
    for (let i = 0; i < this.ks.length; i++) yield [this.ks[i] ?? 0, this.vs[i] ?? 0];
  }

  [Symbol.iterator](): IterableIterator<[number, number]> {
    return this.entries();
  }
}

/** An aggregate keeps up to this many records raw (most 1-second buckets never hold more). */
const RAW_MAX = 8;
/** Numbers per raw record: status, batch size, queue, compute, total. */
const RAW_FIELDS = 5;

/** The sketches and tables of an aggregate, made once it holds more than a few records. */
class Parts {
  /** Status code → requests (OK included). */
  readonly statuses = new CountTable();
  readonly queue = new DDSketch();
  readonly compute = new DDSketch();
  readonly total = new DDSketch();
  /** Batch size → requests. */
  readonly batchSizes = new CountTable();

  reset(): void {
    this.statuses.clear();
    this.queue.reset();
    this.compute.reset();
    this.total.reset();
    this.batchSizes.clear();
  }

  add(statusCode: number, batchSize: number, queueUs: number, computeUs: number, totalUs: number): void {
    this.statuses.add(statusCode, 1);
    this.batchSizes.add(batchSize, 1);
    this.queue.add(queueUs);
    this.compute.add(computeUs);
    this.total.add(totalUs);
  }
}

/** How a shadow version's answers compared with the primary's over a span. */
export class ShadowTotals {
  compared = 0;
  /** The largest max_abs_error (Infinity counts). */
  max = 0;
  /** The sum and count of the finite ones, for their mean. */
  finiteSum = 0;
  finiteCount = 0;
  top1Rows = 0;
  top1Agreed = 0;

  add(s: ShadowSample): void {
    this.compared++;
    if (s.maxAbsError > this.max) this.max = s.maxAbsError;
    if (Number.isFinite(s.maxAbsError)) {
      this.finiteSum += s.maxAbsError;
      this.finiteCount++;
    }
    this.top1Rows += s.top1Rows;
    this.top1Agreed += s.top1AgreedRows;
  }

  merge(o: ShadowTotals): void {
    this.compared += o.compared;
    if (o.max > this.max) this.max = o.max;
    this.finiteSum += o.finiteSum;
    this.finiteCount += o.finiteCount;
    this.top1Rows += o.top1Rows;
    this.top1Agreed += o.top1Agreed;
  }
}

/**
 * What a span of buckets adds up to; a 1-second bucket is one of these too. Up to RAW_MAX records
 * stay as numbers in one array and the sketches are made from them when first needed (in the
 * same order, so the result is the same as adding them one by one): a bucket with a couple of
 * records then costs one small array instead of three sketches and two tables, which is most of
 * the service's memory and of its garbage collection.
 */
export class Aggregate {
  count = 0;
  bytesIn = 0;
  bytesOut = 0;
  cacheHits = 0;
  cacheMisses = 0;
  /** The route of the newest record ('' before any), and that record's time. */
  route = '';
  routeMs = Number.NEGATIVE_INFINITY;
  /** Made by the first shadow record. */
  shadow: ShadowTotals | null = null;
  private raw: number[] | null = [];
  private parts: Parts | null = null;
  /** What `reset` keeps for the next use: the raw array and the emptied parts. */
  private spare: { raw: number[]; parts: Parts | null } | null = null;

  /**
   * Empties the aggregate and keeps its storage, so that one aggregate can take a query after
   * another without allocating (its sketches keep their arrays). It then behaves exactly as a new
   * one: the first records are kept raw again and the sketches made from them in the same order.
   */
  reset(): void {
    const spare = (this.spare ??= { raw: this.raw ?? [], parts: null });
    if (this.raw !== null) spare.raw = this.raw;
    if (this.parts !== null) {
      this.parts.reset();
      spare.parts = this.parts;
    }
    spare.raw.length = 0;
    this.raw = spare.raw;
    this.parts = null;
    this.count = 0;
    this.bytesIn = 0;
    this.bytesOut = 0;
    this.cacheHits = 0;
    this.cacheMisses = 0;
    this.route = '';
    this.routeMs = Number.NEGATIVE_INFINITY;
    this.shadow = null;
  }

  private full(): Parts {
    let parts = this.parts;
    if (parts === null) {
      parts = this.parts = this.spare?.parts ?? new Parts();
      const raw = this.raw ?? [];
      for (let i = 0; i < raw.length; i += RAW_FIELDS) {
        parts.add(raw[i] ?? 0, raw[i + 1] ?? 0, raw[i + 2] ?? 0, raw[i + 3] ?? 0, raw[i + 4] ?? 0);
      }
      this.raw = null;
    }
    return parts;
  }

  /** Status code → requests (OK included). */
  get statuses(): CountTable {
    return this.full().statuses;
  }
  get queue(): DDSketch {
    return this.full().queue;
  }
  get compute(): DDSketch {
    return this.full().compute;
  }
  get total(): DDSketch {
    return this.full().total;
  }
  /** Batch size → requests. */
  get batchSizes(): CountTable {
    return this.full().batchSizes;
  }

  get errorCount(): number {
    const raw = this.raw;
    if (raw === null) return this.count - (this.statuses.get(0) ?? 0);
    let errors = 0;
    for (let i = 0; i < raw.length; i += RAW_FIELDS) if (raw[i] !== 0) errors++;
    return errors;
  }

  private addOne(statusCode: number, batchSize: number, queueUs: number, computeUs: number, totalUs: number): void {
    const raw = this.raw;
    if (raw !== null && this.count < RAW_MAX) raw.push(statusCode, batchSize, queueUs, computeUs, totalUs);
    else this.full().add(statusCode, batchSize, queueUs, computeUs, totalUs);
    this.count++;
  }

  add(s: Sample): void {
    // Checked here as well as in the sketch, so that a raw record is as valid as an added one.
    if (!(
      s.queueUs >= 0 &&
      s.computeUs >= 0 &&
      s.totalUs >= 0 &&
      Number.isFinite(s.queueUs + s.computeUs + s.totalUs)
    )) {
      throw invalidArgument(`sketch values must be finite and >= 0, got ${s.queueUs}, ${s.computeUs}, ${s.totalUs}`);
    }
    this.addOne(s.statusCode, s.batchSize, s.queueUs, s.computeUs, s.totalUs);
    this.bytesIn += s.bytesIn;
    this.bytesOut += s.bytesOut;
    if (s.cacheHit) this.cacheHits++;
    if (s.cacheMiss) this.cacheMisses++;
    if (s.timeMs >= this.routeMs) {
      this.route = s.route;
      this.routeMs = s.timeMs;
    }
    if (s.shadow !== undefined) (this.shadow ??= new ShadowTotals()).add(s.shadow);
  }

  merge(o: Aggregate): void {
    if (o.count === 0) return;
    this.cacheHits += o.cacheHits;
    this.cacheMisses += o.cacheMisses;
    if (o.routeMs >= this.routeMs) {
      this.route = o.route;
      this.routeMs = o.routeMs;
    }
    if (o.shadow !== null) (this.shadow ??= new ShadowTotals()).merge(o.shadow);
    const raw = o.raw;
    if (raw !== null) {
      for (let i = 0; i < raw.length; i += RAW_FIELDS)
        this.addOne(raw[i] ?? 0, raw[i + 1] ?? 0, raw[i + 2] ?? 0, raw[i + 3] ?? 0, raw[i + 4] ?? 0);
    } else {
      const mine = this.full();
      const theirs = o.full();
      this.count += o.count;
      mine.statuses.merge(theirs.statuses);
      mine.queue.merge(theirs.queue);
      mine.compute.merge(theirs.compute);
      mine.total.merge(theirs.total);
      mine.batchSizes.merge(theirs.batchSizes);
    }
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
