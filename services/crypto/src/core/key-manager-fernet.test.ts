import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { DomainError } from '@quanta/service-kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INVALID_CIPHERTEXT } from './errors.js';
import { decodeFernetToken } from './fernet.js';
import { createKeyManager } from './index.js';
import type { Actor, KeyManager } from './index.js';
import { testBackends } from '@quanta/store/testing';

const actor: Actor = { tenant: 'acme', subject: 'svc' };

/** Runs python3 with the real `cryptography` package; JSON in and out. */
function python(script: string, input: unknown): unknown {
  const out = execFileSync(
    'python3',
    [
      '-c',
      [
        'import sys, json, base64',
        'from cryptography.fernet import Fernet, MultiFernet, InvalidToken',
        'args = json.load(sys.stdin)',
        script,
      ].join('\n'),
    ],
    { input: JSON.stringify(input), encoding: 'utf8' },
  );
  return JSON.parse(out);
}

async function failure(p: Promise<unknown>): Promise<DomainError> {
  try {
    await p;
  } catch (err: unknown) {
    if (err instanceof DomainError) return err;
    throw err;
  }
  throw new Error('expected the call to fail');
}

describe.each(testBackends('test_crypto'))('fernet keys on $name', (backend) => {
  let km: KeyManager;
  let nowMs = Date.UTC(2026, 2, 1, 12, 0, 0);
  const nowS = () => Math.floor(nowMs / 1000);

  beforeAll(async () => {
    km = await createKeyManager({
      store: await backend.open(),
      masterKey: randomBytes(32),
      clock: () => new Date(nowMs),
    });
  });
  afterAll(() => backend.cleanup());

  it('imports a Python key, decrypts Python tokens, and makes tokens Python decrypts', async () => {
    const made = python(
      [
        'k = Fernet.generate_key()',
        'print(json.dumps({"key": k.decode(), "token": Fernet(k).encrypt_at_time(b"from python", args).decode()}))',
      ].join('\n'),
      nowS(),
    ) as { key: string; token: string };
    const info = await km.importKey(actor, 'py', 'fernet', made.key, { exportable: true });
    expect(info.type).toBe('fernet');
    expect((await km.exportKey(actor, 'py')).material.toString('latin1')).toBe(made.key);
    expect((await km.decrypt(actor, 'py', Buffer.from(made.token))).plaintext.toString()).toBe('from python');

    const ours = await km.encrypt(actor, 'py', Buffer.from('from quanta'));
    expect(ours.ciphertext.toString('latin1')).toMatch(/^gAAAAA[A-Za-z0-9_-]+=*$/);
    const back = python(
      [
        'f = Fernet(args["key"].encode())',
        'print(json.dumps([f.decrypt(args["token"].encode()).decode(), f.extract_timestamp(args["token"].encode())]))',
      ].join('\n'),
      { key: made.key, token: ours.ciphertext.toString('latin1') },
    );
    expect(back).toEqual(['from quanta', nowS()]);
    expect((await failure(km.encrypt(actor, 'py', Buffer.from('x'), Buffer.from('aad')))).message).toMatch(
      /take no associated data/,
    );
    expect((await failure(km.importKey(actor, 'bad', 'fernet', 'not-a-key'))).message).toMatch(/32 url-safe base64/);
  });

  it('decrypts across rotation like MultiFernet, and rewrap keeps the timestamp like MultiFernet.rotate', async () => {
    await km.createKey(actor, 'rot', 'fernet', { exportable: true });
    const old = await km.encrypt(actor, 'rot', Buffer.from('v1 token'));
    const issuedAt = nowS();
    await km.rotateKey(actor, 'rot');
    nowMs += 90_000;
    try {
      const out = await km.decrypt(actor, 'rot', old.ciphertext);
      expect(out).toEqual({ plaintext: Buffer.from('v1 token'), version: 1 });
      const rewrapped = await km.rewrap(actor, 'rot', old.ciphertext);
      expect(rewrapped.version).toBe(2);
      expect(decodeFernetToken(rewrapped.ciphertext).timestamp).toBe(issuedAt);
      // Python, holding only version 2, agrees on the plaintext and the kept timestamp.
      const v2 = (await km.exportKey(actor, 'rot', 2)).material.toString('latin1');
      expect(
        python(
          [
            'f = Fernet(args["k"].encode())',
            't = args["t"].encode()',
            'print(json.dumps([f.decrypt(t).decode(), f.extract_timestamp(t)]))',
          ].join('\n'),
          { k: v2, t: rewrapped.ciphertext.toString('latin1') },
        ),
      ).toEqual(['v1 token', issuedAt]);
      // TTL counts from the original timestamp: 90 s old.
      expect((await km.decrypt(actor, 'rot', rewrapped.ciphertext, undefined, { ttlSeconds: 90 })).version).toBe(2);
      expect(
        (await failure(km.decrypt(actor, 'rot', rewrapped.ciphertext, undefined, { ttlSeconds: 89 }))).message,
      ).toBe(INVALID_CIPHERTEXT);

      await km.updateKeyConfig(actor, 'rot', { minDecryptionVersion: 2 });
      const retired = await failure(km.decrypt(actor, 'rot', old.ciphertext));
      expect(retired.code).toBe('FAILED_PRECONDITION');
      expect(retired.message).toMatch(/version 1 of key "rot" is below its min_decryption_version 2/);
    } finally {
      nowMs -= 90_000;
    }
  });

  it("applies Python's ttl and clock-skew rules with the manager's clock", async () => {
    await km.createKey(actor, 'ttl', 'fernet');
    const { ciphertext } = await km.encrypt(actor, 'ttl', Buffer.from('t'));
    const start = nowMs;
    try {
      nowMs = start + 30_000;
      expect((await km.decrypt(actor, 'ttl', ciphertext, undefined, { ttlSeconds: 30 })).plaintext.toString()).toBe(
        't',
      );
      nowMs = start + 31_000;
      const expired = await failure(km.decrypt(actor, 'ttl', ciphertext, undefined, { ttlSeconds: 30 }));
      expect([expired.code, expired.message]).toEqual(['INVALID_ARGUMENT', INVALID_CIPHERTEXT]);
      expect((await km.decrypt(actor, 'ttl', ciphertext)).plaintext.toString()).toBe('t'); // no ttl: no age limit
      nowMs = start - 61_000; // the token now lies 61 s in the future
      expect((await failure(km.decrypt(actor, 'ttl', ciphertext, undefined, { ttlSeconds: 3600 }))).message).toBe(
        INVALID_CIPHERTEXT,
      );
      nowMs = start - 60_000;
      expect((await km.decrypt(actor, 'ttl', ciphertext, undefined, { ttlSeconds: 3600 })).plaintext.toString()).toBe(
        't',
      );
    } finally {
      nowMs = start;
    }
    expect((await failure(km.decrypt(actor, 'ttl', Buffer.from('gAAAAAbad'), undefined))).message).toBe(
      INVALID_CIPHERTEXT,
    );
  });

  it('wraps data keys as Fernet tokens', async () => {
    await km.createKey(actor, 'fkek', 'fernet');
    const dk = await km.generateDataKey(actor, 'fkek', { includePlaintext: true });
    expect((await km.unwrapDataKey(actor, 'fkek', dk.wrapped)).equals(dk.plaintext!)).toBe(true);
  });
});
