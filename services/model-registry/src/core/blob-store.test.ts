import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestS3 } from '../testing/s3.js';
import type { TestS3 } from '../testing/s3.js';
import type { BlobKey, BlobStore, BlobWriter } from './blob-store.js';
import { createFsBlobStore } from './blob-store.js';
import { parseBlobUrl } from './blob-url.js';
import type { S3BlobLocation } from './blob-url.js';
import { MIN_PART_BYTES, createS3BlobStore } from './s3-blob-store.js';

/** One store under test, with a look at what it keeps besides published blobs. */
interface Subject {
  readonly store: BlobStore;
  /** Temporary objects and unfinished multipart uploads. */
  leftovers(): Promise<string[]>;
  /** Every object or file, published or not. */
  everything(): Promise<string[]>;
  /** Makes every temporary look an hour old. */
  ageTemporaries(): Promise<void>;
}

/** Writes in 1 MiB buffers, as an upload hands over sealed segments (a write returns once its buffer is taken). */
async function writeInPieces(writer: BlobWriter, bytes: Buffer): Promise<void> {
  for (let at = 0; at < bytes.length; at += 1 << 20) await writer.write(bytes.subarray(at, at + (1 << 20)));
}

const key = (tenant: string): BlobKey => ({ tenant, sha256: randomBytes(32).toString('hex') });

async function readWhole(store: BlobStore, blob: BlobKey, step: number): Promise<Buffer> {
  const handle = await store.open(blob);
  try {
    const out = Buffer.alloc(handle.size);
    const target = Buffer.alloc(step);
    let position = 0;
    for (;;) {
      const n = await handle.readInto(target, position);
      if (n === 0) break;
      target.copy(out, position, 0, n);
      position += n;
    }
    expect(position).toBe(handle.size);
    return out;
  } finally {
    await handle.close();
  }
}

const backends: { name: string; open(): Promise<{ subject: Subject; close: () => Promise<void> }> }[] = [
  {
    name: 'folder',
    async open() {
      const root = await mkdtemp(join(tmpdir(), 'quanta-blobs-'));
      const files = async (dir: string): Promise<string[]> =>
        (await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []))
          .filter((e) => e.isFile())
          .map((e) => join(e.parentPath, e.name));
      return {
        subject: {
          store: createFsBlobStore(root),
          leftovers: () => files(join(root, '.tmp')),
          everything: () => files(root),
          async ageTemporaries() {
            const hourAgo = new Date(Date.now() - 3600_000);
            for (const file of await files(join(root, '.tmp'))) await utimes(file, hourAgo, hourAgo);
          },
        },
        close: () => rm(root, { recursive: true, force: true }),
      };
    },
  },
  {
    name: 's3 (s3rver)',
    async open() {
      const s3: TestS3 = await startTestS3();
      const location = parseBlobUrl(s3.blobUrl('models/blobs')) as S3BlobLocation;
      // The part size is S3's minimum: writes of a few parts exercise multipart uploads.
      const store = createS3BlobStore(location, { client: s3.client, partBytes: MIN_PART_BYTES });
      return {
        subject: {
          store,
          leftovers: async () => [...(await s3.keys('models/blobs/.tmp/')), ...(await s3.uploads())],
          everything: async () => [...(await s3.keys()), ...(await s3.uploads())],
          async ageTemporaries() {
            // s3rver keeps an upload's start as its `key` file's mtime, an object's date as its file's.
            const hourAgo = new Date(Date.now() - 3600_000);
            for (const entry of await readdir(s3.dir, { recursive: true, withFileTypes: true })) {
              if (entry.isFile() && (entry.parentPath.includes('.tmp') || entry.parentPath.includes('_S3rver_uploads')))
                await utimes(join(entry.parentPath, entry.name), hourAgo, hourAgo);
            }
          },
        },
        close: () => s3.close(),
      };
    },
  },
];

