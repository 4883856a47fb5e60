import { createHash, randomBytes } from 'node:crypto';
import type { registry as pb } from '@quanta/contracts';
import type { CallContext } from '@quanta/service-kit';
import { invalidArgument, isDomainError, notFound, resourceExhausted } from '@quanta/service-kit';
import type { BlobWriter } from '../core/blob-store.js';
import { recordDeploymentChanges } from '../core/change-feed.js';
import { refreshFollowers } from '../core/deployments-repo.js';
import { createModel, modelExists } from '../core/models-repo.js';
import { checkName, checkSha256, checkTags } from '../core/names.js';
import {
  DEFAULT_SEGMENT_SIZE,
  createSealedRangeReader,
  createSegmentSealer,
  encodeHeader,
} from '../core/sealed-format.js';
import { setAlias } from '../core/aliases-repo.js';
import { blobRecorded, recordBlob } from '../core/blobs-repo.js';
import { checkLineage, getVersion, insertVersion } from '../core/versions-repo.js';
import { tenantOf } from './context.js';
import type { RegistryDeps } from './deps.js';
import { uploadChunks } from './chunk-pool.js';
import { createKeyedMutex } from './keyed-mutex.js';

type Header = pb.UploadHeader;

function checkHeader(header: Header, maxBytes: number): void {
  checkName('model', header.model, 'header.model');
  checkTags(header.tags, 'header.tags');
  checkSha256(header.expectedSha256, 'header.expected_sha256');
  if (header.expectedSizeBytes > BigInt(maxBytes)) {
    throw resourceExhausted(
      `header.expected_size_bytes ${header.expectedSizeBytes} is over the upload limit of ${maxBytes} bytes`,
    );
  }
  const origin = header.lineage?.origin;
  if (origin?.$case === 'sourceUri' && origin.value.trim() === '')
    throw invalidArgument('header.lineage.source_uri is empty');
  if (origin?.$case === 'parent') checkName('model', origin.value.model, 'header.lineage.parent.model');
}

/**
 * Queues commits of equal content of one tenant in this process, so that they wait here rather
 * than each holding a database connection; the transaction's advisory lock is what serialises
 * them across replicas.
 */
const commitLock = createKeyedMutex();

/** What a version made inside the registry (CompressVersion) stores beside an upload's bytes, in the same commit. */
export interface UploadExtras {
  /** The report stored with the version. */
  readonly compression?: pb.CompressionReport;
  /** An alias (already checked) pointed at the new version in the commit that creates it. */
  readonly alias?: string;
}

/**
 * One UploadVersion call: hash, seal and spool the bytes as they arrive (memory stays at a couple
 * of segments), inspect the model through the sealed temporary blob, then publish the blob and the version in one step.
 * Every failure path removes what was written.
 */
