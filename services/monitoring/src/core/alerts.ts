import { monitoring as pb } from '@quanta/contracts';
import { alreadyExists, invalidArgument, isDomainError, notFound, unavailable } from '@quanta/service-kit';
import type { DriftEngine, PsiValue } from './drift.js';
import { durationMs, toDuration } from './durations.js';
import type { RuleStore, StoredRule } from './rule-store.js';
import type { WindowStore } from './window-store.js';
import { checkWebhooks } from './webhook.js';

const RULE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** A rule as the engine keeps it (times in ms). */
interface Rule {
  readonly tenant: string;
  readonly name: string;
  readonly model: string;
  readonly version: string;
  readonly metric: pb.AlertMetric;
  readonly comparison: pb.AlertComparison;
  readonly threshold: number;
  readonly windowMs: number;
  readonly forMs: number;
  readonly description: string;
  readonly createMs: number;
  readonly updateMs: number;
  /** ALERT_METRIC_DRIFT_PSI: the input watched; '': the highest of every input. */
  readonly input: string;
  readonly webhooks: readonly pb.Webhook[];
}

interface AlertEntry {
  alert: pb.Alert;
  changedMs: number;
}

/** `state`: the alert changed state; `delivery`: only its `deliveries` changed. */
export type AlertChange = 'state' | 'delivery';

export type AlertListener = (tenant: string, alert: pb.Alert, change: AlertChange) => void;

export interface AlertEngine {
  /**
   * Rule changes write through the rule store (when there is one) before they take effect: a
   * failed write rejects with UNAVAILABLE and leaves the rules as they were. Changes run one at a
   * time.
   */
  createRule(tenant: string, rule: pb.AlertRule): Promise<pb.AlertRule>;
  getRule(tenant: string, name: string): pb.AlertRule;
  /** Ordered by name. */
  listRules(tenant: string, model?: string): pb.AlertRule[];
  updateRule(tenant: string, rule: pb.AlertRule): Promise<pb.AlertRule>;
  deleteRule(tenant: string, name: string): Promise<void>;
  /**
   * Loads every tenant's rules from the rule store (at start, before any change); returns a
   * warning for each rule that no longer fits the settings (it is kept and evaluated over what
   * the horizon holds).
   */
  load(): Promise<string[]>;
  /** Most recently changed first. */
  listAlerts(tenant: string, filter?: { states?: readonly pb.AlertState[]; ruleName?: string }): pb.Alert[];
  /** Pending and firing alerts. */
  active(tenant: string, ruleName?: string): pb.Alert[];
  /** Every tenant's alerts (the dashboard's admin view). */
  tenants(): string[];
  /** Evaluates every rule at the clock's now; emits each state change. */
  evaluate(): void;
  /** Calls `listener` on every change; returns the unsubscribe function. */
  subscribe(listener: AlertListener): () => void;
  /**
   * Sets the alert's delivery to `delivery.url` (the latest notification to that webhook) and
   * emits a `delivery` change. Ignored when the alert is gone or a new episode of it began
   * (its pending time is not `pendingTime`).
   */
  recordDelivery(
    tenant: string,
    alert: { ruleName: string; version: string; pendingTime: Date | undefined },
    delivery: pb.WebhookDelivery,
  ): void;
}

const METRIC_WORDS: Record<number, string> = {
  [pb.AlertMetric.ALERT_METRIC_P99_LATENCY_US]: 'p99 latency',
  [pb.AlertMetric.ALERT_METRIC_ERROR_RATE]: 'error rate',
  [pb.AlertMetric.ALERT_METRIC_THROUGHPUT_RPS]: 'throughput',
  [pb.AlertMetric.ALERT_METRIC_DRIFT_PSI]: 'drift PSI',
};

function formatValue(metric: pb.AlertMetric, v: number): string {
  if (metric === pb.AlertMetric.ALERT_METRIC_P99_LATENCY_US)
    return v >= 1000 ? `${(v / 1000).toFixed(1)} ms` : `${v.toFixed(0)} µs`;
  if (metric === pb.AlertMetric.ALERT_METRIC_ERROR_RATE) return `${(v * 100).toFixed(1)}%`;
  if (metric === pb.AlertMetric.ALERT_METRIC_DRIFT_PSI) return v.toFixed(3);
  return `${v.toFixed(2)} req/s`;
}

