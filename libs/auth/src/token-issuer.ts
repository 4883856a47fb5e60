import { randomBytes } from 'node:crypto';
import { compactVerify, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK, SignJWT } from 'jose';
import type { CryptoKey, JWK, KeyObject } from 'jose';
import { invalidArgument, SCOPES } from '@quanta/service-kit';
import { DEFAULT_AUDIENCE, DEFAULT_ISSUER, isScope, TENANT_PATTERN, TOKEN_ALGORITHM } from './claims.js';
import type { TokenClaims } from './claims.js';
import type { SigningKeyRecord, SigningKeyStore } from './signing-key-store.js';

/** A signed token and what a caller may want to show about it. */
export interface IssuedToken {
  readonly token: string;
  readonly expiresAt: Date;
  readonly kid: string;
}

export interface TokenIssuer {
  /** Signs a token with the newest key; INVALID_ARGUMENT for an unknown scope, a bad tenant or ttl. */
  issue(claims: TokenClaims): Promise<string>;
  /** Like `issue`, with the expiry and key id. */
  mint(claims: TokenClaims): Promise<IssuedToken>;
  /** The public keys of every key whose tokens may still be valid, newest first. */
  jwks(): Promise<{ keys: JWK[] }>;
  /** Makes a new signing key the current one; older keys keep verifying until their tokens expire. */
  rotate(): Promise<string>;
  /**
   * Reads the store again and takes in keys another issuer over the same store made (replicas of
   * crypto share one database): the newest signs from then on, all are in the JWKS.
   */
  reload(): Promise<void>;
  /**
   * The claims a revocation needs of a token this issuer signed, expired or not: INVALID_ARGUMENT
   * when it is malformed, or its signature does not verify against a key still in the JWKS.
   */
  inspect(token: string): Promise<InspectedToken>;
  /** The id of the key that signs new tokens. */
  readonly currentKid: string;
  /** When the key that signs new tokens was made. */
  readonly currentCreatedAt: Date;
  /** The longest token lifetime: how long a replaced key stays in the JWKS. */
  readonly maxTtlSeconds: number;
}

/** What `inspect` reads from a token whose signature it checked. */
export interface InspectedToken {
  readonly jti: string | undefined;
  readonly tenant: string;
  readonly subject: string;
  readonly expiresAt: Date;
  readonly kid: string;
}

export interface TokenIssuerOptions {
  store: SigningKeyStore;
  issuer?: string;
  audience?: string;
  /** Milliseconds since the epoch; tests move it. */
  clock?: () => number;
  /** The longest token lifetime; also how long a replaced key stays in the JWKS. Default one year. */
  maxTtlSeconds?: number;
}

interface LoadedKey {
  readonly record: SigningKeyRecord;
  readonly privateKey: CryptoKey | KeyObject | Uint8Array;
}

async function newRecord(now: number): Promise<SigningKeyRecord> {
  const { publicKey, privateKey } = await generateKeyPair(TOKEN_ALGORITHM, { crv: 'Ed25519', extractable: true });
  // Date prefix: kids sort by age and say when a key was made, which helps when reading logs.
  const kid = `${new Date(now).toISOString().slice(0, 10).replaceAll('-', '')}-${randomBytes(6).toString('hex')}`;
  const meta = { kid, alg: TOKEN_ALGORITHM, use: 'sig' };
  return {
    kid,
    privateJwk: { ...(await exportJWK(privateKey)), ...meta },
    publicJwk: { ...(await exportJWK(publicKey)), ...meta },
    createdAt: new Date(now),
  };
}

async function load(record: SigningKeyRecord): Promise<LoadedKey> {
  return { record, privateKey: await importJWK(record.privateJwk, TOKEN_ALGORITHM) };
}

function checkClaims(claims: TokenClaims, maxTtlSeconds: number): void {
  if (!TENANT_PATTERN.test(claims.tenant)) {
    throw invalidArgument(
      `tenant "${claims.tenant}" is invalid: 1-128 characters of [A-Za-z0-9._-], starting with a letter or digit`,
    );
  }
  if (claims.subject.trim() === '' || claims.subject.length > 256) {
    throw invalidArgument('subject must be 1-256 characters');
  }
  const unknown = claims.scopes.filter((s) => !isScope(s));
  if (unknown.length > 0) {
    throw invalidArgument(
      `unknown scope${unknown.length > 1 ? 's' : ''} ${unknown.map((s) => `"${s}"`).join(', ')}; ` +
        `known: ${SCOPES.join(', ')}`,
    );
  }
  if (!Number.isInteger(claims.ttlSeconds) || claims.ttlSeconds < 1 || claims.ttlSeconds > maxTtlSeconds) {
    throw invalidArgument(`ttl must be a whole number of seconds from 1 to ${maxTtlSeconds}, got ${claims.ttlSeconds}`);
  }
}

