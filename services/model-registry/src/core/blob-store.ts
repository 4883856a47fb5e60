import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { dropPrefix } from './buffer-parts.js';

/** Blobs are named by the sha256 of their plaintext, per tenant (the stored bytes are sealed). */
export interface BlobKey {
  readonly tenant: string;
  readonly sha256: string;
}

/** A published blob as `list` finds it. */
export interface StoredBlob extends BlobKey {
  /** When it was published (its file's mtime, its object's LastModified). */
  readonly modified: Date;
}

/** A blob being written: bytes go to a temporary object until `commit` publishes it. */
export interface BlobWriter {
  /** Appends the bytes; several buffers go out in one `writev`. One write at a time: await each before the next. */
  write(bytes: Buffer | readonly Buffer[]): Promise<void>;
  /** Bytes written so far. */
  readonly written: number;
  /**
   * Reads back what was written, [position, position + length) (fewer at the end); not while a
   * write runs. The first read ends the writing: `write` after `read` is refused (an object store
   * can read only what it has finished storing).
   */
  read(position: number, length: number): Promise<Buffer>;
  /** Makes the bytes durable and visible under `key` (replacing nothing: callers check first). */
  commit(key: BlobKey): Promise<void>;
  /** Drops the temporary object; safe after commit (then it does nothing) and twice. */
  abort(): Promise<void>;
}

/** A stored blob opened for positional reads into the caller's buffers (no allocation per read). */
export interface BlobReadHandle {
  /** The blob's size in bytes, when it was opened (blobs never change once published). */
  readonly size: number;
  /** Fills `target` from `position` on (less only at the end of the blob); returns how many bytes were read. */
  readInto(target: Buffer, position: number): Promise<number>;
  close(): Promise<void>;
}

/** Where sealed model files live: a folder (`createFsBlobStore`) or an S3 bucket (`createS3BlobStore`). */
export interface BlobStore {
  /** Where the blobs are, for logs: `file:///…` or `s3://bucket/prefix`. */
  readonly location: string;
  /**
   * Temporaries and unrecorded blobs younger than this may belong to an upload still running in
   * another process that shares the store: the start-up sweep leaves them alone. 0 for a folder,
   * which one registry process owns.
   */
  readonly sweepGraceMs: number;
  create(): Promise<BlobWriter>;
  read(key: BlobKey): AsyncIterable<Buffer>;
  /** Opens a blob for positional reads (the download path: reads into reused buffers). */
  open(key: BlobKey): Promise<BlobReadHandle>;
  exists(key: BlobKey): Promise<boolean>;
  delete(key: BlobKey): Promise<void>;
  /** Every stored blob (for the orphan sweep at start). */
  list(): AsyncIterable<StoredBlob>;
  /**
   * Removes temporary objects left by uploads that died with their process (those last written
   * before `olderThan`, or all); returns how many.
   */
  removeTemporaries(olderThan?: Date): Promise<number>;
  /** Releases connections; the store is not used after. */
  close(): Promise<void>;
}

export const SHA = /^[0-9a-f]{64}$/;
export const TENANT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const TMP_DIR = '.tmp';

/** Checks both parts of a key before they become path segments or object key segments. */
export function blobPath(key: BlobKey): string {
  if (!TENANT.test(key.tenant)) throw new Error(`invalid tenant for a blob path: ${JSON.stringify(key.tenant)}`);
  if (!SHA.test(key.sha256)) throw new Error(`invalid sha256 for a blob path: ${JSON.stringify(key.sha256)}`);
  return `${key.tenant}/${key.sha256.slice(0, 2)}/${key.sha256}`;
}

/**
 * Blobs under `root/<tenant>/<sha[0:2]>/<sha>`; writes go to `root/.tmp/<uuid>`, are fsynced,
 * then renamed into place, so a reader never sees half a blob.
 */
