import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { DomainError, grpcStatusOf } from '@quanta/service-kit';
import { createMemorySigningKeyStore, createTokenIssuer, createTokenVerifier, subjectDigest } from './index.js';
import type { Revocation, RevocationSnapshot } from './index.js';

function bearer(token: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  return md;
}

async function codeOf(promise: Promise<unknown>): Promise<[number, string] | 'ok'> {
  try {
    await promise;
    return 'ok';
  } catch (error: unknown) {
    if (!(error instanceof DomainError)) throw error;
    return [grpcStatusOf(error.code), error.message];
  }
}

const jtiOf = (token: string): string =>
  (JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as { jti: string }).jti;

/** A revocation list the test edits, served like crypto's GetRevocations; `down` makes fetches fail. */
function listSource(): {
  entries: Revocation[];
  version: bigint;
  down: boolean;
  fetches: number;
  fetch: (known: bigint) => Promise<RevocationSnapshot>;
} {
  const source = {
    entries: [] as Revocation[],
    version: 0n,
    down: false,
    fetches: 0,
    fetch(known: bigint): Promise<RevocationSnapshot> {
      source.fetches++;
      if (source.down) return Promise.reject(new Error('connect ECONNREFUSED'));
      if (known === source.version && known !== 0n) return Promise.resolve({ unchanged: true, version: known });
      return Promise.resolve({ unchanged: false, version: source.version, revocations: [...source.entries] });
    },
  };
  return source;
}

