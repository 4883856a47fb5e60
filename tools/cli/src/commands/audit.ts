import type * as grpc from '@grpc/grpc-js';
import { crypto as cpb, monitoring as mpb, registry as rpb, unaryCaller } from '@quanta/contracts';
import type { Command } from 'commander';
import { CliError } from '../errors.js';
import { connect } from '../grpc.js';
import { table } from '../output.js';
import { action } from '../action.js';
import type { Settings } from '../settings.js';
import { parseSeconds } from './keys.js';

/** One audit event of any service, as `quanta audit` prints it. */
export interface AuditLine {
  readonly time: string;
  readonly service: AuditService;
  readonly tenant: string;
  readonly subject: string;
  readonly action: string;
  readonly resource: string;
  readonly outcome: 'ok' | 'error';
  readonly errorCode: string;
  readonly traceId: string;
}

const SERVICES = ['registry', 'monitoring', 'crypto'] as const;
type AuditService = (typeof SERVICES)[number];

interface Filter {
  readonly since: Date | undefined;
  readonly subject: string;
  readonly action: string;
  readonly limit: number;
}

type Outcome = rpb.AuditOutcome | mpb.AuditOutcome | cpb.AuditOutcome;
// The three services' AuditOutcome enums are the same (ERROR = 2).
const outcomeOf = (o: Outcome): 'ok' | 'error' =>
  Number(o) === Number(rpb.AuditOutcome.AUDIT_OUTCOME_ERROR) ? 'error' : 'ok';

/** `1h`, `30m`, `2d`, `45s` before now, or an ISO 8601 time. */
export function parseSince(text: string, now = Date.now()): Date {
  if (/^\d+[smhd]$/.test(text.trim())) return new Date(now - parseSeconds(text, '--since') * 1000);
  const time = Date.parse(text);
  if (Number.isNaN(time))
    throw new CliError(`--since "${text}" is neither a duration (1h, 30m, 7d) nor a time (2026-12-07T10:00:00Z)`, 2);
  return new Date(time);
}

/** Pages through one service's ListAuditEvents (registry and monitoring filter on the server). */
async function fetchFiltered(
  service: 'registry' | 'monitoring',
  settings: Settings,
  filter: Filter,
): Promise<AuditLine[]> {
  const client =
    service === 'registry'
      ? connect(rpb.RegistryServiceClient, settings, 'registry')
      : connect(mpb.MonitoringServiceClient, settings, 'monitoring');
  const call = unaryCaller(client, service === 'registry' ? rpb.RegistryServiceService : mpb.MonitoringServiceService, {
    deadlineMs: 30_000,
  }) as (
    method: 'listAuditEvents',
    request: rpb.ListAuditEventsRequest,
  ) => Promise<rpb.ListAuditEventsResponse | mpb.ListAuditEventsResponse>;
  const lines: AuditLine[] = [];
  try {
    let pageToken = '';
    do {
      const page = await call('listAuditEvents', {
        since: filter.since,
        subject: filter.subject,
        action: filter.action,
        pageSize: Math.min(1000, filter.limit - lines.length),
        pageToken,
      });
      for (const e of page.events) {
        lines.push({ ...e, time: e.time?.toISOString() ?? '', service, outcome: outcomeOf(e.outcome) });
      }
      pageToken = page.nextPageToken;
    } while (pageToken !== '' && lines.length < filter.limit);
  } finally {
    client.close();
  }
  return lines;
}

