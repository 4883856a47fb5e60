import type { monitoring as pb } from '@quanta/contracts';
import { InputAccumulator, populationStabilityIndex } from '@quanta/monitoring-client';
import { failedPrecondition, invalidArgument, isDomainError, notFound, unavailable } from '@quanta/service-kit';
import type { BaselineStore } from './baseline-store.js';
import type { DriftStore } from './drift-store.js';
import { checkSummaryStatistics } from './drift-validate.js';
import type { SecondSpan } from './window-store.js';

/** Inputs one baseline may hold. */
export const MAX_BASELINE_INPUTS = 1024;

/** A baseline as the engine keeps it: the proto, and an accumulator per input for PSI. */
interface Baseline {
  readonly proto: pb.DriftBaseline;
  readonly inputs: ReadonlyMap<string, InputAccumulator>;
}

/** Where a baseline comes from: a span of the store, or summaries the caller computed. */
export type BaselineSource = { readonly span: SecondSpan } | { readonly summaries: readonly pb.InputSummary[] };

/** One input's PSI for an alert rule: the input's own, or the highest. */
export interface PsiValue {
  readonly input: string;
  readonly psi: number;
}

export interface DriftEngine {
  readonly store: DriftStore;
  /**
   * Freezes a baseline for (tenant, model, version) from `source`, replacing the one there was;
   * writes through the baseline store first (UNAVAILABLE, nothing changed, when it fails).
   */
  setBaseline(tenant: string, model: string, version: string, source: BaselineSource): Promise<pb.DriftBaseline>;
  /** NOT_FOUND when there is none. */
  getBaseline(tenant: string, model: string, version: string): pb.DriftBaseline;
  /** NOT_FOUND when there is none. */
  deleteBaseline(tenant: string, model: string, version: string): Promise<void>;
  /**
   * Each baseline input's PSI over `span`: the version's summaries against the version's
   * baseline, else the every-version one (FAILED_PRECONDITION when neither exists).
   */
  drift(tenant: string, model: string, version: string, span: SecondSpan): pb.GetDriftResponse;
  /** For alerts: `input`'s PSI, or the highest of every input with ''; undefined without a baseline. */
  psi(tenant: string, model: string, version: string, input: string, span: SecondSpan): PsiValue | undefined;
  /** The versions of a model with summaries in `span` (an alert rule on every version). */
  versions(tenant: string, model: string, span: SecondSpan): string[];
  /** The baselines of a tenant, or of every tenant, ordered by tenant, model, version (the dashboard). */
  baselines(tenant: string | undefined): { tenant: string; baseline: pb.DriftBaseline }[];
  /** Loads the stored baselines (at start); returns a warning per row that could not be used. */
  load(): Promise<string[]>;
}

const keyOf = (tenant: string, model: string, version: string): string => `${tenant}\u0000${model}\u0000${version}`;

const describe = (model: string, version: string): string =>
  version === '' ? `model "${model}" (every version)` : `model "${model}" version ${version}`;

