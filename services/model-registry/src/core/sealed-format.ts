import { createCipheriv, createDecipheriv } from 'node:crypto';

/**
 * The at-rest format of a model file: a header that carries the wrapped data key (so the key
 * always travels with its blob), then AES-256-GCM segments in the STREAM construction:
 * nonce = 8-byte random prefix ‖ u32 segment index, associated data = u32 index ‖ u8 final.
 * Reordered, swapped, dropped or truncated segments fail authentication; only the last segment
 * carries the final flag, so a file cut at a segment boundary is detected too.
 *
 *   "QRB1" | u16 key-name length | key name | u32 key version | u16 wrapped length | wrapped key
 *          | 8-byte nonce prefix | u32 segment size
 *   then per segment: u32 ciphertext length (tag included) | ciphertext ‖ 16-byte tag
 */
export const MAGIC = Buffer.from('QRB1', 'latin1');
export const DEFAULT_SEGMENT_SIZE = 256 * 1024;
const TAG_BYTES = 16;
const MAX_SEGMENT_SIZE = 16 * 1024 * 1024;

export interface SealedHeader {
  readonly keyName: string;
  readonly keyVersion: number;
  readonly wrappedKey: Buffer;
  readonly noncePrefix: Buffer;
  readonly segmentSize: number;
}

export class SealedFormatError extends Error {
  override readonly name = 'SealedFormatError';
}