/** Crypto's audit (key uses and token changes) takes no time or subject filter: it is applied here, newest first. */
async function fetchCrypto(settings: Settings, filter: Filter): Promise<AuditLine[]> {
  const client = connect(cpb.CryptoServiceClient, settings, 'crypto');
  const call = unaryCaller(client, cpb.CryptoServiceService, { deadlineMs: 30_000 });
  const lines: AuditLine[] = [];
  try {
    let pageToken = '';
    pages: do {
      const page = await call('listAuditEvents', { keyName: '', pageSize: 1000, pageToken });
      for (const e of page.events) {
        if (filter.since !== undefined && e.time !== undefined && e.time < filter.since) break pages;
        if (filter.subject !== '' && e.subject !== filter.subject) continue;
        if (filter.action !== '' && e.operation !== filter.action) continue;
        const resource =
          e.keyVersion > 0
            ? `key/${e.keyName} v${e.keyVersion}`
            : e.keyName.startsWith('token/') || e.keyName === 'signing-key'
              ? e.keyName
              : `key/${e.keyName}`;
        lines.push({
          time: e.time?.toISOString() ?? '',
          service: 'crypto',
          tenant: e.tenant,
          subject: e.subject,
          action: e.operation,
          resource,
          outcome: outcomeOf(e.outcome),
          errorCode: e.errorCode,
          traceId: e.traceId,
        });
        if (lines.length >= filter.limit) break pages;
      }
      pageToken = page.nextPageToken;
    } while (pageToken !== '');
  } finally {
    client.close();
  }
  return lines;
}

export function registerAuditCommand(program: Command): void {
  program
    .command('audit')
    .description(
      'who changed what, when, and with what outcome: the audit trails of the registry, monitoring and crypto, ' +
        "merged by time (your tenant's; an admin token sees all)",
    )
    .option('--service <name>', `only this service: ${SERVICES.join(', ')}`)
    .option('--since <when>', 'only events since a duration ago (1h, 30m, 7d) or a time (ISO 8601)')
    .option('--subject <subject>', 'only events of this token subject')
    .option('--action <action>', 'only events of this action (e.g. SetAlias, DeleteAlertRule, issue-token)')
    .option('--limit <n>', 'at most this many events per service', '200')
    .action(
      action(
        async (
          { settings, out },
          opts: { service?: string; since?: string; subject?: string; action?: string; limit: string },
        ) => {
          if (opts.service !== undefined && !(SERVICES as readonly string[]).includes(opts.service)) {
            throw new CliError(`--service "${opts.service}" is not one of ${SERVICES.join(', ')}`, 2);
          }
          const limit = Number(opts.limit);
          if (!Number.isSafeInteger(limit) || limit < 1)
            throw new CliError(`--limit "${opts.limit}" must be a whole number of at least 1`, 2);
          const filter: Filter = {
            since: opts.since === undefined ? undefined : parseSince(opts.since),
            subject: opts.subject ?? '',
            action: opts.action ?? '',
            limit,
          };
          const services = opts.service === undefined ? SERVICES : [opts.service as AuditService];
          const results = await Promise.allSettled(
            services.map((s) => (s === 'crypto' ? fetchCrypto(settings, filter) : fetchFiltered(s, settings, filter))),
          );
          const lines: AuditLine[] = [];
          results.forEach((result, i) => {
            if (result.status === 'fulfilled') {
              lines.push(...result.value);
              return;
            }
            const e = result.reason as Partial<grpc.ServiceError>;
            const why = `${services[i]!}: ${e.details ?? String(result.reason)}`;
            // One service named: its failure is the command's. All: the others still show.
            if (services.length === 1) throw new CliError(`could not read the audit trail of ${why}`);
            out.info(`quanta: skipped the audit trail of ${why}`);
          });
          lines.sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
          out.result(lines, () =>
            lines.length === 0
              ? 'no audit events'
              : table(
                  ['TIME', 'SERVICE', 'TENANT', 'SUBJECT', 'ACTION', 'RESOURCE', 'OUTCOME', 'TRACE'],
                  lines.map((l) => [
                    l.time,
                    l.service,
                    l.tenant,
                    l.subject,
                    l.action,
                    l.resource,
                    l.outcome === 'ok' ? 'ok' : `error ${l.errorCode}`,
                    l.traceId,
                  ]),
                ),
          );
        },
      ),
    );
}
