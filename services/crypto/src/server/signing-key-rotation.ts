import type { TokenIssuer } from '@quanta/auth';
import type { Logger } from 'pino';
import type { TokenAdmin } from './token-admin.js';

/** setTimeout's longest delay; a later rotation is reached in steps. */
const MAX_DELAY_MS = 2 ** 31 - 1;
/** After a failed rotation, try again this soon. */
const RETRY_MS = 60_000;
/** How often the signing keys are read again from the store, for keys other replicas made. */
export const SIGNING_KEY_RELOAD_MS = 10_000;

/**
 * Replicas of crypto share one store: each reads the signing keys again every
 * SIGNING_KEY_RELOAD_MS, so a key another replica rotated in signs here and is in this replica's
 * JWKS within that time.
 */
export function followSigningKeys(
  issuer: TokenIssuer,
  logger: Logger,
  everyMs = SIGNING_KEY_RELOAD_MS,
): { stop(): void } {
  const timer = setInterval(() => {
    const before = issuer.currentKid;
    issuer.reload().then(
      () => {
        if (issuer.currentKid !== before)
          logger.info({ kid: issuer.currentKid, previous_kid: before }, 'token signing key rotated by another replica');
      },
      (error: unknown) => logger.warn({ err: error }, 'cannot read the token signing keys again'),
    );
  }, everyMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

/**
 * Rotates the token signing key whenever the current one is `periodMs` old (nothing without a
 * period). The key's age comes from the store, so a restart does not reset the schedule.
 */
export function scheduleSigningKeyRotation(options: {
  admin: TokenAdmin;
  issuer: TokenIssuer;
  periodMs: number | undefined;
  clock: () => number;
  logger: Logger;
}): { stop(): void } {
  const { admin, issuer, periodMs, clock, logger } = options;
  if (periodMs === undefined || periodMs <= 0) return { stop: () => undefined };
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const arm = (delayMs: number): void => {
    if (stopped) return;
    timer = setTimeout(tick, Math.min(MAX_DELAY_MS, Math.max(0, delayMs)));
    timer.unref();
  };
  const tick = (): void => {
    void issuer
      .reload()
      .catch(() => undefined)
      .then(rotateIfDue);
  };
  const rotateIfDue = (): void => {
    if (stopped) return;
    const due = issuer.currentCreatedAt.getTime() + periodMs;
    if (clock() < due) {
      arm(due - clock());
      return;
    }
    admin.rotateSigningKey().then(
      () => arm(periodMs),
      (error: unknown) => {
        logger.error({ err: error }, 'scheduled token signing key rotation failed; trying again in a minute');
        arm(RETRY_MS);
      },
    );
  };
  logger.info(
    { period_ms: periodMs, next: new Date(issuer.currentCreatedAt.getTime() + periodMs).toISOString() },
    'token signing key rotates on a schedule',
  );
  tick();
  return {
    stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
    },
  };
}
