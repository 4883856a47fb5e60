import type { IssuedToken, TokenClaims, TokenIssuer } from '@quanta/auth';
import { subjectDigest } from '@quanta/auth';
import { invalidArgument } from '@quanta/service-kit';
import type { Logger } from 'pino';
import type { RevocationStore, StoredRevocation } from './revocation-store.js';

/** What RevokeToken names: one token (whole, or its `jti`), or a subject's tokens issued before a time. */
export type RevokeTarget =
  | { readonly kind: 'token'; readonly token: string }
  | { readonly kind: 'jti'; readonly jti: string }
  | { readonly kind: 'subject'; readonly tenant: string; readonly subject: string; readonly issuedBeforeMs?: number };

export interface SigningKeyRotation {
  readonly kid: string;
  readonly previousKid: string;
  /** When the previous key leaves the JWKS. */
  readonly previousRetiresAt: Date;
}

/**
 * The token operations of the crypto service, one function each: issue, revoke, rotate the signing
 * key. Handlers and the rotation schedule call these, so each change happens (and can be recorded)
 * in one place.
 */
export interface TokenAdmin {
  issue(claims: TokenClaims): Promise<IssuedToken>;
  revoke(target: RevokeTarget): Promise<StoredRevocation>;
  rotateSigningKey(): Promise<SigningKeyRotation>;
  /** The version and entries services cache (GetRevocations); drops expired entries now and then. */
  revocations(knownVersion: bigint): Promise<{ version: bigint; unchanged: boolean; revocations: StoredRevocation[] }>;
}

export interface TokenAdminOptions {
  readonly issuer: TokenIssuer;
  readonly revocations: RevocationStore;
  /** Runs after each revocation: crypto's own verifier refetches, so crypto refuses the token at once. */
  readonly afterRevoke?: () => Promise<void>;
  readonly clock: () => number;
  readonly logger: Logger;
}

const PRUNE_INTERVAL_MS = 60_000;
const JTI = /^[A-Za-z0-9_-]{1,128}$/;

export function createTokenAdmin(options: TokenAdminOptions): TokenAdmin {
  const { issuer, revocations, clock, logger } = options;
  let lastPrune = Number.NEGATIVE_INFINITY;
  const maxTtlMs = (): number => issuer.maxTtlSeconds * 1000;

  async function entryFor(target: RevokeTarget, now: number): Promise<Parameters<RevocationStore['add']>[0]> {
    switch (target.kind) {
      case 'token': {
        const token = await issuer.inspect(target.token);
        if (token.jti === undefined) throw invalidArgument('token has no "jti" claim; revoke its subject instead');
        return { jti: token.jti, tenant: token.tenant, subject: token.subject, expiresAtMs: token.expiresAt.getTime() };
      }
      case 'jti':
        if (!JTI.test(target.jti))
          throw invalidArgument(`jti "${target.jti}" is not a token id (1-128 characters of [A-Za-z0-9_-])`);
        // Its expiry is unknown: keep it as long as any token can live.
        return { jti: target.jti, expiresAtMs: now + maxTtlMs() };
      case 'subject': {
        if (target.tenant === '') throw invalidArgument('tenant is required with subject');
        if (target.subject.trim() === '') throw invalidArgument('subject is empty');
        const before = target.issuedBeforeMs ?? now;
        if (before > now)
          throw invalidArgument('issued_before is in the future: only tokens already issued can be revoked');
        return {
          tenant: target.tenant,
          subject: target.subject,
          subjectDigest: subjectDigest(target.tenant, target.subject),
          issuedBeforeMs: before,
          expiresAtMs: before + maxTtlMs(),
        };
      }
    }
  }

  return {
    issue: (claims) => issuer.mint(claims),

    async revoke(target) {
      const now = clock();
      const entry = await entryFor(target, now);
      const stored = await revocations.add(entry, now);
      logger.info(
        { kind: target.kind, jti: entry.jti, tenant: entry.tenant, subject: entry.subject, version: String(stored.id) },
        'token revoked',
      );
      await options.afterRevoke?.();
      return stored;
    },

    async rotateSigningKey() {
      const previousKid = issuer.currentKid;
      const kid = await issuer.rotate();
      const previousRetiresAt = new Date(issuer.currentCreatedAt.getTime() + maxTtlMs());
      logger.info(
        { kid, previous_kid: previousKid, previous_retires_at: previousRetiresAt.toISOString() },
        'token signing key rotated',
      );
      return { kid, previousKid, previousRetiresAt };
    },

    async revocations(knownVersion) {
      const now = clock();
      if (now - lastPrune >= PRUNE_INTERVAL_MS) {
        lastPrune = now;
        const pruned = await revocations.prune(now);
        if (pruned > 0) logger.info({ pruned }, 'expired token revocations dropped');
      }
      if (knownVersion !== 0n && (await revocations.version()) === knownVersion)
        return { version: knownVersion, unchanged: true, revocations: [] };
      const list = await revocations.list(now);
      return { version: list.version, unchanged: false, revocations: list.revocations };
    },
  };
}
