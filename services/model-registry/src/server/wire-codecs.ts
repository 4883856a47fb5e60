import { registry as pb } from '@quanta/contracts';

/**
 * Faster wire codecs for the two byte-stream RPCs. The generated ones copy a chunk's bytes
 * several times per message (ts-proto's writer grows and slices its buffer, then `Buffer.from`
 * copies the result; the reader's `Buffer.from` copies a received chunk), and at 1 GiB those
 * copies and the garbage they make were most of the registry's cost. These produce the same
 * protobuf bytes, with one copy at most; anything they do not recognise goes to the generated code.
 */

// `bytes chunk = 2` in both UploadVersionRequest and DownloadVersionResponse: field 2, wire type 2.
const CHUNK_TAG = 0x12;

/** Messages whose encoding is already made (see `encodeChunkMessage`); the serializer sends those bytes. */
const preEncoded = new WeakMap<pb.DownloadVersionResponse, Buffer>();

function varintLength(n: number): number {
  let length = 1;
  for (let v = n; v >= 0x80; v = Math.floor(v / 128)) length += 1;
  return length;
}

function writeVarint(target: Buffer, offset: number, n: number): number {
  let v = n;
  let at = offset;
  while (v >= 0x80) {
    target[at++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  target[at++] = v;
  return at;
}

/**
 * A `chunk` message of `length` bytes taken from the front of `parts` (which must hold at least
 * that many), encoded once: the bytes are copied straight into the protobuf encoding, and the
 * message's `chunk` is a view of them.
 */
export function encodeChunkMessage(parts: readonly Buffer[], length: number): pb.DownloadVersionResponse {
  const head = 1 + varintLength(length);
  const encoded = Buffer.allocUnsafe(head + length);
  encoded[0] = CHUNK_TAG;
  writeVarint(encoded, 1, length);
  let at = head;
  for (const part of parts) {
    if (at === encoded.length) break;
    const n = Math.min(part.length, encoded.length - at);
    part.copy(encoded, at, 0, n);
    at += n;
  }
  if (at !== encoded.length) throw new Error(`encodeChunkMessage: ${length} bytes asked, ${at - head} given`);
  const message: pb.DownloadVersionResponse = { part: { $case: 'chunk', value: encoded.subarray(head) } };
  preEncoded.set(message, encoded);
  return message;
}

export function serializeDownloadResponse(value: pb.DownloadVersionResponse): Buffer {
  return preEncoded.get(value) ?? Buffer.from(pb.DownloadVersionResponse.encode(value).finish());
}

/** Reads a varint at `offset`; returns [value, next offset], or undefined if it runs off the end or past 2^53. */
function readVarint(bytes: Buffer, offset: number): [number, number] | undefined {
  let value = 0;
  let scale = 1;
  for (let at = offset; at < bytes.length && at < offset + 8; at++) {
    const b = bytes[at]!;
    value += (b & 0x7f) * scale;
    if ((b & 0x80) === 0) return [value, at + 1];
    scale *= 128;
  }
  return undefined;
}

/**
 * An UploadVersionRequest that is exactly one `chunk` field (what every client sends after the
 * header) becomes a view of the received buffer, which grpc-js allocates per message and never
 * reuses; anything else is decoded by the generated code.
 */
export function deserializeUploadRequest(bytes: Buffer): pb.UploadVersionRequest {
  if (bytes.length > 0 && bytes[0] === CHUNK_TAG) {
    const length = readVarint(bytes, 1);
    if (length !== undefined && length[1] + length[0] === bytes.length) {
      return { part: { $case: 'chunk', value: bytes.subarray(length[1]) } };
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
