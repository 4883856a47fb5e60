import { createCipheriv, createDecipheriv, createHmac, createSecretKey, timingSafeEqual } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { randomSmall } from './random-pool.js';

/**
 * Fernet (https://github.com/fernet/spec), matching Python's `cryptography.fernet`:
 * token = base64url(0x80 ‖ timestamp u64 BE ‖ IV(16) ‖ AES-128-CBC/PKCS7 ciphertext ‖ HMAC-SHA256(32)),
 * key = base64url(signing key(16) ‖ encryption key(16)).
 */
export const FERNET_MAX_CLOCK_SKEW_SECONDS = 60;
const VERSION = 0x80;
const HEADER = 1 + 8 + 16;
const MAC = 32;
const BLOCK = 16;

/** Every way a token can be bad ends here, with no detail: the caller maps it to one message. */
export class InvalidFernetToken extends Error {
  constructor() {
    super('invalid fernet token');
    this.name = 'InvalidFernetToken';
  }
}

/**
 * Padded base64 in the url-safe (or, as Python's decoder also takes, the standard) alphabet; undefined
 * otherwise. Node's decoder skips characters outside the alphabet and stops at '=', so any such
 * character shows as a decoded length short of what the text length promises (cheaper than a regex).
 */
function decodeBase64Url(text: string): Buffer | undefined {
  if (text.length % 4 !== 0) return undefined;
  const pad = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const bytes = Buffer.from(text, 'base64url');
  return bytes.length === (text.length / 4) * 3 - pad ? bytes : undefined;
}

/** The 32 raw key bytes from url-safe base64 text (Fernet.generate_key() form). */
export function parseFernetKey(key: string | Buffer): Buffer {
  const text = (typeof key === 'string' ? key : key.toString('latin1')).trim();
  const raw = decodeBase64Url(text);
  if (!raw || raw.length !== 32)
    throw new Error('a fernet key must be 32 url-safe base64-encoded bytes (as Fernet.generate_key() makes)');
  return raw;
}

export function encodeFernetKey(raw: Buffer): string {
  if (raw.length !== 32) throw new Error('a fernet key is 32 bytes');
  return toBase64UrlPadded(raw);
}

/** Python's urlsafe_b64encode: url-safe alphabet, with padding. */
export function toBase64UrlPadded(bytes: Buffer): string {
  return bytes.toString('base64url') + '='.repeat((3 - (bytes.length % 3)) % 3);
}

/** One key's prepared halves; KeyObjects are made once so every token does not re-import them. */
export class FernetKey {
  // Raw bytes for HMAC: createHmac does less per call with a Buffer key than with a KeyObject
  // (docs/decisions/crypto-small-token-costs.md).
  readonly #signing: Buffer;
  readonly #encryption: KeyObject;

  constructor(raw: Buffer) {
    if (raw.length !== 32) throw new Error('a fernet key is 32 bytes');
    this.#signing = Buffer.from(raw.subarray(0, 16));
    this.#encryption = createSecretKey(raw.subarray(16, 32));
  }

  /** `timestamp` in whole seconds since the epoch; `iv` only for the spec's fixed vectors. */
  encrypt(plaintext: Buffer, timestamp: number, iv: Buffer = randomSmall(16)): string {
    if (iv.length !== 16) throw new Error('a fernet IV is 16 bytes');
    const cipher = createCipheriv('aes-128-cbc', this.#encryption, iv);
    const head = cipher.update(plaintext);
    const tail = cipher.final();
    // PKCS7 always adds 1..16 bytes: the body is the next multiple of 16. Written in place, no concat.
    const bodyLength = head.length + tail.length;
    const token = Buffer.allocUnsafe(HEADER + bodyLength + MAC);
    token[0] = VERSION;
    token.writeBigUInt64BE(BigInt(timestamp), 1);
    iv.copy(token, 9);
    head.copy(token, HEADER);
    tail.copy(token, HEADER + head.length);
    createHmac('sha256', this.#signing)
      .update(token.subarray(0, HEADER + bodyLength))
      .digest()
      .copy(token, HEADER + bodyLength);
    return toBase64UrlPadded(token);
  }

  /** Verifies the MAC (constant time) and decrypts; the timestamp rules are checked by the caller first. */
  decryptData(data: Buffer): Buffer {
    const signed = data.subarray(0, data.length - MAC);
    const expected = createHmac('sha256', this.#signing).update(signed).digest();
    if (!timingSafeEqual(expected, data.subarray(data.length - MAC))) throw new InvalidFernetToken();
    const decipher = createDecipheriv('aes-128-cbc', this.#encryption, data.subarray(9, HEADER));
    try {
      return Buffer.concat([decipher.update(data.subarray(HEADER, data.length - MAC)), decipher.final()]);
    } catch {
      throw new InvalidFernetToken();
    }
  }
}

export interface DecodedToken {
  timestamp: number;
  data: Buffer;
}

/** Parses the envelope (base64, version byte, sizes) without any key. */
export function decodeFernetToken(token: string | Buffer): DecodedToken {
  const text = typeof token === 'string' ? token : token.toString('latin1');
  const data = decodeBase64Url(text);
  // Shortest valid token: header, one cipher block (PKCS7 always pads), MAC.
  if (
    !data ||
    data.length < HEADER + BLOCK + MAC ||
    data[0] !== VERSION ||
    (data.length - HEADER - MAC) % BLOCK !== 0
  ) {
    throw new InvalidFernetToken();
  }
  const timestamp = data.readBigUInt64BE(1);
  if (timestamp > BigInt(Number.MAX_SAFE_INTEGER)) throw new InvalidFernetToken();
  return { timestamp: Number(timestamp), data };
}

/**
 * Python's rules: only when a ttl is given, the token is expired when timestamp + ttl < now, and
 * invalid when its timestamp is more than 60 s ahead of now (clock skew).
 */
export function checkFernetTime(timestamp: number, nowSeconds: number, ttlSeconds: number | undefined): void {
  if (ttlSeconds === undefined) return;
  if (timestamp + ttlSeconds < nowSeconds) throw new InvalidFernetToken();
  if (nowSeconds + FERNET_MAX_CLOCK_SKEW_SECONDS < timestamp) throw new InvalidFernetToken();
}

/**
 * MultiFernet.decrypt: tries each key in order; returns the index of the one that worked.
 * Time rules apply before any key is tried, as in Python.
 */
export function fernetDecrypt(
  keys: readonly FernetKey[],
  token: string | Buffer,
  nowSeconds: number,
  ttlSeconds?: number,
): { plaintext: Buffer; keyIndex: number; timestamp: number } {
  const { timestamp, data } = decodeFernetToken(token);
  checkFernetTime(timestamp, nowSeconds, ttlSeconds);
  for (let i = 0; i < keys.length; i++) {
    try {
      return { plaintext: keys[i]!.decryptData(data), keyIndex: i, timestamp };
    } catch (err: unknown) {
      if (!(err instanceof InvalidFernetToken)) throw err;
    }
  }
  throw new InvalidFernetToken();
}
