import { createCipheriv, createDecipheriv, createHash, createSecretKey, hkdfSync, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import { NODE_CIPHER, TAG } from './aead.js';
import type { AeadAlgorithm } from './aead.js';
import { invalidCiphertext } from './errors.js';

/**
 * Streaming AEAD after Tink's AES-GCM-HKDF streaming:
 *   header  = 0x02 | key version u32 BE | segment size u32 BE | salt(32) | nonce prefix(7)      (48 bytes)
 *   segment = AEAD(segment key, nonce prefix ‖ segment index u32 BE ‖ last-flag byte,
 *                  plaintext ≤ segment size) ‖ tag(16)
 *   segment key = HKDF-SHA256(key, salt, "quanta.stream.v1" ‖ header[0..9) ‖ SHA-256(aad))
 * Every segment but the last holds exactly `segment size` bytes; the last may be empty.
 * The index in the nonce catches reordering, the last flag catches truncation, the per-stream salt
 * (fresh key per stream) catches segments swapped between streams, and the header is bound into the key.
 */
export const STREAM_FORMAT = 0x02;
export const STREAM_HEADER = 1 + 4 + 4 + 32 + 7;
export const DEFAULT_SEGMENT_SIZE = 64 * 1024;
const MIN_SEGMENT = 1024;
const MAX_SEGMENT = 8 * 1024 * 1024;
const INFO_LABEL = Buffer.from('quanta.stream.v1', 'latin1');

function deriveKey(key: Buffer, header: Buffer, aad: Buffer): KeyObject {
  const info = Buffer.concat([INFO_LABEL, header.subarray(0, 9), createHash('sha256').update(aad).digest()]);
  return createSecretKey(Buffer.from(hkdfSync('sha256', key, header.subarray(9, 41), info, 32)));
}

function nonce(prefix: Buffer, index: number, last: boolean): Buffer {
  const n = Buffer.allocUnsafe(12);
  prefix.copy(n, 0);
  n.writeUInt32BE(index, 7);
  n[11] = last ? 1 : 0;
  return n;
}

/** Holds incoming chunks without copying until a whole segment can be taken. */
class ChunkQueue {
  #chunks: Buffer[] = [];
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.length += chunk.length;
  }

  /** The next n bytes as the pieces they arrived in (no copy). */
  takeParts(n: number): Buffer[] {
    const parts: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const chunk = this.#chunks[0]!;
      if (chunk.length <= left) {
        parts.push(chunk);
        this.#chunks.shift();
        left -= chunk.length;
      } else {
        parts.push(chunk.subarray(0, left));
        this.#chunks[0] = chunk.subarray(left);
        left = 0;
      }
    }
    this.length -= n;
    return parts;
  }

  take(n: number): Buffer {
    const first = this.#chunks[0];
    if (first && first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      this.length -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.#chunks[0]!;
      const used = Math.min(chunk.length, n - filled);
      chunk.copy(out, filled, 0, used);
      filled += used;
      if (used === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(used);
    }
    this.length -= n;
    return out;
  }
}

const MAX_SEGMENTS = 0xffffffff;

