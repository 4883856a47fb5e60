import * as grpc from '@grpc/grpc-js';
import { currentTraceId } from '@quanta/telemetry';
import type { CallContext } from './call-context.js';
import { DomainError } from './errors.js';

/**
 * One audited change as a service records it (the shape of `@quanta/store`'s audit tables): who,
 * what, when, the trace id and the outcome. Only identifiers: never a payload, token or key material.
 */
export interface AuditEntry {
  readonly tenant: string;
  readonly subject: string;
  readonly action: string;
  readonly resource: string;
  readonly outcome: 'ok' | 'error';
  readonly errorCode?: string | undefined;
  readonly traceId?: string | undefined;
  readonly time: Date;
}

export interface Auditor {
  /**
   * Runs the change `fn` and records one entry for it, whether it succeeds or throws (then with the
   * gRPC status name of the failure; anything but a DomainError is `INTERNAL`, as the client sees it).
   * The action is the RPC's name (the last part of `ctx.method`) unless given. What `fn` throws is
   * rethrown unchanged; an entry that cannot be written is logged, and does not undo the change.
   */
  run<T>(ctx: CallContext, resource: string, fn: () => Promise<T>, action?: string): Promise<T>;
  /** Records an entry for a change made outside `run` (e.g. one that streams its progress). */
  record(ctx: CallContext, resource: string, error: unknown, action?: string): Promise<void>;
}

const actionOf = (method: string): string => method.slice(method.lastIndexOf('/') + 1);

/** The status name an error reaches the client with: a DomainError's code, else INTERNAL. */
export function errorCodeName(error: unknown): string {
  if (error instanceof DomainError) return error.code;
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code === 'number' && grpc.status[code] !== undefined) return grpc.status[code];
  return 'INTERNAL';
}

/** An auditor that writes through `write` (e.g. `recordAuditEvent(store, 'registry_audit', e)`). */
export function createAuditor(write: (entry: AuditEntry) => Promise<void>): Auditor {
  const record = async (ctx: CallContext, resource: string, error: unknown, action?: string): Promise<void> => {
    const traceId = currentTraceId();
    const entry: AuditEntry = {
      tenant: ctx.principal?.tenant ?? '',
      subject: ctx.principal?.subject ?? '',
      action: action ?? actionOf(ctx.method),
      resource,
      outcome: error === undefined ? 'ok' : 'error',
      ...(error === undefined ? {} : { errorCode: errorCodeName(error) }),
      ...(traceId === undefined ? {} : { traceId }),
      time: new Date(),
    };
    try {
      await write(entry);
    } catch (writeError: unknown) {
      ctx.logger.error({ err: writeError, audit: entry }, 'could not write an audit entry');
    }
  };
  return {
    record,
    async run(ctx, resource, fn, action) {
      let result: Awaited<ReturnType<typeof fn>>;
      try {
        result = await fn();
      } catch (error: unknown) {
        await record(ctx, resource, error ?? new Error('undefined thrown'), action);
        throw error;
      }
      await record(ctx, resource, undefined, action);
      return result;
    },
  };
}

/** A unary body whose every call is audited: `unary(audited(auditor, (req) => req.name, async (req, ctx) => …))`. */
export function audited<Req, Res>(
  auditor: Auditor,
  resourceOf: (request: Req) => string,
  fn: (request: Req, ctx: CallContext) => Promise<Res>,
): (request: Req, ctx: CallContext) => Promise<Res> {
  return (request, ctx) => auditor.run(ctx, resourceOf(request), () => fn(request, ctx));
}