/** Issues EdDSA access tokens; makes its first signing key when the store has none. */
export async function createTokenIssuer(options: TokenIssuerOptions): Promise<TokenIssuer> {
  const clock = options.clock ?? Date.now;
  const issuer = options.issuer ?? DEFAULT_ISSUER;
  const audience = options.audience ?? DEFAULT_AUDIENCE;
  const maxTtlSeconds = options.maxTtlSeconds ?? 365 * 24 * 3600;

  const records = await options.store.load();
  if (records.length === 0) {
    const first = await newRecord(clock());
    await options.store.save(first);
    records.push(first);
  }
  // Newest first; the head signs.
  let keys: LoadedKey[] = await Promise.all(
    records.sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime()).map(load),
  );
  const current = (): LoadedKey => {
    const head = keys[0];
    if (head === undefined) throw new Error('token issuer has no signing key');
    return head;
  };

  async function mint(claims: TokenClaims): Promise<IssuedToken> {
    checkClaims(claims, maxTtlSeconds);
    const key = current();
    const nowSeconds = Math.floor(clock() / 1000);
    const exp = nowSeconds + claims.ttlSeconds;
    const token = await new SignJWT({ tenant: claims.tenant, scope: [...new Set(claims.scopes)].join(' ') })
      .setProtectedHeader({ alg: TOKEN_ALGORITHM, kid: key.record.kid, typ: 'JWT' })
      .setIssuer(issuer)
      .setAudience(audience)
      .setSubject(claims.subject)
      .setIssuedAt(nowSeconds)
      .setExpirationTime(exp)
      .setJti(randomBytes(12).toString('base64url'))
      .sign(key.privateKey);
    return { token, expiresAt: new Date(exp * 1000), kid: key.record.kid };
  }

  // A key replaced at time R signed tokens that expire by R + maxTtl: it is live until then.
  function liveKeys(): LoadedKey[] {
    const now = clock();
    return keys.filter((key, i) => {
      const replacedAt = i === 0 ? undefined : keys[i - 1]?.record.createdAt.getTime();
      return replacedAt === undefined || now <= replacedAt + maxTtlSeconds * 1000;
    });
  }

  return {
    mint,
    issue: async (claims) => (await mint(claims)).token,
    jwks() {
      return Promise.resolve({ keys: liveKeys().map((k) => ({ ...k.record.publicJwk })) });
    },
    async rotate() {
      const record = await newRecord(Math.max(clock(), current().record.createdAt.getTime() + 1));
      await options.store.save(record);
      keys = [await load(record), ...keys];
      return record.kid;
    },
    async reload() {
      const known = new Set(keys.map((k) => k.record.kid));
      const added = (await options.store.load()).filter((r) => !known.has(r.kid));
      if (added.length === 0) return;
      const loaded = await Promise.all(added.map(load));
      keys = [...keys, ...loaded].sort((a, b) => b.record.createdAt.getTime() - a.record.createdAt.getTime());
    },
    async inspect(token) {
      let kid: string | undefined;
      try {
        kid = decodeProtectedHeader(token).kid;
      } catch {
        throw invalidArgument('token is malformed (not a compact JWS)');
      }
      const key = liveKeys().find((k) => k.record.kid === kid);
      if (kid === undefined || key === undefined) {
        throw invalidArgument(
          `token is not signed by a key of this issuer (kid "${String(kid)}"): ` +
            'it is not one of ours, or it has expired',
        );
      }
      let payload: Record<string, unknown>;
      try {
        const verified = await compactVerify(token, await importJWK(key.record.publicJwk, TOKEN_ALGORITHM), {
          algorithms: [TOKEN_ALGORITHM],
        });
        payload = JSON.parse(new TextDecoder().decode(verified.payload)) as Record<string, unknown>;
      } catch {
        throw invalidArgument('token signature does not verify');
      }
      const { jti, tenant, sub, exp } = payload;
      if (typeof tenant !== 'string' || typeof sub !== 'string' || typeof exp !== 'number') {
        throw invalidArgument('token lacks a "tenant", "sub" or "exp" claim');
      }
      return {
        jti: typeof jti === 'string' ? jti : undefined,
        tenant,
        subject: sub,
        expiresAt: new Date(exp * 1000),
        kid,
      };
    },
    get currentKid() {
      return current().record.kid;
    },
    get currentCreatedAt() {
      return current().record.createdAt;
    },
    maxTtlSeconds,
  };
}