describe('revocations in the token verifier', () => {
  it('refuses a revoked jti and a revoked subject, even when the token was verified and cached before', async () => {
    const issuer = await createTokenIssuer({ store: createMemorySigningKeyStore() });
    const source = listSource();
    const verifier = createTokenVerifier({
      fetchJwks: () => issuer.jwks(),
      fetchRevocations: source.fetch,
      revocationPollMs: 60_000,
    });
    try {
      const a = await issuer.issue({ tenant: 'acme', subject: 'alice', scopes: ['infer'], ttlSeconds: 600 });
      const b = await issuer.issue({ tenant: 'acme', subject: 'bob', scopes: ['infer'], ttlSeconds: 600 });
      expect(await codeOf(verifier(bearer(a)))).toBe('ok');
      expect(await codeOf(verifier(bearer(b)))).toBe('ok');
      source.entries.push({ jti: jtiOf(a), expiresAtMs: Date.now() + 600_000 });
      source.entries.push({
        subjectDigest: subjectDigest('acme', 'bob'),
        issuedBeforeMs: Date.now() + 1000,
        expiresAtMs: Date.now() + 600_000,
      });
      source.version = 2n;
      await verifier.refreshRevocations();
      expect(await codeOf(verifier(bearer(a)))).toEqual([grpc.status.UNAUTHENTICATED, 'access token has been revoked']);
      expect(await codeOf(verifier(bearer(b)))).toEqual([grpc.status.UNAUTHENTICATED, 'access token has been revoked']);
      // Another subject of the same tenant, and the same name in another tenant, are untouched.
      expect(
        await codeOf(
          verifier(
            bearer(await issuer.issue({ tenant: 'acme', subject: 'carol', scopes: ['infer'], ttlSeconds: 600 })),
          ),
        ),
      ).toBe('ok');
      expect(
        await codeOf(
          verifier(
            bearer(await issuer.issue({ tenant: 'globex', subject: 'bob', scopes: ['infer'], ttlSeconds: 600 })),
          ),
        ),
      ).toBe('ok');
      expect(verifier.revocationState()).toMatchObject({ version: 2n, entries: 2, stale: false });
    } finally {
      verifier.close();
    }
  });

  it('polls the list, asking with the version it holds', async () => {
    const issuer = await createTokenIssuer({ store: createMemorySigningKeyStore() });
    const source = listSource();
    source.version = 1n;
    const seen: bigint[] = [];
    const verifier = createTokenVerifier({
      fetchJwks: () => issuer.jwks(),
      fetchRevocations: (known) => {
        seen.push(known);
        return source.fetch(known);
      },
      revocationPollMs: 20,
    });
    try {
      const token = await issuer.issue({ tenant: 'acme', subject: 'alice', scopes: ['infer'], ttlSeconds: 600 });
      expect(await codeOf(verifier(bearer(token)))).toBe('ok');
      source.entries.push({ jti: jtiOf(token), expiresAtMs: Date.now() + 600_000 });
      source.version = 2n;
      const until = Date.now() + 5000;
      while ((await codeOf(verifier(bearer(token)))) === 'ok' && Date.now() < until)
        await new Promise((r) => setTimeout(r, 10));
      expect(await codeOf(verifier(bearer(token)))).toEqual([
        grpc.status.UNAUTHENTICATED,
        'access token has been revoked',
      ]);
      expect(seen[0]).toBe(0n);
      expect(seen).toContain(1n);
    } finally {
      verifier.close();
    }
  });

  it('is closed until the first list arrives, then keeps the last list while the issuer is unreachable', async () => {
    const issuer = await createTokenIssuer({ store: createMemorySigningKeyStore() });
    const source = listSource();
    source.down = true;
    const warnings: string[] = [];
    const logger = { warn: (_o: object, m: string) => void warnings.push(m), info: () => undefined };
    const verifier = createTokenVerifier({
      fetchJwks: () => issuer.jwks(),
      fetchRevocations: source.fetch,
      revocationPollMs: 60_000,
      logger,
    });
    try {
      const token = await issuer.issue({ tenant: 'acme', subject: 'alice', scopes: ['infer'], ttlSeconds: 600 });
      const first = await codeOf(verifier(bearer(token)));
      expect(first).toEqual([grpc.status.UNAVAILABLE, 'cannot fetch the token revocation list: connect ECONNREFUSED']);
      expect(warnings).toEqual(['cannot fetch the token revocation list: tokens are refused until it is fetched']);

      source.down = false;
      source.entries.push({ jti: 'other', expiresAtMs: Date.now() + 600_000 });
      source.version = 1n;
      expect(await codeOf(verifier(bearer(token)))).toBe('ok');

      source.down = true;
      await verifier.refreshRevocations();
      await verifier.refreshRevocations();
      expect(verifier.revocationState()).toMatchObject({ version: 1n, entries: 1, stale: true });
      expect(warnings).toHaveLength(2); // once per outage
      expect(warnings[1]).toMatch(/keeping the last one/);
      expect(await codeOf(verifier(bearer(token)))).toBe('ok');
    } finally {
      verifier.close();
    }
  });

  it('no longer counts an entry once every token it names has expired', async () => {
    let now = Date.parse('2031-01-01T00:00:00Z');
    const clock = (): number => now;
    const issuer = await createTokenIssuer({ store: createMemorySigningKeyStore(), clock });
    const source = listSource();
    const verifier = createTokenVerifier({
      fetchJwks: () => issuer.jwks(),
      fetchRevocations: source.fetch,
      revocationPollMs: 60_000,
      clock,
    });
    try {
      const token = await issuer.issue({ tenant: 'acme', subject: 'alice', scopes: ['infer'], ttlSeconds: 600 });
      source.entries.push({
        subjectDigest: subjectDigest('acme', 'alice'),
        issuedBeforeMs: now + 1000,
        expiresAtMs: now + 60_000,
      });
      source.version = 1n;
      await verifier.refreshRevocations();
      expect(await codeOf(verifier(bearer(token)))).toEqual([
        grpc.status.UNAUTHENTICATED,
        'access token has been revoked',
      ]);
      now += 61_000;
      expect(await codeOf(verifier(bearer(token)))).toBe('ok');
    } finally {
      verifier.close();
    }
  });
});