export async function uploadVersion(
  deps: RegistryDeps,
  requests: AsyncIterable<pb.UploadVersionRequest>,
  ctx: CallContext,
  extras: UploadExtras = {},
): Promise<pb.ModelVersion> {
  const tenant = tenantOf(ctx);
  const iterator = requests[Symbol.asyncIterator]();
  const first = await iterator.next();
  if (first.done === true) throw invalidArgument('UploadVersion: the stream ended before its header message');
  if (first.value.part?.$case !== 'header')
    throw invalidArgument('UploadVersion: the first message must carry `header`');
  const header = first.value.part.value;
  checkHeader(header, deps.maxUploadBytes);
  const expectedSha = checkSha256(header.expectedSha256, 'header.expected_sha256');
  const expectedSize = Number(header.expectedSizeBytes);
  const key = { tenant, name: header.model };
  if (!header.createModel && !(await modelExists(deps.store, key))) {
    throw notFound(`model "${header.model}" not found: create it first, or set header.create_model`);
  }
  await checkLineage(deps.store, tenant, header.lineage);

  const dataKey = await deps.dataKeys.generate(tenant);
  // A call cancelled while the key was being made must not start a temporary blob now (a restart's
  // sweep may already have run).
  if (ctx.signal.aborted) {
    dataKey.plaintext.fill(0);
    ctx.signal.throwIfAborted();
  }
  let writer: BlobWriter | undefined;
  let inFlight: Promise<unknown> = Promise.resolve();
  // Received chunks whose bytes the sealer may still hold (it keeps views until a segment is full and
  // more follows), with the plaintext offset where each ends: pooled ones go back once sealed.
  const unsealed: { chunk: Buffer; end: number }[] = [];
  try {
    writer = await deps.blobs.create();
    const sealedHeader = {
      keyName: dataKey.keyName,
      keyVersion: dataKey.keyVersion,
      wrappedKey: dataKey.wrapped,
      noncePrefix: randomBytes(8),
      segmentSize: DEFAULT_SEGMENT_SIZE,
    };
    const sealer = createSegmentSealer(dataKey.plaintext, sealedHeader);
    const hash = createHash('sha256');
    let size = 0;
    let sealedBytes = 0;
    // Disk writes overlap with the next chunk: while one chunk's records are being written, the next message is read,
    // hashed and sealed. One write is in flight at a time, so memory stays at a couple of chunks and a slow disk still
    // pushes back on the client.
    const blobWriter = writer;
    const issue = async (parts: Buffer[]): Promise<void> => {
      await inFlight;
      const pending = blobWriter.write(parts);
      // Failures are seen when the next write (or the end) awaits it; never unhandled meanwhile.
      pending.catch(() => undefined);
      inFlight = pending;
    };
    const encodedHeader = encodeHeader(sealedHeader);
    let parts: Buffer[] = [encodedHeader];

    for (;;) {
      const next = await iterator.next();
      if (next.done === true) break;
      const part = next.value.part;
      if (part === undefined) continue;
      if (part.$case === 'header')
        throw invalidArgument(
          `UploadVersion: a second header arrived after ${size} bytes; only the first message carries one`,
        );
      const chunk = part.value;
      if (chunk.length === 0) continue;
      if (expectedSize > 0 && size + chunk.length > expectedSize) {
        throw invalidArgument(
          `UploadVersion: a chunk goes past the declared end: header.expected_size_bytes is ${expectedSize}, ` +
            `received ${size + chunk.length}`,
        );
      }
      if (size + chunk.length > deps.maxUploadBytes) {
        throw resourceExhausted(`UploadVersion: the file is over the upload limit of ${deps.maxUploadBytes} bytes`);
      }
      hash.update(chunk);
      const records = sealer.push(chunk);
      for (const record of records) parts.push(...record);
      size += chunk.length;
      unsealed.push({ chunk, end: size });
      // Each record push() returns is a full segment, sealed (its ciphertext is a new buffer).
      sealedBytes += records.length * sealedHeader.segmentSize;
      while (unsealed.length > 0 && unsealed[0]!.end <= sealedBytes) uploadChunks.release(unsealed.shift()!.chunk);
      await issue(parts);
      parts = [];
    }
    if (size === 0) throw invalidArgument('UploadVersion: the file is empty');
    if (expectedSize > 0 && size < expectedSize) {
      throw invalidArgument(
        `UploadVersion: the file is truncated: header.expected_size_bytes is ${expectedSize}, received ${size}`,
      );
    }
    parts.push(...sealer.finish());
    for (const { chunk } of unsealed.splice(0)) uploadChunks.release(chunk);
    await issue(parts);
    await inFlight;
    const sha256 = hash.digest('hex');
    if (expectedSha !== '' && sha256 !== expectedSha) {
      throw invalidArgument(
        `UploadVersion: digest mismatch: header.expected_sha256 is ${expectedSha}, the received bytes hash to ` +
          `${sha256}`,
      );
    }
    // Inspection reads the sealed temporary blob back, decrypting only the segments it asks for:
    // no plaintext copy of the model is written anywhere.
    const read = createSealedRangeReader({
      readAt: (position, length) => blobWriter.read(position, length),
      headerBytes: encodedHeader.length,
      header: sealedHeader,
      key: dataKey.plaintext,
      plainSize: size,
    });
    const signature = await deps.inspect({ size, read });
    ctx.signal.throwIfAborted();

    const version = await commitLock(`${tenant}/${sha256}`, () =>
      deps.store.transaction(async (tx) => {
        // Held to commit: a second upload of this content, through any replica, waits here and then
        // finds the blob recorded, so only one copy is published and no commit overwrites another's.
        await tx.query('SELECT pg_advisory_xact_lock(hashtext(current_schema()), hashtext($1))', [
          `blob:${tenant}/${sha256}`,
        ]);
        const now = deps.now();
        if (header.createModel && !(await modelExists(tx, key))) {
          // A concurrent push may create it first (ON CONFLICT DO NOTHING keeps the transaction usable).
          await createModel(tx, key, { description: '', tags: {} }, now).catch((error: unknown) => {
            if (!(isDomainError(error) && error.code === 'ALREADY_EXISTS')) throw error;
          });
        }
        let published = false;
        if (!(await blobRecorded(tx, tenant, sha256))) {
          await blobWriter.commit({ tenant, sha256 });
          published = true;
          await recordBlob(
            tx,
            tenant,
            {
              sha256,
              sizeBytes: size,
              storedBytes: blobWriter.written,
              dataKey: {
                keyName: sealedHeader.keyName,
                keyVersion: sealedHeader.keyVersion,
                wrappedKey: sealedHeader.wrappedKey,
              },
            },
            now,
          );
        }
        try {
          const number = await insertVersion(
            tx,
            key,
            {
              description: header.description,
              tags: header.tags,
              sha256,
              sizeBytes: size,
              storedBytes: blobWriter.written,
              signature,
              lineage: header.lineage,
              createdBy: ctx.principal?.subject ?? '',
              compression: extras.compression,
            },
            now,
          );
          if (extras.alias !== undefined) await setAlias(tx, key, extras.alias, number, now);
          const changes = await refreshFollowers(tx, tenant, header.model, now);
          await recordDeploymentChanges(
            tx,
            changes.map((change) => ({ type: 'upserted', ...change })),
          );
          return number;
        } catch (error: unknown) {
          // The transaction rolls back the blob row: take the published file back with it.
          if (published) await deps.blobs.delete({ tenant, sha256 });
          throw error;
        }
      }),
    );
    return await getVersion(deps.store, tenant, header.model, version);
  } finally {
    // A failed upload's chunks are no longer read by anything (sealing is synchronous).
    for (const { chunk } of unsealed.splice(0)) uploadChunks.release(chunk);
    dataKey.plaintext.fill(0);
    // A failed upload may leave one write running: let it settle before its file is closed and removed.
    await inFlight.catch(() => undefined);
    await writer?.abort();
  }
}