describe.each(backends)('blob store: $name', (backend) => {
  let subject: Subject;
  let store: BlobStore;
  let close: () => Promise<void>;
  beforeAll(async () => {
    ({ subject, close } = await backend.open());
    store = subject.store;
  });
  afterAll(async () => {
    await store?.close();
    await close?.();
  });

  it(
    'streams a blob of several parts, reads it back while unpublished, publishes it and reads it in order and at ' +
      'random',
    async () => {
      const bytes = randomBytes(3 * MIN_PART_BYTES + 12_345);
      const writer = await store.create();
      // Several buffers per write, of odd sizes, as the upload hands sealed records over.
      for (let at = 0; at < bytes.length; at += 3 * 400_000) {
        await writer.write([
          bytes.subarray(at, at + 400_000),
          bytes.subarray(at + 400_000, at + 800_000),
          bytes.subarray(at + 800_000, at + 1_200_000),
        ]);
      }
      expect(writer.written).toBe(bytes.length);
      expect((await writer.read(0, 100)).equals(bytes.subarray(0, 100))).toBe(true);
      expect(
        (await writer.read(MIN_PART_BYTES - 10, 1 << 20)).equals(
          bytes.subarray(MIN_PART_BYTES - 10, MIN_PART_BYTES - 10 + (1 << 20)),
        ),
      ).toBe(true);
      expect((await writer.read(bytes.length - 5, 100)).equals(bytes.subarray(bytes.length - 5))).toBe(true);
      expect((await writer.read(bytes.length, 100)).length).toBe(0);
      await expect(writer.write(Buffer.from('more'))).rejects.toThrow(/read back/);

      const blob = key('acme');
      expect(await store.exists(blob)).toBe(false);
      await writer.commit(blob);
      await writer.abort(); // after commit: does nothing
      expect(await store.exists(blob)).toBe(true);
      expect(await subject.leftovers()).toEqual([]);

      expect((await readWhole(store, blob, 1 << 20)).equals(bytes)).toBe(true);
      expect((await readWhole(store, blob, 300_001)).equals(bytes)).toBe(true);
      const handle = await store.open(blob);
      try {
        const target = Buffer.alloc(1000);
        for (const at of [bytes.length - 10, 5, 2 * MIN_PART_BYTES + 7, 5 + 1000]) {
          const n = await handle.readInto(target, at);
          expect(n).toBe(Math.min(1000, bytes.length - at));
          expect(target.subarray(0, n).equals(bytes.subarray(at, at + n))).toBe(true);
        }
        expect(await handle.readInto(target, bytes.length)).toBe(0);
      } finally {
        await handle.close();
      }
      const chunks: Buffer[] = [];
      for await (const chunk of store.read(blob)) chunks.push(chunk);
      expect(Buffer.concat(chunks).equals(bytes)).toBe(true);

      const listed = [];
      for await (const stored of store.list()) listed.push(stored);
      expect(listed.map((b) => `${b.tenant}/${b.sha256}`)).toEqual([`${blob.tenant}/${blob.sha256}`]);
      expect(Math.abs((listed[0]?.modified.getTime() ?? 0) - Date.now())).toBeLessThan(60_000);

      await store.delete(blob);
      expect(await store.exists(blob)).toBe(false);
      expect(await subject.everything()).toEqual([]);
    },
  );

  it('publishes a small blob (one PUT, no multipart upload) and reports a missing one as ENOENT', async () => {
    const bytes = Buffer.from('sealed bytes of a tiny model');
    const writer = await store.create();
    await writer.write(bytes);
    const blob = key('tiny');
    await writer.commit(blob);
    expect((await readWhole(store, blob, 7)).equals(bytes)).toBe(true);
    await store.delete(blob);
    await expect(store.open(blob)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await subject.everything()).toEqual([]);
  });

  it(
    'an aborted writer leaves nothing: mid-stream (a multipart ' + 'upload under way), after its read-back, or empty',
    async () => {
      const streaming = await store.create();
      // Four parts with two in flight: the last write returns only after a part was stored, so the
      // multipart upload exists when it is aborted.
      await writeInPieces(streaming, randomBytes(4 * MIN_PART_BYTES + 1));
      expect(await subject.leftovers()).toHaveLength(1);
      await streaming.abort();
      await streaming.abort();
      await expect(streaming.write(Buffer.from('x'))).rejects.toThrow(/closed/);

      const readBack = await store.create();
      await readBack.write(randomBytes(MIN_PART_BYTES + 100));
      await readBack.read(0, 10);
      await readBack.abort();

      const empty = await store.create();
      await empty.abort();
      expect(await subject.everything()).toEqual([]);
    },
  );

  it('removeTemporaries removes what writers of a dead process left, and leaves younger ones when asked', async () => {
    const left = [await store.create(), await store.create()];
    await writeInPieces(left[0]!, randomBytes(4 * MIN_PART_BYTES + 1)); // a multipart upload in S3
    await left[1]!.write(randomBytes(1000));
    await left[1]!.read(0, 10); // a completed temporary object
    expect((await subject.leftovers()).length).toBe(2);

    expect(await store.removeTemporaries(new Date(Date.now() - 600_000))).toBe(0);
    expect((await subject.leftovers()).length).toBeGreaterThanOrEqual(2);
    await subject.ageTemporaries();
    expect(await store.removeTemporaries(new Date(Date.now() - 600_000))).toBeGreaterThanOrEqual(2);
    expect(await subject.leftovers()).toEqual([]);
    expect(await store.removeTemporaries()).toBe(0);
    for (const writer of left) await writer.abort().catch(() => undefined);
    expect(await subject.everything()).toEqual([]);
  });
});

describe('blob store: s3, a blob above the single-copy limit', () => {
  let s3: TestS3;
  beforeAll(async () => {
    s3 = await startTestS3();
  });
  afterAll(async () => {
    await s3?.close();
  });

  it('is published part by part with UploadPartCopy (S3 copies at most 5 GiB at once)', async () => {
    const location = parseBlobUrl(s3.blobUrl('big')) as S3BlobLocation;
    const store = createS3BlobStore(location, {
      client: s3.client,
      maxSingleCopyBytes: 2 * MIN_PART_BYTES,
      copyPartBytes: MIN_PART_BYTES,
    });
    const bytes = randomBytes(2 * MIN_PART_BYTES + 12_345);
    const writer = await store.create();
    await writeInPieces(writer, bytes);
    const blob = key('acme');
    await writer.commit(blob);
    expect((await readWhole(store, blob, 1 << 20)).equals(bytes)).toBe(true);
    expect(await s3.keys()).toEqual([`big/acme/${blob.sha256.slice(0, 2)}/${blob.sha256}`]);
    expect(await s3.uploads()).toEqual([]);
  });
});
