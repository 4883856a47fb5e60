import { execFile, execFileSync } from 'node:child_process';
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPublicKey,
  randomBytes,
  verify as nodeVerify,
} from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { createJwksFetcher, createTokenVerifier } from '@quanta/auth';
import { crypto as pb, health } from '@quanta/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, call, failure, startHarness } from '../testing/harness.js';
import type { Harness } from '../testing/harness.js';

const { KeyType } = pb;
const INVALID = 'ciphertext is invalid or was not made with this key';

let h: Harness;
let admin: string; // tenant "acme", keys:admin + keys:use
let user: string; // tenant "acme", keys:use only

beforeAll(async () => {
  h = await startHarness();
  admin = await h.token('acme', ['keys:admin', 'keys:use']);
  user = await h.token('acme', ['keys:use']);
});
afterAll(() => h.close());

const c = (): pb.CryptoServiceClient => h.client;
const createKey = (
  name: string,
  type: pb.KeyType,
  config: pb.KeyConfigUpdate = {},
  token = admin,
): Promise<pb.CreateKeyResponse> => call(c(), 'createKey', { name, type, config }, token);
const encrypt = (
  keyName: string,
  plaintext: Buffer,
  associatedData = Buffer.alloc(0),
  token = user,
): Promise<pb.EncryptResponse> => call(c(), 'encrypt', { keyName, plaintext, associatedData }, token);
const decrypt = (
  keyName: string,
  ciphertext: Buffer,
  associatedData = Buffer.alloc(0),
  token = user,
): Promise<pb.DecryptResponse> => call(c(), 'decrypt', { keyName, ciphertext, associatedData, ttlSeconds: 0n }, token);