export function createFsBlobStore(root: string): BlobStore {
  const tmpDir = join(root, TMP_DIR);
  // Both parts become path segments: only their validated shapes may pass.
  const pathOf = (key: BlobKey): string => join(root, blobPath(key));

  return {
    location: pathToFileURL(root).href,
    sweepGraceMs: 0,
    close: () => Promise.resolve(),
    async create() {
      await mkdir(tmpDir, { recursive: true, mode: 0o700 });
      const tmpPath = join(tmpDir, `${randomUUID()}.part`);
      let handle: FileHandle | undefined = await open(tmpPath, 'wx+', 0o600);
      let written = 0;
      let reading = false;
      let state: 'open' | 'committed' | 'aborted' = 'open';
      return {
        get written() {
          return written;
        },
        async write(bytes) {
          if (state !== 'open' || handle === undefined) throw new Error('blob writer is closed');
          if (reading) throw new Error('blob writer was read back: no more writes');
          let parts = (Array.isArray(bytes) ? bytes : [bytes]) as readonly Buffer[];
          let total = 0;
          for (const part of parts) total += part.length;
          let done = 0;
          while (done < total) {
            const { bytesWritten } = await handle.writev(parts as Buffer[]);
            done += bytesWritten;
            // A short write (rare on a regular file): continue from where it stopped.
            if (done < total) parts = dropPrefix(parts, bytesWritten);
          }
          written += total;
        },
        async read(position, length) {
          if (state !== 'open' || handle === undefined) throw new Error('blob writer is closed');
          reading = true;
          const out = Buffer.allocUnsafe(Math.max(0, Math.min(length, written - position)));
          let got = 0;
          while (got < out.length) {
            const { bytesRead } = await handle.read(out, got, out.length - got, position + got);
            if (bytesRead === 0) break;
            got += bytesRead;
          }
          return out.subarray(0, got);
        },
        async commit(key) {
          if (state !== 'open' || handle === undefined) throw new Error('blob writer is closed');
          const target = pathOf(key);
          await handle.sync();
          await handle.close();
          handle = undefined;
          await mkdir(join(target, '..'), { recursive: true, mode: 0o700 });
          await rename(tmpPath, target);
          state = 'committed';
          // The rename is durable only once its directory is synced.
          const dir = await open(join(target, '..'), 'r');
          try {
            await dir.sync();
          } finally {
            await dir.close();
          }
        },
        async abort() {
          if (state !== 'open') return;
          state = 'aborted';
          await handle?.close().catch(() => undefined);
          handle = undefined;
          await rm(tmpPath, { force: true });
        },
      };
    },
    async *read(key) {
      for await (const chunk of createReadStream(pathOf(key), { highWaterMark: 1 << 20 })) yield chunk as Buffer;
    },
    async open(key) {
      const handle = await open(pathOf(key), 'r');
      try {
        const { size } = await handle.stat();
        return {
          size,
          async readInto(target, position) {
            let got = 0;
            while (got < target.length) {
              const { bytesRead } = await handle.read(target, got, target.length - got, position + got);
              if (bytesRead === 0) break;
              got += bytesRead;
            }
            return got;
          },
          close: () => handle.close(),
        };
      } catch (error: unknown) {
        await handle.close();
        throw error;
      }
    },
    async exists(key) {
      try {
        return (await stat(pathOf(key))).isFile();
      } catch {
        return false;
      }
    },
    async delete(key) {
      await rm(pathOf(key), { force: true });
    },
    async *list() {
      let tenants: string[];
      try {
        tenants = await readdir(root);
      } catch {
        return;
      }
      for (const tenant of tenants) {
        if (!TENANT.test(tenant)) continue;
        for (const prefix of await readdir(join(root, tenant)).catch(() => [] as string[])) {
          for (const name of await readdir(join(root, tenant, prefix)).catch(() => [] as string[])) {
            if (!SHA.test(name) || !name.startsWith(prefix)) continue;
            const info = await stat(join(root, tenant, prefix, name)).catch(() => undefined);
            if (info?.isFile() === true) yield { tenant, sha256: name, modified: info.mtime };
          }
        }
      }
    },
    async removeTemporaries(olderThan) {
      let names: string[];
      try {
        names = await readdir(tmpDir);
      } catch {
        return 0;
      }
      if (olderThan !== undefined) {
        const old = await Promise.all(
          names.map(
            async (name) => ((await stat(join(tmpDir, name)).catch(() => undefined))?.mtime ?? olderThan) < olderThan,
          ),
        );
        names = names.filter((_, i) => old[i] === true);
      }
      await Promise.all(names.map((name) => rm(join(tmpDir, name), { force: true, recursive: true })));
      return names.length;
    },
  };
}
