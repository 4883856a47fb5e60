import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { crypto as cpb, unaryCaller } from '@quanta/contracts';
import type { Logger } from 'pino';

// Model files kept on disk across restarts, sealed: every byte Quanta keeps at rest is encrypted.
// One file per digest, `<dir>/<sha256>`:
//   "QIC1" | u16 key-name length | key name | u32 wrapped-key length | wrapped data key
//   | 12-byte IV | 16-byte GCM tag | ciphertext
// The data key comes from the crypto service (GenerateDataKey under `keyName`, unwrapped through
// UnwrapDataKey when read) and is bound, as the ciphertext is, to the file's digest: a file renamed
// to another digest does not open. A file that does not open or whose plaintext hashes differently
// is removed and counts as a miss.

const MAGIC = Buffer.from('QIC1', 'ascii');
const IV_BYTES = 12;
const TAG_BYTES = 16;
const SHA256_HEX = /^[0-9a-f]{64}$/;

export interface DiskCache {
  /** The plaintext of the file with this digest, or undefined (absent, damaged, or crypto unreachable). */
  get(sha256: string): Promise<Uint8Array | undefined>;
  /** Seals and keeps a verified file; never rejects (a file not kept is only a later download). */
  put(sha256: string, bytes: Uint8Array): Promise<void>;
}

export interface SealedDiskCacheOptions {
  /** Where the sealed files are, e.g. `$QUANTA_HOME/inference/cache`. */
  readonly dir: string;
  /** A CryptoService client whose calls carry a token with `keys:use` (and `keys:admin` to create the key). */
  readonly crypto: cpb.CryptoServiceClient;
  /** The AES-256-GCM key that wraps the data keys; created when missing. Default `inference-cache`. */
  readonly keyName?: string;
  /** Bytes kept on disk; the least recently used files go first. Default 4 GiB. */
  readonly maxBytes?: number;
  readonly logger: Logger;
}

const associatedData = (sha256: string): Buffer => Buffer.from(`quanta.inference.v1/model-cache/${sha256}`, 'utf8');
const codeOf = (error: unknown): number | undefined => (error as Partial<grpc.ServiceError> | undefined)?.code;
const reasonOf = (error: unknown): string =>
  (error as Partial<grpc.ServiceError> | undefined)?.details ??
  (error instanceof Error ? error.message : String(error));