describe('authentication and scopes', () => {
  it('refuses a call without a token, with a bad token and with an expired token', async () => {
    let e = await failure(
      call(c(), 'encrypt', { keyName: 'any', plaintext: Buffer.from('x'), associatedData: Buffer.alloc(0) }),
    );
    expect(e.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(e.details).toMatch(/missing access token/);

    e = await failure(encrypt('any', Buffer.from('x'), undefined, 'garbage.token.here'));
    expect([e.code, e.details]).toEqual([grpc.status.UNAUTHENTICATED, 'access token is malformed (not a compact JWS)']);

    const shortLived = await h.token('acme', ['keys:use'], 5);
    await createKey('auth-key', KeyType.KEY_TYPE_AES256_GCM);
    await expect(encrypt('auth-key', Buffer.from('x'), undefined, shortLived)).resolves.toBeDefined();
    h.now.ms += 6000;
    try {
      e = await failure(encrypt('auth-key', Buffer.from('x'), undefined, shortLived));
    } finally {
      h.now.ms -= 6000;
    }
    expect([e.code, e.details]).toEqual([grpc.status.UNAUTHENTICATED, 'access token has expired']);
  });

  it('refuses an RPC whose scope the token lacks with PERMISSION_DENIED', async () => {
    let e = await failure(createKey('nope', KeyType.KEY_TYPE_AES256_GCM, {}, user));
    expect(e.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(e.details).toMatch(/CreateKey needs scope "keys:admin"/);

    const reader = await h.token('acme', ['models:read']);
    e = await failure(encrypt('auth-key', Buffer.from('x'), undefined, reader));
    expect(e.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(e.details).toMatch(/Encrypt needs scope "keys:use"/);

    e = await failure(
      call(c(), 'issueToken', { tenant: 'acme', subject: 'x', scopes: ['admin'], ttlSeconds: 60n }, admin),
    );
    expect(e.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(e.details).toMatch(/IssueToken needs scope "admin"/);
  });

  it('answers health and GetJwks without a token', async () => {
    const hc = new health.HealthClient(`127.0.0.1:${h.server.port}`, grpc.credentials.createInsecure());
    const reply = await new Promise<health.HealthCheckResponse>((resolve, reject) =>
      hc.check({ service: 'quanta.crypto.v1.CryptoService' }, (err, res) => (err ? reject(err) : resolve(res))),
    );
    hc.close();
    expect(reply.status).toBe(health.HealthCheckResponse_ServingStatus.SERVING);
    const jwks = await call(c(), 'getJwks', {});
    expect(jwks.keys.length).toBeGreaterThan(0);
    expect(jwks.keys[0]).toMatchObject({
      kty: 'OKP',
      crv: 'Ed25519',
      alg: 'EdDSA',
      use: 'sig',
      kid: h.server.issuer.currentKid,
    });
  });

  it('writes an admin token file (0600) on first start that can issue tokens', async () => {
    expect(h.server.adminTokenPath).toBe(`${h.home}/admin.token`);
    expect((await stat(h.server.adminTokenPath)).mode & 0o777).toBe(0o600);
    const adminToken = (await readFile(h.server.adminTokenPath, 'utf8')).trim();
    const issued = await call(
      c(),
      'issueToken',
      { tenant: 'partner', subject: 'svc:registry', scopes: ['keys:use'], ttlSeconds: 120n },
      adminToken,
    );
    expect(issued.keyId).toBe(h.server.issuer.currentKid);
    expect(issued.expireTime!.getTime()).toBe((Math.floor(h.now.ms / 1000) + 120) * 1000);
    const principal = await h.server.authenticator(bearer(issued.token));
    expect(principal).toEqual({ tenant: 'partner', subject: 'svc:registry', scopes: ['keys:use'] });

    const e = await failure(
      call(c(), 'issueToken', { tenant: 'partner', subject: 's', scopes: ['root'], ttlSeconds: 0n }, adminToken),
    );
    expect([e.code, e.details]).toEqual([
      grpc.status.INVALID_ARGUMENT,
      expect.stringContaining('unknown scope "root"'),
    ]);
  });

  it('publishes a JWKS through GetJwks that createTokenVerifier uses to check tokens', async () => {
    const verifier = createTokenVerifier({ fetchJwks: createJwksFetcher(c()) });
    const token = await h.token('acme', ['infer', 'models:read'], 600, 'svc:inference');
    await expect(verifier(bearer(token))).resolves.toEqual({
      tenant: 'acme',
      subject: 'svc:inference',
      scopes: ['infer', 'models:read'],
    });
    // After a rotation the old token still verifies and a new one is found by refetching.
    await h.server.issuer.rotate();
    const fresh = await h.token('acme', ['infer'], 600);
    const refreshing = createTokenVerifier({ fetchJwks: createJwksFetcher(c()) });
    await expect(refreshing(bearer(token))).resolves.toMatchObject({ tenant: 'acme' });
    await expect(refreshing(bearer(fresh))).resolves.toMatchObject({ tenant: 'acme' });
    // And the server itself accepts both at once.
    await expect(
      encrypt('auth-key', Buffer.from('x'), undefined, await h.token('acme', ['keys:use'])),
    ).resolves.toBeDefined();
  });
});

describe('keys', () => {
  it("keeps tenants apart: another tenant's key is NOT_FOUND exactly like a missing one", async () => {
    await createKey('shared-name', KeyType.KEY_TYPE_AES256_GCM);
    const { ciphertext } = await encrypt('shared-name', Buffer.from('acme secret'));
    const other = await h.token('globex', ['keys:admin', 'keys:use']);

    const missing = await failure(call(c(), 'getKey', { name: 'no-such-key' }, other));
    const foreign = await failure(call(c(), 'getKey', { name: 'shared-name' }, other));
    expect(foreign.code).toBe(grpc.status.NOT_FOUND);
    expect(foreign.details).toBe(missing.details.replace('no-such-key', 'shared-name'));
    expect((await failure(decrypt('shared-name', ciphertext, undefined, other))).code).toBe(grpc.status.NOT_FOUND);
    expect((await failure(encrypt('shared-name', Buffer.from('x'), undefined, other))).code).toBe(
      grpc.status.NOT_FOUND,
    );

    // globex may have its own key of that name; it does not open acme's ciphertext.
    await createKey('shared-name', KeyType.KEY_TYPE_AES256_GCM, {}, other);
    const e = await failure(decrypt('shared-name', ciphertext, undefined, other));
    expect([e.code, e.details]).toEqual([grpc.status.INVALID_ARGUMENT, INVALID]);
    const listed = await call(c(), 'listKeys', { pageSize: 0, pageToken: '' }, other);
    expect(listed.keys.map((k) => [k.tenant, k.name])).toEqual([['globex', 'shared-name']]);
  });

  it('lists keys page by page', async () => {
    const t = await h.token('pager', ['keys:admin']);
    for (const name of ['k-c', 'k-a', 'k-e', 'k-b', 'k-d']) await createKey(name, KeyType.KEY_TYPE_HMAC_SHA256, {}, t);
    const names: string[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = await call(c(), 'listKeys', { pageSize: 2, pageToken }, t);
      expect(page.keys.length).toBeLessThanOrEqual(2);
      names.push(...page.keys.map((k) => k.name));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== '');
    expect(names).toEqual(['k-a', 'k-b', 'k-c', 'k-d', 'k-e']);
    expect(pages).toBe(3);
    const e = await failure(call(c(), 'listKeys', { pageSize: 5000, pageToken: '' }, t));
    expect([e.code, e.details]).toEqual([
      grpc.status.INVALID_ARGUMENT,
      'ListKeys: page_size 5000 is over the maximum of 1000',
    ]);
  });

  it(
    'rotates: old ciphertexts still decrypt, new ones use the new ' + 'version, min_decryption_version retires the old',
    async () => {
      const created = await createKey('rot', KeyType.KEY_TYPE_CHACHA20_POLY1305);
      expect(created.key).toMatchObject({
        name: 'rot',
        tenant: 'acme',
        type: KeyType.KEY_TYPE_CHACHA20_POLY1305,
        latestVersion: 1,
      });
      const aad = Buffer.from('order=42');
      const v1 = await encrypt('rot', Buffer.from('first'), aad);
      expect(v1.keyVersion).toBe(1);
      const rotated = await call(c(), 'rotateKey', { name: 'rot' }, admin);
      expect(rotated.key!.latestVersion).toBe(2);
      expect(rotated.key!.versions.map((v) => v.version)).toEqual([1, 2]);
      const v2 = await encrypt('rot', Buffer.from('second'), aad);
      expect(v2.keyVersion).toBe(2);
      await expect(decrypt('rot', v1.ciphertext, aad)).resolves.toMatchObject({
        plaintext: Buffer.from('first'),
        keyVersion: 1,
      });
      await expect(decrypt('rot', v2.ciphertext, aad)).resolves.toMatchObject({
        plaintext: Buffer.from('second'),
        keyVersion: 2,
      });

      // Rewrap moves the v1 ciphertext to v2 without the plaintext leaving the server.
      const rewrapped = await call(
        c(),
        'rewrap',
        { keyName: 'rot', ciphertext: v1.ciphertext, associatedData: aad },
        user,
      );
      expect(rewrapped.keyVersion).toBe(2);
      expect(rewrapped.ciphertext.equals(v1.ciphertext)).toBe(false);

      const updated = await call(c(), 'updateKeyConfig', { name: 'rot', config: { minDecryptionVersion: 2 } }, admin);
      expect(updated.key!.config!.minDecryptionVersion).toBe(2);
      const e = await failure(decrypt('rot', v1.ciphertext, aad));
      expect(e.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(e.details).toMatch(/version 1/);
      await expect(decrypt('rot', rewrapped.ciphertext, aad)).resolves.toMatchObject({
        plaintext: Buffer.from('first'),
        keyVersion: 2,
      });
    },
  );

  it('exports and deletes only when the key allows it', async () => {
    await createKey('guarded', KeyType.KEY_TYPE_AES256_GCM);
    let e = await failure(call(c(), 'exportKey', { name: 'guarded', version: 0 }, admin));
    expect(e.code).toBe(grpc.status.FAILED_PRECONDITION);
    e = await failure(call(c(), 'deleteKey', { name: 'guarded' }, admin));
    expect(e.code).toBe(grpc.status.FAILED_PRECONDITION);
    e = await failure(call(c(), 'updateKeyConfig', { name: 'guarded', config: {} }, admin));
    expect([e.code, e.details]).toEqual([
      grpc.status.INVALID_ARGUMENT,
      'UpdateKeyConfig: config sets no field to change',
    ]);

    await call(c(), 'updateKeyConfig', { name: 'guarded', config: { exportable: true, deletionAllowed: true } }, admin);
    const exported = await call(c(), 'exportKey', { name: 'guarded', version: 0 }, admin);
    expect(exported.version).toBe(1);
    expect(exported.material.length).toBe(32);
    // Second source: the exported key opens the ciphertext with node:crypto directly
    // (format 0x01 | version u32 BE | nonce 12 | ciphertext | tag 16, the 5-byte prefix bound as AAD before the
    // caller's).
    const ct = (await encrypt('guarded', Buffer.from('by hand'), Buffer.from('ad'))).ciphertext;
    const decipher = createDecipheriv('aes-256-gcm', exported.material, ct.subarray(5, 17)).setAAD(
      Buffer.concat([ct.subarray(0, 5), Buffer.from('ad')]),
    );
    decipher.setAuthTag(ct.subarray(ct.length - 16));
    expect(Buffer.concat([decipher.update(ct.subarray(17, ct.length - 16)), decipher.final()]).toString()).toBe(
      'by hand',
    );

    await call(c(), 'deleteKey', { name: 'guarded' }, admin);
    e = await failure(call(c(), 'getKey', { name: 'guarded' }, admin));
    expect(e.code).toBe(grpc.status.NOT_FOUND);
  });

  it('imports a raw AES key whose ciphertexts node:crypto can read', async () => {
    const raw = randomBytes(32);
    const imported = await call(
      c(),
      'importKey',
      { name: 'imported-aes', type: KeyType.KEY_TYPE_AES256_GCM, material: raw },
      admin,
    );
    expect(imported.key!.latestVersion).toBe(1);
    // Made by hand with node:crypto in the documented format, opened by the service.
    const nonce = randomBytes(12);
    const prefix = Buffer.from([0x01, 0, 0, 0, 1]);
    const cipher = createCipheriv('aes-256-gcm', raw, nonce).setAAD(prefix);
    const body = Buffer.concat([cipher.update('made elsewhere'), cipher.final()]);
    const ct = Buffer.concat([prefix, nonce, body, cipher.getAuthTag()]);
    await expect(decrypt('imported-aes', ct)).resolves.toMatchObject({ plaintext: Buffer.from('made elsewhere') });
    const e = await failure(
      call(c(), 'importKey', { name: 'bad-type', type: KeyType.KEY_TYPE_UNSPECIFIED, material: raw }, admin),
    );
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(e.details).toMatch(/KEY_TYPE_UNSPECIFIED is not supported/);
  });
});

describe('data operations', () => {
  beforeAll(async () => {
    await createKey('data', KeyType.KEY_TYPE_AES256_GCM);
  });

  it(
    'refuses tampered and truncated ciphertexts and wrong ' + 'associated data with one INVALID_ARGUMENT message',
    async () => {
      const aad = Buffer.from('tenant=acme');
      const { ciphertext } = await encrypt('data', Buffer.from('the plaintext'), aad);
      const flipped = Buffer.from(ciphertext);
      flipped[flipped.length - 3]! ^= 0x01;
      const variants = [
        flipped,
        ciphertext.subarray(0, ciphertext.length - 1),
        ciphertext.subarray(0, 10),
        Buffer.alloc(0),
      ];
      for (const bad of variants) {
        const e = await failure(decrypt('data', bad, aad));
        expect([e.code, e.details]).toEqual([grpc.status.INVALID_ARGUMENT, INVALID]);
      }
      const e = await failure(decrypt('data', ciphertext, Buffer.from('tenant=other')));
      expect([e.code, e.details]).toEqual([grpc.status.INVALID_ARGUMENT, INVALID]);
    },
  );

  it('answers a unary payload over the limit with RESOURCE_EXHAUSTED naming the streaming RPC', async () => {
    const big = Buffer.alloc(2 * 1024 * 1024 + 1);
    let e = await failure(encrypt('data', big));
    expect(e.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(e.details).toBe(
      'Encrypt: plaintext is 2097153 bytes, over the 2097152-byte limit of a unary call; use EncryptStream for ' +
        'large payloads',
    );
    e = await failure(decrypt('data', big));
    expect(e.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(e.details).toMatch(/use DecryptStream/);
    e = await failure(
      call(
        c(),
        'batchEncrypt',
        {
          keyName: 'data',
          items: [
            { plaintext: big.subarray(1), associatedData: Buffer.alloc(0) },
            { plaintext: Buffer.alloc(2), associatedData: Buffer.alloc(0) },
          ],
        },
        user,
      ),
    );
    expect(e.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(e.details).toMatch(/BatchEncrypt: the batch is 2097154 bytes.*EncryptStream/);
    // Exactly at the limit is fine.
    await expect(encrypt('data', big.subarray(1))).resolves.toMatchObject({ keyVersion: 1 });
  });

  it('runs batch items independently: a bad item gets its own error, the others their results', async () => {
    const none = Buffer.alloc(0);
    const enc = await call(
      c(),
      'batchEncrypt',
      {
        keyName: 'data',
        items: [0, 1, 2].map((i) => ({ plaintext: Buffer.from(`item ${i}`), associatedData: Buffer.from(`ad${i}`) })),
      },
      user,
    );
    expect(enc.results.map((r) => [r.keyVersion, r.error])).toEqual([
      [1, undefined],
      [1, undefined],
      [1, undefined],
    ]);
    const [a, b, d] = enc.results.map((r) => r.ciphertext) as [Buffer, Buffer, Buffer];
    const tampered = Buffer.from(b);
    tampered[20]! ^= 0xff;

    const dec = await call(
      c(),
      'batchDecrypt',
      {
        keyName: 'data',
        items: [
          { ciphertext: a, associatedData: Buffer.from('ad0') },
          { ciphertext: tampered, associatedData: Buffer.from('ad1') },
          { ciphertext: d, associatedData: Buffer.from('wrong') },
          { ciphertext: d, associatedData: Buffer.from('ad2') },
        ],
      },
      user,
    );
    expect(dec.results.map((r) => [r.plaintext.toString(), r.error])).toEqual([
      ['item 0', undefined],
      ['', { code: grpc.status.INVALID_ARGUMENT, message: `item 1: ${INVALID}` }],
      ['', { code: grpc.status.INVALID_ARGUMENT, message: `item 2: ${INVALID}` }],
      ['item 2', undefined],
    ]);

    await call(c(), 'rotateKey', { name: 'data' }, admin);
    const re = await call(
      c(),
      'batchRewrap',
      {
        keyName: 'data',
        items: [
          { ciphertext: a, associatedData: Buffer.from('ad0') },
          { ciphertext: Buffer.from('junk'), associatedData: none },
        ],
      },
      user,
    );
    expect(re.results[0]).toMatchObject({ keyVersion: 2, error: undefined });
    expect(re.results[1]!.error).toEqual({ code: grpc.status.INVALID_ARGUMENT, message: `item 1: ${INVALID}` });
    await expect(decrypt('data', re.results[0]!.ciphertext, Buffer.from('ad0'))).resolves.toMatchObject({
      plaintext: Buffer.from('item 0'),
      keyVersion: 2,
    });

    const missing = await call(
      c(),
      'batchEncrypt',
      { keyName: 'nope', items: [{ plaintext: Buffer.from('x'), associatedData: none }] },
      user,
    );
    expect(missing.results[0]!.error!.code).toBe(grpc.status.NOT_FOUND);
  });

  it('makes data keys, wrapped and plain, that unwrap to the same bytes', async () => {
    const aad = Buffer.from('blob sha256:abc');
    const dk = await call(
      c(),
      'generateDataKey',
      { keyName: 'data', bits: 0, wrappedOnly: false, associatedData: aad },
      user,
    );
    expect(dk.plaintext.length).toBe(32);
    const unwrapped = await call(
      c(),
      'unwrapDataKey',
      { keyName: 'data', wrappedKey: dk.wrappedKey, associatedData: aad },
      user,
    );
    expect(unwrapped.plaintext.equals(dk.plaintext)).toBe(true);

    const wrappedOnly = await call(
      c(),
      'generateDataKey',
      { keyName: 'data', bits: 128, wrappedOnly: true, associatedData: Buffer.alloc(0) },
      user,
    );
    expect(wrappedOnly.plaintext.length).toBe(0);
    const plain = await call(
      c(),
      'unwrapDataKey',
      { keyName: 'data', wrappedKey: wrappedOnly.wrappedKey, associatedData: Buffer.alloc(0) },
      user,
    );
    expect(plain.plaintext.length).toBe(16);

    let e = await failure(
      call(
        c(),
        'unwrapDataKey',
        { keyName: 'data', wrappedKey: dk.wrappedKey, associatedData: Buffer.from('other') },
        user,
      ),
    );
    expect([e.code, e.details]).toEqual([grpc.status.INVALID_ARGUMENT, INVALID]);
    e = await failure(
      call(
        c(),
        'generateDataKey',
        { keyName: 'data', bits: 100, wrappedOnly: false, associatedData: Buffer.alloc(0) },
        user,
      ),
    );
    expect([e.code, e.details]).toEqual([
      grpc.status.INVALID_ARGUMENT,
      'GenerateDataKey: bits must be 128 or 256, got 100',
    ]);
  });

  it('signs and verifies with HMAC-SHA256 and Ed25519, checked against node:crypto', async () => {
    const data = Buffer.from('message to sign');
    await createKey('mac', KeyType.KEY_TYPE_HMAC_SHA256, { exportable: true });
    const mac = await call(c(), 'sign', { keyName: 'mac', data, keyVersion: 0 }, user);
    const secret = (await call(c(), 'exportKey', { name: 'mac', version: 1 }, admin)).material;
    expect(mac.signature.equals(createHmac('sha256', secret).update(data).digest())).toBe(true);
    await expect(
      call(c(), 'verify', { keyName: 'mac', data, signature: mac.signature, keyVersion: 0 }, user),
    ).resolves.toEqual({ valid: true });
    await expect(
      call(
        c(),
        'verify',
        { keyName: 'mac', data: Buffer.from('other'), signature: mac.signature, keyVersion: 0 },
        user,
      ),
    ).resolves.toEqual({ valid: false });

    const ed = await createKey('ed', KeyType.KEY_TYPE_ED25519);
    const publicKey = ed.key!.versions[0]!.publicKey;
    expect(publicKey.length).toBe(32);
    const sig = await call(c(), 'sign', { keyName: 'ed', data, keyVersion: 0 }, user);
    expect(sig.signature.length).toBe(64);
    const nodeKey = createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: publicKey.toString('base64url') },
      format: 'jwk',
    });
    expect(nodeVerify(null, data, nodeKey, sig.signature)).toBe(true);
    await expect(
      call(c(), 'verify', { keyName: 'ed', data, signature: sig.signature, keyVersion: 0 }, user),
    ).resolves.toEqual({ valid: true });
    const bad = Buffer.from(sig.signature);
    bad[0]! ^= 1;
    await expect(call(c(), 'verify', { keyName: 'ed', data, signature: bad, keyVersion: 0 }, user)).resolves.toEqual({
      valid: false,
    });

    const e = await failure(encrypt('ed', data));
    expect(e.code).toBe(grpc.status.FAILED_PRECONDITION);
  });

  it('encrypts Fernet tokens that Python reads, and decrypts tokens Python made', async () => {
    const pyKey = execFileSync(
      'python3',
      ['-c', 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'],
      { encoding: 'utf8' },
    ).trim();
    await call(
      c(),
      'importKey',
      { name: 'fernet-py', type: KeyType.KEY_TYPE_FERNET, material: Buffer.from(pyKey) },
      admin,
    );
    const ours = await encrypt('fernet-py', Buffer.from('from quanta ✓'));
    const token = ours.ciphertext.toString('ascii');
    expect(token).toMatch(/^gAAAAA[A-Za-z0-9_-]+=*$/);
    const py = (script: string, input: string): string =>
      execFileSync(
        'python3',
        [
          '-c',
          `import sys\nfrom cryptography.fernet import Fernet\nf = Fernet(sys.argv[1].encode())\n${script}`,
          pyKey,
        ],
        { input, encoding: 'utf8' },
      );
    expect(py('sys.stdout.write(f.decrypt(sys.stdin.read().encode()).decode())', token)).toBe('from quanta ✓');
    const theirs = py('sys.stdout.write(f.encrypt(sys.stdin.read().encode()).decode())', 'from python');
    await expect(decrypt('fernet-py', Buffer.from(theirs))).resolves.toMatchObject({
      plaintext: Buffer.from('from python'),
      keyVersion: 1,
    });

    // TTL: a token older than ttl_seconds (plus 60 s skew) is refused like any invalid token.
    h.now.ms += 600_000;
    try {
      const e = await failure(
        call(
          c(),
          'decrypt',
          { keyName: 'fernet-py', ciphertext: ours.ciphertext, associatedData: Buffer.alloc(0), ttlSeconds: 60n },
          user,
        ),
      );
      expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
    } finally {
      h.now.ms -= 600_000;
    }
    // Rotation, then rewrap keeps the timestamp like MultiFernet.rotate.
    await call(c(), 'rotateKey', { name: 'fernet-py' }, admin);
    const rewrapped = await call(
      c(),
      'rewrap',
      { keyName: 'fernet-py', ciphertext: ours.ciphertext, associatedData: Buffer.alloc(0) },
      user,
    );
    expect(rewrapped.keyVersion).toBe(2);
    // The version byte and the timestamp.
    expect(rewrapped.ciphertext.subarray(0, 12).equals(ours.ciphertext.subarray(0, 12))).toBe(true);
    await expect(decrypt('fernet-py', rewrapped.ciphertext)).resolves.toMatchObject({
      plaintext: Buffer.from('from quanta ✓'),
      keyVersion: 2,
    });
  });
});

describe('reflection', () => {
  it('lets buf curl list every CryptoService method and call GetJwks without the .proto files', async () => {
    const run = promisify(execFile);
    const base = ['buf', 'curl', '--protocol', 'grpc', '--http2-prior-knowledge'];
    const listed = await run('npx', [...base, '--list-methods', `http://127.0.0.1:${h.server.port}`], {
      encoding: 'utf8',
    });
    const methods = listed.stdout.split('\n').filter((l) => l.startsWith('quanta.crypto.v1.CryptoService/'));
    expect(methods.map((m) => m.split('/')[1])).toEqual(
      Object.values(pb.CryptoServiceService)
        .map((m) => m.path.split('/')[2])
        .sort(),
    );
    const jwks = await run(
      'npx',
      [...base, '-d', '{}', `http://127.0.0.1:${h.server.port}/quanta.crypto.v1.CryptoService/GetJwks`],
      { encoding: 'utf8' },
    );
    const body = JSON.parse(jwks.stdout) as { keys: { kid: string; kty: string }[] };
    expect(body.keys.map((k) => k.kid)).toEqual((await h.server.issuer.jwks()).keys.map((k) => k.kid));
    expect(body.keys.every((k) => k.kty === 'OKP')).toBe(true);
  });
});

describe('audit', () => {
  it('lists every key use with subject, version and outcome, and never plaintext or key material', async () => {
    const t = await h.token('audited', ['keys:admin', 'keys:use'], 600, 'auditor');
    await createKey('aud', KeyType.KEY_TYPE_AES256_GCM, { exportable: true }, t);
    const secret = Buffer.from('PLAINTEXT-MARKER-7f3a9c');
    const traceId = randomBytes(16).toString('hex');
    const traced = bearer(t);
    traced.set('traceparent', `00-${traceId}-${randomBytes(8).toString('hex')}-01`);
    const { ciphertext } = await new Promise<pb.EncryptResponse>((resolve, reject) =>
      c().encrypt(
        { keyName: 'aud', plaintext: secret, associatedData: Buffer.from('AAD-MARKER') },
        traced,
        (err, res) => (err ? reject(err) : resolve(res)),
      ),
    );
    await decrypt('aud', ciphertext, Buffer.from('AAD-MARKER'), t);
    await failure(decrypt('aud', Buffer.from(ciphertext).fill(0, 20, 24), Buffer.from('AAD-MARKER'), t));
    const material = (await call(c(), 'exportKey', { name: 'aud', version: 1 }, t)).material;

    const page = await call(c(), 'listAuditEvents', { keyName: 'aud', pageSize: 0, pageToken: '' }, t);
    const ops = page.events.map((e) => [e.operation, e.outcome, e.keyVersion, e.errorCode]);
    expect(ops).toEqual(
      expect.arrayContaining([
        ['create', pb.AuditOutcome.AUDIT_OUTCOME_OK, 1, ''],
        ['encrypt', pb.AuditOutcome.AUDIT_OUTCOME_OK, 1, ''],
        ['decrypt', pb.AuditOutcome.AUDIT_OUTCOME_OK, 1, ''],
        ['decrypt', pb.AuditOutcome.AUDIT_OUTCOME_ERROR, expect.any(Number), 'INVALID_ARGUMENT'],
        ['export', pb.AuditOutcome.AUDIT_OUTCOME_OK, 1, ''],
      ]),
    );
    expect(page.events.every((e) => e.tenant === 'audited' && e.subject === 'auditor' && e.keyName === 'aud')).toBe(
      true,
    );
    // The caller's W3C trace id reaches the audit record.
    expect(page.events.find((e) => e.operation === 'encrypt')?.traceId).toBe(traceId);
    // Newest first.
    const times = page.events.map((e) => e.time!.getTime());
    expect([...times].sort((x, y) => y - x)).toEqual(times);

    const wire = Buffer.from(pb.ListAuditEventsResponse.encode(page).finish());
    for (const marker of [secret, Buffer.from('AAD-MARKER'), material, Buffer.from(material.toString('base64'))]) {
      expect(wire.includes(marker)).toBe(false);
    }
    // Another tenant sees none of it.
    const other = await call(c(), 'listAuditEvents', { keyName: 'aud', pageSize: 0, pageToken: '' }, admin);
    expect(other.events).toEqual([]);
  });
});