export function encodeHeader(h: SealedHeader): Buffer {
  const name = Buffer.from(h.keyName, 'utf8');
  if (h.noncePrefix.length !== 8) throw new Error('nonce prefix must be 8 bytes');
  const parts = [MAGIC, u16(name.length), name, u32(h.keyVersion), u16(h.wrappedKey.length), h.wrappedKey, h.noncePrefix, u32(h.segmentSize)];
  return Buffer.concat(parts);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function aadOf(index: number, final: boolean): Buffer {
  const b = Buffer.alloc(5);
  b.writeUInt32BE(index);
  b[4] = final ? 1 : 0;
  return b;
}

function nonceOf(prefix: Buffer, index: number): Buffer {
  return Buffer.concat([prefix, u32(index)]);
}

/**
 * Encrypts a byte stream segment by segment. One segment of plaintext is held back so that the
 * last one can carry the final flag: memory stays at one segment whatever the file's size.
 */
export interface SegmentSealer {
  /** Encrypted records ready to be written (possibly none). */
  push(plain: Buffer): Buffer[];
  /** The last record (final flag set); call once. */
  finish(): Buffer;
}

export function createSegmentSealer(key: Buffer, header: SealedHeader): SegmentSealer {
  const size = header.segmentSize;
  let pending = Buffer.alloc(size);
  let filled = 0;
  let index = 0;
  let finished = false;

  const seal = (plain: Buffer, final: boolean): Buffer => {
    if (index > 0xffff_ffff) throw new Error('file too large for one sealed blob');
    const cipher = createCipheriv('aes-256-gcm', key, nonceOf(header.noncePrefix, index));
    cipher.setAAD(aadOf(index, final));
    const body = Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
    index += 1;
    return Buffer.concat([u32(body.length), body]);
  };

  return {
    push(plain) {
      if (finished) throw new Error('sealer already finished');
      const out: Buffer[] = [];
      let offset = 0;
      while (offset < plain.length) {
        // A full pending segment is sealed only when more bytes follow: it might be the last.
        if (filled === size) {
          out.push(seal(pending, false));
          pending = Buffer.alloc(size);
          filled = 0;
        }
        const n = Math.min(size - filled, plain.length - offset);
        plain.copy(pending, filled, offset, offset + n);
        filled += n;
        offset += n;
      }
      return out;
    },
    finish() {
      if (finished) throw new Error('sealer already finished');
      finished = true;
      return seal(pending.subarray(0, filled), true);
    },
  };
}

/** Reads exactly what it is asked for from a byte stream. */
function createReader(source: AsyncIterable<Buffer>) {
  const iterator = source[Symbol.asyncIterator]();
  let buffered: Buffer[] = [];
  let available = 0;
  let done = false;
  const fill = async (n: number): Promise<boolean> => {
    while (available < n && !done) {
      const next = await iterator.next();
      if (next.done === true) done = true;
      else {
        buffered.push(next.value);
        available += next.value.length;
      }
    }
    return available >= n;
  };
  return {
    /** n bytes, or undefined at a clean end of stream (nothing left); throws on a partial read. */
    async take(n: number, what: string): Promise<Buffer | undefined> {
      if (!(await fill(n))) {
        if (available === 0) return undefined;
        throw new SealedFormatError(`sealed blob truncated in ${what}`);
      }
      const all = buffered.length === 1 ? buffered[0]! : Buffer.concat(buffered);
      const out = all.subarray(0, n);
      const rest = all.subarray(n);
      buffered = rest.length > 0 ? [rest] : [];
      available = rest.length;
      return out;
    },
    async atEnd(): Promise<boolean> {
      return !(await fill(1));
    },
    async close(): Promise<void> {
      await iterator.return?.();
    },
  };
}

async function need(reader: ReturnType<typeof createReader>, n: number, what: string): Promise<Buffer> {
  const b = await reader.take(n, what);
  if (b === undefined) throw new SealedFormatError(`sealed blob truncated before ${what}`);
  return b;
}

/**
 * Opens a sealed blob: reads the header, asks `unwrap` for the data key, then yields the
 * plaintext of each authenticated segment. Throws SealedFormatError on any damage.
 */
export async function* openSealed(
  source: AsyncIterable<Buffer>,
  unwrap: (header: SealedHeader) => Promise<Buffer>,
): AsyncGenerator<Buffer, void, undefined> {
  const reader = createReader(source);
  try {
    const magic = await need(reader, 4, 'the header');
    if (!magic.equals(MAGIC)) throw new SealedFormatError('not a sealed registry blob (bad magic)');
    const nameLength = (await need(reader, 2, 'the header')).readUInt16BE();
    const keyName = (await need(reader, nameLength, 'the header')).toString('utf8');
    const keyVersion = (await need(reader, 4, 'the header')).readUInt32BE();
    const wrappedLength = (await need(reader, 2, 'the header')).readUInt16BE();
    const wrappedKey = Buffer.from(await need(reader, wrappedLength, 'the header'));
    const noncePrefix = Buffer.from(await need(reader, 8, 'the header'));
    const segmentSize = (await need(reader, 4, 'the header')).readUInt32BE();
    if (segmentSize < 1 || segmentSize > MAX_SEGMENT_SIZE) throw new SealedFormatError(`sealed blob has an invalid segment size ${segmentSize}`);
    const header: SealedHeader = { keyName, keyVersion, wrappedKey, noncePrefix, segmentSize };
    const key = await unwrap(header);
    for (let index = 0; ; index++) {
      const lengthBytes = await reader.take(4, 'a segment length');
      if (lengthBytes === undefined) throw new SealedFormatError('sealed blob truncated: the final segment is missing');
      const length = lengthBytes.readUInt32BE();
      if (length < TAG_BYTES || length > segmentSize + TAG_BYTES) throw new SealedFormatError(`sealed blob segment ${index} has an invalid length`);
      const body = await need(reader, length, `segment ${index}`);
      const final = await reader.atEnd();
      const decipher = createDecipheriv('aes-256-gcm', key, nonceOf(noncePrefix, index));
      decipher.setAAD(aadOf(index, final));
      decipher.setAuthTag(body.subarray(length - TAG_BYTES));
      let plain: Buffer;
      try {
        plain = Buffer.concat([decipher.update(body.subarray(0, length - TAG_BYTES)), decipher.final()]);
      } catch {
        throw new SealedFormatError(`sealed blob segment ${index} failed authentication`);
      }
      if (plain.length > 0) yield plain;
      if (final) return;
    }
  } finally {
    await reader.close();
  }
}
