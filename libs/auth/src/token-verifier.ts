import type * as grpc from '@grpc/grpc-js';
import { decodeProtectedHeader, errors, importJWK, jwtVerify } from 'jose';
import type { CryptoKey, JWK, JWTPayload, KeyObject } from 'jose';
import { bearerToken, isDomainError, unauthenticated, unavailable } from '@quanta/service-kit';
import type { Authenticator, Principal } from '@quanta/service-kit';
import { DEFAULT_AUDIENCE, DEFAULT_ISSUER, TOKEN_ALGORITHM } from './claims.js';
import type { RevocableClaims, RevocationIndex, RevocationSnapshot } from './revocations.js';
import { indexRevocations, subjectDigest } from './revocations.js';
export interface TokenVerifierOptions {
  /** Gets the issuer's public keys, e.g. by calling the crypto service's GetJwks. */
  fetchJwks: () => Promise<{ keys: JWK[] }>;
  issuer?: string;
  audience?: string;
  /** Milliseconds since the epoch; tests move it. */
  clock?: () => number;
  /**
   * An unknown `kid` refetches the keys at most this often, so bad tokens cannot flood the issuer.
   * Default 5 s: a token of a newly rotated key waits at most that long.
   */
  minRefreshIntervalMs?: number;
  /** How many verified tokens to remember until they expire (0 turns the cache off). Default 10,000. */
  maxCachedTokens?: number;
  /**
   * Gets the issuer's revocation list (crypto's GetRevocations), given the version held. With it,
   * the list is fetched at once and then every `revocationPollMs`, and a revoked token is refused.
   * Until the first fetch succeeds, calls wait for it and fail UNAVAILABLE when it fails (closed);
   * after that, a failed fetch keeps the last list (static) and is logged, once per outage.
   */
  fetchRevocations?: (knownVersion: bigint) => Promise<RevocationSnapshot>;
  /** How often the revocation list is fetched, in ms. Default 2,000: a revocation takes effect within about that. */
  revocationPollMs?: number;
  /**
   * While polling revocations, the keys are fetched again this often (ms), so that a token of a
   * newly rotated signing key is accepted within that time even inside `minRefreshIntervalMs`. Default 10,000.
   */
  jwksRefreshMs?: number;
  /** Where a failed revocation fetch is reported. */
  logger?: { warn(object: object, message: string): void; info(object: object, message: string): void };
}

/** The verifier: an Authenticator, plus the revocation list it keeps. */
export interface TokenVerifier extends Authenticator {
  /** Fetches the revocation list now (crypto calls it after a revocation); resolves when it is in. */
  refreshRevocations(): Promise<void>;
  /** The list held: its version, entries, when it was last fetched, and whether the last fetch failed. */
  revocationState(): { version: bigint; entries: number; fetchedAtMs: number | undefined; stale: boolean };
  /** Stops polling the revocation list. */
  close(): void;
}
type VerifyKey = CryptoKey | KeyObject | Uint8Array;

const MISSING_TOKEN =
  'missing access token: send metadata "authorization: Bearer <token>" ' +
  '(quanta tokens issue, or $QUANTA_HOME/admin.token)';

function explain(error: unknown): string {
  if (error instanceof errors.JWTExpired) return 'access token has expired';
  if (error instanceof errors.JWSSignatureVerificationFailed) return 'access token signature is invalid';
  if (error instanceof errors.JWTClaimValidationFailed) {
    return `access token claim "${error.claim}" is invalid (${error.reason})`;
  }
  if (error instanceof errors.JOSEAlgNotAllowed)
    return `access token algorithm is not allowed (only ${TOKEN_ALGORITHM})`;
  if (error instanceof errors.JOSEError) return 'access token is malformed';
  return 'access token is malformed';
}

function revocable(payload: JWTPayload, principal: Principal): RevocableClaims {
  return {
    jti: typeof payload.jti === 'string' ? payload.jti : undefined,
    subjectDigest: subjectDigest(principal.tenant, principal.subject),
    issuedAtMs: typeof payload.iat === 'number' ? payload.iat * 1000 : undefined,
  };
}

const REVOKED = 'access token has been revoked';