export interface AlertEngineOptions {
  /** Where rules persist; without one they live in memory only. */
  readonly rules?: RuleStore;
  /** Drift baselines and summaries, for ALERT_METRIC_DRIFT_PSI; without it such a rule never holds. */
  readonly drift?: DriftEngine;
}

/** SQLSTATE unique_violation, from pg and PGlite alike. */
const isUniqueViolation = (error: unknown): boolean =>
  typeof error === 'object' && error !== null && (error as { code?: unknown }).code === '23505';

export function createAlertEngine(store: WindowStore, options: AlertEngineOptions = {}): AlertEngine {
  const clock = store.clock;
  const persist = options.rules;
  /** tenant → rule name → rule. */
  const rules = new Map<string, Map<string, Rule>>();
  /** tenant → `${rule}\0${version}` → alert. */
  const alerts = new Map<string, Map<string, AlertEntry>>();
  const listeners = new Set<AlertListener>();

  const rulesOf = (tenant: string): Map<string, Rule> => {
    let m = rules.get(tenant);
    if (m === undefined) rules.set(tenant, (m = new Map<string, Rule>()));
    return m;
  };
  const alertsOf = (tenant: string): Map<string, AlertEntry> => {
    let m = alerts.get(tenant);
    if (m === undefined) alerts.set(tenant, (m = new Map<string, AlertEntry>()));
    return m;
  };

  /** A rule from a request (updated now), or from the rule store (its own times, the horizon unchecked). */
  function check(tenant: string, r: pb.AlertRule, createMs: number, stored?: { updateMs: number }): Rule {
    if (!RULE_NAME.test(r.name))
      throw invalidArgument(
        `rule name "${r.name}" is invalid: 1-128 characters of [A-Za-z0-9._-], starting with a letter or digit`,
      );
    if (r.model === '') throw invalidArgument(`rule "${r.name}": model is missing`);
    if (METRIC_WORDS[r.metric] === undefined) {
      throw invalidArgument(
        `rule "${r.name}": metric ${pb.alertMetricToJSON(r.metric)} is not one of ` +
          'ALERT_METRIC_P99_LATENCY_US, ALERT_METRIC_ERROR_RATE, ALERT_METRIC_THROUGHPUT_RPS, ALERT_METRIC_DRIFT_PSI',
      );
    }
    if (r.input !== '' && r.metric !== pb.AlertMetric.ALERT_METRIC_DRIFT_PSI)
      throw invalidArgument(`rule "${r.name}": input is only for ALERT_METRIC_DRIFT_PSI, got "${r.input}"`);
    if (r.input.length > 256) throw invalidArgument(`rule "${r.name}": input is longer than 256 characters`);
    if (
      r.comparison !== pb.AlertComparison.ALERT_COMPARISON_UNSPECIFIED &&
      r.comparison !== pb.AlertComparison.ALERT_COMPARISON_ABOVE &&
      r.comparison !== pb.AlertComparison.ALERT_COMPARISON_BELOW
    ) {
      throw invalidArgument(`rule "${r.name}": comparison ${r.comparison} is unknown`);
    }
    if (!Number.isFinite(r.threshold) || r.threshold < 0)
      throw invalidArgument(`rule "${r.name}": threshold must be a number >= 0, got ${r.threshold}`);
    const windowMs = durationMs(r.window);
    if (windowMs < 1000) throw invalidArgument(`rule "${r.name}": window must be at least 1 s`);
    if (stored === undefined && windowMs > store.horizonSeconds * 1000)
      throw invalidArgument(
        `rule "${r.name}": window ${windowMs / 1000} s is beyond the horizon (${store.horizonSeconds} s)`,
      );
    const forMs = durationMs(r.forDuration);
    if (forMs < 0) throw invalidArgument(`rule "${r.name}": for_duration is negative`);
    checkWebhooks(r.name, r.webhooks);
    return {
      tenant,
      name: r.name,
      model: r.model,
      version: r.version,
      metric: r.metric,
      comparison:
        r.comparison === pb.AlertComparison.ALERT_COMPARISON_BELOW
          ? r.comparison
          : pb.AlertComparison.ALERT_COMPARISON_ABOVE,
      threshold: r.threshold,
      windowMs,
      forMs,
      description: r.description,
      createMs,
      updateMs: stored?.updateMs ?? clock(),
      input: r.input,
      webhooks: r.webhooks.map((w) => ({ url: w.url, hmacKey: w.hmacKey, skipResolved: w.skipResolved })),
    };
  }

  const toProto = (r: Rule): pb.AlertRule => ({
    name: r.name,
    model: r.model,
    version: r.version,
    metric: r.metric,
    comparison: r.comparison,
    threshold: r.threshold,
    window: toDuration(r.windowMs),
    forDuration: toDuration(r.forMs),
    description: r.description,
    createTime: new Date(r.createMs),
    updateTime: new Date(r.updateMs),
    input: r.input,
    webhooks: r.webhooks.map((w) => ({ ...w })),
  });

  const find = (tenant: string, name: string): Rule => {
    const r = rules.get(tenant)?.get(name);
    if (r === undefined) throw notFound(`alert rule "${name}" does not exist`);
    return r;
  };

  function emit(tenant: string, entry: AlertEntry, change: AlertChange = 'state'): void {
    for (const l of listeners) l(tenant, { ...entry.alert }, change);
  }

  /** Resolves the live alerts of a rule (deleted or redefined). */
  function resolveAll(tenant: string, name: string): void {
    const now = clock();
    for (const [key, entry] of alertsOf(tenant)) {
      if (!key.startsWith(`${name}\u0000`)) continue;
      const s = entry.alert.state;
      if (s === pb.AlertState.ALERT_STATE_PENDING || s === pb.AlertState.ALERT_STATE_FIRING) {
        entry.alert = {
          ...entry.alert,
          state: pb.AlertState.ALERT_STATE_RESOLVED,
          resolvedTime: new Date(now),
          message: `${entry.alert.message} (rule changed or deleted)`,
        };
        entry.changedMs = now;
        emit(tenant, entry);
      }
    }
  }

  function value(rule: Rule, version: string, nowMs: number): number {
    const end = Math.floor(nowMs / 1000) + 1;
    // A stored rule may be wider than a horizon shortened since: it sees what the horizon holds.
    const span = { start: end - Math.min(Math.ceil(rule.windowMs / 1000), store.horizonSeconds), end };
    const agg = store.aggregateScratch(store.series({ tenant: rule.tenant, model: rule.model, version }), span);
    if (rule.metric === pb.AlertMetric.ALERT_METRIC_P99_LATENCY_US) return agg.total.quantile(0.99);
    if (rule.metric === pb.AlertMetric.ALERT_METRIC_ERROR_RATE) return agg.count === 0 ? 0 : agg.errorCount / agg.count;
    return agg.count / (span.end - span.start);
  }

  /** The rule's window ending at `nowMs`, clamped to the horizon. */
  function ruleSpan(rule: Rule, nowMs: number): { start: number; end: number } {
    const end = Math.floor(nowMs / 1000) + 1;
    return { start: end - Math.min(Math.ceil(rule.windowMs / 1000), store.horizonSeconds), end };
  }

  function evaluateRule(rule: Rule, nowMs: number): void {
    const isDrift = rule.metric === pb.AlertMetric.ALERT_METRIC_DRIFT_PSI;
    const versions =
      rule.version !== ''
        ? [rule.version]
        : isDrift
          ? (options.drift?.versions(rule.tenant, rule.model, ruleSpan(rule, nowMs)) ?? [])
          : [...new Set(store.series({ tenant: rule.tenant, model: rule.model }).map((s) => s.version))];
    const table = alertsOf(rule.tenant);
    for (const version of versions) {
      // Drift: the PSI of the rule's input (or the highest), against the version's baseline or the
      // model's; without a baseline the rule does not hold.
      const psi: PsiValue | undefined = isDrift
        ? options.drift?.psi(rule.tenant, rule.model, version, rule.input, ruleSpan(rule, nowMs))
        : undefined;
      const v = isDrift ? (psi?.psi ?? 0) : value(rule, version, nowMs);
      const holds =
        isDrift && psi === undefined
          ? false
          : rule.comparison === pb.AlertComparison.ALERT_COMPARISON_BELOW
            ? v < rule.threshold
            : v > rule.threshold;
      const input = psi?.input ?? '';
      const key = `${rule.name}\u0000${version}`;
      const entry = table.get(key);
      const live =
        entry !== undefined &&
        (entry.alert.state === pb.AlertState.ALERT_STATE_PENDING ||
          entry.alert.state === pb.AlertState.ALERT_STATE_FIRING);
      const op = rule.comparison === pb.AlertComparison.ALERT_COMPARISON_BELOW ? '<' : '>';
      const about = input === '' ? '' : ` of input "${input}"`;
      const message =
        `${METRIC_WORDS[rule.metric]}${about} ${formatValue(rule.metric, v)} ${op} ` +
        `${formatValue(rule.metric, rule.threshold)} over ${rule.windowMs / 1000} s`;
      if (holds && !live) {
        const fresh: AlertEntry = {
          alert: {
            ruleName: rule.name,
            model: rule.model,
            version,
            state: pb.AlertState.ALERT_STATE_PENDING,
            value: v,
            threshold: rule.threshold,
            message,
            deliveries: [],
            input,
            pendingTime: new Date(nowMs),
          },
          changedMs: nowMs,
        };
        table.set(key, fresh);
        emit(rule.tenant, fresh);
        if (rule.forMs === 0) {
          fresh.alert = { ...fresh.alert, state: pb.AlertState.ALERT_STATE_FIRING, firingTime: new Date(nowMs) };
          emit(rule.tenant, fresh);
        }
      } else if (holds && entry !== undefined) {
        entry.alert = { ...entry.alert, value: v, message, input };
        const pendingMs = entry.alert.pendingTime?.getTime() ?? nowMs;
        if (entry.alert.state === pb.AlertState.ALERT_STATE_PENDING && nowMs - pendingMs >= rule.forMs) {
          entry.alert = {
            ...entry.alert,
            state: pb.AlertState.ALERT_STATE_FIRING,
            firingTime: new Date(nowMs),
            message: `${message} for ${Math.round((nowMs - pendingMs) / 1000)} s`,
          };
          entry.changedMs = nowMs;
          emit(rule.tenant, entry);
        }
      } else if (!holds && live) {
        entry.alert = {
          ...entry.alert,
          state: pb.AlertState.ALERT_STATE_RESOLVED,
          value: v,
          resolvedTime: new Date(nowMs),
          message: `resolved: ${message}`,
        };
        entry.changedMs = nowMs;
        emit(rule.tenant, entry);
      }
    }
  }

  const isActive = (a: pb.Alert): boolean =>
    a.state === pb.AlertState.ALERT_STATE_PENDING || a.state === pb.AlertState.ALERT_STATE_FIRING;

  /** Rule changes one at a time, so a change checks and writes against the rules as they are. */
  let tail: Promise<unknown> = Promise.resolve();
  function serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = tail.then(fn, fn);
    tail = run.catch(() => undefined);
    return run;
  }

  const stored = (rule: Rule): StoredRule => ({
    tenant: rule.tenant,
    rule: toProto(rule),
    createMs: rule.createMs,
    updateMs: rule.updateMs,
  });

  /** Runs a rule store write; a failure becomes UNAVAILABLE naming the rule (nothing changed). */
  async function write<T>(what: string, name: string, fn: (p: RuleStore) => Promise<T>, fallback: T): Promise<T> {
    if (persist === undefined) return fallback;
    try {
      return await fn(persist);
    } catch (error: unknown) {
      if (isDomainError(error)) throw error;
      if (isUniqueViolation(error)) throw alreadyExists(`alert rule "${name}" already exists`, { cause: error });
      const reason = error instanceof Error ? error.message : String(error);
      throw unavailable(
        `alert rule "${name}" was not ${what}: the rule store failed (${reason}); nothing changed, try again`,
        { cause: error },
      );
    }
  }

  return {
    createRule: (tenant, r) =>
      serial(async () => {
        if (rulesOf(tenant).has(r.name)) throw alreadyExists(`alert rule "${r.name}" already exists`);
        const rule = check(tenant, r, clock());
        await write('created', rule.name, (p) => p.insert(stored(rule)), undefined);
        rulesOf(tenant).set(rule.name, rule);
        return toProto(rule);
      }),
    getRule: (tenant, name) => toProto(find(tenant, name)),
    listRules: (tenant, model) =>
      [...(rules.get(tenant)?.values() ?? [])]
        .filter((r) => model === undefined || model === '' || r.model === model)
        .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
        .map(toProto),
    updateRule: (tenant, r) =>
      serial(async () => {
        const old = find(tenant, r.name);
        const rule = check(tenant, r, old.createMs);
        const found = await write('updated', rule.name, (p) => p.update(stored(rule)), true);
        if (!found)
          throw unavailable(
            `alert rule "${rule.name}" was not updated: its row is missing from the rule store ` +
              '(another process shares the database?); nothing changed',
          );
        resolveAll(tenant, r.name); // its alert starts over
        rulesOf(tenant).set(rule.name, rule);
        return toProto(rule);
      }),
    deleteRule: (tenant, name) =>
      serial(async () => {
        find(tenant, name);
        // A row already gone is as good as deleted.
        await write('deleted', name, (p) => p.delete(tenant, name), true);
        resolveAll(tenant, name);
        rules.get(tenant)?.delete(name);
      }),
    load: () =>
      serial(async () => {
        if (persist === undefined) return [];
        const warnings: string[] = [];
        for (const s of await persist.load()) {
          let rule: Rule;
          try {
            rule = check(s.tenant, s.rule, s.createMs, { updateMs: s.updateMs });
          } catch (error: unknown) {
            warnings.push(
              `alert rule "${s.rule.name}" of tenant "${s.tenant}" is not loaded: ` +
                (error instanceof Error ? error.message : String(error)),
            );
            continue;
          }
          if (rule.windowMs > store.horizonSeconds * 1000) {
            warnings.push(
              `alert rule "${rule.name}" of tenant "${rule.tenant}": window ${rule.windowMs / 1000} s is beyond ` +
                `the horizon (${store.horizonSeconds} s); it is evaluated over the horizon`,
            );
          }
          rulesOf(s.tenant).set(rule.name, rule);
        }
        return warnings;
      }),
    listAlerts(tenant, filter = {}) {
      const states = filter.states ?? [];
      return [...(alerts.get(tenant)?.values() ?? [])]
        .filter(
          (e) =>
            (states.length === 0 || states.includes(e.alert.state)) &&
            (filter.ruleName === undefined || filter.ruleName === '' || e.alert.ruleName === filter.ruleName),
        )
        .sort(
          (a, b) =>
            b.changedMs - a.changedMs ||
            a.alert.ruleName.localeCompare(b.alert.ruleName) ||
            a.alert.version.localeCompare(b.alert.version),
        )
        .map((e) => ({ ...e.alert }));
    },
    active: (tenant, ruleName) =>
      [...(alerts.get(tenant)?.values() ?? [])]
        .filter(
          (e) => isActive(e.alert) && (ruleName === undefined || ruleName === '' || e.alert.ruleName === ruleName),
        )
        .map((e) => ({ ...e.alert })),
    tenants: () => [...new Set([...rules.keys(), ...alerts.keys()])],
    evaluate() {
      const now = clock();
      for (const table of rules.values()) for (const rule of table.values()) evaluateRule(rule, now);
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    recordDelivery(tenant, alert, delivery) {
      const entry = alerts.get(tenant)?.get(`${alert.ruleName}\u0000${alert.version}`);
      if (entry === undefined || entry.alert.pendingTime?.getTime() !== alert.pendingTime?.getTime()) return;
      const at = entry.alert.deliveries.findIndex((d) => d.url === delivery.url);
      const deliveries = [...entry.alert.deliveries];
      if (at === -1) deliveries.push(delivery);
      else deliveries[at] = delivery;
      entry.alert = { ...entry.alert, deliveries };
      emit(tenant, entry, 'delivery');
    },
  };
}
