import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  encodeFernetKey,
  FernetKey,
  fernetDecrypt,
  InvalidFernetToken,
  parseFernetKey,
  toBase64UrlPadded,
} from './fernet.js';

// The published Fernet spec vectors (fernet/spec), copied from shared/testdata/fernet so that the
// tests do not depend on where the checkout sits.
const VECTORS = join(import.meta.dirname, '../../test/fixtures/fernet');
interface Vector {
  token: string;
  now: string;
  secret: string;
  src?: string;
  iv?: number[];
  ttl_sec?: number;
  desc?: string;
}
const load = (file: string) => JSON.parse(readFileSync(join(VECTORS, file), 'utf8')) as Vector[];
const seconds = (iso: string) => Math.floor(Date.parse(iso) / 1000);

describe('fernet spec vectors', () => {
  it.each(load('generate.json'))('generates the exact token ($src)', (v) => {
    const key = new FernetKey(parseFernetKey(v.secret));
    expect(key.encrypt(Buffer.from(v.src!), seconds(v.now), Buffer.from(v.iv!))).toBe(v.token);
  });

  it.each(load('verify.json'))('verifies and decrypts ($src)', (v) => {
    const key = new FernetKey(parseFernetKey(v.secret));
    const out = fernetDecrypt([key], v.token, seconds(v.now), v.ttl_sec);
    expect(out.plaintext.toString()).toBe(v.src);
    expect(out.keyIndex).toBe(0);
  });

  it.each(load('invalid.json'))('rejects: $desc', (v) => {
    const key = new FernetKey(parseFernetKey(v.secret));
    expect(() => fernetDecrypt([key], v.token, seconds(v.now), v.ttl_sec)).toThrow(InvalidFernetToken);
  });

  it('has the ten vectors the README lists', () => {
    expect([load('generate.json').length, load('verify.json').length, load('invalid.json').length]).toEqual([1, 1, 8]);
  });
});

describe('fernet rules', () => {
  const raw = Buffer.alloc(32, 7);
  const key = new FernetKey(raw);

  it('round-trips every length around the block size', () => {
    for (let n = 0; n <= 40; n++) {
      const msg = Buffer.alloc(n, n);
      expect(fernetDecrypt([key], key.encrypt(msg, 1000), 1000).plaintext.equals(msg)).toBe(true);
    }
  });

  it('applies ttl and the 60 s skew only when a ttl is given, like Python', () => {
    const token = key.encrypt(Buffer.from('x'), 1000);
    expect(fernetDecrypt([key], token, 1010, 10).plaintext.toString()).toBe('x'); // ts + ttl == now: still valid
    expect(() => fernetDecrypt([key], token, 1011, 10)).toThrow(InvalidFernetToken);
    expect(fernetDecrypt([key], token, 940, 10).plaintext.toString()).toBe('x'); // 60 s ahead: allowed
    expect(() => fernetDecrypt([key], token, 939, 10)).toThrow(InvalidFernetToken); // 61 s ahead
    expect(fernetDecrypt([key], token, 100).plaintext.toString()).toBe('x'); // no ttl: no time rules
  });

  it('tries every key like MultiFernet and says which one worked', () => {
    const other = new FernetKey(Buffer.alloc(32, 9));
    const token = key.encrypt(Buffer.from('m'), 5);
    expect(fernetDecrypt([other, key], token, 5).keyIndex).toBe(1);
    expect(() => fernetDecrypt([other], token, 5)).toThrow(InvalidFernetToken);
  });

  it('rejects unpadded or malformed base64 and flipped bits', () => {
    const token = key.encrypt(Buffer.from('hello world'), 5);
    expect(() => fernetDecrypt([key], token.replace(/=+$/, ''), 5)).toThrow(InvalidFernetToken);
    expect(() => fernetDecrypt([key], ` ${token.slice(1)}`, 5)).toThrow(InvalidFernetToken);
    expect(() => fernetDecrypt([key], `${token.slice(0, 8)}=${token.slice(9)}`, 5)).toThrow(InvalidFernetToken);
    expect(() => fernetDecrypt([key], `${token}AAAA`, 5)).toThrow(InvalidFernetToken);
    // Python's urlsafe_b64decode also takes the standard alphabet; so do we.
    expect(fernetDecrypt([key], token.replace(/-/g, '+').replace(/_/g, '/'), 5).plaintext.toString()).toBe(
      'hello world',
    );
    const bytes = Buffer.from(token, 'base64url');
    for (const i of [0, 1, 9, 30, bytes.length - 1]) {
      const t = Buffer.from(bytes);
      t[i]! ^= 1;
      expect(() => fernetDecrypt([key], toBase64UrlPadded(t), 5)).toThrow(InvalidFernetToken);
    }
  });

  it('parses and prints keys in the url-safe base64 form', () => {
    const text = encodeFernetKey(raw);
    expect(text).toMatch(/^[A-Za-z0-9_-]{43}=$/);
    expect(parseFernetKey(text).equals(raw)).toBe(true);
    expect(() => parseFernetKey('c2hvcnQ=')).toThrow(/32 url-safe base64/);
    expect(() => parseFernetKey(text.slice(0, -1))).toThrow(/32 url-safe base64/);
  });
});
