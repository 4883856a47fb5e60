import { readVarint, registry as pb, varintLength, writeVarint } from '@quanta/contracts';
import { uploadChunks } from './chunk-pool.js';

/**
 * Wire codecs for the two byte-stream RPCs that copy a chunk's bytes at most once. The generated
 * ones copy them several times per message (ts-proto's writer grows and slices its buffer, then
 * `Buffer.from` copies the result; the reader's `Buffer.from` copies a received chunk), and on a
 * large transfer those copies and their garbage dominate the registry's CPU
 * (docs/decisions/registry-transfer-memory.md). These produce the same protobuf bytes; anything
 * they do not recognise goes to the generated code.
 */

// `bytes chunk = 2` in both UploadVersionRequest and DownloadVersionResponse: field 2, wire type 2.
const CHUNK_TAG = 0x12;

/** Callbacks to run once grpc-js has taken a message's bytes (see `chunkMessage`). */
const onSerialized = new WeakMap<pb.DownloadVersionResponse, () => void>();

/**
 * The buffer chunk messages are encoded into, reused for every one. That is safe because grpc-js
 * copies what a serializer returns into its own frame (`serializeMessage`: a 5-byte prefix, then
 * `copy`) before it calls the serializer again; the download tests check the bytes that arrive.
 * One copy per chunk into warm memory instead of a fresh 1 MiB buffer per chunk for V8 to collect.
 */
let scratch = Buffer.allocUnsafe(0);

/**
 * A `chunk` message of `length` bytes taken from the front of `parts` (which must hold at least
 * that many): a view of the one part when it is exactly that (a 1 MiB chunk of a 1 MiB segment, no
 * copy), else the bytes joined. `sent` runs when grpc-js serializes the message, i.e. takes it off
 * its send queue: the download uses it to keep only a couple of chunks queued.
 */
export function chunkMessage(parts: readonly Buffer[], length: number, sent?: () => void): pb.DownloadVersionResponse {
  let value: Buffer;
  if (parts.length > 0 && parts[0]!.length === length) value = parts[0]!;
  else {
    value = Buffer.allocUnsafe(length);
    let at = 0;
    for (const part of parts) {
      if (at === length) break;
      const n = Math.min(part.length, length - at);
      part.copy(value, at, 0, n);
      at += n;
    }
    if (at !== length) throw new Error(`chunkMessage: ${length} bytes asked, ${at} given`);
  }
  const message: pb.DownloadVersionResponse = { part: { $case: 'chunk', value } };
  if (sent !== undefined) onSerialized.set(message, sent);
  return message;
}

/**
 * DownloadVersion's response serializer: a chunk is encoded into the reused scratch buffer (the
 * same bytes as the generated encoder; the result is only valid until the next call, see
 * `scratch`), anything else by the generated code.
 */
export function serializeDownloadResponse(value: pb.DownloadVersionResponse): Buffer {
  if (value.part?.$case !== 'chunk') return Buffer.from(pb.DownloadVersionResponse.encode(value).finish());
  const chunk = value.part.value;
  const total = 1 + varintLength(chunk.length) + chunk.length;
  if (scratch.length < total) scratch = Buffer.allocUnsafe(Math.max(total, 1024 * 1024 + 16));
  scratch[0] = CHUNK_TAG;
  const head = writeVarint(scratch, 1, chunk.length);
  chunk.copy(scratch, head);
  const sent = onSerialized.get(value);
  if (sent !== undefined) {
    onSerialized.delete(value);
    sent();
  }
  return scratch.subarray(0, total);
}

/**
 * An UploadVersionRequest that is exactly one `chunk` field (what every client sends after the
 * header) is copied once into a pooled buffer (`uploadChunks`, which the upload gives back when it
 * has sealed the bytes), or when none is free taken as a view of the received buffer (which grpc-js
 * allocates per message and never reuses); anything else is decoded by the generated code.
 */
export function deserializeUploadRequest(bytes: Buffer): pb.UploadVersionRequest {
  if (bytes.length > 0 && bytes[0] === CHUNK_TAG) {
    const length = readVarint(bytes, 1, 8);
    if (length !== undefined && length[1] + length[0] === bytes.length) {
      const view = bytes.subarray(length[1]);
      return { part: { $case: 'chunk', value: uploadChunks.copy(view) ?? view } };
    }
  }
  return pb.UploadVersionRequest.decode(bytes);
}

/** RegistryService's definition with the byte streams' codecs swapped for the ones above. */
export function registryServiceDefinition(): typeof pb.RegistryServiceService {
  const base = pb.RegistryServiceService;
  return {
    ...base,
    uploadVersion: { ...base.uploadVersion, requestDeserialize: deserializeUploadRequest },
    downloadVersion: { ...base.downloadVersion, responseSerialize: serializeDownloadResponse },
  };
}
