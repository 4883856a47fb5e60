import { createPublicKey, verify } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { SignJWT, generateKeyPair, exportJWK } from 'jose';
import type { JWK } from 'jose';
import { describe, expect, it } from 'vitest';
import { DomainError } from '@quanta/service-kit';
import { createMemorySigningKeyStore, createTokenIssuer, createTokenVerifier } from './index.js';

function bearer(token: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  return md;
}

async function rejection(promise: Promise<unknown>): Promise<DomainError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DomainError);
  return error as DomainError;
}

describe('token issuer and verifier', () => {
  it('issues a token whose Ed25519 signature node:crypto verifies against the JWKS', async () => {
    const issuer = await createTokenIssuer({ store: createMemorySigningKeyStore() });
    const token = await issuer.issue({
      tenant: 'acme',
      subject: 'alice',
      scopes: ['keys:use', 'infer'],
      ttlSeconds: 600,
    });
    const [h, p, s] = token.split('.') as [string, string, string];
    const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as { alg: string; kid: string };
    expect(header).toMatchObject({ alg: 'EdDSA', kid: issuer.currentKid });
    const jwk = (await issuer.jwks()).keys.find((k) => k.kid === header.kid)!;
    expect(jwk.d).toBeUndefined(); // never the private part
    // Second source: the signature checked by node:crypto, not by jose.
    const publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x! }, format: 'jwk' });
    expect(verify(null, Buffer.from(`${h}.${p}`), publicKey, Buffer.from(s, 'base64url'))).toBe(true);
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    expect(payload).toMatchObject({
      tenant: 'acme',
      sub: 'alice',
      scope: 'keys:use infer',
      iss: 'quanta-crypto',
      aud: 'quanta',
    });
    expect((payload.exp as number) - (payload.iat as number)).toBe(600);

    const verifier = createTokenVerifier({ fetchJwks: () => issuer.jwks() });
    await expect(verifier(bearer(token))).resolves.toEqual({
      tenant: 'acme',
      subject: 'alice',
      scopes: ['keys:use', 'infer'],
    });
  });

  it('rejects missing, malformed, forged, expired and wrong-audience tokens with UNAUTHENTICATED', async () => {
    let now = Date.parse('2030-01-01T00:00:00Z');
    const clock = (): number => now;
    const issuer = await createTokenIssuer({ store: createMemorySigningKeyStore(), clock });
    const verifier = createTokenVerifier({ fetchJwks: () => issuer.jwks(), clock });
    const token = await issuer.issue({ tenant: 't1', subject: 's', scopes: ['admin'], ttlSeconds: 60 });

    let e = await rejection(verifier(new grpc.Metadata()));
    expect(e.code).toBe('UNAUTHENTICATED');
    expect(e.message).toMatch(/missing access token.*authorization: Bearer/);

    e = await rejection(verifier(bearer('not-a-jwt')));
    expect([e.code, e.message]).toEqual(['UNAUTHENTICATED', 'access token is malformed (not a compact JWS)']);

    // Same kid, another key: the signature cannot verify.
    const other = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const forged = await new SignJWT({ tenant: 't1', scope: 'admin' })
      .setProtectedHeader({ alg: 'EdDSA', kid: issuer.currentKid })
      .setIssuer('quanta-crypto')
      .setAudience('quanta')
      .setSubject('mallory')
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(other.privateKey);
    e = await rejection(verifier(bearer(forged)));
    expect([e.code, e.message]).toEqual(['UNAUTHENTICATED', 'access token signature is invalid']);

    // A flipped payload bit, signature kept.
    const [h, p, s] = token.split('.') as [string, string, string];
    const payload = Buffer.from(p, 'base64url').toString().replace('"t1"', '"t2"');
    e = await rejection(verifier(bearer(`${h}.${Buffer.from(payload).toString('base64url')}.${s}`)));
    expect(e.message).toBe('access token signature is invalid');

    // alg "none" is never accepted.
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', kid: issuer.currentKid })).toString('base64url')}.${p}.`;
    e = await rejection(verifier(bearer(none)));
    expect(e.message).toMatch(/algorithm "none" is not allowed/);

    now += 61_000;
    e = await rejection(verifier(bearer(token)));
    expect([e.code, e.message]).toEqual(['UNAUTHENTICATED', 'access token has expired']);

    const strict = createTokenVerifier({ fetchJwks: () => issuer.jwks(), clock, audience: 'somebody-else' });
    const fresh = await issuer.issue({ tenant: 't1', subject: 's', scopes: ['infer'], ttlSeconds: 60 });
    e = await rejection(strict(bearer(fresh)));
    expect(e.message).toBe('access token claim "aud" is invalid (check_failed)');
  });

  it('refetches the JWKS on an unknown kid after rotation, at most once per interval', async () => {
    let now = 1_900_000_000_000;
    const clock = (): number => now;
    const store = createMemorySigningKeyStore();
    const issuer = await createTokenIssuer({ store, clock });
    let fetches = 0;
    const verifier = createTokenVerifier({
      fetchJwks: () => {
        fetches += 1;
        return issuer.jwks();
      },
      clock,
      minRefreshIntervalMs: 10_000,
    });
    const before = await issuer.issue({ tenant: 't', subject: 'a', scopes: ['infer'], ttlSeconds: 3600 });
    await verifier(bearer(before));
    await verifier(bearer(before));
    expect(fetches).toBe(1); // cached

    const oldKid = issuer.currentKid;
    const newKid = await issuer.rotate();
    expect(newKid).not.toBe(oldKid);
    expect((await issuer.jwks()).keys.map((k) => k.kid)).toEqual([newKid, oldKid]);
    const after = await issuer.issue({ tenant: 't', subject: 'a', scopes: ['infer'], ttlSeconds: 3600 });
    // Within the interval the unknown kid is not fetched again.
    const e = await rejection(verifier(bearer(after)));
    expect(e.message).toBe(`access token is signed by unknown key "${newKid}"`);
    expect(fetches).toBe(1);
    now += 10_000;
    await expect(verifier(bearer(after))).resolves.toMatchObject({ tenant: 't' });
    await expect(verifier(bearer(before))).resolves.toMatchObject({ tenant: 't' }); // old kid still listed
    expect(fetches).toBe(2);

    // A second issuer on the same store keeps the keys (they are persisted), newest signing.
    const reopened = await createTokenIssuer({ store, clock });
    expect(reopened.currentKid).toBe(newKid);
  });

  it('drops a replaced key from the JWKS once every token it signed has expired', async () => {
    let now = 1_900_000_000_000;
    const issuer = await createTokenIssuer({
      store: createMemorySigningKeyStore(),
      clock: () => now,
      maxTtlSeconds: 3600,
    });
    const first = issuer.currentKid;
    now += 1000;
    const second = await issuer.rotate();
    now += 3600_000;
    expect((await issuer.jwks()).keys.map((k) => k.kid)).toEqual([second, first]);
    now += 1;
    expect((await issuer.jwks()).keys.map((k) => k.kid)).toEqual([second]);
  });

  it('refuses unknown scopes, bad tenants and bad ttls with INVALID_ARGUMENT', async () => {
    const issuer = await createTokenIssuer({ store: createMemorySigningKeyStore(), maxTtlSeconds: 100 });
    let e = await rejection(issuer.issue({ tenant: 't', subject: 's', scopes: ['infer', 'root'], ttlSeconds: 10 }));
    expect([e.code, e.message]).toEqual(['INVALID_ARGUMENT', expect.stringContaining('unknown scope "root"')]);
    e = await rejection(issuer.issue({ tenant: 'a b', subject: 's', scopes: [], ttlSeconds: 10 }));
    expect(e.message).toMatch(/tenant "a b" is invalid/);
    e = await rejection(issuer.issue({ tenant: 't', subject: 's', scopes: [], ttlSeconds: 101 }));
    expect(e.message).toBe('ttl must be a whole number of seconds from 1 to 100, got 101');
  });

  it('reports an unreachable issuer as UNAVAILABLE and tries again on the next call', async () => {
    const issuer = await createTokenIssuer({ store: createMemorySigningKeyStore() });
    const token = await issuer.issue({ tenant: 't', subject: 's', scopes: [], ttlSeconds: 60 });
    let up = false;
    const verifier = createTokenVerifier({
      fetchJwks: () => (up ? issuer.jwks() : Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:9002'))),
    });
    const e = await rejection(verifier(bearer(token)));
    expect([e.code, e.message]).toEqual([
      'UNAVAILABLE',
      'cannot fetch the token verification keys: connect ECONNREFUSED 127.0.0.1:9002',
    ]);
    up = true;
    await expect(verifier(bearer(token))).resolves.toEqual({ tenant: 't', subject: 's', scopes: [] });
  });

  it('ignores JWKS entries that are not Ed25519 keys', async () => {
    const issuer = await createTokenIssuer({ store: createMemorySigningKeyStore() });
    const token = await issuer.issue({ tenant: 't', subject: 's', scopes: ['infer'], ttlSeconds: 60 });
    const rsa = await generateKeyPair('RS256');
    const rsaJwk: JWK = { ...(await exportJWK(rsa.publicKey)), kid: issuer.currentKid };
    const verifier = createTokenVerifier({ fetchJwks: () => Promise.resolve({ keys: [rsaJwk] }) });
    const e = await rejection(verifier(bearer(token)));
    expect(e.message).toBe(`access token is signed by unknown key "${issuer.currentKid}"`);
  });
});

