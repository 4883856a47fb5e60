import { createHash } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { registry as pb } from '@quanta/contracts';
import type { CallContext } from '@quanta/service-kit';
import { dataLoss, failedPrecondition, invalidArgument } from '@quanta/service-kit';
import type { BlobReadHandle } from '../core/blob-store.js';
import { blobDataKey } from '../core/blob-keys.js';
import { dropPrefix } from '../core/buffer-parts.js';
import { parseRef } from '../core/names.js';
import { SealedFormatError, openSealedBlob } from '../core/sealed-format.js';
import { getVersion, resolveVersion } from '../core/versions-repo.js';
import { tenantFor } from './context.js';
import type { RegistryDeps } from './deps.js';
import { chunkMessage } from './wire-codecs.js';

const DEFAULT_CHUNK = 1024 * 1024;
const MAX_CHUNK = 4 * 1024 * 1024;

/**
 * Chunk messages that grpc-js has been given but not yet serialized (taken off its send queue).
 * Its queue holds 16 messages before `write` pushes back, and 16 queued 1 MiB chunks outlive the
 * young generation's collections, so V8 promotes them and then needs full mark-compacts of the
 * whole heap to free them: keeping the queue short keeps every chunk buffer short-lived.
 */
const QUEUED_CHUNKS = 2;

/**
 * Cuts a stream of plaintext segments into `chunk` messages of exactly `size` bytes (the last one
 * shorter): a 1 MiB chunk of a 1 MiB segment is the segment's buffer itself. Holds at most `size`
 * bytes plus one segment, and waits (abortably) while QUEUED_CHUNKS messages are queued unsent.
 */
async function* chunkMessages(
  source: AsyncIterable<Buffer>,
  size: number,
  signal: AbortSignal,
): AsyncGenerator<pb.DownloadVersionResponse, void, undefined> {
  const sentEvents = new EventEmitter();
  let queued = 0;
  const sent = (): void => {
    queued -= 1;
    sentEvents.emit('sent');
  };
  const next = async (parts: readonly Buffer[], length: number): Promise<pb.DownloadVersionResponse> => {
    while (queued >= QUEUED_CHUNKS) await once(sentEvents, 'sent', { signal });
    queued += 1;
    return chunkMessage(parts, length, sent);
  };
  let held: Buffer[] = [];
  let heldBytes = 0;
  for await (const segment of source) {
    held.push(segment);
    heldBytes += segment.length;
    while (heldBytes >= size) {
      yield await next(held, size);
      held = dropPrefix(held, size);
      heldBytes -= size;
    }
  }
  if (heldBytes > 0) yield await next(held, heldBytes);
}

/**
 * DownloadVersion: the header, then the plaintext as it is decrypted. The sha256 is checked as the
 * bytes go; a mismatch (or any damage to the sealed file) ends the stream with DATA_LOSS.
 */
export async function* downloadVersion(
  deps: RegistryDeps,
  request: pb.DownloadVersionRequest,
  ctx: CallContext,
): AsyncGenerator<pb.DownloadVersionResponse, void, undefined> {
  const tenant = tenantFor(ctx, request.tenant);
  if (request.chunkSizeBytes > MAX_CHUNK)
    throw invalidArgument(`chunk_size_bytes ${request.chunkSizeBytes} is over the maximum of ${MAX_CHUNK}`);
  const chunkSize = request.chunkSizeBytes === 0 ? DEFAULT_CHUNK : request.chunkSizeBytes;
  const ref = parseRef(request.ref);
  const number = await resolveVersion(deps.store, tenant, ref);
  const version = await getVersion(deps.store, tenant, ref.model, number);
  if (version.status !== pb.VersionStatus.VERSION_STATUS_READY)
    throw failedPrecondition(`${ref.model}:${number} is not READY`);
  yield { part: { $case: 'header', value: { version } } };
  yield* chunkMessages(versionPlaintext(deps, tenant, version), chunkSize, ctx.signal);
}

/**
 * A READY version's plaintext, segment by segment as it is decrypted. The sha256 and size are
 * checked as the bytes go: a mismatch (or any damage to the sealed file) throws DATA_LOSS after the
 * last segment, so a consumer must treat the bytes as valid only when the iteration ends normally.
 */
export async function* versionPlaintext(
  deps: RegistryDeps,
  tenant: string,
  version: pb.ModelVersion,
): AsyncGenerator<Buffer, void, undefined> {
  const label = `${version.model}:${version.version}`;
  const hash = createHash('sha256');
  let size = 0n;
  const blob = { tenant, sha256: version.sha256 };
  let keyCopy: Buffer | undefined;
  let file: BlobReadHandle | undefined;
  try {
    // A rewrapped key (RewrapDataKeys) is kept in the database and wins over the header's.
    const current = await blobDataKey(deps.store, tenant, version.sha256);
    file = await deps.blobs.open(blob);
    const plain = openSealedBlob(file, async (header) => {
      keyCopy = await deps.dataKeys.unwrap(tenant, current ?? header);
      return keyCopy;
    });
    for await (const segment of plain) {
      hash.update(segment);
      size += BigInt(segment.length);
      yield segment;
    }
  } catch (error: unknown) {
    if (error instanceof SealedFormatError)
      throw dataLoss(`the stored file of ${label} is damaged: ${error.message}`, { cause: error });
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      throw dataLoss(`the stored file of ${label} is missing`, { cause: error });
    throw error;
  } finally {
    keyCopy?.fill(0);
    await file?.close();
  }
  const digest = hash.digest('hex');
  if (digest !== version.sha256 || size !== version.sizeBytes) {
    throw dataLoss(
      `the stored file of ${label} does not match its digest (sha256 ${digest}, ${size} bytes; expected ` +
        `${version.sha256}, ${version.sizeBytes} bytes)`,
    );
  }
}
