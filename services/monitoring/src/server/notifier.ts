import { setTimeout as sleep } from 'node:timers/promises';
import { SpanStatusCode, trace } from '@opentelemetry/api';
import { monitoring as pb } from '@quanta/contracts';
import type { NotificationStatus } from '../core/webhook.js';
import { alertmanagerBody, signatureHeader, signedPayload } from '../core/webhook.js';
import type { Signer } from './webhook-signer.js';
import { SignError } from './webhook-signer.js';

const D = pb.WebhookDeliveryState;

/** When attempts are made: the first at once, then `firstDelayMs` doubling up to `maxDelayMs`. */
export interface RetrySchedule {
  readonly firstDelayMs: number;
  readonly maxDelayMs: number;
  readonly maxAttempts: number;
}

/** The contract's schedule: 1 s doubling to 60 s, up to 10 attempts. */
export const DEFAULT_RETRY: RetrySchedule = { firstDelayMs: 1000, maxDelayMs: 60_000, maxAttempts: 10 };

/** The delay after failed attempt `attempt` (1-based). */
export const retryDelayMs = (s: RetrySchedule, attempt: number): number =>
  Math.min(s.firstDelayMs * 2 ** (attempt - 1), s.maxDelayMs);

/** Which episode of which alert a delivery belongs to. */
export interface AlertRef {
  readonly ruleName: string;
  readonly version: string;
  readonly pendingTime: Date | undefined;
}

export interface NotifierOptions {
  readonly sign: Signer;
  /** Told each change of a delivery (the alert engine's recordDelivery). */
  readonly record: (tenant: string, alert: AlertRef, delivery: pb.WebhookDelivery) => void;
  /** The base of `externalURL` and `generatorURL` (asked per notification: the listener starts later). */
  readonly externalUrl: () => string;
  readonly retry?: RetrySchedule;
  /** The deadline of one POST, answer included. */
  readonly timeoutMs?: number;
  /** Notifications waiting or in progress, at most; beyond it a notification FAILS at once. */
  readonly maxQueued?: number;
  readonly logger?: {
    warn(o: object, m: string): void;
    info(o: object, m: string): void;
  };
}

export interface Notifier {
  /** Queues the notification of `alert` to each webhook; returns at once. */
  notify(tenant: string, alert: pb.Alert, rule: Pick<pb.AlertRule, 'description' | 'webhooks'>): void;
  /** Notifications waiting or in progress. */
  readonly queued: number;
  /** Resolves once nothing is waiting or in progress. */
  idle(): Promise<void>;
  /** Drops what waits and cuts what is in flight. */
  stop(): void;
}

interface Job {
  readonly tenant: string;
  readonly alert: AlertRef;
  readonly url: string;
  readonly hmacKey: string;
  readonly status: NotificationStatus;
  readonly body: string;
  delivery: pb.WebhookDelivery;
}

type Outcome = { ok: true; httpStatus: number } | { ok: false; httpStatus: number; error: string; retry: boolean };

const tracer = (): ReturnType<typeof trace.getTracer> => trace.getTracer('quanta-monitoring');
const reasonOf = (error: unknown): string => {
  const cause = (error as { cause?: unknown } | undefined)?.cause;
  const base = error instanceof Error ? error.message : String(error);
  return cause instanceof Error && cause.message !== '' ? `${base} (${cause.message})` : base;
};

/**
 * Delivers alert notifications off the evaluation loop. The notifications of one alert to one
 * webhook go out one after the other, in the order the alert changed: a resolve waits for the
 * firing notification before it (delivered or failed), so a receiver never sees them swapped.
 * Each attempt is signed anew (a fresh `t=`); a body is never sent unsigned.
 */
