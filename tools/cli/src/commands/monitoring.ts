import * as grpc from '@grpc/grpc-js';
import { monitoring as pb, unaryCaller, type RequestOf, type ResponseOf, type UnaryMethod } from '@quanta/contracts';
import type { Command } from 'commander';
import { CliError } from '../errors.js';
import { connect } from '../grpc.js';
import { table, toJson } from '../output.js';
import { action } from '../action.js';
import type { Settings } from '../settings.js';

type Definition = typeof pb.MonitoringServiceService;

/** Runs `fn` with a promise-returning caller of MonitoringService's unary RPCs; always closes the channel. */
export async function withMonitoring<T>(
  settings: Settings,
  fn: (
    rpc: <K extends UnaryMethod<Definition>>(
      method: K,
      request: RequestOf<Definition, K>,
    ) => Promise<ResponseOf<Definition, K>>,
    client: pb.MonitoringServiceClient,
  ) => Promise<T>,
): Promise<T> {
  const client = connect(pb.MonitoringServiceClient, settings, 'monitoring');
  const call = unaryCaller(client, pb.MonitoringServiceService, { deadlineMs: 30_000 });
  const rpc = <K extends UnaryMethod<Definition>>(method: K, request: RequestOf<Definition, K>) =>
    call(method, request);
  try {
    return await fn(rpc, client);
  } finally {
    client.close();
  }
}

/** `90s`, `5m`, `1h`, `1h30m` or plain seconds → seconds. */
export function parseWindow(text: string, what = 'window'): number {
  const t = text.trim();
  if (/^\d+$/.test(t)) return Number(t);
  const parts = [...t.matchAll(/(\d+)(s|m|h|d)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== t)
    throw new CliError(`${what} "${text}" is not a duration (like 60, 90s, 5m, 1h)`, 2);
  return parts.reduce(
    (sum, p) => sum + Number(p[1]) * { s: 1, m: 60, h: 3600, d: 86_400 }[p[2] as 's' | 'm' | 'h' | 'd'],
    0,
  );
}

const seconds = (n: number) => ({ seconds: BigInt(n), nanos: 0 });
const ms = (us: number | undefined) => `${((us ?? 0) / 1000).toFixed(2)}`;
const when = (d: Date | undefined) =>
  d === undefined
    ? ''
    : d
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, 'Z');

const METRICS: Record<string, pb.AlertMetric> = {
  p99: pb.AlertMetric.ALERT_METRIC_P99_LATENCY_US,
  'error-rate': pb.AlertMetric.ALERT_METRIC_ERROR_RATE,
  throughput: pb.AlertMetric.ALERT_METRIC_THROUGHPUT_RPS,
  drift_psi: pb.AlertMetric.ALERT_METRIC_DRIFT_PSI,
};
const metricName = (m: pb.AlertMetric) =>
  Object.entries(METRICS).find(([, v]) => v === m)?.[0] ?? pb.alertMetricToJSON(m);
const stateName = (s: pb.AlertState) => pb.alertStateToJSON(s).replace('ALERT_STATE_', '');
const STATES: Record<string, pb.AlertState> = {
  pending: pb.AlertState.ALERT_STATE_PENDING,
  firing: pb.AlertState.ALERT_STATE_FIRING,
  resolved: pb.AlertState.ALERT_STATE_RESOLVED,
};

function statsText(s: pb.ModelStats): string {
  const lines = [
    `${s.model}${s.version ? `:${s.version}` : ''}  ${when(s.startTime)} .. ${when(s.endTime)}`,
    `  requests   ${s.count}  (${s.throughputRps.toFixed(2)} req/s)   ` +
      `errors ${s.errorCount} (${(s.errorRate * 100).toFixed(2)}%)`,
    table(
      ['  LATENCY (ms)', 'P50', 'P95', 'P99', 'MEAN', 'MAX'],
      (
        [
          ['queue', s.queue],
          ['compute', s.compute],
          ['total', s.total],
        ] as const
      ).map(([name, l]) => [`  ${name}`, ms(l?.p50Us), ms(l?.p95Us), ms(l?.p99Us), ms(l?.meanUs), ms(l?.maxUs)]),
    ),
    `  statuses   ${s.statuses.map((x) => `${x.statusName} ${x.count}`).join(', ') || '-'}`,
    `  batch size ${s.batchSizes.map((b) => `${b.batchSize}×${b.count}`).join(', ') || '-'}`,
    `  bytes      in ${s.bytesIn}, out ${s.bytesOut}`,
    ...(s.cacheHitCount + s.cacheMissCount === 0n
      ? []
      : [`  cache      hits ${s.cacheHitCount}, misses ${s.cacheMissCount}`]),
  ];
  return lines.join('\n');
}

