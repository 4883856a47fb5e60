import {
  createHmac,
  createPrivateKey,
  createPublicKey,
  randomBytes,
  sign as edSign,
  timingSafeEqual,
  verify as edVerify,
} from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { invalidArgument } from '@quanta/service-kit';
import { encodeFernetKey, parseFernetKey } from './fernet.js';
import type { KeyType } from './types.js';

// PKCS#8 DER header for a raw Ed25519 seed (RFC 8410): node:crypto imports keys only in DER/PEM/JWK.
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** Every type uses 32 random bytes: AES-256, ChaCha20, Fernet (signing ‖ encryption), HMAC, Ed25519 seed. */
export function generateMaterial(): Buffer {
  return randomBytes(32);
}

/** Checks and normalises imported material; the message says what the type expects. */
export function importMaterial(type: KeyType, material: Buffer | string): Buffer {
  if (type === 'fernet') {
    try {
      return parseFernetKey(material);
    } catch (err: unknown) {
      throw invalidArgument(`fernet key material: ${(err as Error).message}`);
    }
  }
  if (typeof material === 'string') throw invalidArgument(`${type} key material must be raw bytes, not text`);
  if (type === 'hmac-sha256') {
    if (material.length < 16 || material.length > 64)
      throw invalidArgument(`hmac-sha256 key material must be 16 to 64 bytes; got ${material.length}`);
    return Buffer.from(material);
  }
  if (material.length !== 32) {
    const what = type === 'ed25519' ? 'a 32-byte Ed25519 seed' : '32 bytes';
    throw invalidArgument(`${type} key material must be ${what}; got ${material.length} bytes`);
  }
  return Buffer.from(material);
}

/** What exportKey hands out: the same form importKey takes. */
export function exportMaterial(type: KeyType, raw: Buffer): Buffer {
  return type === 'fernet' ? Buffer.from(encodeFernetKey(raw), 'latin1') : Buffer.from(raw);
}

export function ed25519PrivateKey(seed: Buffer): KeyObject {
  return createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

/** The raw 32-byte public key (the last 32 bytes of its SPKI DER). */
export function ed25519PublicKey(seed: Buffer): Buffer {
  const spki = createPublicKey(ed25519PrivateKey(seed)).export({ format: 'der', type: 'spki' });
  return spki.subarray(spki.length - 32);
}

export function signWith(type: KeyType, raw: Buffer, data: Buffer): Buffer {
  if (type === 'hmac-sha256') return createHmac('sha256', raw).update(data).digest();
  if (type === 'ed25519') return edSign(null, data, ed25519PrivateKey(raw));
  throw new Error(`sign with ${type}`);
}

export function verifyWith(type: KeyType, raw: Buffer, data: Buffer, signature: Buffer): boolean {
  if (type === 'hmac-sha256') {
    const expected = createHmac('sha256', raw).update(data).digest();
    return signature.length === expected.length && timingSafeEqual(expected, signature);
  }
  if (type === 'ed25519') return signature.length === 64 && edVerify(null, data, ed25519PrivateKey(raw), signature);
  throw new Error(`verify with ${type}`);
}
