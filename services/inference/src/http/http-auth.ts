// Bearer tokens on the HTTP listeners (REST and metrics): the same tokens and authenticator as
// gRPC, so an `Authorization: Bearer <token>` header is checked as gRPC metadata.
import type { IncomingMessage } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import type { Authenticator, Principal, Scope } from '@quanta/service-kit';
import { requireScope, unauthenticated } from '@quanta/service-kit';

/**
 * The gRPC metadata the authenticator reads, holding `header`; a header gRPC metadata cannot
 * hold (control characters, say) is UNAUTHENTICATED, since no token has such characters.
 */
export function authorizationMetadata(header: string, what: string): grpc.Metadata {
  const metadata = new grpc.Metadata();
  try {
    metadata.set('authorization', header);
  } catch {
    throw unauthenticated(`${what}: the Authorization header has characters no token has; send "Bearer <token>"`);
  }
  return metadata;
}

/**
 * The principal of a REST request that needs `scope`: UNAUTHENTICATED without a usable token,
 * PERMISSION_DENIED when the token lacks the scope. `what` names the request in the messages.
 */
export async function authenticate(
  req: IncomingMessage,
  authenticator: Authenticator | undefined,
  scope: Scope,
  what: string,
): Promise<Principal> {
  const header = req.headers.authorization;
  if (header === undefined)
    throw unauthenticated(`${what} needs a bearer token with scope "${scope}" (Authorization: Bearer <token>)`);
  if (authenticator === undefined)
    throw unauthenticated(`${what} needs scope "${scope}" but this server has no authenticator configured`);
  const metadata = authorizationMetadata(header, what);
  const principal = await authenticator(metadata);
  requireScope(principal, scope, what);
  return principal;
}
