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
// 1 MiB: a segment per 1 MiB upload or download chunk (fewer ciphers, tags and messages). Blobs
// written with another segment size still open: the reader takes the size from the header.
export const DEFAULT_SEGMENT_SIZE = 1024 * 1024;
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
  const parts = [
    MAGIC,
    u16(name.length),
    name,
    u32(h.keyVersion),
    u16(h.wrappedKey.length),
    h.wrappedKey,
    h.noncePrefix,
    u32(h.segmentSize),
  ];
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
 * One sealed segment as the buffers to write in order: u32 length, ciphertext piece(s), tag (never joined: no copy).
 */
export type SealedRecord = readonly Buffer[];

/**
 * Encrypts a byte stream segment by segment. One segment of plaintext is held back so that the
 * last one can carry the final flag: memory stays at one segment whatever the file's size.
 * The held plaintext is kept as views of the pushed buffers (not copied): callers must not reuse
 * a buffer they pushed.
 */
export interface SegmentSealer {
  /** Encrypted records ready to be written (possibly none). */
  push(plain: Buffer): SealedRecord[];
  /** The last record (final flag set); call once. */
  finish(): SealedRecord;
}

export function createSegmentSealer(key: Buffer, header: SealedHeader): SegmentSealer {
  const size = header.segmentSize;
  let pending: Buffer[] = [];
  let filled = 0;
  let index = 0;
  let finished = false;

  const seal = (final: boolean): SealedRecord => {
    if (index > 0xffff_ffff) throw new Error('file too large for one sealed blob');
    const cipher = createCipheriv('aes-256-gcm', key, nonceOf(header.noncePrefix, index));
    cipher.setAAD(aadOf(index, final));
    // GCM is a stream mode: the ciphertext is exactly as long as the plaintext, so the length
    // prefix is known up front and the pieces can be encrypted where they lie.
    const out: Buffer[] = [u32(filled + TAG_BYTES)];
    for (const piece of pending) out.push(cipher.update(piece));
    const rest = cipher.final();
    if (rest.length > 0) out.push(rest);
    out.push(cipher.getAuthTag());
    index += 1;
    pending = [];
    filled = 0;
    return out;
  };

  return {
    push(plain) {
      if (finished) throw new Error('sealer already finished');
      const out: SealedRecord[] = [];
      let offset = 0;
      while (offset < plain.length) {
        // A full pending segment is sealed only when more bytes follow: it might be the last.
        if (filled === size) out.push(seal(false));
        const n = Math.min(size - filled, plain.length - offset);
        pending.push(n === plain.length ? plain : plain.subarray(offset, offset + n));
        filled += n;
        offset += n;
      }
      return out;
    },
    finish() {
      if (finished) throw new Error('sealer already finished');
      finished = true;
      return seal(true);
    },
  };
}

