import type * as grpc from '@grpc/grpc-js';
import { permissionDenied } from './errors.js';

/** Who is calling: filled by the authenticator from the bearer token. */
export interface Principal {
  readonly tenant: string;
  readonly subject: string;
  readonly scopes: readonly string[];
}

/**
 * Turns call metadata into a principal. Throws `ServiceError(UNAUTHENTICATED)` for a missing or
 * bad token (libs/auth provides the JWT one).
 */
export type Authenticator = (metadata: grpc.Metadata) => Promise<Principal>;

export const SCOPES = [
  'models:read',
  'models:write',
  'infer',
  'keys:use',
  'keys:admin',
  'monitoring:read',
  // Create, change and delete the tenant's own alert rules (reading them is `monitoring:read`).
  'alerts:write',
  // Write inference records for any tenant (monitoring's Ingest): the inference service's platform token.
  'monitoring:write',
  'admin',
] as const;

export type Scope = (typeof SCOPES)[number];

/** What a handler declares: a scope the caller must hold, or `public` for no authentication at all. */
export type HandlerScope = Scope | 'public';

/** `admin` satisfies every scope. */
export function hasScope(principal: Principal, scope: Scope): boolean {
  return principal.scopes.includes(scope) || principal.scopes.includes('admin');
}

/** Throws PERMISSION_DENIED naming the missing scope. */
export function requireScope(principal: Principal, scope: Scope, method: string): void {
  if (!hasScope(principal, scope)) {
    throw permissionDenied(`${method} needs scope "${scope}"; the token of "${principal.subject}" does not grant it`);
  }
}

/** Reads `authorization: Bearer <token>` from metadata; undefined when absent or not a bearer token. */
export function bearerToken(metadata: grpc.Metadata): string | undefined {
  const value = metadata.get('authorization')[0];
  if (typeof value !== 'string') return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(value);
  return match?.[1];
}
