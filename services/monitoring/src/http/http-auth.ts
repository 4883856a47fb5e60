import type { IncomingMessage } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import type { Authenticator } from '@quanta/service-kit';
import { HttpError, hasScope, isDomainError } from '@quanta/service-kit';

export interface HttpAccess {
  readonly authenticator: Authenticator | undefined;
  /** Every tenant's data without a token (only on loopback; the config checks that). */
  readonly public: boolean;
}

/** Whose data a request may see: one tenant, or every tenant (undefined). */
export interface HttpView {
  readonly tenant: string | undefined;
}

/**
 * Who may see what on the HTTP listener. The gRPC API is per tenant, and so is this: a bearer
 * token (header, or `?token=` for a browser) with `monitoring:read` shows its tenant; one with
 * `admin` shows every tenant; with QUANTA_MONITORING_DASHBOARD_PUBLIC=1 (loopback only) no
 * token is needed and every tenant shows. The page itself holds no data and is always served.
 * A token the authenticator refuses for any reason other than a missing scope (a bad signature,
 * or keys it cannot fetch) is a 401: the client learns only that its token did not pass.
 */
export async function viewOf(req: IncomingMessage, url: URL, access: HttpAccess): Promise<HttpView> {
  const header = req.headers.authorization;
  const token =
    url.searchParams.get('token') ?? (header !== undefined ? /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1] : undefined);
  if (token === undefined || token === '') {
    if (access.public) return { tenant: undefined };
    throw new HttpError(401, 'a bearer token with scope monitoring:read is needed (Authorization header or ?token=)');
  }
  if (access.authenticator === undefined) throw new HttpError(401, 'this server checks no tokens');
  // The authenticator reads gRPC metadata (it is the gRPC server's), so the token travels in one.
  const metadata = new grpc.Metadata();
  try {
    metadata.set('authorization', `Bearer ${token}`);
  } catch {
    throw new HttpError(401, 'the token has characters no token has');
  }
  try {
    const principal = await access.authenticator(metadata);
    if (!hasScope(principal, 'monitoring:read'))
      throw new HttpError(403, `the token of "${principal.subject}" lacks scope monitoring:read`);
    return { tenant: principal.scopes.includes('admin') ? undefined : principal.tenant };
  } catch (error: unknown) {
    if (error instanceof HttpError) throw error;
    if (isDomainError(error)) throw new HttpError(error.code === 'PERMISSION_DENIED' ? 403 : 401, error.message);
    throw error;
  }
}
