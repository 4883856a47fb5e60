import { SCOPES } from '@quanta/service-kit';
import type { Scope } from '@quanta/service-kit';

/** The `iss` and `aud` of every Quanta access token unless a deployment chooses others. */
export const DEFAULT_ISSUER = 'quanta-crypto';
export const DEFAULT_AUDIENCE = 'quanta';

/** Tokens are signed with Ed25519 only; the verifier refuses every other `alg`. */
export const TOKEN_ALGORITHM = 'EdDSA';

/** Names a tenant may have: also used in file and database keys, so kept plain. */
export const TENANT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function isScope(value: string): value is Scope {
  return (SCOPES as readonly string[]).includes(value);
}

/** What a token says, before it is signed or after it is verified. */
export interface TokenClaims {
  tenant: string;
  subject: string;
  scopes: string[];
  ttlSeconds: number;
}
