import { createHash } from 'node:crypto';

/**
 * One revocation as the crypto service publishes it (GetRevocations): a token by its `jti`, or
 * every token of a subject issued before a time. A subject is named by digest only, so the
 * public list tells no one who was revoked.
 */
export interface Revocation {
  readonly jti?: string;
  readonly subjectDigest?: string;
  /** With `subjectDigest`: tokens whose `iat` (ms) is before this are revoked. */
  readonly issuedBeforeMs?: number;
  /** After this every token the entry names has expired: the entry can go. */
  readonly expiresAtMs: number;
}

/** What a revocation fetch returns: the whole list, or word that the caller's version is current. */
export type RevocationSnapshot =
  | { readonly unchanged: true; readonly version: bigint }
  | { readonly unchanged: false; readonly version: bigint; readonly revocations: readonly Revocation[] };

/** Lowercase hex SHA-256 of `tenant`, a NUL byte and `subject`: how a subject revocation names its subject. */
export function subjectDigest(tenant: string, subject: string): string {
  return createHash('sha256').update(tenant).update('\0').update(subject).digest('hex');
}

/** The claims of a verified token that a revocation can match. */
export interface RevocableClaims {
  readonly jti: string | undefined;
  readonly subjectDigest: string;
  /** The `iat` claim in milliseconds; undefined when the token has none. */
  readonly issuedAtMs: number | undefined;
}

/** A revocation list indexed for the check made on every call: two map lookups. */
export interface RevocationIndex {
  readonly version: bigint;
  readonly size: number;
  /** Whether `claims` is revoked at `nowMs` (entries past their expiry no longer count). */
  revoked(claims: RevocableClaims, nowMs: number): boolean;
}

export function indexRevocations(version: bigint, revocations: readonly Revocation[]): RevocationIndex {
  const jtis = new Map<string, number>();
  // Per subject, the latest cut-off: a later revocation of the same subject covers an earlier one.
  const subjects = new Map<string, { beforeMs: number; expiresAtMs: number }>();
  for (const r of revocations) {
    if (r.jti !== undefined && r.jti !== '') jtis.set(r.jti, Math.max(r.expiresAtMs, jtis.get(r.jti) ?? 0));
    if (r.subjectDigest !== undefined && r.subjectDigest !== '' && r.issuedBeforeMs !== undefined) {
      const known = subjects.get(r.subjectDigest);
      if (known === undefined || known.beforeMs < r.issuedBeforeMs)
        subjects.set(r.subjectDigest, { beforeMs: r.issuedBeforeMs, expiresAtMs: r.expiresAtMs });
    }
  }
  return {
    version,
    size: jtis.size + subjects.size,
    revoked(claims, nowMs) {
      if (claims.jti !== undefined) {
        const until = jtis.get(claims.jti);
        if (until !== undefined && nowMs <= until) return true;
      }
      const cut = subjects.get(claims.subjectDigest);
      // A token without `iat` cannot show it came after the cut-off: it is revoked with its subject.
      return (
        cut !== undefined &&
        nowMs <= cut.expiresAtMs &&
        (claims.issuedAtMs === undefined || claims.issuedAtMs < cut.beforeMs)
      );
    },
  };
}
