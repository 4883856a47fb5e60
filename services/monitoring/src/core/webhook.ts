import { createHash } from 'node:crypto';
import type { monitoring as pb } from '@quanta/contracts';
import { invalidArgument } from '@quanta/service-kit';

/** The most webhooks one rule may name (the contract's limit). */
export const MAX_WEBHOOKS = 8;
const MAX_URL_LENGTH = 2048;
/** The crypto service's key names. */
const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Throws INVALID_ARGUMENT naming the rule, the webhook (1-based) and what is wrong with it. */
export function checkWebhooks(rule: string, webhooks: readonly pb.Webhook[]): void {
  if (webhooks.length > MAX_WEBHOOKS)
    throw invalidArgument(`rule "${rule}": ${webhooks.length} webhooks, at most ${MAX_WEBHOOKS}`);
  const seen = new Set<string>();
  webhooks.forEach((w, i) => {
    const which = `rule "${rule}": webhook ${i + 1}`;
    if (w.url === '') throw invalidArgument(`${which}: url is missing`);
    if (w.url.length > MAX_URL_LENGTH)
      throw invalidArgument(`${which}: url is ${w.url.length} characters, at most ${MAX_URL_LENGTH}`);
    let url: URL;
    try {
      url = new URL(w.url);
    } catch {
      throw invalidArgument(`${which}: url "${w.url}" is not a URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw invalidArgument(`${which}: url "${w.url}" is not http or https`);
    // fetch refuses URLs with credentials, and they would be shown in every alert listing.
    if (url.username !== '' || url.password !== '')
      throw invalidArgument(`${which}: url must not hold credentials (user:password@)`);
    if (seen.has(w.url)) throw invalidArgument(`${which}: url "${w.url}" is named twice`);
    seen.add(w.url);
    if (w.hmacKey === '')
      throw invalidArgument(`${which}: hmac_key is missing (the name of an hmac-sha256 key of the crypto service)`);
    if (!KEY_NAME.test(w.hmacKey))
      throw invalidArgument(
        `${which}: hmac_key "${w.hmacKey}" is not a key name: 1-128 characters of [A-Za-z0-9._-], ` +
          'starting with a letter or digit',
      );
  });
}

/** Alertmanager's zero time: `endsAt` of an alert still firing. */
const ZERO_TIME = '0001-01-01T00:00:00Z';

/** Alertmanager's fingerprint form: 16 hex digits, here stable per tenant, rule, model and version. */
export function fingerprint(tenant: string, alert: Pick<pb.Alert, 'ruleName' | 'model' | 'version'>): string {
  return createHash('sha256')
    .update([tenant, alert.ruleName, alert.model, alert.version].join('\u0000'))
    .digest('hex')
    .slice(0, 16);
}

export type NotificationStatus = 'firing' | 'resolved';

/** One alert of an Alertmanager webhook body (version 4). */
export interface AlertmanagerAlert {
  readonly status: NotificationStatus;
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, string>;
  readonly startsAt: string;
  readonly endsAt: string;
  readonly generatorURL: string;
  readonly fingerprint: string;
}

/** The Alertmanager webhook body (version 4), as receivers written for Alertmanager read it. */
export interface AlertmanagerBody {
  readonly version: '4';
  readonly groupKey: string;
  readonly truncatedAlerts: number;
  readonly status: NotificationStatus;
  readonly receiver: string;
  readonly groupLabels: Record<string, string>;
  readonly commonLabels: Record<string, string>;
  readonly commonAnnotations: Record<string, string>;
  readonly externalURL: string;
  readonly alerts: AlertmanagerAlert[];
}

/** Alertmanager's label value quoting in group keys. */
const quote = (s: string): string => JSON.stringify(s);

/**
 * The body of one notification: one group per rule and tenant (like Alertmanager grouping by
 * `alertname`), holding the one alert of one model version.
 */
export function alertmanagerBody(
  tenant: string,
  alert: pb.Alert,
  rule: { description: string },
  status: NotificationStatus,
  externalUrl: string,
): AlertmanagerBody {
  const labels: Record<string, string> = {
    alertname: alert.ruleName,
    model: alert.model,
    version: alert.version,
    tenant,
  };
  if (alert.input !== '') labels['input'] = alert.input;
  const annotations = { description: rule.description, summary: alert.message };
  const startsAt = (alert.firingTime ?? alert.pendingTime ?? new Date(0)).toISOString();
  const endsAt = status === 'resolved' ? (alert.resolvedTime?.toISOString() ?? ZERO_TIME) : ZERO_TIME;
  const base = externalUrl.replace(/\/+$/, '');
  const query = new URLSearchParams({ rule: alert.ruleName, model: alert.model, version: alert.version });
  return {
    version: '4',
    groupKey: `{}:{alertname=${quote(alert.ruleName)},tenant=${quote(tenant)}}`,
    truncatedAlerts: 0,
    status,
    receiver: alert.ruleName,
    groupLabels: { alertname: alert.ruleName, tenant },
    commonLabels: labels,
    commonAnnotations: annotations,
    externalURL: base,
    alerts: [
      {
        status,
        labels,
        annotations,
        startsAt,
        endsAt,
        generatorURL: `${base}/?${query.toString()}`,
        fingerprint: fingerprint(tenant, alert),
      },
    ],
  };
}

/** What the HMAC covers: `<t>.<body>`, so that a captured signature cannot be replayed with another time. */
export const signedPayload = (unixSeconds: number, body: string): Buffer =>
  Buffer.from(`${unixSeconds}.${body}`, 'utf8');

/** The `X-Quanta-Signature` header value. */
export const signatureHeader = (unixSeconds: number, signature: Buffer): string =>
  `t=${unixSeconds},v1=${signature.toString('hex')}`;