export function createEncryptStream(
  algorithm: AeadAlgorithm,
  key: Buffer,
  version: number,
  aad: Buffer,
  segmentSize = DEFAULT_SEGMENT_SIZE,
): Transform {
  if (segmentSize < MIN_SEGMENT || segmentSize > MAX_SEGMENT)
    throw new Error(`segment size must be ${MIN_SEGMENT}..${MAX_SEGMENT}`);
  const header = Buffer.allocUnsafe(STREAM_HEADER);
  header[0] = STREAM_FORMAT;
  header.writeUInt32BE(version, 1);
  header.writeUInt32BE(segmentSize, 5);
  randomBytes(39).copy(header, 9);
  const prefix = header.subarray(41, 48);
  const segmentKey = deriveKey(key, header, aad);
  const cipherName = NODE_CIPHER[algorithm] as 'aes-256-gcm';
  const queue = new ChunkQueue();
  let index = 0;
  let headerSent = false;

  const emit = (stream: Transform, plaintext: readonly Buffer[], last: boolean): void => {
    if (!headerSent) {
      stream.push(header);
      headerSent = true;
    }
    if (index >= MAX_SEGMENTS) throw new Error('stream too long for one header');
    const cipher = createCipheriv(cipherName, segmentKey, nonce(prefix, index++, last), { authTagLength: TAG });
    // Fed piece by piece as the chunks arrived: no copy to assemble a segment.
    for (const part of plaintext) {
      const body = cipher.update(part);
      if (body.length > 0) stream.push(body);
    }
    cipher.final();
    stream.push(cipher.getAuthTag());
  };

  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      try {
        queue.push(chunk);
        // Strictly more than a segment: a full segment is sealed only when it is known not to be the last.
        while (queue.length > segmentSize) emit(this, queue.takeParts(segmentSize), false);
        callback();
      } catch (err: unknown) {
        callback(err as Error);
      }
    },
    flush(callback: TransformCallback) {
      try {
        emit(this, queue.takeParts(queue.length), true);
        callback();
      } catch (err: unknown) {
        callback(err as Error);
      }
    },
  });
}

export interface DecryptStreamOptions {
  algorithm: AeadAlgorithm;
  aad: Buffer;
  /** Returns the material of the version the header names, or throws (a DomainError) when it cannot be used. */
  keyFor(version: number): Buffer;
  /** Awaited before the stream ends, e.g. to write the audit event. */
  onFinish?(version: number): Promise<void>;
  onError?(err: unknown): Promise<void>;
}

export function createDecryptStream(options: DecryptStreamOptions): Transform {
  const queue = new ChunkQueue();
  const cipherName = NODE_CIPHER[options.algorithm] as 'aes-256-gcm';
  let segmentKey: KeyObject | undefined;
  let prefix: Buffer = Buffer.alloc(7);
  let segmentSize = 0;
  let version = 0;
  let index = 0;

  const readHeader = (): boolean => {
    if (segmentKey) return true;
    if (queue.length < STREAM_HEADER) return false;
    const header = queue.take(STREAM_HEADER);
    const size = header.readUInt32BE(5);
    if (header[0] !== STREAM_FORMAT || size < MIN_SEGMENT || size > MAX_SEGMENT) throw invalidCiphertext();
    version = header.readUInt32BE(1);
    const key = options.keyFor(version);
    segmentSize = size;
    prefix = Buffer.from(header.subarray(41, 48));
    segmentKey = deriveKey(key, header, options.aad);
    return true;
  };

  /** Opens the next `sealedLength` bytes (ciphertext ‖ tag) as one segment. */
  const open = (stream: Transform, sealedLength: number, last: boolean): void => {
    if (index >= MAX_SEGMENTS) throw invalidCiphertext();
    const decipher = createDecipheriv(cipherName, segmentKey!, nonce(prefix, index++, last), { authTagLength: TAG });
    const plain: Buffer[] = [];
    for (const part of queue.takeParts(sealedLength - TAG)) plain.push(decipher.update(part));
    decipher.setAuthTag(queue.take(TAG));
    try {
      decipher.final();
    } catch {
      throw invalidCiphertext();
    }
    // Only authenticated segments leave the stream.
    for (const p of plain) if (p.length > 0) stream.push(p);
  };

  let failed = false;
  const fail = (err: unknown, callback: TransformCallback): void => {
    if (failed) return;
    failed = true;
    (options.onError?.(err) ?? Promise.resolve()).then(
      () => callback(err as Error),
      () => callback(err as Error),
    );
  };

  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      try {
        queue.push(chunk);
        if (readHeader()) {
          while (queue.length > segmentSize + TAG) open(this, segmentSize + TAG, false);
        }
        callback();
      } catch (err: unknown) {
        fail(err, callback);
      }
    },
    flush(callback: TransformCallback) {
      try {
        if (!readHeader() || queue.length < TAG) throw invalidCiphertext();
        open(this, queue.length, true);
      } catch (err: unknown) {
        fail(err, callback);
        return;
      }
      (options.onFinish?.(version) ?? Promise.resolve()).then(
        () => callback(),
        (err: unknown) => callback(err as Error),
      );
    },
  });
}