export function createDriftEngine(
  store: DriftStore,
  options: { readonly baselines?: BaselineStore; readonly clock?: () => number } = {},
): DriftEngine {
  const clock = options.clock ?? Date.now;
  const persist = options.baselines;
  const baselines = new Map<string, Baseline & { readonly tenant: string }>();

  /** Changes one at a time, so each writes against the baselines as they are. */
  let tail: Promise<unknown> = Promise.resolve();
  function serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = tail.then(fn, fn);
    tail = run.catch(() => undefined);
    return run;
  }

  async function write(what: string, model: string, version: string, fn: (p: BaselineStore) => Promise<unknown>) {
    if (persist === undefined) return;
    try {
      await fn(persist);
    } catch (error: unknown) {
      if (isDomainError(error)) throw error;
      const reason = error instanceof Error ? error.message : String(error);
      throw unavailable(
        `the drift baseline of ${describe(model, version)} was not ${what}: the store failed (${reason}); ` +
          'nothing changed, try again',
        { cause: error },
      );
    }
  }

  function makeBaseline(proto: pb.DriftBaseline): Baseline {
    const inputs = new Map<string, InputAccumulator>();
    for (const s of proto.inputs) {
      let acc = inputs.get(s.input);
      if (acc === undefined) inputs.set(s.input, (acc = new InputAccumulator()));
      acc.addSummary(s);
    }
    return { proto, inputs };
  }

  function protoOf(
    model: string,
    version: string,
    inputs: ReadonlyMap<string, InputAccumulator>,
    createMs: number,
    span?: SecondSpan,
  ): pb.DriftBaseline {
    const names = [...inputs.keys()].sort();
    return {
      model,
      version,
      ...(span === undefined ? {} : { startTime: new Date(span.start * 1000), endTime: new Date(span.end * 1000) }),
      createTime: new Date(createMs),
      inputs: names.map((input) =>
        inputs.get(input)!.toSummary({ tenant: '', model, version, deployment: '', input, time: undefined }),
      ),
    };
  }

  /** The baseline a version is compared with: its own, else the every-version one. */
  const baselineFor = (tenant: string, model: string, version: string): Baseline | undefined =>
    baselines.get(keyOf(tenant, model, version)) ??
    (version === '' ? undefined : baselines.get(keyOf(tenant, model, '')));

  function find(tenant: string, model: string, version: string): Baseline {
    if (model === '') throw invalidArgument('model is missing');
    const b = baselines.get(keyOf(tenant, model, version));
    if (b === undefined) throw notFound(`${describe(model, version)} has no drift baseline`);
    return b;
  }

  return {
    store,
    setBaseline: (tenant, model, version, source) =>
      serial(async () => {
        if (model === '') throw invalidArgument('model is missing');
        const inputs = new Map<string, InputAccumulator>();
        let span: SecondSpan | undefined;
        if ('span' in source) {
          span = source.span;
          for (const [input, acc] of store.inputs(tenant, model, version, span))
            if (acc.count > 0) inputs.set(input, acc);
          if (inputs.size === 0) {
            throw failedPrecondition(
              `no input summaries of ${describe(model, version)} between ` +
                `${new Date(span.start * 1000).toISOString()} and ${new Date(span.end * 1000).toISOString()}: ` +
                'inference sends them for requests it serves while QUANTA_DRIFT_SAMPLE_RATE > 0 ' +
                '(send traffic first, or give the summaries); no baseline was set',
            );
          }
        } else {
          if (source.summaries.length === 0) throw invalidArgument('inputs.summaries is empty');
          source.summaries.forEach((s, i) => {
            const bad = checkSummaryStatistics(s);
            if (bad !== undefined) throw invalidArgument(`inputs.summaries[${i}] (input "${s.input}"): ${bad}`);
            let acc = inputs.get(s.input);
            if (acc === undefined) inputs.set(s.input, (acc = new InputAccumulator()));
            acc.addSummary(s);
          });
          const empty = [...inputs].filter(([, acc]) => acc.count === 0).map(([name]) => `"${name}"`);
          if (empty.length > 0)
            throw invalidArgument(`inputs.summaries hold no values (NaN aside) for input ${empty.join(', ')}`);
        }
        if (inputs.size > MAX_BASELINE_INPUTS)
          throw invalidArgument(`a baseline holds at most ${MAX_BASELINE_INPUTS} inputs, got ${inputs.size}`);
        const createMs = clock();
        const proto = protoOf(model, version, inputs, createMs, span);
        await write('set', model, version, (p) => p.put({ tenant, baseline: proto, createMs }));
        baselines.set(keyOf(tenant, model, version), { tenant, proto, inputs });
        return proto;
      }),
    getBaseline: (tenant, model, version) => find(tenant, model, version).proto,
    deleteBaseline: (tenant, model, version) =>
      serial(async () => {
        find(tenant, model, version);
        await write('deleted', model, version, (p) => p.delete(tenant, model, version));
        baselines.delete(keyOf(tenant, model, version));
      }),
    drift(tenant, model, version, span) {
      if (model === '') throw invalidArgument('model is missing');
      const baseline = baselineFor(tenant, model, version);
      if (baseline === undefined) {
        // The baseline is the resource asked about (as GetDriftBaseline): another tenant's, like a
        // missing one, is NOT_FOUND.
        throw notFound(
          `${describe(model, version)} has no drift baseline` +
            (version === '' ? '' : ' (nor has the model one for every version)') +
            `; freeze one first (SetDriftBaseline, quanta drift baseline ${model})`,
        );
      }
      const window = store.inputs(tenant, model, version, span);
      const inputs: pb.InputDrift[] = [...baseline.inputs.keys()].sort().map((input) => {
        const base = baseline.inputs.get(input)!;
        const w = window.get(input) ?? new InputAccumulator();
        return {
          input,
          psi: populationStabilityIndex(w, base),
          count: BigInt(w.count),
          mean: w.mean(),
          stddev: w.stddev(),
          baselineMean: base.mean(),
          baselineStddev: base.stddev(),
        };
      });
      return {
        model,
        version,
        startTime: new Date(span.start * 1000),
        endTime: new Date(span.end * 1000),
        inputs,
        maxPsi: inputs.reduce((m, i) => Math.max(m, i.psi), 0),
        baselineTime: baseline.proto.createTime,
      };
    },
    psi(tenant, model, version, input, span) {
      const baseline = baselineFor(tenant, model, version);
      if (baseline === undefined) return undefined;
      const window = store.inputs(tenant, model, version, span);
      let best: PsiValue | undefined;
      for (const [name, base] of baseline.inputs) {
        if (input !== '' && name !== input) continue;
        const psi = populationStabilityIndex(window.get(name) ?? new InputAccumulator(), base);
        if (best === undefined || psi > best.psi) best = { input: name, psi };
      }
      return best;
    },
    versions: (tenant, model, span) => store.versions(tenant, model, span),
    baselines: (tenant) =>
      [...baselines.values()]
        .filter((b) => tenant === undefined || b.tenant === tenant)
        .map((b) => ({ tenant: b.tenant, baseline: b.proto }))
        .sort(
          (a, b) =>
            a.tenant.localeCompare(b.tenant) ||
            a.baseline.model.localeCompare(b.baseline.model) ||
            a.baseline.version.localeCompare(b.baseline.version),
        ),
    load: () =>
      serial(async () => {
        if (persist === undefined) return [];
        const warnings: string[] = [];
        for (const s of await persist.load()) {
          const bad = s.baseline.inputs.map(checkSummaryStatistics).find((r) => r !== undefined);
          if (bad !== undefined || s.baseline.model === '') {
            warnings.push(
              `drift baseline of ${describe(s.baseline.model, s.baseline.version)} of tenant "${s.tenant}" ` +
                `is not loaded: ${bad ?? 'model is missing'}`,
            );
            continue;
          }
          const proto = { ...s.baseline, createTime: new Date(s.createMs) };
          baselines.set(keyOf(s.tenant, proto.model, proto.version), { tenant: s.tenant, ...makeBaseline(proto) });
        }
        return warnings;
      }),
  };
}