/** Reads exactly what it is asked for from a byte stream, as views of the pieces it arrived in (no copies). */
function createReader(source: AsyncIterable<Buffer>) {
  const iterator = source[Symbol.asyncIterator]();
  const buffered: Buffer[] = [];
  let available = 0;
  let done = false;
  const fill = async (n: number): Promise<boolean> => {
    while (available < n && !done) {
      const next = await iterator.next();
      if (next.done === true) done = true;
      else if (next.value.length > 0) {
        buffered.push(next.value);
        available += next.value.length;
      }
    }
    return available >= n;
  };
  /** Removes the next n bytes (n <= available) as views. */
  const split = (n: number): Buffer[] => {
    const out: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const head = buffered[0]!;
      if (head.length <= left) {
        out.push(head);
        buffered.shift();
        left -= head.length;
      } else {
        out.push(head.subarray(0, left));
        buffered[0] = head.subarray(left);
        left = 0;
      }
    }
    available -= n;
    return out;
  };
  return {
    /** n bytes as one or more views, or undefined at a clean end of stream (nothing left); throws on a partial read. */
    async takeParts(n: number, what: string): Promise<Buffer[] | undefined> {
      if (!(await fill(n))) {
        if (available === 0) return undefined;
        throw new SealedFormatError(`sealed blob truncated in ${what}`);
      }
      return split(n);
    },
    /** The same, joined (for the small header fields). */
    async take(n: number, what: string): Promise<Buffer | undefined> {
      const parts = await this.takeParts(n, what);
      if (parts === undefined) return undefined;
      return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
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
 * plaintext of each authenticated segment, as the pieces it was decrypted in (a segment that
 * arrived across two reads comes out as two buffers: joining them is left to the consumer, which
 * copies the bytes into its messages anyway). Throws SealedFormatError on any damage.
 */
export async function* openSealedParts(
  source: AsyncIterable<Buffer>,
  unwrap: (header: SealedHeader) => Promise<Buffer>,
): AsyncGenerator<Buffer[], void, undefined> {
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
    if (segmentSize < 1 || segmentSize > MAX_SEGMENT_SIZE)
      throw new SealedFormatError(`sealed blob has an invalid segment size ${segmentSize}`);
    const header: SealedHeader = { keyName, keyVersion, wrappedKey, noncePrefix, segmentSize };
    const key = await unwrap(header);
    for (let index = 0; ; index++) {
      const lengthBytes = await reader.take(4, 'a segment length');
      if (lengthBytes === undefined) throw new SealedFormatError('sealed blob truncated: the final segment is missing');
      const length = lengthBytes.readUInt32BE();
      if (length < TAG_BYTES || length > segmentSize + TAG_BYTES)
        throw new SealedFormatError(`sealed blob segment ${index} has an invalid length`);
      const body = await reader.takeParts(length - TAG_BYTES, `segment ${index}`);
      const tag = await need(reader, TAG_BYTES, `segment ${index}`);
      const final = await reader.atEnd();
      const decipher = createDecipheriv('aes-256-gcm', key, nonceOf(noncePrefix, index));
      decipher.setAAD(aadOf(index, final));
      decipher.setAuthTag(tag);
      const plain: Buffer[] = [];
      try {
        for (const piece of body ?? []) {
          const out = decipher.update(piece);
          if (out.length > 0) plain.push(out);
        }
        const rest = decipher.final();
        if (rest.length > 0) plain.push(rest);
      } catch {
        throw new SealedFormatError(`sealed blob segment ${index} failed authentication`);
      }
      // Only authenticated plaintext leaves: the pieces are yielded after final() checked the tag.
      if (plain.length > 0) yield plain;
      if (final) return;
    }
  } finally {
    await reader.close();
  }
}

/** What `openSealedBlob` reads from: positional reads into the caller's buffers (`BlobStore.open`). */
export interface SealedBlobSource {
  readonly size: number;
  /** Fills `target` from `position` on (less only at the end); returns how many bytes were read. */
  readInto(target: Buffer, position: number): Promise<number>;
}

/**
 * Opens a sealed blob from positional reads, for the download path: the same format and checks as
 * `openSealedParts`, but each record is read whole into one of two buffers that are reused for the
 * whole file (a file stream allocates a fresh buffer per read), and the next record is read while
 * this one is decrypted and sent. Yields each segment's authenticated plaintext as one buffer (the
 * decipher's output: the caller may keep it).
 */
export async function* openSealedBlob(
  source: SealedBlobSource,
  unwrap: (header: SealedHeader) => Promise<Buffer>,
): AsyncGenerator<Buffer, void, undefined> {
  const { size } = source;
  const readExact = async (position: number, length: number, what: string): Promise<Buffer> => {
    const out = Buffer.allocUnsafe(length);
    if ((await source.readInto(out, position)) < length)
      throw new SealedFormatError(`sealed blob truncated before ${what}`);
    return out;
  };
  // Header: magic and key-name length, then key name, key version and wrapped-key length, then the rest.
  const first = await readExact(0, 6, 'the header');
  if (!first.subarray(0, 4).equals(MAGIC)) throw new SealedFormatError('not a sealed registry blob (bad magic)');
  const nameLength = first.readUInt16BE(4);
  const second = await readExact(6, nameLength + 6, 'the header');
  const keyName = second.toString('utf8', 0, nameLength);
  const keyVersion = second.readUInt32BE(nameLength);
  const wrappedLength = second.readUInt16BE(nameLength + 4);
  const third = await readExact(12 + nameLength, wrappedLength + 12, 'the header');
  const wrappedKey = third.subarray(0, wrappedLength);
  const noncePrefix = third.subarray(wrappedLength, wrappedLength + 8);
  const segmentSize = third.readUInt32BE(wrappedLength + 8);
  if (segmentSize < 1 || segmentSize > MAX_SEGMENT_SIZE)
    throw new SealedFormatError(`sealed blob has an invalid segment size ${segmentSize}`);
  const header: SealedHeader = { keyName, keyVersion, wrappedKey, noncePrefix, segmentSize };
  const key = await unwrap(header);

  const recordMax = 4 + segmentSize + TAG_BYTES;
  const buffers = [Buffer.allocUnsafe(recordMax), Buffer.allocUnsafe(recordMax)] as const;
  const readRecord = async (position: number, target: Buffer): Promise<Buffer> => {
    const length = Math.min(recordMax, size - position);
    if (length <= 0) return target.subarray(0, 0);
    return target.subarray(0, await source.readInto(target.subarray(0, length), position));
  };
  let position = 24 + nameLength + wrappedLength;
  let next = readRecord(position, buffers[0]);
  let pending: Promise<Buffer> | undefined = next;
  try {
    for (let index = 0; ; index++) {
      const bytes = await next;
      pending = undefined;
      if (bytes.length === 0) throw new SealedFormatError('sealed blob truncated: the final segment is missing');
      if (bytes.length < 4) throw new SealedFormatError('sealed blob truncated in a segment length');
      const length = bytes.readUInt32BE(0);
      if (length < TAG_BYTES || length > segmentSize + TAG_BYTES)
        throw new SealedFormatError(`sealed blob segment ${index} has an invalid length`);
      if (bytes.length < 4 + length) throw new SealedFormatError(`sealed blob truncated in segment ${index}`);
      const end = position + 4 + length;
      // Only the segment that ends the file may carry the final flag; anything after it fails as a segment of its own.
      const final = end === size;
      // The other buffer is free (its record was decrypted before the last yield): read ahead into it.
      if (!final) {
        next = readRecord(end, buffers[(index + 1) % 2]!);
        pending = next;
      }
      const decipher = createDecipheriv('aes-256-gcm', key, nonceOf(noncePrefix, index));
      decipher.setAAD(aadOf(index, final));
      decipher.setAuthTag(bytes.subarray(4 + length - TAG_BYTES, 4 + length));
      let plain: Buffer;
      try {
        plain = decipher.update(bytes.subarray(4, 4 + length - TAG_BYTES));
        const rest = decipher.final();
        if (rest.length > 0) plain = Buffer.concat([plain, rest]);
      } catch {
        throw new SealedFormatError(`sealed blob segment ${index} failed authentication`);
      }
      // Only authenticated plaintext leaves, and never a view of the reused read buffers.
      if (plain.length > 0) yield plain;
      if (final) return;
      position = end;
    }
  } finally {
    // A read still running (the consumer stopped, or a segment failed) settles before the caller closes the source.
    await pending?.catch(() => undefined);
  }
}

/** openSealedParts with each segment's plaintext as one buffer. */
export async function* openSealed(
  source: AsyncIterable<Buffer>,
  unwrap: (header: SealedHeader) => Promise<Buffer>,
): AsyncGenerator<Buffer, void, undefined> {
  for await (const parts of openSealedParts(source, unwrap))
    yield parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

export interface SealedRangeSource {
  /** Reads stored bytes [position, position + length) (fewer only at the end of the blob). */
  readAt(position: number, length: number): Promise<Buffer>;
  /** Length of the encoded header (`encodeHeader(header).length`): where segment 0 starts. */
  readonly headerBytes: number;
  readonly header: SealedHeader;
  readonly key: Buffer;
  /** Plaintext size: every segment but the last is full, so each one's place follows from it. */
  readonly plainSize: number;
}

/**
 * Random access to a sealed blob's plaintext: reads and opens only the segments that cover the
 * range asked for (the last two are kept), so an inspector that seeks past tensor payloads
 * decrypts a few segments of a large model, and no plaintext copy of the file is ever written.
 */
export function createSealedRangeReader(
  source: SealedRangeSource,
): (offset: number, length: number) => Promise<Buffer> {
  const { header, key, plainSize, headerBytes } = source;
  const size = header.segmentSize;
  const count = Math.max(1, Math.ceil(plainSize / size));
  const cache = new Map<number, Buffer>();

  const segment = async (index: number): Promise<Buffer> => {
    const cached = cache.get(index);
    if (cached !== undefined) return cached;
    const plainLength = index < count - 1 ? size : plainSize - index * size;
    const record = await source.readAt(headerBytes + index * (size + 4 + TAG_BYTES), 4 + plainLength + TAG_BYTES);
    if (record.length !== 4 + plainLength + TAG_BYTES || record.readUInt32BE(0) !== plainLength + TAG_BYTES) {
      throw new SealedFormatError(`sealed blob segment ${index} is not where its size puts it`);
    }
    const final = index === count - 1;
    const decipher = createDecipheriv('aes-256-gcm', key, nonceOf(header.noncePrefix, index));
    decipher.setAAD(aadOf(index, final));
    decipher.setAuthTag(record.subarray(4 + plainLength));
    let plain: Buffer;
    try {
      const body = decipher.update(record.subarray(4, 4 + plainLength));
      const rest = decipher.final();
      plain = rest.length === 0 ? body : Buffer.concat([body, rest]);
    } catch {
      throw new SealedFormatError(`sealed blob segment ${index} failed authentication`);
    }
    if (cache.size >= 2) cache.delete(cache.keys().next().value as number);
    cache.set(index, plain);
    return plain;
  };

  return async (offset, length) => {
    const end = Math.min(plainSize, offset + length);
    const parts: Buffer[] = [];
    for (let at = Math.max(0, offset); at < end;) {
      const index = Math.floor(at / size);
      const plain = await segment(index);
      const from = at - index * size;
      const n = Math.min(plain.length - from, end - at);
      parts.push(plain.subarray(from, from + n));
      at += n;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  };
}