/** One row per version: how it was routed, its traffic, and for a shadow its agreement with the primary. */
function versionRows(versions: readonly pb.ModelStats[]): string {
  const agreement = (a: pb.ShadowAgreement | undefined): string =>
    a === undefined
      ? '-'
      : `${a.compared} compared, max err ${a.maxAbsError.toPrecision(3)}, mean ${a.meanAbsError.toPrecision(3)}` +
        (a.top1Rows === 0n ? '' : `, top-1 ${(a.top1Agreement * 100).toFixed(1)}%`);
  return table(
    ['  VERSION', 'ROUTE', 'REQUESTS', 'P50 MS', 'P99 MS', 'ERRORS', 'SHADOW AGREEMENT'],
    versions.map((v) => [
      `  ${v.version}`,
      v.route || 'primary',
      String(v.count),
      ms(v.total?.p50Us),
      ms(v.total?.p99Us),
      `${v.errorCount} (${(v.errorRate * 100).toFixed(1)}%)`,
      agreement(v.shadow),
    ]),
  );
}

function alertRows(alerts: readonly pb.Alert[]): string {
  return table(
    ['RULE', 'MODEL', 'STATE', 'VALUE', 'SINCE', 'MESSAGE'],
    alerts.map((a) => [
      a.ruleName,
      `${a.model}${a.version ? `:${a.version}` : ''}`,
      stateName(a.state),
      String(Math.round(a.value * 1000) / 1000),
      when(a.resolvedTime ?? a.firingTime ?? a.pendingTime),
      a.message,
    ]),
  );
}

const deliveryState = (s: pb.WebhookDeliveryState) =>
  pb.webhookDeliveryStateToJSON(s).replace('WEBHOOK_DELIVERY_STATE_', '');

/** A delivery in one line: `firing RETRYING attempt 2 HTTP 500: the receiver answered HTTP 500`. */
const deliveryLine = (d: pb.WebhookDelivery): string =>
  `${d.status} ${deliveryState(d.state)} attempt ${d.attempts}` +
  `${d.lastHttpStatus === 0 ? '' : ` HTTP ${d.lastHttpStatus}`}${d.lastError ? `: ${d.lastError}` : ''}`;

/** One row per webhook notification of each alert: where it stands, and why it failed. */
function deliveryRows(alerts: readonly pb.Alert[]): string {
  return table(
    ['RULE', 'MODEL', 'WEBHOOK', 'NOTICE', 'DELIVERY', 'ATTEMPTS', 'HTTP', 'LAST ATTEMPT', 'NEXT', 'ERROR'],
    alerts.flatMap((a) =>
      a.deliveries.map((d) => [
        a.ruleName,
        `${a.model}${a.version ? `:${a.version}` : ''}`,
        d.url,
        d.status,
        deliveryState(d.state),
        String(d.attempts),
        d.lastHttpStatus === 0 ? '-' : String(d.lastHttpStatus),
        when(d.lastAttemptTime),
        when(d.nextAttemptTime),
        d.lastError,
      ]),
    ),
  );
}

