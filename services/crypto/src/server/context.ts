import { currentTraceId } from '@quanta/telemetry';
import { internal, resourceExhausted } from '@quanta/service-kit';
import type { CallContext } from '@quanta/service-kit';
import type { Actor } from '../core/index.js';

/** The tenant and subject of the verified token (never from the request), plus the trace id for audit. */
export function actorOf(ctx: CallContext): Actor {
  if (ctx.principal === undefined) throw internal(`${ctx.method} ran without a principal`);
  const traceId = currentTraceId();
  return {
    tenant: ctx.principal.tenant,
    subject: ctx.principal.subject,
    ...(traceId === undefined ? {} : { traceId }),
  };
}

export interface PayloadLimit {
  readonly maxBytes: number;
  /**
   * RESOURCE_EXHAUSTED when `size` is over the unary payload limit; `instead` says what to use
   * (the streaming RPC), so that the caller knows the way forward.
   */
  check(rpc: string, what: string, size: number, instead: string): void;
}

export function createPayloadLimit(maxBytes: number): PayloadLimit {
  return {
    maxBytes,
    check(rpc, what, size, instead) {
      if (size > maxBytes) {
        throw resourceExhausted(
          `${rpc}: ${what} is ${size} bytes, over the ${maxBytes}-byte limit of a unary call; ${instead}`,
        );
      }
    },
  };
}