export function createSealedDiskCache(options: SealedDiskCacheOptions): DiskCache {
  const keyName = options.keyName ?? 'inference-cache';
  const maxBytes = options.maxBytes ?? 4 * 1024 * 1024 * 1024;
  const call = unaryCaller(options.crypto, cpb.CryptoServiceService, { deadlineMs: 10_000 });
  const { logger } = options;
  let ready: Promise<void> | undefined;

  /** The folder (0700) and the wrapping key, once. */
  function prepare(): Promise<void> {
    ready ??= (async () => {
      await mkdir(options.dir, { recursive: true, mode: 0o700 });
      // Files half-written when an earlier process died.
      for (const name of await readdir(options.dir))
        if (name.endsWith('.tmp')) await rm(join(options.dir, name), { force: true });
      try {
        await call('getKey', { name: keyName });
      } catch (error: unknown) {
        if (codeOf(error) !== grpc.status.NOT_FOUND) throw error;
        try {
          await call('createKey', { name: keyName, type: cpb.KeyType.KEY_TYPE_AES256_GCM, config: undefined });
        } catch (createError: unknown) {
          // Another replica on the same crypto service made it in between.
          if (codeOf(createError) !== grpc.status.ALREADY_EXISTS) throw createError;
        }
      }
    })().catch((error: unknown) => {
      ready = undefined; // try again next time
      throw error;
    });
    return ready;
  }

  async function seal(sha256: string, bytes: Uint8Array): Promise<Buffer> {
    const key = await call('generateDataKey', {
      keyName,
      bits: 256,
      wrappedOnly: false,
      associatedData: associatedData(sha256),
    });
    try {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key.plaintext, iv);
      cipher.setAAD(associatedData(sha256));
      const ciphertext = Buffer.concat([cipher.update(bytes), cipher.final()]);
      const name = Buffer.from(keyName, 'utf8');
      const head = Buffer.alloc(4 + 2 + name.length + 4);
      MAGIC.copy(head, 0);
      head.writeUInt16BE(name.length, 4);
      name.copy(head, 6);
      head.writeUInt32BE(key.wrappedKey.length, 6 + name.length);
      return Buffer.concat([head, key.wrappedKey, iv, cipher.getAuthTag(), ciphertext]);
    } finally {
      key.plaintext.fill(0);
    }
  }

  async function open(sha256: string, file: Buffer): Promise<Buffer> {
    if (file.length < 10 || !file.subarray(0, 4).equals(MAGIC)) throw new Error('not a sealed cache file');
    const nameLength = file.readUInt16BE(4);
    const name = file.subarray(6, 6 + nameLength).toString('utf8');
    let at = 6 + nameLength;
    const wrappedLength = file.readUInt32BE(at);
    at += 4;
    const wrapped = file.subarray(at, at + wrappedLength);
    at += wrappedLength;
    const iv = file.subarray(at, at + IV_BYTES);
    const tag = file.subarray(at + IV_BYTES, at + IV_BYTES + TAG_BYTES);
    const ciphertext = file.subarray(at + IV_BYTES + TAG_BYTES);
    if (tag.length !== TAG_BYTES) throw new Error('the file is truncated');
    const key = await call('unwrapDataKey', {
      keyName: name,
      wrappedKey: wrapped,
      associatedData: associatedData(sha256),
    });
    try {
      const decipher = createDecipheriv('aes-256-gcm', key.plaintext, iv);
      decipher.setAAD(associatedData(sha256));
      decipher.setAuthTag(tag);
      const plain = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
      const digest = createHash('sha256').update(plain).digest('hex');
      if (digest !== sha256) throw new Error(`the plaintext hashes to ${digest}`);
      return plain;
    } finally {
      key.plaintext.fill(0);
    }
  }

  /** Removes the least recently used files until the folder holds at most maxBytes. */
  async function evict(): Promise<void> {
    const names = (await readdir(options.dir)).filter((n) => SHA256_HEX.test(n));
    const files = (
      await Promise.all(names.map(async (n) => ({ n, s: await stat(join(options.dir, n)).catch(() => undefined) })))
    )
      .filter((f): f is { n: string; s: NonNullable<typeof f.s> } => f.s !== undefined)
      .sort((a, b) => a.s.mtimeMs - b.s.mtimeMs);
    let total = files.reduce((sum, f) => sum + f.s.size, 0);
    for (const f of files) {
      if (total <= maxBytes) break;
      await rm(join(options.dir, f.n), { force: true });
      total -= f.s.size;
    }
  }

  return {
    async get(sha256) {
      if (!SHA256_HEX.test(sha256)) return undefined;
      const path = join(options.dir, sha256);
      let file: Buffer;
      try {
        file = await readFile(path);
      } catch {
        return undefined;
      }
      try {
        const plain = await open(sha256, file);
        const now = new Date();
        await utimes(path, now, now).catch(() => undefined); // most recently used
        return plain;
      } catch (error: unknown) {
        // Crypto unreachable: keep the file for later. Anything else: it cannot be trusted.
        if (codeOf(error) === grpc.status.UNAVAILABLE || codeOf(error) === grpc.status.DEADLINE_EXCEEDED) {
          logger.warn(
            { sha256, reason: reasonOf(error) },
            'cached model file not opened: crypto unavailable; downloading instead',
          );
        } else {
          logger.warn({ sha256, reason: reasonOf(error) }, 'cached model file does not open; removed');
          await rm(path, { force: true });
        }
        return undefined;
      }
    },
    async put(sha256, bytes) {
      if (!SHA256_HEX.test(sha256) || bytes.byteLength > maxBytes) return;
      const tmp = join(options.dir, `.${sha256}.${randomBytes(6).toString('hex')}.tmp`);
      try {
        await prepare();
        await writeFile(tmp, await seal(sha256, bytes), { mode: 0o600 });
        await rename(tmp, join(options.dir, sha256));
        await evict();
      } catch (error: unknown) {
        await rm(tmp, { force: true }).catch(() => undefined);
        logger.warn({ sha256, reason: reasonOf(error) }, 'model file not kept in the disk cache');
      }
    },
  };
}