export function registerMonitoringCommands(program: Command): void {
  program
    .command('stats')
    .description('latency and throughput of a model over a window (the busiest models when none is named)')
    .argument('[model]', 'model name')
    .option('--window <duration>', 'how far back (60, 90s, 5m, 1h)', '5m')
    .option('--model-version <version>', 'one version only (default: all versions together)')
    .option('--by <order>', 'without a model: rank by traffic, p99 or errors', 'traffic')
    .option('--limit <n>', 'without a model: how many', '10')
    .action(
      action(
        async (
          { settings, out },
          model: string | undefined,
          opts: { window: string; modelVersion?: string; by: string; limit: string },
        ) => {
          const window = { $case: 'window' as const, value: seconds(parseWindow(opts.window)) };
          await withMonitoring(settings, async (rpc) => {
            if (model !== undefined) {
              const { stats, versions } = await rpc('getModelStats', {
                model,
                version: opts.modelVersion ?? '',
                byVersion: opts.modelVersion === undefined,
                span: window,
              });
              if (stats === undefined) throw new CliError('the server sent no statistics');
              out.result({ ...stats, versions }, () =>
                versions.length === 0 ? statsText(stats) : `${statsText(stats)}\n${versionRows(versions)}`,
              );
              return;
            }
            const order = {
              traffic: pb.TopModelsOrder.TOP_MODELS_ORDER_TRAFFIC,
              p99: pb.TopModelsOrder.TOP_MODELS_ORDER_P99_LATENCY,
              errors: pb.TopModelsOrder.TOP_MODELS_ORDER_ERROR_RATE,
            }[opts.by];
            if (order === undefined) throw new CliError(`--by "${opts.by}" is not one of traffic, p99, errors`, 2);
            if (!/^\d+$/.test(opts.limit)) throw new CliError(`--limit must be a whole number, got "${opts.limit}"`, 2);
            const { models } = await rpc('topModels', {
              span: window,
              orderBy: order,
              limit: Number(opts.limit),
              byVersion: false,
            });
            out.result(models, () =>
              models.length === 0
                ? `no requests in the last ${opts.window}`
                : table(
                    ['MODEL', 'REQUESTS', 'REQ/S', 'ERRORS', 'P50 MS', 'P95 MS', 'P99 MS'],
                    models.map((m) => [
                      m.model,
                      String(m.count),
                      m.throughputRps.toFixed(2),
                      `${(m.errorRate * 100).toFixed(1)}%`,
                      ms(m.total?.p50Us),
                      ms(m.total?.p95Us),
                      ms(m.total?.p99Us),
                    ]),
                  ),
            );
          });
        },
      ),
    );

  const alerts = program.command('alerts').description('alert rules on model latency, error rate and throughput');
  alerts
    .command('rules')
    .description('list alert rules')
    .option('--model <model>', 'only the rules of this model')
    .action(
      action(async ({ settings, out }, opts: { model?: string }) => {
        await withMonitoring(settings, async (rpc) => {
          const rules: pb.AlertRule[] = [];
          let pageToken = '';
          do {
            const page = await rpc('listAlertRules', { pageSize: 1000, pageToken, model: opts.model ?? '' });
            rules.push(...page.rules);
            pageToken = page.nextPageToken;
          } while (pageToken !== '');
          out.result(rules, () =>
            rules.length === 0
              ? 'no alert rules'
              : table(
                  ['NAME', 'MODEL', 'METRIC', 'CONDITION', 'WINDOW', 'FOR'],
                  rules.map((r) => [
                    r.name,
                    `${r.model}${r.version ? `:${r.version}` : ''}`,
                    metricName(r.metric),
                    `${r.comparison === pb.AlertComparison.ALERT_COMPARISON_BELOW ? '<' : '>'} ${r.threshold}`,
                    `${r.window?.seconds ?? 0}s`,
                    `${r.forDuration?.seconds ?? 0}s`,
                  ]),
                ),
          );
        });
      }),
    );
  alerts
    .command('create')
    .description(
      'create an alert rule, e.g. ' +
        'quanta alerts create cifar-slow --model cifar --metric p99 --threshold 20000 --window 1m --for 30s',
    )
    .argument('<name>', 'rule name')
    .requiredOption('--model <model>', 'the model it watches')
    .requiredOption(
      '--metric <metric>',
      `one of ${Object.keys(METRICS).join(', ')} ` +
        '(p99 in µs, error-rate 0..1, throughput in req/s, drift_psi against the drift baseline)',
    )
    .requiredOption('--threshold <number>', "the threshold in the metric's unit")
    .option('--below', 'trouble below the threshold (a throughput floor); default above')
    .option('--model-version <version>', 'one version (default: each version separately)')
    .option('--window <duration>', 'window the metric is computed over', '1m')
    .option('--for <duration>', 'how long the condition must hold before firing', '0')
    .option('--description <text>', 'free text shown with the alert', '')
    .option('--input <name>', 'with --metric drift_psi: the input watched (default: the highest PSI of every input)')
    .option(
      '--webhook <url>',
      'POST the Alertmanager webhook body here on firing and resolving (repeatable, at most 8)',
      (url: string, list: string[] = []) => [...list, url],
    )
    .option('--webhook-key <key>', "the tenant's hmac-sha256 crypto key that signs every --webhook's body")
    .option('--webhook-skip-resolved', 'notify the webhooks on firing only, not on resolving')
    .action(
      action(
        async (
          { settings, out },
          name: string,
          opts: {
            model: string;
            metric: string;
            threshold: string;
            below?: boolean;
            modelVersion?: string;
            window: string;
            for: string;
            description: string;
            input?: string;
            webhook?: string[];
            webhookKey?: string;
            webhookSkipResolved?: boolean;
          },
        ) => {
          const urls = opts.webhook ?? [];
          if (urls.length > 0 && (opts.webhookKey ?? '') === '')
            throw new CliError('--webhook needs --webhook-key: the hmac-sha256 key that signs the bodies', 2);
          if (urls.length === 0 && (opts.webhookKey !== undefined || opts.webhookSkipResolved === true))
            throw new CliError('--webhook-key and --webhook-skip-resolved need at least one --webhook <url>', 2);
          const metric = METRICS[opts.metric];
          if (metric === undefined)
            throw new CliError(`--metric "${opts.metric}" is not one of ${Object.keys(METRICS).join(', ')}`, 2);
          if (opts.input !== undefined && metric !== pb.AlertMetric.ALERT_METRIC_DRIFT_PSI)
            throw new CliError('--input goes with --metric drift_psi', 2);
          const threshold = Number(opts.threshold);
          if (opts.threshold.trim() === '' || !Number.isFinite(threshold))
            throw new CliError(`--threshold "${opts.threshold}" is not a number`, 2);
          const rule: pb.AlertRule = {
            name,
            model: opts.model,
            version: opts.modelVersion ?? '',
            metric,
            comparison:
              opts.below === true
                ? pb.AlertComparison.ALERT_COMPARISON_BELOW
                : pb.AlertComparison.ALERT_COMPARISON_ABOVE,
            threshold,
            window: seconds(parseWindow(opts.window)),
            forDuration: seconds(parseWindow(opts.for, '--for')),
            description: opts.description,
            input: opts.input ?? '',
            webhooks: urls.map((url) => ({
              url,
              hmacKey: opts.webhookKey ?? '',
              skipResolved: opts.webhookSkipResolved === true,
            })),
          };
          const created = await withMonitoring(settings, (rpc) => rpc('createAlertRule', { rule }));
          out.result(created.rule, () => `alert rule "${name}" created`);
        },
      ),
    );
  alerts
    .command('delete')
    .description('delete an alert rule (its alert is resolved)')
    .argument('<name>', 'rule name')
    .action(
      action(async ({ settings, out }, name: string) => {
        await withMonitoring(settings, (rpc) => rpc('deleteAlertRule', { name }));
        out.result({ deleted: name }, () => `alert rule "${name}" deleted`);
      }),
    );
  alerts
    .command('list')
    .description('list alerts, most recent change first')
    .option('--state <states>', 'comma-separated: pending, firing, resolved (default all)')
    .option('--rule <name>', 'only the alerts of this rule')
    .action(
      action(async ({ settings, out }, opts: { state?: string; rule?: string }) => {
        const states = (opts.state ?? '')
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== '')
          .map((s) => {
            const state = STATES[s];
            if (state === undefined)
              throw new CliError(`--state "${s}" is not one of ${Object.keys(STATES).join(', ')}`, 2);
            return state;
          });
        const list = await withMonitoring(settings, (rpc) =>
          rpc('listAlerts', { pageSize: 1000, pageToken: '', states, ruleName: opts.rule ?? '' }),
        );
        out.result(list.alerts, () => {
          if (list.alerts.length === 0) return 'no alerts';
          const delivered = list.alerts.filter((a) => a.deliveries.length > 0);
          return delivered.length === 0
            ? alertRows(list.alerts)
            : `${alertRows(list.alerts)}\n\n${deliveryRows(delivered)}`;
        });
      }),
    );
  alerts
    .command('watch')
    .description('print every alert change as it happens (Ctrl-C stops); with --json one JSON document per line')
    .option('--rule <name>', 'only the alerts of this rule')
    .action(
      action(async ({ settings }, opts: { rule?: string }) => {
        const client = connect(pb.MonitoringServiceClient, settings, 'monitoring');
        const stream = client.watchAlerts({ ruleName: opts.rule ?? '' }, new grpc.Metadata());
        const stop = (): void => stream.cancel();
        /** rule and version → the state last printed, and each webhook's delivery as last printed. */
        const seen = new Map<string, { state: pb.AlertState; deliveries: Map<string, string> }>();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        try {
          for await (const message of stream as AsyncIterable<pb.WatchAlertsResponse>) {
            const event = message.event;
            if (event === undefined) continue;
            if (settings.json) {
              const value = event.$case === 'snapshot' ? { snapshot: event.value.alerts } : { change: event.value };
              process.stdout.write(`${toJson(value).replace(/\n\s*/g, ' ')}\n`);
            } else if (event.$case === 'snapshot') {
              for (const a of event.value.alerts) {
                const printed = a.deliveries.map((d) => [d.url, deliveryLine(d)] as const);
                seen.set(`${a.ruleName}\u0000${a.version}`, { state: a.state, deliveries: new Map(printed) });
              }
              process.stdout.write(
                event.value.alerts.length === 0
                  ? 'no pending or firing alerts; watching…\n'
                  : `${alertRows(event.value.alerts)}\nwatching…\n`,
              );
            } else {
              const a = event.value;
              const model = `${a.model}${a.version ? `:${a.version}` : ''}`;
              const key = `${a.ruleName}\u0000${a.version}`;
              const last = seen.get(key);
              // A change is a new state, or (same state) a webhook delivery moving on.
              if (last?.state !== a.state)
                process.stdout.write(
                  `${when(new Date())}  ${stateName(a.state).padEnd(8)} ${a.ruleName}  ${model}  ${a.message}\n`,
                );
              const deliveries = last?.state === a.state ? last.deliveries : new Map<string, string>();
              for (const d of a.deliveries) {
                const line = deliveryLine(d);
                if (deliveries.get(d.url) === line) continue;
                deliveries.set(d.url, line);
                if (d.attempts > 0 || d.state !== pb.WebhookDeliveryState.WEBHOOK_DELIVERY_STATE_PENDING)
                  process.stdout.write(`${when(new Date())}  WEBHOOK  ${a.ruleName}  ${model}  ${d.url}  ${line}\n`);
              }
              seen.set(key, { state: a.state, deliveries });
            }
          }
        } catch (error: unknown) {
          if ((error as Partial<grpc.ServiceError>).code !== grpc.status.CANCELLED) throw error;
        } finally {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          client.close();
        }
      }),
    );

  program
    .command('health')
    .description('the health board: every service monitoring checks, as it last saw it')
    .action(
      action(async ({ settings, out }) => {
        const board = await withMonitoring(settings, (rpc) => rpc('getHealthBoard', {}));
        out.result(board.services, () =>
          board.services.length === 0
            ? 'monitoring checks no services'
            : table(
                ['SERVICE', 'ADDRESS', 'STATUS', 'LATENCY', 'SINCE', 'ERROR'],
                board.services.map((s) => [
                  s.name,
                  s.address,
                  pb.serviceHealthStatusToJSON(s.status).replace('SERVICE_HEALTH_STATUS_', ''),
                  s.latency === undefined
                    ? ''
                    : `${(Number(s.latency.seconds) * 1000 + s.latency.nanos / 1e6).toFixed(1)} ms`,
                  when(s.lastChangeTime),
                  s.error,
                ]),
              ),
        );
        if (board.services.some((s) => s.status !== pb.ServiceHealthStatus.SERVICE_HEALTH_STATUS_SERVING))
          process.exitCode = 1;
      }),
    );
}
