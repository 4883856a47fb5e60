// Hand-written codecs for the registry's byte streams on the client side: UploadVersionRequest
// (encode) and DownloadVersionResponse (decode), the counterparts of the registry's own
// (services/model-registry/src/server/wire-codecs.ts). The generated ts-proto encoder grows its
// buffer, slices it and copies each chunk about three times; here a chunk is copied once, or not at
// all when it was read by `readUploadChunks` (into a buffer with room for its protobuf prefix), and
// a downloaded chunk is a view of the received message. The same protobuf bytes on the wire; every
// other message (headers, malformed input) goes through the generated code, so the errors match.
import { open } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import {
  DownloadVersionResponse,
  RegistryServiceService,
  UploadVersionRequest,
} from './gen/quanta/registry/v1/registry.js';
import type { RegistryServiceClient } from './gen/quanta/registry/v1/registry.js';
import { readVarint, varintLength, writeVarint } from './varint.js';

/** The tag of `bytes chunk = 2`, the same in UploadVersionRequest and DownloadVersionResponse. */
const CHUNK_TAG = 0x12;

/** Encoded UploadVersionRequests of the chunks `readUploadChunks` yields, by chunk. */
const prepared = new WeakMap<Uint8Array, Buffer>();

/**
 * The encoded UploadVersionRequest of `message`. A chunk message is its prefix and the chunk,
 * the chunk copied once (or sent as read when `readUploadChunks` read it); others are encoded by
 * the generated code.
 */
export function encodeUploadVersionRequest(message: UploadVersionRequest): Buffer {
  if (message.part?.$case !== 'chunk') return Buffer.from(UploadVersionRequest.encode(message).finish());
  const chunk = message.part.value;
  const ready = prepared.get(chunk);
  const prefixLength = 1 + varintLength(chunk.length);
  // A chunk read with room for its prefix (readUploadChunks) gets its prefix written in front of it.
  const out = ready?.length === prefixLength + chunk.length ? ready : Buffer.allocUnsafe(prefixLength + chunk.length);
  out[0] = CHUNK_TAG;
  writeVarint(out, 1, chunk.length);
  if (out !== ready) out.set(chunk, prefixLength);
  return out;
}

/**
 * The DownloadVersionResponse in `bytes`. A message holding only a chunk decodes to a view of
 * `bytes` (no copy); any other message, malformed ones included, goes to the generated decoder.
 */
export function decodeDownloadVersionResponse(bytes: Buffer): DownloadVersionResponse {
  if (bytes.length > 1 && bytes[0] === CHUNK_TAG) {
    // At most 5 length bytes (a uint32, as the generated reader reads it).
    const length = readVarint(bytes, 1, 5);
    if (length !== undefined && length[0] < 2 ** 32 && length[1] + length[0] === bytes.length)
      return { part: { $case: 'chunk', value: bytes.subarray(length[1]) } };
  }
  return DownloadVersionResponse.decode(bytes);
}

/**
 * The file at `path` from byte `start` in chunks of `chunkSize` bytes (the last may be shorter),
 * each read into a fresh buffer after room for its protobuf prefix, so that
 * `encodeUploadVersionRequest` sends the chunk as read, with no copy. A chunk is a Buffer of its
 * own: the caller may keep it.
 */
export async function* readUploadChunks(
  path: string,
  chunkSize = 1 << 20,
  start = 0,
): AsyncGenerator<Buffer, void, undefined> {
  if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0)
    throw new RangeError(`chunk size ${chunkSize} is not a positive integer`);
  const room = 1 + varintLength(chunkSize);
  const handle = await open(path, 'r');
  try {
    for (let position = start; ;) {
      const buffer = Buffer.allocUnsafe(room + chunkSize);
      const { bytesRead } = await handle.read(buffer, room, chunkSize, position);
      if (bytesRead === 0) return;
      position += bytesRead;
      // The prefix itself is written by encodeUploadVersionRequest, in the room left before the chunk.
      const from = room - (1 + varintLength(bytesRead));
      const chunk = buffer.subarray(room, room + bytesRead);
      prepared.set(chunk, buffer.subarray(from, room + bytesRead));
      yield chunk;
    }
  } finally {
    await handle.close();
  }
}

/** The service definition of RegistryService with the lean UploadVersion and DownloadVersion codecs. */
export const leanRegistryServiceDefinition = {
  ...RegistryServiceService,
  uploadVersion: { ...RegistryServiceService.uploadVersion, requestSerialize: encodeUploadVersionRequest },
  downloadVersion: { ...RegistryServiceService.downloadVersion, responseDeserialize: decodeDownloadVersionResponse },
} as const;

/**
 * A RegistryService client class, used like the generated `RegistryServiceClient`, whose
 * uploadVersion and downloadVersion use the lean codecs above (the other methods the generated ones).
 */
export const LeanRegistryServiceClient = grpc.makeGenericClientConstructor(
  leanRegistryServiceDefinition,
  'quanta.registry.v1.RegistryService',
) as unknown as typeof RegistryServiceClient;
