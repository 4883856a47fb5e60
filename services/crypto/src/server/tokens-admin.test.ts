import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { generateKeyPair, SignJWT } from 'jose';
import { pino } from 'pino';
import { subjectDigest } from '@quanta/auth';
import { crypto as pb } from '@quanta/contracts';
import type { Store } from '@quanta/store';
import { testBackends } from '@quanta/store/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CryptoConfig } from '../config.js';
import { startCryptoServer } from './crypto-server.js';
import type { CryptoServer } from './crypto-server.js';
import { call, failure } from '../testing/harness.js';

const MAX_TTL_MS = 60_000;
const T0 = Date.parse('2031-03-01T00:00:00Z');

describe.each(testBackends('test_crypto_tokens'))('token revocation and signing-key rotation on $name', (backend) => {
  const masterKey = randomBytes(32);
  const now = { ms: T0 };
  let store: Store;
  let home: string;
  let server: CryptoServer | undefined;
  let client: pb.CryptoServiceClient | undefined;

  async function start(
    over: Partial<CryptoConfig> = {},
  ): Promise<{ server: CryptoServer; client: pb.CryptoServiceClient; admin: string }> {
    const config: CryptoConfig = {
      home,
      host: '127.0.0.1',
      port: 0,
      databaseUrl: undefined,
      maxPayloadBytes: 2 * 1024 * 1024,
      maxMessageBytes: 64 * 1024 * 1024,
      adminTokenTtl: 3600_000,
      maxTokenTtl: MAX_TTL_MS,
      tlsCert: undefined,
      tlsKey: undefined,
      tlsCa: undefined,
      ...over,
    };
    server = await startCryptoServer(config, {
      store,
      masterKey,
      clock: () => now.ms,
      logger: pino({ level: 'silent' }),
    });
    client = new pb.CryptoServiceClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    const admin = await server.issuer.issue({ tenant: 'platform', subject: 'ops', scopes: ['admin'], ttlSeconds: 60 });
    return { server, client, admin };
  }

  async function stop(): Promise<void> {
    client?.close();
    await server?.stop({ graceMs: 0 });
    client = undefined;
    server = undefined;
  }

  beforeAll(async () => {
    store = await backend.open();
  });
  afterEach(stop);
  afterAll(async () => {
    await backend.cleanup();
  });

  it(
    'revokes a token, a jti and a subject at once in crypto, lists them by digest, and keeps them across a ' +
      'restart',
    async () => {
      home = await mkdtemp(join(tmpdir(), 'quanta-crypto-tokens-'));
      let s = await start();
      const keysAdmin = (subject: string): Promise<string> =>
        s.server.issuer.issue({ tenant: 'acme', subject, scopes: ['keys:admin'], ttlSeconds: 30 });
      const leaked = await keysAdmin('alice');
      const byId = await s.server.issuer.mint({
        tenant: 'acme',
        subject: 'bob',
        scopes: ['keys:admin'],
        ttlSeconds: 30,
      });
      const carol = await keysAdmin('carol');
      const list = (token: string): Promise<pb.ListKeysResponse> =>
        call(s.client, 'listKeys', { pageSize: 0, pageToken: '' }, token);
      for (const token of [leaked, byId.token, carol]) await list(token);
      const empty = await call(s.client, 'getRevocations', { knownVersion: 0n });
      expect(empty).toEqual({ version: 0n, unchanged: false, revocations: [] });

      const first = await call(
        s.client,
        'revokeToken',
        { target: { $case: 'token', value: leaked }, tenant: '', issuedBefore: undefined },
        s.admin,
      );
      expect(first.revocation).toMatchObject({
        subjectDigest: '',
        expireTime: new Date(Math.floor(T0 / 1000) * 1000 + 30_000),
      });
      expect(first.revocation?.jti).toMatch(/^[A-Za-z0-9_-]+$/);
      const refused = await failure(list(leaked));
      expect([refused.code, refused.details]).toEqual([grpc.status.UNAUTHENTICATED, 'access token has been revoked']);

      const jti = JSON.parse(Buffer.from(byId.token.split('.')[1] ?? '', 'base64url').toString()) as { jti: string };
      const second = await call(
        s.client,
        'revokeToken',
        { target: { $case: 'jti', value: jti.jti }, tenant: '', issuedBefore: undefined },
        s.admin,
      );
      // Its expiry is unknown: the longest lifetime.
      expect(second.revocation?.expireTime).toEqual(new Date(T0 + MAX_TTL_MS));
      expect((await failure(list(byId.token))).code).toBe(grpc.status.UNAUTHENTICATED);

      now.ms += 2000;
      const third = await call(
        s.client,
        'revokeToken',
        { target: { $case: 'subject', value: 'carol' }, tenant: 'acme', issuedBefore: undefined },
        s.admin,
      );
      expect(third.revocation).toMatchObject({
        jti: '',
        subjectDigest: subjectDigest('acme', 'carol'),
        issuedBefore: new Date(T0 + 2000),
      });
      expect((await failure(list(carol))).code).toBe(grpc.status.UNAUTHENTICATED);
      // Tokens issued to carol after the cut-off work; other subjects of the tenant never stopped.
      now.ms += 1000;
      await list(await keysAdmin('carol'));
      await list(await keysAdmin('dave'));

      const published = await call(s.client, 'getRevocations', { knownVersion: 0n });
      expect(published.revocations).toHaveLength(3);
      expect(JSON.stringify(published.revocations)).not.toContain('carol');
      expect(await call(s.client, 'getRevocations', { knownVersion: published.version })).toEqual({
        version: published.version,
        unchanged: true,
        revocations: [],
      });

      // A restart reads them back from the store.
      await stop();
      s = await start();
      expect((await call(s.client, 'getRevocations', { knownVersion: 0n })).revocations).toEqual(published.revocations);
      for (const token of [leaked, byId.token, carol])
        expect((await failure(list(token))).code).toBe(grpc.status.UNAUTHENTICATED);

      // Once every token they name has expired, the entries go.
      now.ms += MAX_TTL_MS + 120_000;
      const pruned = await call(s.client, 'getRevocations', { knownVersion: 0n });
      expect(pruned.revocations).toEqual([]);
      expect(await store.query('SELECT id FROM token_revocations')).toEqual([]);
      await rm(home, { recursive: true, force: true });
    },
  );

  it('refuses revocations that name nothing, a subject without a tenant, or a token it did not sign', async () => {
    home = await mkdtemp(join(tmpdir(), 'quanta-crypto-tokens-'));
    const s = await start();
    const revoke = (request: Partial<pb.RevokeTokenRequest>): Promise<grpc.ServiceError> =>
      failure(
        call(s.client, 'revokeToken', { target: undefined, tenant: '', issuedBefore: undefined, ...request }, s.admin),
      );
    expect((await revoke({})).details).toBe('set one of token, jti or subject (with tenant)');
    expect((await revoke({ target: { $case: 'subject', value: 'carol' } })).details).toBe(
      'tenant is required with subject',
    );
    expect((await revoke({ target: { $case: 'jti', value: 'a b' } })).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(
      (
        await revoke({
          target: { $case: 'subject', value: 'carol' },
          tenant: 'acme',
          issuedBefore: new Date(now.ms + 60_000),
        })
      ).details,
    ).toMatch(/in the future/);
    const other = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const foreign = await new SignJWT({ tenant: 'acme', scope: 'admin' })
      .setProtectedHeader({ alg: 'EdDSA', kid: s.server.issuer.currentKid })
      .setSubject('mallory')
      .setJti('x')
      .setExpirationTime(Math.floor(now.ms / 1000) + 60)
      .sign(other.privateKey);
    const e = await revoke({ target: { $case: 'token', value: foreign } });
    expect([e.code, e.details]).toEqual([grpc.status.INVALID_ARGUMENT, 'token signature does not verify']);
    expect((await revoke({ target: { $case: 'token', value: 'junk' } })).details).toBe(
      'token is malformed (not a compact JWS)',
    );
    await rm(home, { recursive: true, force: true });
  });

  it(
    'rotates the signing key: new tokens get the new kid, old ones work until they expire, then the old key ' +
      'leaves the JWKS',
    async () => {
      home = await mkdtemp(join(tmpdir(), 'quanta-crypto-tokens-'));
      const s = await start();
      const old = await call(
        s.client,
        'issueToken',
        { tenant: 'acme', subject: 'alice', scopes: ['keys:admin'], ttlSeconds: 60n },
        s.admin,
      );
      const oldKid = old.keyId;
      now.ms += 1000;
      const rotated = await call(s.client, 'rotateSigningKey', {}, s.admin);
      expect(rotated.previousKeyId).toBe(oldKid);
      expect(rotated.keyId).not.toBe(oldKid);
      expect(rotated.previousKeyRetireTime).toEqual(new Date(now.ms + MAX_TTL_MS));
      const fresh = await call(
        s.client,
        'issueToken',
        { tenant: 'acme', subject: 'alice', scopes: ['keys:admin'], ttlSeconds: 60n },
        s.admin,
      );
      expect(fresh.keyId).toBe(rotated.keyId);
      const kids = async (): Promise<string[]> => (await call(s.client, 'getJwks', {})).keys.map((k) => k.kid);
      expect(await kids()).toEqual([rotated.keyId, oldKid]);
      for (const token of [old.token, fresh.token])
        await call(s.client, 'listKeys', { pageSize: 0, pageToken: '' }, token);

      // Past the longest lifetime every token of the old key has expired, and the key is gone.
      now.ms += MAX_TTL_MS + 1000;
      expect(await kids()).toEqual([rotated.keyId]);
      expect((await failure(call(s.client, 'listKeys', { pageSize: 0, pageToken: '' }, old.token))).code).toBe(
        grpc.status.UNAUTHENTICATED,
      );
      await rm(home, { recursive: true, force: true });
    },
  );

  it('shares keys and revocations between replicas over one store', async () => {
    home = await mkdtemp(join(tmpdir(), 'quanta-crypto-tokens-'));
    const a = await start();
    const config: CryptoConfig = {
      home,
      host: '127.0.0.1',
      port: 0,
      databaseUrl: undefined,
      maxPayloadBytes: 2 << 20,
      maxMessageBytes: 64 << 20,
      adminTokenTtl: 3600_000,
      maxTokenTtl: MAX_TTL_MS,
      tlsCert: undefined,
      tlsKey: undefined,
      tlsCa: undefined,
    };
    const b = await startCryptoServer(config, {
      store,
      masterKey,
      clock: () => now.ms,
      logger: pino({ level: 'silent' }),
    });
    const bClient = new pb.CryptoServiceClient(`127.0.0.1:${b.port}`, grpc.credentials.createInsecure());
    try {
      const rotated = await call(a.client, 'rotateSigningKey', {}, a.admin);
      const fresh = await call(
        a.client,
        'issueToken',
        { tenant: 'acme', subject: 'alice', scopes: ['keys:admin'], ttlSeconds: 60n },
        a.admin,
      );
      // B has not read the store since: the unknown kid makes it read again (at most once a second),
      // and it accepts the token.
      const until = Date.now() + 5000;
      while (
        (await call(bClient, 'listKeys', { pageSize: 0, pageToken: '' }, fresh.token).then(
          () => true,
          () => false,
        )) === false &&
        Date.now() < until
      ) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await call(bClient, 'listKeys', { pageSize: 0, pageToken: '' }, fresh.token);
      expect((await call(bClient, 'getJwks', {})).keys[0]?.kid).toBe(rotated.keyId);
      expect(b.issuer.currentKid).toBe(rotated.keyId);
      // A revocation made through A reaches B at its next poll.
      await call(
        a.client,
        'revokeToken',
        { target: { $case: 'token', value: fresh.token }, tenant: '', issuedBefore: undefined },
        a.admin,
      );
      await b.authenticator.refreshRevocations();
      expect((await failure(call(bClient, 'listKeys', { pageSize: 0, pageToken: '' }, fresh.token))).code).toBe(
        grpc.status.UNAUTHENTICATED,
      );
    } finally {
      bClient.close();
      await b.stop({ graceMs: 0 });
      await rm(home, { recursive: true, force: true });
    }
  });

  it(
    'rotates on a schedule when QUANTA_CRYPTO_SIGNING_KEY_ROTATION_PERIOD is set, ' +
      "counting from the key's age in the store",
    async () => {
      home = await mkdtemp(join(tmpdir(), 'quanta-crypto-tokens-'));
      const s = await start({ signingKeyRotationPeriod: 50 });
      const first = s.server.issuer.currentKid;
      // The clock stands still: the key is not yet due. Moving it past the period rotates.
      now.ms += 60;
      const deadline = Date.now() + 10_000;
      while (s.server.issuer.currentKid === first && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(s.server.issuer.currentKid).not.toBe(first);
      await rm(home, { recursive: true, force: true });
    },
  );
});
