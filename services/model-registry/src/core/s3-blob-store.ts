import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import type { CompletedPart, _Object, S3Client } from '@aws-sdk/client-s3';
import type { BlobKey, BlobReadHandle, BlobStore, BlobWriter, StoredBlob } from './blob-store.js';
import { SHA, TENANT, TMP_DIR, blobPath } from './blob-store.js';
import type { S3BlobLocation } from './blob-url.js';
import { checkS3Access, createS3Client, isNotFound, isNotImplemented, missing } from './s3-client.js';
import { createMultipartWriter } from './s3-multipart-writer.js';

/** S3's smallest part (but the last) of a multipart upload. */
export const MIN_PART_BYTES = 5 * 1024 * 1024;
/** S3's largest object that one CopyObject may copy; larger ones are copied part by part. */
export const MAX_SINGLE_COPY_BYTES = 5 * 1024 * 1024 * 1024;
const MAX_PARTS = 10_000;
const COPY_PART_BYTES = 512 * 1024 * 1024;

export interface S3BlobStoreOptions {
  /**
   * A client to use (its settings win; the store then leaves it open); default: one of its own, made from the location.
   */
  readonly client?: S3Client;
  /**
   * Bytes per uploaded part; memory per upload is (queueSize + 1) parts. Default: 5 MiB, or what `maxObjectBytes`
   * needs.
   */
  readonly partBytes?: number;
  /** Parts in flight per upload (default 2). */
  readonly queueSize?: number;
  /** The largest sealed blob to expect: the part size grows so that it fits S3's 10,000 parts. */
  readonly maxObjectBytes?: number;
  /** Above this, publishing copies part by part (UploadPartCopy) instead of one CopyObject (S3 allows 5 GiB). */
  readonly maxSingleCopyBytes?: number;
  /** Part size of such a copy (default 512 MiB). */
  readonly copyPartBytes?: number;
}

/** Reads a response body into one buffer (ranged reads of about a segment). */
async function readAll(body: Readable, expected: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let length = 0;
  for await (const chunk of body) {
    parts.push(chunk as Buffer);
    length += (chunk as Buffer).length;
  }
  if (length > expected) throw new Error(`a ranged read returned ${length} bytes, more than the ${expected} asked for`);
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts, length);
}

/**
 * Blobs in an S3 bucket under `prefix<tenant>/<sha[0:2]>/<sha>`, sealed as on disk.
 *
 * A writer streams into a multipart upload (`queueSize` parts of `partBytes` in flight, so memory
 * is bounded whatever the size) to `prefix.tmp/<uuid>`. Its first read-back
 * (the upload's inspection reads segments of the sealed blob) completes that upload, so later
 * reads are ranged GETs of the temporary object. `commit` copies it server-side to the blob's key
 * (its sha is known only then) and deletes the temporary; `abort` aborts the multipart upload or
 * deletes the temporary object. What a dead process leaves (a multipart upload or a temporary
 * object) is removed by the registry's sweep (`removeTemporaries`).
 */
