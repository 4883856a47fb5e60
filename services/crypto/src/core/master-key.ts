import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NONCE, open, seal, TAG } from './aead.js';
import type { MasterKeyOptions } from './types.js';

const WRAP_FORMAT = 0x01;

function decodeKey(text: string, where: string): Buffer {
  const trimmed = text.trim();
  const bytes = /^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)
    ? Buffer.from(trimmed.replace(/-/g, '+').replace(/_/g, '/'), 'base64')
    : Buffer.alloc(0);
  if (bytes.length !== 32)
    throw new Error(
      `${where} must hold 32 bytes in base64 (e.g. from \`openssl rand -base64 32\`); ` +
        `got ${bytes.length === 0 ? 'no valid base64' : `${bytes.length} bytes`}`,
    );
  return bytes;
}

/**
 * The master key that wraps every key's material: QUANTA_MASTER_KEY (base64 of 32 bytes), else the
 * file QUANTA_MASTER_KEY_FILE names (base64 text, or 32 raw bytes), else — outside production — a
 * development key made once in $QUANTA_HOME/master.key (mode 0600), with a warning.
 */
export function loadMasterKey(options: MasterKeyOptions): Buffer {
  const env = options.env ?? process.env;
  const inline = env.QUANTA_MASTER_KEY;
  if (inline !== undefined && inline.trim() !== '') return decodeKey(inline, 'QUANTA_MASTER_KEY');
  const file = env.QUANTA_MASTER_KEY_FILE;
  if (file !== undefined && file.trim() !== '') {
    const content = readFileSync(file);
    return content.length === 32
      ? Buffer.from(content)
      : decodeKey(content.toString('latin1'), `QUANTA_MASTER_KEY_FILE (${file})`);
  }
  if (env.NODE_ENV === 'production') {
    throw new Error(
      'no master key: set QUANTA_MASTER_KEY (base64 of 32 bytes) or QUANTA_MASTER_KEY_FILE; a development key ' +
        'is never generated in production',
    );
  }
  const path = join(options.home, 'master.key');
  if (existsSync(path)) return decodeKey(readFileSync(path, 'latin1'), path);
  mkdirSync(options.home, { recursive: true, mode: 0o700 });
  const key = randomBytes(32);
  // 'wx' fails if another process made the file meanwhile: then that one's key is the key.
  try {
    writeFileSync(path, key.toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
  } catch (err: unknown) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return decodeKey(readFileSync(path, 'latin1'), path);
    throw err;
  }
  chmodSync(path, 0o600);
  options.logger?.warn(
    `generated a development master key in ${path}; set QUANTA_MASTER_KEY or QUANTA_MASTER_KEY_FILE outside ` +
      `development`,
  );
  return key;
}

/**
 * Binds wrapped material to its row, so a wrapped key moved to another tenant, name, version or type fails to unwrap.
 */
function wrapAad(tenant: string, name: string, version: number, type: string): Buffer {
  return Buffer.from(JSON.stringify(['quanta.crypto.key-material.v1', tenant, name, version, type]), 'utf8');
}

/** 0x01 | nonce(12) | AES-256-GCM(material) | tag(16) */
export function wrapMaterial(
  masterKey: Buffer,
  material: Buffer,
  tenant: string,
  name: string,
  version: number,
  type: string,
): Buffer {
  const nonce = randomBytes(NONCE);
  const { ciphertext, tag } = seal('aes256-gcm', masterKey, nonce, material, wrapAad(tenant, name, version, type));
  return Buffer.concat([Buffer.from([WRAP_FORMAT]), nonce, ciphertext, tag]);
}

export function unwrapMaterial(
  masterKey: Buffer,
  wrapped: Buffer,
  tenant: string,
  name: string,
  version: number,
  type: string,
): Buffer {
  if (wrapped.length < 1 + NONCE + TAG || wrapped[0] !== WRAP_FORMAT)
    throw new Error(`stored material of key "${name}" v${version} is corrupt`);
  try {
    return open(
      'aes256-gcm',
      masterKey,
      wrapped.subarray(1, 1 + NONCE),
      wrapped.subarray(1 + NONCE, wrapped.length - TAG),
      wrapped.subarray(wrapped.length - TAG),
      wrapAad(tenant, name, version, type),
    );
  } catch {
    // Not the caller's fault: wrong master key or a row moved or altered in the database.
    throw new Error(
      `stored material of key "${name}" v${version} does not unwrap with this master key (wrong master key, or ` +
        `the row was altered)`,
    );
  }
}
