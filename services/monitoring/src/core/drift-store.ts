import type { monitoring as pb } from '@quanta/contracts';
import { InputAccumulator, mergeSummaries } from '@quanta/monitoring-client';
import { invalidArgument } from '@quanta/service-kit';
import type { SecondSpan } from './window-store.js';

/** One second of one input: the summaries that ended in it. */
interface Bucket {
  readonly at: number;
  summaries: pb.InputSummary[];
}

/** The summaries of one (tenant, model, version, input), oldest second first. */
interface InputSeries {
  readonly version: string;
  readonly input: string;
  readonly buckets: Bucket[];
}

/** Summaries a bucket keeps before they are merged into one (replicas × flushes in one second). */
const MERGE_AT = 8;

export interface DriftStoreOptions {
  /** Seconds kept; default 3600 (the window store's horizon). */
  readonly horizonSeconds?: number;
  /** Milliseconds since the epoch; tests move it. */
  readonly clock?: () => number;
}

export interface DriftStore {
  readonly horizonSeconds: number;
  /** Keeps a validated summary in the second its `time` falls in. */
  add(summary: pb.InputSummary): void;
  /**
   * The summaries of (tenant, model) in `span` merged per input: one version's, or with version
   * '' every version's together.
   */
  inputs(tenant: string, model: string, version: string, span: SecondSpan): Map<string, InputAccumulator>;
  /** The versions of a model with summaries in `span`. */
  versions(tenant: string, model: string, span: SecondSpan): string[];
  /** Drops seconds older than the horizon (and inputs left empty); returns how many seconds went. */
  sweep(): number;
}

/**
 * The input summaries inference sends, per (tenant, model, version, input) in 1-second buckets
 * kept for the horizon, as the window store keeps records. A bucket is a short list of the
 * summaries that ended in that second (summaries come every few seconds per replica, so most
 * seconds hold none or one), merged into one beyond a few: memory is bounded by the horizon, and a
 * query merges at most one summary list per second of its span.
 */
export function createDriftStore(options: DriftStoreOptions = {}): DriftStore {
  const horizon = options.horizonSeconds ?? 3600;
  if (!Number.isInteger(horizon) || horizon < 1)
    throw invalidArgument(`horizon must be a whole number of seconds >= 1, got ${horizon}`);
  const clock = options.clock ?? Date.now;
  /** tenant → model → series of its versions' inputs. */
  const byTenant = new Map<string, Map<string, InputSeries[]>>();

  const oldestSecond = (): number => Math.floor(clock() / 1000) - horizon + 1;

  function seriesFor(tenant: string, model: string, version: string, input: string): InputSeries {
    let models = byTenant.get(tenant);
    if (models === undefined) byTenant.set(tenant, (models = new Map<string, InputSeries[]>()));
    let list = models.get(model);
    if (list === undefined) models.set(model, (list = []));
    let s = list.find((x) => x.version === version && x.input === input);
    if (s === undefined) list.push((s = { version, input, buckets: [] }));
    return s;
  }

  /** Calls `fn` with each bucket of `s` in `span`. */
  function eachIn(s: InputSeries, span: SecondSpan, fn: (b: Bucket) => void): void {
    const start = Math.max(span.start, oldestSecond());
    for (let i = s.buckets.length - 1; i >= 0; i--) {
      const b = s.buckets[i]!;
      if (b.at < start) break;
      if (b.at < span.end) fn(b);
    }
  }

  return {
    horizonSeconds: horizon,
    add(summary) {
      const at = Math.floor((summary.time?.getTime() ?? clock()) / 1000);
      const s = seriesFor(summary.tenant, summary.model, summary.version, summary.input);
      // Summaries arrive in time order, give or take a flush: search from the newest.
      let i = s.buckets.length - 1;
      while (i >= 0 && s.buckets[i]!.at > at) i--;
      const found = i >= 0 ? s.buckets[i] : undefined;
      if (found !== undefined && found.at === at) {
        found.summaries.push(summary);
        if (found.summaries.length > MERGE_AT) found.summaries = [mergeSummaries(found.summaries, summary)];
      } else s.buckets.splice(i + 1, 0, { at, summaries: [summary] });
    },
    inputs(tenant, model, version, span) {
      const out = new Map<string, InputAccumulator>();
      for (const s of byTenant.get(tenant)?.get(model) ?? []) {
        if (version !== '' && s.version !== version) continue;
        eachIn(s, span, (b) => {
          let acc = out.get(s.input);
          if (acc === undefined) out.set(s.input, (acc = new InputAccumulator()));
          for (const summary of b.summaries) acc.addSummary(summary);
        });
      }
      return out;
    },
    versions(tenant, model, span) {
      const found = new Set<string>();
      for (const s of byTenant.get(tenant)?.get(model) ?? []) {
        if (found.has(s.version)) continue;
        let any = false;
        eachIn(s, span, () => (any = true));
        if (any) found.add(s.version);
      }
      return [...found];
    },
    sweep() {
      const oldest = oldestSecond();
      let removed = 0;
      for (const [tenant, models] of byTenant) {
        for (const [model, list] of models) {
          for (const s of list) {
            const keep = s.buckets.findIndex((b) => b.at >= oldest);
            const drop = keep < 0 ? s.buckets.length : keep;
            if (drop > 0) {
              s.buckets.splice(0, drop);
              removed += drop;
            }
          }
          const left = list.filter((s) => s.buckets.length > 0);
          if (left.length === 0) models.delete(model);
          else models.set(model, left);
        }
        if (models.size === 0) byTenant.delete(tenant);
      }
      return removed;
    },
  };
}
