import { createCipheriv, createDecipheriv } from 'node:crypto';
import type { CipherGCMTypes, CipherChaCha20Poly1305Types, KeyObject } from 'node:crypto';
import { invalidCiphertext } from './errors.js';
import { randomSmall } from './random-pool.js';

/**
 * Binary AEAD ciphertext, Tink-style: the key version travels in a 5-byte prefix.
 *   0x01 | version u32 BE | nonce(12) | ciphertext | tag(16)
 * The prefix is authenticated too (it leads the associated data), so a version cannot be rewritten.
 */
export const AEAD_FORMAT = 0x01;
export const AEAD_PREFIX = 5;
export const NONCE = 12;
export const TAG = 16;

export type AeadAlgorithm = 'aes256-gcm' | 'chacha20-poly1305';
type NodeCipher = CipherGCMTypes | CipherChaCha20Poly1305Types;
export const NODE_CIPHER: Record<AeadAlgorithm, NodeCipher> = {
  'aes256-gcm': 'aes-256-gcm',
  'chacha20-poly1305': 'chacha20-poly1305',
};

export function aeadPrefix(format: number, version: number): Buffer {
  const prefix = Buffer.allocUnsafe(AEAD_PREFIX);
  prefix[0] = format;
  prefix.writeUInt32BE(version, 1);
  return prefix;
}

/** One AEAD call; used for key material under the master key, ciphertexts and stream segments. */
export function seal(
  algorithm: AeadAlgorithm,
  key: KeyObject | Buffer,
  nonce: Buffer,
  plaintext: Buffer,
  aad: Buffer,
): { ciphertext: Buffer; tag: Buffer } {
  const cipher = createCipheriv(NODE_CIPHER[algorithm] as 'aes-256-gcm', key, nonce, { authTagLength: TAG });
  cipher.setAAD(aad, { plaintextLength: plaintext.length });
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { ciphertext, tag: cipher.getAuthTag() };
}

/** Throws `invalidCiphertext()` for any authentication failure. */
export function open(
  algorithm: AeadAlgorithm,
  key: KeyObject | Buffer,
  nonce: Buffer,
  ciphertext: Buffer,
  tag: Buffer,
  aad: Buffer,
): Buffer {
  const decipher = createDecipheriv(NODE_CIPHER[algorithm] as 'aes-256-gcm', key, nonce, { authTagLength: TAG });
  decipher.setAuthTag(tag);
  decipher.setAAD(aad, { plaintextLength: ciphertext.length });
  try {
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch {
    throw invalidCiphertext();
  }
}

export function encryptAead(
  algorithm: AeadAlgorithm,
  key: KeyObject | Buffer,
  version: number,
  plaintext: Buffer,
  aad: Buffer = Buffer.alloc(0),
): Buffer {
  const prefix = aeadPrefix(AEAD_FORMAT, version);
  const nonce = randomSmall(NONCE);
  const { ciphertext, tag } = seal(algorithm, key, nonce, plaintext, Buffer.concat([prefix, aad]));
  return Buffer.concat([prefix, nonce, ciphertext, tag]);
}

/** The version a ciphertext names, or `invalidCiphertext()` when it is not one of ours. */
export function aeadVersion(ciphertext: Buffer): number {
  if (ciphertext.length < AEAD_PREFIX + NONCE + TAG || ciphertext[0] !== AEAD_FORMAT) throw invalidCiphertext();
  const version = ciphertext.readUInt32BE(1);
  if (version < 1) throw invalidCiphertext();
  return version;
}

export function decryptAead(
  algorithm: AeadAlgorithm,
  key: KeyObject | Buffer,
  ciphertext: Buffer,
  aad: Buffer = Buffer.alloc(0),
): Buffer {
  aeadVersion(ciphertext);
  const prefix = ciphertext.subarray(0, AEAD_PREFIX);
  const nonce = ciphertext.subarray(AEAD_PREFIX, AEAD_PREFIX + NONCE);
  const body = ciphertext.subarray(AEAD_PREFIX + NONCE, ciphertext.length - TAG);
  const tag = ciphertext.subarray(ciphertext.length - TAG);
  return open(algorithm, key, nonce, body, tag, Buffer.concat([prefix, aad]));
}
