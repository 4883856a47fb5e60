import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { CompletedPart, S3Client } from '@aws-sdk/client-s3';
import type { BlobKey, BlobWriter } from './blob-store.js';
import { isNotFound } from './s3-client.js';

export interface MultipartWriterOptions {
  readonly partBytes: number;
  readonly queueSize: number;
  /** Copies the finished temporary object to the blob's key. */
  publish(from: string, to: string, size: number): Promise<void>;
  /** A ranged GET: [position, position + length) of an object. */
  readRange(key: string, position: number, length: number): Promise<Buffer>;
  keyOf(key: BlobKey): string;
}

/**
 * A writer that streams into a multipart upload at `tmpKey`. Written bytes are copied into part
 * buffers of `partBytes`; a full one is sent (UploadPart) while the next fills, at most
 * `queueSize` in flight, and `write` waits for a free buffer: memory is (queueSize + 1) parts
 * whatever the size, and the buffers are reused part after part (lib-storage's Upload, fed by a
 * stream, concatenates every part anew and holds several more). A blob
 * smaller than one part is sent with one PutObject. The first read-back or the commit completes
 * the upload; later reads are ranged GETs of the temporary object.
 */
export function createMultipartWriter(
  client: S3Client,
  bucket: string,
  tmpKey: string,
  options: MultipartWriterOptions,
): BlobWriter {
  const { partBytes, queueSize } = options;
  const free: Buffer[] = [];
  let current: Buffer | undefined;
  let filled = 0;
  let written = 0;
  let uploadId: Promise<string> | undefined;
  let nextPart = 1;
  const completed: CompletedPart[] = [];
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  let state: 'writing' | 'stored' | 'committed' | 'aborted' = 'writing';
  let finishing: Promise<void> | undefined;

  const started = (): Promise<string> =>
    (uploadId ??= client
      .send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: tmpKey }))
      .then(({ UploadId }) => {
        if (UploadId === undefined) throw new Error('CreateMultipartUpload answered without an UploadId');
        return UploadId;
      }));
  /** Sends `part` as the next part; its buffer goes back to `free` once sent. */
  const send = (part: Buffer, length: number): void => {
    const number = nextPart;
    nextPart += 1;
    const upload = async (): Promise<void> => {
      try {
        const { ETag } = await client.send(
          new UploadPartCommand({
            Bucket: bucket,
            Key: tmpKey,
            UploadId: await started(),
            PartNumber: number,
            Body: part.subarray(0, length),
            ContentLength: length,
          }),
        );
        completed.push({ PartNumber: number, ETag });
      } catch (error: unknown) {
        failure ??= error;
      }
    };
    const sending: Promise<void> = upload().finally(() => {
      free.push(part);
      inFlight.delete(sending);
    });
    inFlight.add(sending);
  };
  const check = (): void => {
    if (failure !== undefined)
      throw failure instanceof Error ? failure : new Error('a part of the upload failed', { cause: failure });
  };
  const finish = (): Promise<void> =>
    (finishing ??= (async () => {
      if (uploadId === undefined) {
        // Less than one part: no multipart upload at all.
        await client.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: tmpKey,
            Body: (current ?? Buffer.alloc(0)).subarray(0, filled),
            ContentLength: filled,
          }),
        );
      } else {
        if (filled > 0 && current !== undefined) send(current, filled);
        current = undefined;
        await Promise.all(inFlight);
        check();
        completed.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
        await client.send(
          new CompleteMultipartUploadCommand({
            Bucket: bucket,
            Key: tmpKey,
            UploadId: await uploadId,
            MultipartUpload: { Parts: completed },
          }),
        );
      }
      free.length = 0;
      current = undefined;
      state = 'stored';
    })());
  const usable = (): void => {
    if (state === 'committed' || state === 'aborted') throw new Error('blob writer is closed');
  };

  return {
    get written() {
      return written;
    },
    async write(bytes) {
      usable();
      if (finishing !== undefined) throw new Error('blob writer was read back: no more writes');
      check();
      for (const piece of Array.isArray(bytes) ? (bytes as readonly Buffer[]) : [bytes as Buffer]) {
        let at = 0;
        while (at < piece.length) {
          if (current === undefined) {
            while (free.length === 0 && inFlight.size >= queueSize) await Promise.race(inFlight);
            check();
            current = free.pop() ?? Buffer.allocUnsafeSlow(partBytes);
            filled = 0;
          }
          const n = piece.copy(current, filled, at);
          filled += n;
          at += n;
          if (filled === partBytes) {
            send(current, filled);
            current = undefined;
          }
        }
        written += piece.length;
      }
    },
    async read(position, length) {
      usable();
      await finish();
      return options.readRange(tmpKey, position, Math.min(length, written - position));
    },
    async commit(key) {
      usable();
      await finish();
      await options.publish(tmpKey, options.keyOf(key), written);
      state = 'committed';
      // Published: a temporary that survives a failed delete is the sweep's.
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: tmpKey })).catch(() => undefined);
    },
    async abort() {
      if (state === 'committed' || state === 'aborted') return;
      state = 'aborted';
      await finishing?.catch(() => undefined);
      await Promise.all(inFlight);
      free.length = 0;
      current = undefined;
      if (uploadId !== undefined) {
        const id = await uploadId.catch(() => undefined);
        if (id !== undefined) {
          await client
            .send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: tmpKey, UploadId: id }))
            .catch((error: unknown) => {
              // Completed already (then the object is deleted below), or swept by another replica.
              if (!isNotFound(error)) throw error;
            });
        }
      }
      // A completed upload (or a single PUT) left an object.
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: tmpKey }));
    },
  };
}