export function createNotifier(options: NotifierOptions): Notifier {
  const retry = options.retry ?? DEFAULT_RETRY;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const maxQueued = options.maxQueued ?? 1000;
  const stopped = new AbortController();
  /** tenant, rule, version and URL → the notifications waiting, the one in progress first. */
  const chains = new Map<string, Job[]>();
  let queued = 0;
  let waiters: (() => void)[] = [];

  const update = (job: Job, change: Partial<pb.WebhookDelivery>): void => {
    job.delivery = { ...job.delivery, ...change };
    options.record(job.tenant, job.alert, job.delivery);
  };

  async function attempt(job: Job, n: number): Promise<Outcome> {
    return tracer().startActiveSpan(
      'monitoring.webhook_delivery',
      {
        attributes: {
          'quanta.tenant': job.tenant,
          'quanta.alert_rule': job.alert.ruleName,
          'quanta.webhook.status': job.status,
          'quanta.webhook.attempt': n,
          'url.full': job.url,
        },
      },
      async (span) => {
        const outcome = await send(job);
        span.setAttribute('http.response.status_code', outcome.httpStatus);
        if (!outcome.ok) span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.error });
        span.end();
        return outcome;
      },
    );
  }

  async function send(job: Job): Promise<Outcome> {
    const t = Math.floor(Date.now() / 1000);
    let signature;
    try {
      signature = await options.sign(job.tenant, job.hmacKey, signedPayload(t, job.body));
    } catch (error: unknown) {
      const transient = error instanceof SignError ? error.transient : true;
      return { ok: false, httpStatus: 0, error: `not sent, signing failed: ${reasonOf(error)}`, retry: transient };
    }
    try {
      const response = await fetch(job.url, {
        method: 'POST',
        body: job.body,
        redirect: 'manual',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'quanta-monitoring',
          'x-quanta-signature': signatureHeader(t, signature.signature),
          'x-quanta-key-version': String(signature.keyVersion),
        },
        signal: AbortSignal.any([stopped.signal, AbortSignal.timeout(timeoutMs)]),
      });
      // The answer's body is not needed; cancelling frees the connection.
      await response.body?.cancel().catch(() => undefined);
      if (response.status >= 200 && response.status < 300) return { ok: true, httpStatus: response.status };
      return {
        ok: false,
        httpStatus: response.status,
        error: `the receiver answered HTTP ${response.status}`,
        retry: true,
      };
    } catch (error: unknown) {
      const timedOut = (error as { name?: string } | undefined)?.name === 'TimeoutError';
      return {
        ok: false,
        httpStatus: 0,
        error: timedOut ? `no answer within ${timeoutMs} ms` : `no answer: ${reasonOf(error)}`,
        retry: true,
      };
    }
  }

  async function deliver(job: Job): Promise<void> {
    for (let n = 1; n <= retry.maxAttempts && !stopped.signal.aborted; n++) {
      const outcome = await attempt(job, n);
      if (stopped.signal.aborted) return;
      const at = new Date();
      if (outcome.ok) {
        update(job, {
          state: D.WEBHOOK_DELIVERY_STATE_DELIVERED,
          attempts: n,
          lastHttpStatus: outcome.httpStatus,
          lastError: '',
          lastAttemptTime: at,
          deliveredTime: at,
          nextAttemptTime: undefined,
        });
        return;
      }
      const last = !outcome.retry || n === retry.maxAttempts;
      const delay = retryDelayMs(retry, n);
      update(job, {
        state: last ? D.WEBHOOK_DELIVERY_STATE_FAILED : D.WEBHOOK_DELIVERY_STATE_RETRYING,
        attempts: n,
        lastHttpStatus: outcome.httpStatus,
        lastError: outcome.error,
        lastAttemptTime: at,
        nextAttemptTime: last ? undefined : new Date(at.getTime() + delay),
      });
      if (last) {
        options.logger?.warn(
          { tenant: job.tenant, rule: job.alert.ruleName, url: job.url, attempts: n, error: outcome.error },
          `webhook ${job.url}: the ${job.status} notification of ${job.alert.ruleName} failed`,
        );
        return;
      }
      try {
        await sleep(delay, undefined, { signal: stopped.signal, ref: false });
      } catch {
        return; // stopped
      }
    }
  }

  /** Works through one chain; the chain is gone when it is empty. */
  async function drain(key: string, chain: Job[]): Promise<void> {
    for (;;) {
      const job = chain[0];
      if (job === undefined) break;
      options.record(job.tenant, job.alert, job.delivery);
      await deliver(job).catch((error: unknown) =>
        options.logger?.warn({ err: error, url: job.url }, 'webhook delivery stopped on an unexpected error'),
      );
      if (stopped.signal.aborted) return; // stop() woke the waiters
      chain.shift();
      queued--;
    }
    chains.delete(key);
    if (queued === 0) {
      const woken = waiters;
      waiters = [];
      for (const w of woken) w();
    }
  }

  return {
    notify(tenant, alert, rule) {
      if (stopped.signal.aborted) return;
      const status: NotificationStatus = alert.state === pb.AlertState.ALERT_STATE_RESOLVED ? 'resolved' : 'firing';
      const ref: AlertRef = { ruleName: alert.ruleName, version: alert.version, pendingTime: alert.pendingTime };
      const body = JSON.stringify(alertmanagerBody(tenant, alert, rule, status, options.externalUrl()));
      for (const w of rule.webhooks) {
        if (status === 'resolved' && w.skipResolved) continue;
        const delivery: pb.WebhookDelivery = {
          url: w.url,
          status,
          state: D.WEBHOOK_DELIVERY_STATE_PENDING,
          attempts: 0,
          lastHttpStatus: 0,
          lastError: '',
        };
        const job: Job = { tenant, alert: ref, url: w.url, hmacKey: w.hmacKey, status, body, delivery };
        if (queued >= maxQueued) {
          update(job, {
            state: D.WEBHOOK_DELIVERY_STATE_FAILED,
            lastError: `not sent: ${maxQueued} notifications are already waiting`,
          });
          options.logger?.warn(
            { tenant, rule: alert.ruleName, url: w.url, queued },
            'webhook queue full: a notification is dropped',
          );
          continue;
        }
        queued++;
        const key = [tenant, alert.ruleName, alert.version, w.url].join('\u0000');
        const chain = chains.get(key);
        if (chain !== undefined) {
          chain.push(job); // after the one in progress: recorded when its turn comes
          continue;
        }
        const fresh = [job];
        chains.set(key, fresh);
        void drain(key, fresh);
      }
    },
    get queued() {
      return queued;
    },
    idle: () => (queued === 0 ? Promise.resolve() : new Promise<void>((resolve) => waiters.push(resolve))),
    stop() {
      stopped.abort();
      queued = 0;
      chains.clear();
      const woken = waiters;
      waiters = [];
      for (const w of woken) w();
    },
  };
}