export function createS3BlobStore(location: S3BlobLocation, options: S3BlobStoreOptions = {}): BlobStore {
  const client = options.client ?? createS3Client(location);
  const ownClient = options.client === undefined;
  const { bucket, prefix } = location;
  const tmpPrefix = `${prefix}${TMP_DIR}/`;
  const partBytes = Math.max(options.partBytes ?? MIN_PART_BYTES, Math.ceil((options.maxObjectBytes ?? 0) / MAX_PARTS));
  const queueSize = options.queueSize ?? 2;
  const maxSingleCopyBytes = options.maxSingleCopyBytes ?? MAX_SINGLE_COPY_BYTES;
  const copyPartBytes = options.copyPartBytes ?? COPY_PART_BYTES;
  const keyOf = (key: BlobKey): string => `${prefix}${blobPath(key)}`;
  const copySource = (key: string): string => `${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;

  const getRange = async (key: string, position: number, length: number): Promise<Buffer> => {
    if (length <= 0) return Buffer.alloc(0);
    try {
      const response = await client.send(
        new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=${position}-${position + length - 1}` }),
      );
      return await readAll(response.Body as Readable, length);
    } catch (error: unknown) {
      if (isNotFound(error)) throw missing(key, error);
      throw error;
    }
  };

  /** Every object under `under`, page after page. */
  async function* objectsUnder(under: string): AsyncGenerator<_Object> {
    let token: string | undefined;
    do {
      const page = await client.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: under, ContinuationToken: token }),
      );
      yield* page.Contents ?? [];
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  /** Publishes `from` under `to`: one CopyObject, or UploadPartCopy parts above the single-copy limit. */
  const copy = async (from: string, to: string, size: number): Promise<void> => {
    if (size <= maxSingleCopyBytes) {
      await client.send(new CopyObjectCommand({ Bucket: bucket, Key: to, CopySource: copySource(from) }));
      return;
    }
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: to }));
    try {
      const parts: CompletedPart[] = [];
      for (let start = 0, number = 1; start < size; start += copyPartBytes, number += 1) {
        const end = Math.min(size, start + copyPartBytes) - 1;
        const { CopyPartResult } = await client.send(
          new UploadPartCopyCommand({
            Bucket: bucket,
            Key: to,
            UploadId,
            PartNumber: number,
            CopySource: copySource(from),
            CopySourceRange: `bytes=${start}-${end}`,
          }),
        );
        parts.push({ PartNumber: number, ETag: CopyPartResult?.ETag });
      }
      await client.send(
        new CompleteMultipartUploadCommand({ Bucket: bucket, Key: to, UploadId, MultipartUpload: { Parts: parts } }),
      );
    } catch (error: unknown) {
      await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: to, UploadId })).catch(() => undefined);
      throw error;
    }
  };

  return {
    location: `s3://${bucket}/${prefix}${location.endpoint === undefined ? '' : ` at ${location.endpoint}`}`,
    sweepGraceMs: location.sweepGraceMs,
    close() {
      if (ownClient) client.destroy();
      return Promise.resolve();
    },

    create(): Promise<BlobWriter> {
      return Promise.resolve(
        createMultipartWriter(client, bucket, `${tmpPrefix}${randomUUID()}`, {
          partBytes,
          queueSize,
          publish: copy,
          readRange: getRange,
          keyOf,
        }),
      );
    },

    async *read(key) {
      const objectKey = keyOf(key);
      let body: Readable;
      try {
        body = (await client.send(new GetObjectCommand({ Bucket: bucket, Key: objectKey }))).Body as Readable;
      } catch (error: unknown) {
        if (isNotFound(error)) throw missing(objectKey, error);
        throw error;
      }
      for await (const chunk of body) yield chunk as Buffer;
    },

    async open(key): Promise<BlobReadHandle> {
      const objectKey = keyOf(key);
      let size: number;
      let etag: string | undefined;
      try {
        const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: objectKey }));
        size = head.ContentLength ?? 0;
        etag = head.ETag;
      } catch (error: unknown) {
        if (isNotFound(error)) throw missing(objectKey, error);
        throw error;
      }
      // Downloads read in order: one GET streams from where a read starts and serves the reads
      // that follow on from it; a read elsewhere starts a new one. The socket's flow control
      // bounds what is buffered.
      let stream:
        { body: Readable; chunks: AsyncIterator<Buffer>; position: number; rest: Buffer | undefined } | undefined;
      const drop = (): void => {
        stream?.body.destroy();
        stream = undefined;
      };
      return {
        size,
        async readInto(target, position) {
          if (position >= size || target.length === 0) return 0;
          if (stream?.position !== position) {
            drop();
            const response = await client.send(
              new GetObjectCommand({
                Bucket: bucket,
                Key: objectKey,
                Range: `bytes=${position}-`,
                ...(etag === undefined ? {} : { IfMatch: etag }),
              }),
            );
            const body = response.Body as Readable;
            stream = { body, chunks: body[Symbol.asyncIterator]() as AsyncIterator<Buffer>, position, rest: undefined };
          }
          const current = stream;
          let got = 0;
          while (got < target.length) {
            let chunk = current.rest;
            current.rest = undefined;
            if (chunk === undefined) {
              const next = await current.chunks.next();
              if (next.done === true) break;
              chunk = next.value;
            }
            const n = Math.min(chunk.length, target.length - got);
            chunk.copy(target, got, 0, n);
            if (n < chunk.length) current.rest = chunk.subarray(n);
            got += n;
          }
          current.position += got;
          return got;
        },
        close() {
          drop();
          return Promise.resolve();
        },
      };
    },

    async exists(key) {
      try {
        await client.send(new HeadObjectCommand({ Bucket: bucket, Key: keyOf(key) }));
        return true;
      } catch (error: unknown) {
        if (isNotFound(error)) return false;
        throw error;
      }
    },

    async delete(key) {
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: keyOf(key) }));
    },

    async *list(): AsyncGenerator<StoredBlob> {
      for await (const object of objectsUnder(prefix)) {
        const [tenant, shard, sha256, ...more] = (object.Key ?? '').slice(prefix.length).split('/');
        if (
          more.length > 0 ||
          tenant === undefined ||
          sha256 === undefined ||
          !TENANT.test(tenant) ||
          !SHA.test(sha256) ||
          sha256.slice(0, 2) !== shard
        )
          continue;
        yield { tenant, sha256, modified: object.LastModified ?? new Date(0) };
      }
    },

    async removeTemporaries(olderThan) {
      const old = (at: Date | undefined): boolean => olderThan === undefined || (at ?? new Date(0)) < olderThan;
      let removed = 0;
      for await (const object of objectsUnder(tmpPrefix)) {
        if (object.Key === undefined || !old(object.LastModified)) continue;
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: object.Key }));
        removed += 1;
      }

      let keyMarker: string | undefined;
      let uploadIdMarker: string | undefined;
      try {
        for (;;) {
          const page = await client.send(
            new ListMultipartUploadsCommand({
              Bucket: bucket,
              Prefix: tmpPrefix,
              KeyMarker: keyMarker,
              UploadIdMarker: uploadIdMarker,
            }),
          );
          for (const upload of page.Uploads ?? []) {
            if (upload.Key === undefined || upload.UploadId === undefined || !old(upload.Initiated)) continue;
            try {
              await client.send(
                new AbortMultipartUploadCommand({ Bucket: bucket, Key: upload.Key, UploadId: upload.UploadId }),
              );
              removed += 1;
            } catch (error: unknown) {
              // Another replica's sweep got there first.
              if (!isNotFound(error)) throw error;
            }
          }
          if (page.IsTruncated !== true) break;
          keyMarker = page.NextKeyMarker;
          uploadIdMarker = page.NextUploadIdMarker;
        }
      } catch (error: unknown) {
        // A server without ListMultipartUploads: its incomplete uploads are left to a lifecycle rule.
        if (!isNotImplemented(error)) throw error;
      }
      return removed;
    },
  };
}

/**
 * A store for the location after checking that the bucket exists and that the credentials may
 * list, write and delete under the prefix; throws an Error whose message is one line from
 * `describeS3Failure`.
 */
export async function openS3BlobStore(
  location: S3BlobLocation,
  options: Omit<S3BlobStoreOptions, 'client'> = {},
): Promise<BlobStore> {
  const client = createS3Client(location);
  try {
    await checkS3Access(client, location);
  } catch (error: unknown) {
    client.destroy();
    throw error;
  }
  const store = createS3BlobStore(location, { ...options, client });
  return {
    ...store,
    close() {
      client.destroy();
      return Promise.resolve();
    },
  };
}
