import { randomBytes } from 'node:crypto';
import { registry as pb } from '@quanta/contracts';
import { describe, expect, it } from 'vitest';
import { uploadChunks } from './chunk-pool.js';
import { chunkMessage, deserializeUploadRequest, serializeDownloadResponse } from './wire-codecs.js';

// The second source is the generated ts-proto code: the fast paths must give the same bytes and messages.
const generated = (m: pb.DownloadVersionResponse): Buffer => Buffer.from(pb.DownloadVersionResponse.encode(m).finish());

describe('registry wire codecs', () => {
  it('encodes a chunk message from pieces exactly as the generated encoder does (1-, 2- and 3-byte lengths)', () => {
    for (const size of [0, 1, 127, 128, 16_383, 16_384, 1_048_576, 4 * 1_048_576]) {
      const bytes = randomBytes(size);
      const pieces = [bytes.subarray(0, size >> 1), bytes.subarray(size >> 1), randomBytes(7)];
      const message = chunkMessage(pieces, size);
      expect(message.part?.$case === 'chunk' && message.part.value.equals(bytes)).toBe(true);
      expect(serializeDownloadResponse(message).equals(generated({ part: { $case: 'chunk', value: bytes } }))).toBe(
        true,
      );
    }
    expect(() => chunkMessage([randomBytes(3)], 4)).toThrow(/4 bytes asked, 3 given/);
  });

  it('takes a part that is exactly the chunk as the message bytes (no copy) and reports when it is serialized', () => {
    const segment = randomBytes(4096);
    let sent = 0;
    const message = chunkMessage([segment, randomBytes(10)], 4096, () => (sent += 1));
    expect(message.part?.$case === 'chunk' && message.part.value === segment).toBe(true);
    expect(sent).toBe(0);
    expect(serializeDownloadResponse(message).equals(generated(message))).toBe(true);
    expect(sent).toBe(1);
    serializeDownloadResponse(message); // the callback runs once
    expect(sent).toBe(1);
  });

  it('serializes messages it did not encode (the header) with the generated code', () => {
    const header: pb.DownloadVersionResponse = { part: { $case: 'header', value: { version: undefined } } };
    expect(serializeDownloadResponse(header).equals(generated(header))).toBe(true);
    const plain: pb.DownloadVersionResponse = { part: { $case: 'chunk', value: Buffer.from('abc') } };
    expect(serializeDownloadResponse(plain).equals(generated(plain))).toBe(true);
  });

  it(
    'decodes an upload chunk into a pooled buffer (or, too small or large for one, as a view of the received ' +
      'bytes), and anything else as the generated decoder does',
    () => {
      const chunk = randomBytes(300_000);
      const wire = Buffer.from(pb.UploadVersionRequest.encode({ part: { $case: 'chunk', value: chunk } }).finish());
      const fast = deserializeUploadRequest(wire);
      const value = fast.part?.$case === 'chunk' ? fast.part.value : Buffer.alloc(0);
      expect(value.equals(chunk)).toBe(true);
      expect(value.buffer).not.toBe(wire.buffer); // copied into the pool: the received buffer can go
      expect(value.buffer.byteLength).toBe(1024 * 1024);
      uploadChunks.release(value);
      for (const size of [1000, 2 * 1024 * 1024]) {
        const other = randomBytes(size);
        const otherWire = Buffer.from(
          pb.UploadVersionRequest.encode({ part: { $case: 'chunk', value: other } }).finish(),
        );
        const decoded = deserializeUploadRequest(otherWire);
        expect(decoded.part?.$case === 'chunk' && decoded.part.value.equals(other)).toBe(true);
        // A view, no copy.
        expect(decoded.part?.$case === 'chunk' && decoded.part.value.buffer === otherWire.buffer).toBe(true);
      }

      const header = Buffer.from(
        pb.UploadVersionRequest.encode({
          part: {
            $case: 'header',
            value: {
              model: 'm',
              description: 'd',
              tags: { a: 'b' },
              expectedSha256: '',
              expectedSizeBytes: 5n,
              createModel: true,
              lineage: undefined,
            },
          },
        }).finish(),
      );
      expect(deserializeUploadRequest(header)).toEqual(pb.UploadVersionRequest.decode(header));
      // A chunk followed by another field is not "exactly one chunk": the generated decoder takes it (last one wins).
      const twoFields = Buffer.concat([
        wire,
        Buffer.from(pb.UploadVersionRequest.encode({ part: { $case: 'chunk', value: Buffer.from('zz') } }).finish()),
      ]);
      expect(deserializeUploadRequest(twoFields)).toEqual(pb.UploadVersionRequest.decode(twoFields));
      // A length that runs past the end falls through to the generated decoder, which rejects it.
      expect(() => deserializeUploadRequest(wire.subarray(0, wire.length - 1))).toThrow();
    },
  );
});