describe('verified-token cache', () => {
  it('remembers verified tokens, but never past their expiry or the removal of their key', async () => {
    let now = Date.parse('2030-01-01T00:00:00Z');
    const clock = (): number => now;
    const issuer = await createTokenIssuer({ store: createMemorySigningKeyStore(), clock });
    let fetches = 0;
    let served: { keys: JWK[] } = await issuer.jwks();
    const verifier = createTokenVerifier({
      fetchJwks: () => {
        fetches++;
        return Promise.resolve(served);
      },
      clock,
      minRefreshIntervalMs: 0,
    });
    const token = await issuer.issue({ tenant: 'acme', subject: 'bob', scopes: ['infer'], ttlSeconds: 60 });
    const principal = { tenant: 'acme', subject: 'bob', scopes: ['infer'] };
    await expect(verifier(bearer(token))).resolves.toEqual(principal);
    await expect(verifier(bearer(token))).resolves.toEqual(principal);
    expect(fetches).toBe(1);

    // A changed byte is another token: verified afresh, and refused.
    const tampered = `${token.slice(0, -2)}${token.at(-2) === 'A' ? 'B' : 'A'}${token.slice(-1)}`;
    expect((await rejection(verifier(bearer(tampered)))).code).toBe('UNAUTHENTICATED');

    now += 61_000;
    const expired = await rejection(verifier(bearer(token)));
    expect([expired.code, expired.message]).toEqual(['UNAUTHENTICATED', expect.stringMatching(/expired/)]);

    // A fresh token, then its key leaves the JWKS (as after a rotation once its tokens expired):
    // the cached answer must not outlive the key.
    const second = await issuer.issue({ tenant: 'acme', subject: 'bob', scopes: ['infer'], ttlSeconds: 600 });
    await expect(verifier(bearer(second))).resolves.toEqual(principal);
    served = { keys: [] };
    const other = await issuer.issue({ tenant: 'acme', subject: 'eve', scopes: ['infer'], ttlSeconds: 600 });
    // Any refetch (here forced by a token with an unknown kid) replaces the key set.
    const header = Buffer.from(JSON.stringify({ alg: 'EdDSA', kid: 'gone' })).toString('base64url');
    const unknownKid = `${header}.${other.split('.')[1]}.${other.split('.')[2]}`;
    expect((await rejection(verifier(bearer(unknownKid)))).code).toBe('UNAUTHENTICATED');
    const dropped = await rejection(verifier(bearer(second)));
    expect(dropped.code).toBe('UNAUTHENTICATED');
  });
});
