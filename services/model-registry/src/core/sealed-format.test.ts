import { createDecipheriv, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { SealedHeader } from './sealed-format.js';
import {
  SealedFormatError,
  createSealedRangeReader,
  createSegmentSealer,
  encodeHeader,
  openSealed,
  openSealedBlob,
} from './sealed-format.js';

const key = randomBytes(32);
const header: SealedHeader = {
  keyName: 'model-registry',
  keyVersion: 3,
  wrappedKey: randomBytes(60),
  noncePrefix: randomBytes(8),
  segmentSize: 1000,
};

/** Seals `plain` fed in pieces of `piece` bytes; returns the header and each segment record apart. */
function seal(plain: Buffer, piece = 333): { head: Buffer; records: Buffer[] } {
  const sealer = createSegmentSealer(key, header);
  const records: Buffer[] = [];
  for (let i = 0; i < plain.length; i += piece)
    records.push(...sealer.push(plain.subarray(i, i + piece)).map((r) => Buffer.concat(r)));
  records.push(Buffer.concat(sealer.finish()));
  return { head: encodeHeader(header), records };
}

/**
 * The download's opener: positional reads of whole records, here from memory (short reads as a file gives them only at
 * the end).
 */
async function openPositional(bytes: Buffer): Promise<Buffer> {
  const reads: number[] = [];
  const source = {
    size: bytes.length,
    readInto: (target: Buffer, position: number) => {
      reads.push(position);
      return Promise.resolve(bytes.copy(target, 0, position, Math.min(bytes.length, position + target.length)));
    },
  };
  const out: Buffer[] = [];
  for await (const chunk of openSealedBlob(source, (h) => {
    expect(h).toEqual(header);
    return Promise.resolve(key);
  }))
    out.push(chunk);
  return Buffer.concat(out);
}

async function open(bytes: Buffer, split = 97): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += split) pieces.push(bytes.subarray(i, i + split));
  // A plain iterable of pieces, read the way a file stream arrives.
  const source = (async function* () {
    for (const piece of pieces) yield await Promise.resolve(piece);
  })();
  const out: Buffer[] = [];
  for await (const chunk of openSealed(source, (h) => {
    expect(h).toEqual(header);
    return Promise.resolve(key);
  }))
    out.push(chunk);
  return Buffer.concat(out);
}

const whole = (s: { head: Buffer; records: Buffer[] }): Buffer => Buffer.concat([s.head, ...s.records]);

describe.each([
  ['streamed', (bytes: Buffer) => open(bytes)],
  ['positional', openPositional],
] as const)('sealed blob format, %s opener', (_name, open) => {
  it('round-trips any size, including empty and exact multiples of the segment size', async () => {
    for (const size of [0, 1, 999, 1000, 1001, 3000, 4321]) {
      const plain = randomBytes(size);
      const sealed = seal(plain);
      expect(sealed.records).toHaveLength(Math.max(1, Math.ceil(size / 1000)));
      expect((await open(whole(sealed))).equals(plain)).toBe(true);
    }
  });

  it('is AES-256-GCM with the documented nonce and associated data (checked with node:crypto directly)', () => {
    const plain = randomBytes(1500);
    const { records } = seal(plain);
    const second = records[1]!;
    const body = second.subarray(4);
    expect(second.readUInt32BE(0)).toBe(body.length);
    const decipher = createDecipheriv(
      'aes-256-gcm',
      key,
      Buffer.concat([header.noncePrefix, Buffer.from([0, 0, 0, 1])]),
    );
    decipher.setAAD(Buffer.from([0, 0, 0, 1, 1]));
    decipher.setAuthTag(body.subarray(body.length - 16));
    expect(
      Buffer.concat([decipher.update(body.subarray(0, body.length - 16)), decipher.final()]).equals(
        plain.subarray(1000),
      ),
    ).toBe(true);
  });

  it('detects truncation, a dropped final segment, reordering, appended data and bit flips', async () => {
    const plain = randomBytes(3500);
    const sealed = seal(plain);
    const [r0, r1, r2, r3] = sealed.records as [Buffer, Buffer, Buffer, Buffer];
    const cases: Record<string, Buffer> = {
      'cut inside a segment': whole(sealed).subarray(0, whole(sealed).length - 10),
      'final segment dropped': Buffer.concat([sealed.head, r0, r1, r2]),
      'segments swapped': Buffer.concat([sealed.head, r1, r0, r2, r3]),
      'data appended': Buffer.concat([whole(sealed), r3]),
      'only the header': sealed.head,
    };
    const flipped = whole(sealed);
    flipped[sealed.head.length + 50] = flipped[sealed.head.length + 50]! ^ 0x40;
    cases['bit flipped'] = flipped;
    for (const [name, bytes] of Object.entries(cases)) {
      await expect(open(bytes), name).rejects.toBeInstanceOf(SealedFormatError);
    }
  });

  it('refuses bytes that are not a sealed blob', async () => {
    await expect(open(Buffer.from('PK\u0003\u0004 not ours'))).rejects.toThrow(/bad magic/);
  });
});

describe('sealed blob random access', () => {
  const stored = (plain: Buffer): { bytes: Buffer; headBytes: number } => {
    const sealed = seal(plain, 4096);
    return { bytes: whole(sealed), headBytes: sealed.head.length };
  };
  const rangeReader = (bytes: Buffer, headerBytes: number, plainSize: number, reads: number[] = []) =>
    createSealedRangeReader({
      readAt: (position, length) => {
        reads.push(position);
        return Promise.resolve(bytes.subarray(position, position + length));
      },
      headerBytes,
      header,
      key,
      plainSize,
    });

  it('returns any range of the plaintext, opening only the segments that cover it', async () => {
    const plain = randomBytes(4321);
    const { bytes, headBytes } = stored(plain);
    const reads: number[] = [];
    const read = rangeReader(bytes, headBytes, plain.length, reads);
    for (const [offset, length] of [
      [0, 10],
      [995, 10],
      [2500, 1],
      [4000, 1000],
      [0, 4321],
      [4321, 5],
    ] as const) {
      expect((await read(offset, length)).equals(plain.subarray(offset, offset + length)), `${offset}+${length}`).toBe(
        true,
      );
    }
    expect(new Set(reads).size).toBe(5); // every one of the 5 segments, none read twice while cached
    const sparse: number[] = [];
    await rangeReader(bytes, headBytes, plain.length, sparse)(3100, 20);
    expect(sparse).toEqual([headBytes + 3 * 1020]); // segment 3 alone
  });

  it('detects a flipped bit and a wrong size', async () => {
    const plain = randomBytes(2500);
    const { bytes, headBytes } = stored(plain);
    const flipped = Buffer.from(bytes);
    flipped[headBytes + 1020 + 30] = flipped[headBytes + 1020 + 30]! ^ 1;
    await expect(rangeReader(flipped, headBytes, plain.length)(1100, 10)).rejects.toThrow(
      /segment 1 failed authentication/,
    );
    // A plain size that makes segment 1 the last: its final flag does not match.
    await expect(rangeReader(bytes, headBytes, 2000)(1100, 10)).rejects.toBeInstanceOf(SealedFormatError);
  });
});
