import { createDecipheriv, createHmac, createPublicKey, randomBytes, verify as nodeVerify } from 'node:crypto';
import { DomainError } from '@quanta/service-kit';
import type { Store } from '@quanta/store';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INVALID_CIPHERTEXT } from './errors.js';
import { createKeyManager } from './index.js';
import type { Actor, KeyManager } from './index.js';
import { testBackends } from '@quanta/store/testing';

const alice: Actor = { tenant: 'acme', subject: 'alice', traceId: '0af7651916cd43dd8448eb211c80319c' };
const mallory: Actor = { tenant: 'evil', subject: 'mallory' };

/** Resolves to the DomainError a call rejected with. */
async function failure(p: Promise<unknown>): Promise<DomainError> {
  try {
    await p;
  } catch (err: unknown) {
    if (err instanceof DomainError) return err;
    throw err;
  }
  throw new Error('expected the call to fail');
}

describe.each(testBackends('test_crypto'))('key manager on $name', (backend) => {
  let store: Store;
  let km: KeyManager;
  let now = new Date('2026-03-01T12:00:00Z');
  const masterKey = randomBytes(32);

  beforeAll(async () => {
    store = await backend.open();
    km = await createKeyManager({ store, masterKey, clock: () => now });
  });
  afterAll(() => backend.cleanup());

  it('creates keys, shows metadata without material, and refuses duplicates', async () => {
    const info = await km.createKey(alice, 'orders', 'aes256-gcm');
    expect(info).toMatchObject({
      tenant: 'acme',
      name: 'orders',
      type: 'aes256-gcm',
      latestVersion: 1,
      minDecryptionVersion: 1,
      minEncryptionVersion: 0,
      deletionAllowed: false,
      exportable: false,
      autoRotatePeriodSeconds: 0,
    });
    expect(info.versions).toEqual([{ version: 1, createdAt: now }]);
    expect(JSON.stringify(await km.getKey(alice, 'orders'))).not.toMatch(/material|wrapped/);
    const dup = await failure(km.createKey(alice, 'orders', 'fernet'));
    expect(dup.code).toBe('ALREADY_EXISTS');
    expect((await km.getKey(alice, 'orders')).type).toBe('aes256-gcm');
    expect((await failure(km.createKey(alice, 'bad name!', 'aes256-gcm'))).code).toBe('INVALID_ARGUMENT');
    expect((await failure(km.createKey(alice, 'x', 'rsa' as never))).message).toMatch(/key type "rsa" is unknown/);
  });

  it("hides one tenant's keys from another (NOT_FOUND, absent from lists)", async () => {
    const ct = await km.encrypt(alice, 'orders', Buffer.from('private'));
    for (const call of [
      () => km.getKey(mallory, 'orders'),
      () => km.decrypt(mallory, 'orders', ct.ciphertext),
      () => km.rotateKey(mallory, 'orders'),
      () => km.encrypt(mallory, 'orders', Buffer.from('x')),
    ]) {
      const err = await failure(call());
      expect(err.code).toBe('NOT_FOUND');
      expect(err.message).toBe('key "orders" not found');
    }
    expect((await km.listKeys(mallory, { pageSize: 10 })).keys).toEqual([]);
    // The same name in another tenant is another key.
    await km.createKey(mallory, 'orders', 'aes256-gcm');
    expect((await failure(km.decrypt(mallory, 'orders', ct.ciphertext))).message).toBe(INVALID_CIPHERTEXT);
  });

  it('lists keys by name with opaque page tokens', async () => {
    for (const n of ['k-c', 'k-a', 'k-e', 'k-b', 'k-d'])
      await km.createKey({ ...alice, tenant: 'lister' }, n, 'hmac-sha256');
    const lister = { ...alice, tenant: 'lister' };
    const names: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await km.listKeys(lister, { pageSize: 2, ...(token ? { pageToken: token } : {}) });
      names.push(...page.keys.map((k) => k.name));
      expect(page.keys.every((k) => k.versions.length === 1)).toBe(true);
      token = page.nextPageToken || undefined;
      pages++;
    } while (token);
    expect(names).toEqual(['k-a', 'k-b', 'k-c', 'k-d', 'k-e']);
    expect(pages).toBe(3);
    expect((await failure(km.listKeys(lister, { pageSize: 2, pageToken: 'garbage' }))).code).toBe('INVALID_ARGUMENT');
  });

  it.each(['aes256-gcm', 'chacha20-poly1305'] as const)(
    '%s: encrypts with AAD into a versioned ciphertext that node:crypto opens',
    async (type) => {
      const name = `data-${type}`;
      await km.createKey(alice, name, type, { exportable: true });
      const plaintext = randomBytes(1000);
      const aad = Buffer.from('tenant=acme;order=42');
      const { ciphertext, version } = await km.encrypt(alice, name, plaintext, aad);
      expect(version).toBe(1);
      expect(ciphertext.length).toBe(5 + 12 + 1000 + 16);
      expect(ciphertext[0]).toBe(0x01);
      expect(ciphertext.readUInt32BE(1)).toBe(1);
      // Second source: open it with node:crypto and the exported key, per the documented format.
      const { material } = await km.exportKey(alice, name);
      const d = createDecipheriv(
        (type === 'aes256-gcm' ? 'aes-256-gcm' : 'chacha20-poly1305') as 'aes-256-gcm',
        material,
        ciphertext.subarray(5, 17),
        { authTagLength: 16 },
      );
      d.setAAD(Buffer.concat([ciphertext.subarray(0, 5), aad]));
      d.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
      expect(
        Buffer.concat([d.update(ciphertext.subarray(17, ciphertext.length - 16)), d.final()]).equals(plaintext),
      ).toBe(true);

      expect((await km.decrypt(alice, name, ciphertext, aad)).plaintext.equals(plaintext)).toBe(true);
      // Every authentication failure: the same status and message.
      const bad: Buffer[] = [
        ciphertext.subarray(0, 20),
        ciphertext.subarray(0, ciphertext.length - 1),
        Buffer.alloc(0),
      ];
      for (const i of [0, 6, 20, ciphertext.length - 1]) {
        const t = Buffer.from(ciphertext);
        t[i]! ^= 0x80;
        bad.push(t);
      }
      for (const c of bad) {
        const err = await failure(km.decrypt(alice, name, c, aad));
        expect([err.code, err.message]).toEqual(['INVALID_ARGUMENT', INVALID_CIPHERTEXT]);
      }
      const wrongAad = await failure(km.decrypt(alice, name, ciphertext, Buffer.from('tenant=acme;order=43')));
      expect([wrongAad.code, wrongAad.message]).toEqual(['INVALID_ARGUMENT', INVALID_CIPHERTEXT]);
      // A ciphertext naming a version the key does not have.
      const future = Buffer.from(ciphertext);
      future.writeUInt32BE(9, 1);
      expect((await failure(km.decrypt(alice, name, future, aad))).message).toBe(INVALID_CIPHERTEXT);
    },
  );

  it('rotates: new ciphertexts use the new version, old ones still decrypt, rewrap moves them forward', async () => {
    await km.createKey(alice, 'rot', 'aes256-gcm');
    const v1 = await km.encrypt(alice, 'rot', Buffer.from('one'), Buffer.from('ctx'));
    const rotated = await km.rotateKey(alice, 'rot');
    expect(rotated.latestVersion).toBe(2);
    expect(rotated.versions.map((v) => v.version)).toEqual([1, 2]);
    const v2 = await km.encrypt(alice, 'rot', Buffer.from('two'));
    expect(v2.version).toBe(2);
    expect(v2.ciphertext.readUInt32BE(1)).toBe(2);
    expect((await km.decrypt(alice, 'rot', v1.ciphertext, Buffer.from('ctx'))).toString === undefined).toBe(false);
    expect(await km.decrypt(alice, 'rot', v1.ciphertext, Buffer.from('ctx'))).toEqual({
      plaintext: Buffer.from('one'),
      version: 1,
    });
    const rewrapped = await km.rewrap(alice, 'rot', v1.ciphertext, Buffer.from('ctx'));
    expect(rewrapped.version).toBe(2);
    expect(Object.keys(rewrapped).sort()).toEqual(['ciphertext', 'version']);
    expect(rewrapped.ciphertext.readUInt32BE(1)).toBe(2);
    expect((await failure(km.rewrap(alice, 'rot', v1.ciphertext, Buffer.from('other')))).message).toBe(
      INVALID_CIPHERTEXT,
    );

    // Retire version 1: its ciphertexts are refused with FAILED_PRECONDITION, the rewrapped one still works.
    const cfg = await km.updateKeyConfig(alice, 'rot', { minDecryptionVersion: 2 });
    expect(cfg.minDecryptionVersion).toBe(2);
    const retired = await failure(km.decrypt(alice, 'rot', v1.ciphertext, Buffer.from('ctx')));
    expect(retired.code).toBe('FAILED_PRECONDITION');
    expect(retired.message).toMatch(/version 1 of key "rot" is below its min_decryption_version 2/);
    expect((await km.decrypt(alice, 'rot', rewrapped.ciphertext, Buffer.from('ctx'))).plaintext.toString()).toBe('one');
  });

  it('validates config changes', async () => {
    await km.createKey(alice, 'cfg', 'chacha20-poly1305');
    const cases: [Record<string, unknown>, RegExp][] = [
      [
        { minDecryptionVersion: 2 },
        /min_decryption_version must be an integer from 1 to 1 \(the latest version is 1\)/,
      ],
      [{ minEncryptionVersion: 3 }, /min_encryption_version/],
      [{ autoRotatePeriodSeconds: 60 }, /at least 3600/],
      [{ minDecryptionVersion: -1 }, /min_decryption_version/],
      [{ deletionAllowed: 'yes' }, /deletion_allowed must be true or false/],
    ];
    for (const [patch, message] of cases) {
      const err = await failure(km.updateKeyConfig(alice, 'cfg', patch));
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.message).toMatch(message);
    }
    await km.rotateKey(alice, 'cfg');
    await km.rotateKey(alice, 'cfg');
    expect(
      (await failure(km.updateKeyConfig(alice, 'cfg', { minDecryptionVersion: 3, minEncryptionVersion: 2 }))).message,
    ).toMatch(/at least min_decryption_version/);
    const ok = await km.updateKeyConfig(alice, 'cfg', {
      minDecryptionVersion: 2,
      minEncryptionVersion: 3,
      autoRotatePeriodSeconds: 86400,
      exportable: true,
    });
    expect(ok).toMatchObject({
      minDecryptionVersion: 2,
      minEncryptionVersion: 3,
      autoRotatePeriodSeconds: 86400,
      exportable: true,
    });
    expect((await failure(km.updateKeyConfig(alice, 'cfg', { exportable: false }))).message).toMatch(
      /cannot be turned off/,
    );
    // Nothing from the failed updates stuck.
    expect(await km.getKey(alice, 'cfg')).toMatchObject({
      minDecryptionVersion: 2,
      minEncryptionVersion: 3,
      deletionAllowed: false,
      exportable: true,
    });
  });

  it('deletes only when allowed, exports only when exportable', async () => {
    await km.createKey(alice, 'gone', 'aes256-gcm');
    const refused = await failure(km.deleteKey(alice, 'gone'));
    expect([refused.code, refused.message]).toEqual([
      'FAILED_PRECONDITION',
      'key "gone" does not allow deletion; set deletion_allowed first',
    ]);
    expect((await failure(km.exportKey(alice, 'gone'))).code).toBe('FAILED_PRECONDITION');
    await km.updateKeyConfig(alice, 'gone', { deletionAllowed: true });
    await km.deleteKey(alice, 'gone');
    expect((await failure(km.getKey(alice, 'gone'))).code).toBe('NOT_FOUND');
    expect(await store.query("SELECT 1 FROM crypto_key_versions WHERE tenant = 'acme' AND name = 'gone'")).toEqual([]);
    expect((await failure(km.deleteKey(alice, 'gone'))).code).toBe('NOT_FOUND');
  });

  it('imports raw AES keys and uses them like the holder of the key would', async () => {
    const raw = randomBytes(32);
    await km.importKey(alice, 'imported-aes', 'aes256-gcm', raw, { exportable: true });
    expect((await km.exportKey(alice, 'imported-aes')).material.equals(raw)).toBe(true);
    expect((await failure(km.importKey(alice, 'short', 'aes256-gcm', randomBytes(16)))).message).toMatch(
      /must be 32 bytes; got 16/,
    );
    expect((await failure(km.getKey(alice, 'short'))).code).toBe('NOT_FOUND');
  });

  it('stores material wrapped by the master key and bound to its row', async () => {
    const raw = randomBytes(32);
    await km.importKey(alice, 'wrapped-a', 'aes256-gcm', raw);
    await km.importKey(alice, 'wrapped-b', 'aes256-gcm', randomBytes(32));
    const rows = await store.query<{ name: string; wrapped_material: Buffer }>(
      `SELECT name, wrapped_material FROM crypto_key_versions
       WHERE tenant = 'acme' AND name LIKE 'wrapped-%' ORDER BY name`,
    );
    expect(rows[0]!.wrapped_material.includes(raw)).toBe(false);
    const ct = await km.encrypt(alice, 'wrapped-a', Buffer.from('bound'));
    // Move a's wrapped material under b: unwrap must fail rather than decrypt with a swapped key.
    await store.query(
      "UPDATE crypto_key_versions SET wrapped_material = $1 WHERE tenant = 'acme' AND name = 'wrapped-b'",
      [rows[0]!.wrapped_material],
    );
    const ctB = Buffer.from(ct.ciphertext);
    await expect(km.decrypt(alice, 'wrapped-b', ctB)).rejects.toThrow(/does not unwrap with this master key/);
    // And a manager with another master key cannot use the keys.
    const other = await createKeyManager({ store, masterKey: randomBytes(32), clock: () => now });
    await expect(other.decrypt(alice, 'wrapped-a', ct.ciphertext)).rejects.toThrow(/does not unwrap/);
  });

  it('generates and unwraps envelope data keys', async () => {
    await km.createKey(alice, 'kek', 'aes256-gcm');
    const aad = Buffer.from('model=cifar@3');
    const dk = await km.generateDataKey(alice, 'kek', { includePlaintext: true, aad });
    expect(dk.plaintext!.length).toBe(32);
    expect(dk.version).toBe(1);
    expect((await km.unwrapDataKey(alice, 'kek', dk.wrapped, aad)).equals(dk.plaintext!)).toBe(true);
    const small = await km.generateDataKey(alice, 'kek', { bits: 128, includePlaintext: false });
    expect(small.plaintext).toBeUndefined();
    expect((await km.unwrapDataKey(alice, 'kek', small.wrapped)).length).toBe(16);
    expect((await failure(km.unwrapDataKey(alice, 'kek', dk.wrapped))).message).toBe(INVALID_CIPHERTEXT);
    expect((await failure(km.generateDataKey(alice, 'kek', { bits: 512 as 256, includePlaintext: true }))).code).toBe(
      'INVALID_ARGUMENT',
    );
  });

  it('signs and verifies with HMAC-SHA256 (as node:crypto computes it) across rotation', async () => {
    await km.createKey(alice, 'mac', 'hmac-sha256', { exportable: true });
    const data = Buffer.from('payload');
    const s1 = await km.sign(alice, 'mac', data);
    const raw = (await km.exportKey(alice, 'mac', 1)).material;
    expect(s1.signature.equals(createHmac('sha256', raw).update(data).digest())).toBe(true);
    expect(await km.verify(alice, 'mac', data, s1.signature)).toBe(true);
    expect(await km.verify(alice, 'mac', Buffer.from('payloaD'), s1.signature)).toBe(false);
    expect(await km.verify(alice, 'mac', data, s1.signature.subarray(0, 31))).toBe(false);
    await km.rotateKey(alice, 'mac');
    const s2 = await km.sign(alice, 'mac', data);
    expect(s2.version).toBe(2);
    expect(s2.signature.equals(s1.signature)).toBe(false);
    expect(await km.verify(alice, 'mac', data, s1.signature)).toBe(true);
    expect(await km.verify(alice, 'mac', data, s1.signature, 2)).toBe(false);
    await km.updateKeyConfig(alice, 'mac', { minDecryptionVersion: 2 });
    expect(await km.verify(alice, 'mac', data, s1.signature)).toBe(false);
    expect((await failure(km.verify(alice, 'mac', data, s1.signature, 1))).code).toBe('FAILED_PRECONDITION');
    expect((await failure(km.encrypt(alice, 'mac', data))).code).toBe('FAILED_PRECONDITION');
  });

  it('signs with Ed25519; the published public key verifies in node:crypto', async () => {
    const info = await km.createKey(alice, 'ed', 'ed25519');
    const publicKey = info.versions[0]!.publicKey!;
    expect(publicKey.length).toBe(32);
    const data = Buffer.from('release 1.0');
    const { signature } = await km.sign(alice, 'ed', data);
    expect(signature.length).toBe(64);
    const spki = createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: publicKey.toString('base64url') },
      format: 'jwk',
    });
    expect(nodeVerify(null, data, spki, signature)).toBe(true);
    expect(await km.verify(alice, 'ed', data, signature)).toBe(true);
    const flipped = Buffer.from(signature);
    flipped[3]! ^= 1;
    expect(await km.verify(alice, 'ed', data, flipped)).toBe(false);
  });

  it('auto-rotates a key on its first use after the period', async () => {
    await km.createKey(alice, 'auto', 'aes256-gcm', { autoRotatePeriodSeconds: 3600 });
    expect((await km.encrypt(alice, 'auto', Buffer.from('a'))).version).toBe(1);
    const before = now;
    now = new Date(before.getTime() + 3600_000);
    try {
      expect((await km.encrypt(alice, 'auto', Buffer.from('b'))).version).toBe(2);
      expect((await km.encrypt(alice, 'auto', Buffer.from('c'))).version).toBe(2);
      expect((await km.getKey(alice, 'auto')).latestVersion).toBe(2);
    } finally {
      now = before;
    }
  });

  it('audits every key use without plaintext or material, failures included, and pages through them', async () => {
    const secret = 'TOP-SECRET-PLAINTEXT-1234';
    const actor: Actor = { tenant: 'audited', subject: 'bob', traceId: 'trace-1' };
    await km.createKey(actor, 'a', 'aes256-gcm', { exportable: true });
    const ct = await km.encrypt(actor, 'a', Buffer.from(secret));
    await km.decrypt(actor, 'a', ct.ciphertext);
    await failure(km.decrypt(actor, 'a', Buffer.from(ct.ciphertext.subarray(0, 40))));
    await failure(km.decrypt(actor, 'missing', ct.ciphertext));
    await failure(km.createKey(actor, 'a', 'aes256-gcm')); // duplicate: only its audit event is written
    const raw = (await km.exportKey(actor, 'a')).material;

    const all = await km.listAudit(actor, { pageSize: 100 });
    expect(all.events.map((e) => [e.operation, e.keyName, e.version, e.outcome, e.errorCode ?? ''])).toEqual([
      ['export', 'a', 1, 'ok', ''],
      ['create', 'a', 0, 'error', 'ALREADY_EXISTS'],
      ['decrypt', 'missing', 0, 'error', 'NOT_FOUND'],
      ['decrypt', 'a', 1, 'error', 'INVALID_ARGUMENT'],
      ['decrypt', 'a', 1, 'ok', ''],
      ['encrypt', 'a', 1, 'ok', ''],
      ['create', 'a', 1, 'ok', ''],
    ]);
    expect(
      all.events.every(
        (e) =>
          e.tenant === 'audited' &&
          e.subject === 'bob' &&
          e.traceId === 'trace-1' &&
          e.time.getTime() === now.getTime(),
      ),
    ).toBe(true);
    expect((await km.getKey(actor, 'a')).versions).toHaveLength(1);

    const dump = JSON.stringify(
      await store.query("SELECT * FROM crypto_audit WHERE tenant = 'audited'"),
      (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v),
    );
    expect(dump).not.toContain(secret);
    expect(dump).not.toContain(raw.toString('hex'));
    expect(dump).not.toContain(raw.toString('base64'));

    const page1 = await km.listAudit(actor, { pageSize: 3 });
    const page2 = await km.listAudit(actor, { pageSize: 3, pageToken: page1.nextPageToken });
    const page3 = await km.listAudit(actor, { pageSize: 3, pageToken: page2.nextPageToken });
    expect([...page1.events, ...page2.events, ...page3.events].map((e) => e.id)).toEqual(all.events.map((e) => e.id));
    expect(page3.nextPageToken).toBe('');
    expect((await km.listAudit(actor, { pageSize: 10, keyName: 'missing' })).events).toHaveLength(1);
    expect((await km.listAudit(mallory, { pageSize: 10, keyName: 'a' })).events).toEqual([]);
  });
});
