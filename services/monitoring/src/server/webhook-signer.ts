import * as grpc from '@grpc/grpc-js';
import { crypto as cpb, unaryCaller } from '@quanta/contracts';

/** A body's signature by the crypto service, and the key version that made it. */
export interface Signature {
  readonly signature: Buffer;
  readonly keyVersion: number;
}

/** Why a body could not be signed; `transient`: the same call may succeed later (it is retried). */
export class SignError extends Error {
  constructor(
    message: string,
    readonly transient: boolean,
  ) {
    super(message);
    this.name = 'SignError';
  }
}

/** Signs `data` with the tenant's key `keyName`; rejects with SignError. */
export type Signer = (tenant: string, keyName: string, data: Buffer) => Promise<Signature>;

/** The subject of the tokens monitoring signs with (crypto's audit names it). */
export const SIGNER_SUBJECT = 'svc:monitoring';
/** A tenant token's lifetime; it is renewed a minute before it ends. */
const TENANT_TOKEN_TTL_S = 600;
const RENEW_BEFORE_MS = 60_000;
const CALL_DEADLINE_MS = 10_000;

/** Codes after which the same call may succeed: the service or the network, not the request. */
const TRANSIENT = new Set<number>([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.ABORTED,
  grpc.status.INTERNAL,
  grpc.status.UNKNOWN,
  grpc.status.CANCELLED,
]);

/** A token crypto no longer takes (revoked, or its key rotated away): a new one is asked for. */
const UNAUTHENTICATED: number = grpc.status.UNAUTHENTICATED;
const codeOf = (error: unknown): number | undefined => (error as { code?: number } | undefined)?.code;
const describe = (error: unknown): string => {
  const e = error as { code?: number; details?: string } | undefined;
  if (e?.code !== undefined && e.details !== undefined) return `${grpc.status[e.code] ?? e.code}: ${e.details}`;
  return error instanceof Error ? error.message : String(error);
};

/**
 * Signs through the crypto service with the tenant's own key. Crypto lets a token use only its
 * own tenant's keys, so monitoring asks crypto (IssueToken, with its service token, which needs
 * the `admin` scope) for a short-lived token of the tenant with only `keys:use`, subject
 * `svc:monitoring`, kept until shortly before it expires. Every Sign is then an ordinary call of
 * that tenant, checked and audited by crypto like any other.
 */
export function createCryptoSigner(options: {
  client: cpb.CryptoServiceClient;
  /** The service token (asked for each IssueToken: it may be renewed on disk). */
  serviceToken: () => Promise<string>;
}): Signer {
  const call = unaryCaller(options.client, cpb.CryptoServiceService, { deadlineMs: CALL_DEADLINE_MS });
  const bearer = (token: string): grpc.Metadata => {
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${token}`);
    return md;
  };
  /** tenant → its token being issued or issued. */
  const tokens = new Map<string, Promise<{ token: string; renewAtMs: number }>>();

  async function issue(tenant: string): Promise<{ token: string; renewAtMs: number }> {
    let service: string;
    try {
      service = await options.serviceToken();
    } catch (error: unknown) {
      throw new SignError(`monitoring has no service token: ${describe(error)}`, false);
    }
    try {
      const reply = await call(
        'issueToken',
        { tenant, subject: SIGNER_SUBJECT, scopes: ['keys:use'], ttlSeconds: BigInt(TENANT_TOKEN_TTL_S) },
        { metadata: bearer(service) },
      );
      const expires = reply.expireTime?.getTime() ?? Date.now() + TENANT_TOKEN_TTL_S * 1000;
      return { token: reply.token, renewAtMs: expires - RENEW_BEFORE_MS };
    } catch (error: unknown) {
      const code = codeOf(error);
      throw new SignError(
        `the crypto service did not issue a signing token for tenant "${tenant}" ` +
          `(monitoring's service token needs the admin scope): ${describe(error)}`,
        code === undefined || TRANSIENT.has(code),
      );
    }
  }

  async function tokenOf(tenant: string): Promise<string> {
    let pending = tokens.get(tenant);
    if (pending !== undefined) {
      const held = await pending.catch(() => undefined);
      if (held !== undefined && Date.now() < held.renewAtMs) return held.token;
      if (tokens.get(tenant) === pending) tokens.delete(tenant);
    }
    pending = tokens.get(tenant) ?? issue(tenant);
    tokens.set(tenant, pending);
    try {
      return (await pending).token;
    } catch (error: unknown) {
      if (tokens.get(tenant) === pending) tokens.delete(tenant);
      throw error;
    }
  }

  return async (tenant, keyName, data) => {
    const token = await tokenOf(tenant);
    try {
      const reply = await call('sign', { keyName, data, keyVersion: 0 }, { metadata: bearer(token) });
      return { signature: reply.signature, keyVersion: reply.keyVersion };
    } catch (error: unknown) {
      const code = codeOf(error);
      // A revoked or rejected token: the next attempt asks for a new one.
      if (code === UNAUTHENTICATED) tokens.delete(tenant);
      throw new SignError(
        `the crypto service did not sign with key "${keyName}": ${describe(error)}`,
        code === undefined || code === UNAUTHENTICATED || TRANSIENT.has(code),
      );
    }
  };
}