function toPrincipal(payload: JWTPayload): Principal {
  const { tenant, scope, sub } = payload;
  if (typeof tenant !== 'string' || tenant === '') throw unauthenticated('access token has no "tenant" claim');
  if (typeof sub !== 'string' || sub === '') throw unauthenticated('access token has no "sub" claim');
  if (typeof scope !== 'string') throw unauthenticated('access token has no "scope" claim');
  return { tenant, subject: sub, scopes: scope.split(' ').filter((s) => s !== '') };
}

/**
 * An Authenticator for service-kit that checks `authorization: Bearer <jwt>` against the
 * issuer's JWKS: keys are cached and refetched when a token names an unknown `kid`.
 */
export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  const clock = options.clock ?? Date.now;
  const issuer = options.issuer ?? DEFAULT_ISSUER;
  const audience = options.audience ?? DEFAULT_AUDIENCE;
  const minRefreshIntervalMs = options.minRefreshIntervalMs ?? 5_000;

  let keys = new Map<string, VerifyKey>();
  let lastFetch = Number.NEGATIVE_INFINITY;
  let inflight: Promise<void> | undefined;

  async function refresh(): Promise<void> {
    lastFetch = clock();
    let jwks: { keys: JWK[] };
    try {
      jwks = await options.fetchJwks();
    } catch (error) {
      // Allow the next call to try again at once: the issuer being down is not the token's fault.
      lastFetch = Number.NEGATIVE_INFINITY;
      throw unavailable(
        `cannot fetch the token verification keys: ${error instanceof Error ? error.message : String(error)}`,
        {
          cause: error,
        },
      );
    }
    const next = new Map<string, VerifyKey>();
    for (const jwk of jwks.keys) {
      if (typeof jwk.kid !== 'string' || jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519') continue;
      next.set(jwk.kid, await importJWK({ ...jwk, alg: TOKEN_ALGORITHM }, TOKEN_ALGORITHM));
    }
    keys = next;
  }

  async function keyFor(kid: string): Promise<VerifyKey | undefined> {
    const known = keys.get(kid);
    if (known !== undefined) return known;
    if (inflight === undefined && clock() - lastFetch >= minRefreshIntervalMs) {
      inflight = refresh().finally(() => {
        inflight = undefined;
      });
    }
    if (inflight !== undefined) await inflight;
    return keys.get(kid);
  }

  // A service sees the same few tokens on every call: checking an EdDSA signature each time was most
  // of a small RPC's cost. A verified token's principal is kept until the token expires (or its key
  // leaves the JWKS); the cache is bounded, oldest first out. Keys are `authorization` header values.
  const verified = new Map<
    string,
    { principal: Principal; expiresAtMs: number; kid: string; claims: RevocableClaims }
  >();
  const maxCached = options.maxCachedTokens ?? 10_000;

  function cached(header: string): Principal | undefined {
    const hit = verified.get(header);
    if (hit === undefined) return undefined;
    const now = clock();
    if (now < hit.expiresAtMs && keys.has(hit.kid)) {
      if (revocations?.revoked(hit.claims, now) === true) throw unauthenticated(REVOKED);
      return hit.principal;
    }
    verified.delete(header);
    return undefined;
  }

  function remember(header: string, principal: Principal, exp: unknown, kid: string, claims: RevocableClaims): void {
    if (typeof exp !== 'number' || maxCached <= 0) return;
    if (verified.size >= maxCached) {
      const oldest = verified.keys().next();
      if (oldest.done !== true) verified.delete(oldest.value);
    }
    verified.set(header, { principal, expiresAtMs: exp * 1000, kid, claims });
  }

  // The revocation list, polled like a JWKS that changes: no call to the issuer per request.
  const fetchRevocations = options.fetchRevocations;
  const pollMs = options.revocationPollMs ?? 2000;
  let revocations: RevocationIndex | undefined;
  let fetchedAtMs: number | undefined;
  let stale = false;
  let revocationFetch: Promise<void> | undefined;
  let pollTimer: NodeJS.Timeout | undefined;
  let closed = false;

  function fetchRevocationList(): Promise<void> {
    if (fetchRevocations === undefined) return Promise.resolve();
    revocationFetch ??= (async () => {
      try {
        const snapshot = await fetchRevocations(revocations?.version ?? 0n);
        if (!snapshot.unchanged) revocations = indexRevocations(snapshot.version, snapshot.revocations);
        fetchedAtMs = clock();
        if (stale) options.logger?.info({ version: String(snapshot.version) }, 'token revocation list fetched again');
        stale = false;
      } catch (error: unknown) {
        if (!stale) {
          options.logger?.warn(
            { err: error, version: revocations === undefined ? undefined : String(revocations.version) },
            revocations === undefined
              ? 'cannot fetch the token revocation list: tokens are refused until it is fetched'
              : 'cannot fetch the token revocation list: ' +
                  'keeping the last one (revocations made meanwhile are not seen)',
          );
        }
        stale = true;
        if (revocations === undefined) {
          throw unavailable(
            `cannot fetch the token revocation list: ${error instanceof Error ? error.message : String(error)}`,
            { cause: error },
          );
        }
      } finally {
        revocationFetch = undefined;
      }
    })();
    return revocationFetch;
  }

  const jwksRefreshMs = options.jwksRefreshMs ?? 10_000;
  function schedulePoll(): void {
    if (closed || fetchRevocations === undefined) return;
    pollTimer = setTimeout(() => {
      const keysDue = inflight === undefined && clock() - lastFetch >= jwksRefreshMs;
      const keysRefresh = keysDue
        ? (inflight = refresh().finally(() => {
            inflight = undefined;
          }))
        : Promise.resolve();
      Promise.all([fetchRevocationList(), keysRefresh])
        .catch(() => undefined)
        .finally(schedulePoll);
    }, pollMs);
    pollTimer.unref();
  }

  if (fetchRevocations !== undefined) {
    fetchRevocationList().catch(() => undefined);
    schedulePoll();
  }

  /** Throws when the token is revoked; waits for the first list when there is none yet. */
  async function checkRevoked(claims: RevocableClaims): Promise<void> {
    if (fetchRevocations === undefined) return;
    if (revocations === undefined) await fetchRevocationList();
    if (revocations?.revoked(claims, clock()) === true) throw unauthenticated(REVOKED);
  }

  const authenticate = async (metadata: grpc.Metadata): Promise<Principal> => {
    // The cache is keyed by the whole header value, so a known caller costs one lookup: no parsing.
    const header = metadata.get('authorization')[0];
    if (typeof header === 'string') {
      const known = cached(header);
      if (known !== undefined) return known;
    }
    const token = bearerToken(metadata);
    if (token === undefined || typeof header !== 'string') throw unauthenticated(MISSING_TOKEN);
    let kid: string | undefined;
    try {
      const protectedHeader = decodeProtectedHeader(token);
      if (protectedHeader.alg !== TOKEN_ALGORITHM)
        throw unauthenticated(
          `access token algorithm "${String(protectedHeader.alg)}" is not allowed (only ${TOKEN_ALGORITHM})`,
        );
      kid = protectedHeader.kid;
    } catch (error) {
      if (isDomainError(error)) throw error;
      throw unauthenticated('access token is malformed (not a compact JWS)');
    }
    if (kid === undefined) throw unauthenticated('access token has no "kid" header');
    const key = await keyFor(kid);
    if (key === undefined) throw unauthenticated(`access token is signed by unknown key "${kid}"`);
    try {
      const { payload } = await jwtVerify(token, key, {
        issuer,
        audience,
        algorithms: [TOKEN_ALGORITHM],
        currentDate: new Date(clock()),
        requiredClaims: ['exp', 'sub'],
      });
      const principal = toPrincipal(payload);
      const claims = revocable(payload, principal);
      await checkRevoked(claims);
      remember(header, principal, payload.exp, kid, claims);
      return principal;
    } catch (error) {
      if (isDomainError(error)) throw error;
      throw unauthenticated(explain(error));
    }
  };

  return Object.assign(authenticate, {
    // A fetch already under way may have started before the change the caller knows of: wait for it, then fetch anew.
    async refreshRevocations() {
      await revocationFetch?.catch(() => undefined);
      await fetchRevocationList();
    },
    revocationState: () => ({
      version: revocations?.version ?? 0n,
      entries: revocations?.size ?? 0,
      fetchedAtMs,
      stale,
    }),
    close() {
      closed = true;
      if (pollTimer !== undefined) clearTimeout(pollTimer);
    },
  });
}
