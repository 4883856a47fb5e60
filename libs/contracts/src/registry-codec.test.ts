// The hand-written UploadVersion and DownloadVersion codecs against the generated ones, on random
// messages and bytes, and the lean client against a real gRPC server.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LeanRegistryServiceClient,
  decodeDownloadVersionResponse,
  encodeUploadVersionRequest,
  readUploadChunks,
  registry as pb,
} from './index.js';

const text = fc.string({ unit: 'binary', maxLength: 12 });
const chunk = fc
  .oneof(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ minLength: 16_000, maxLength: 20_000 }))
  .map((b) => Buffer.from(b));
const uploadHeader: fc.Arbitrary<pb.UploadHeader> = fc.record({
  model: text,
  description: text,
  tags: fc.dictionary(text, text, { maxKeys: 3 }),
  expectedSha256: text,
  expectedSizeBytes: fc.bigInt({ min: 0n, max: 2n ** 63n - 1n }),
  createModel: fc.boolean(),
  lineage: fc.constant(undefined),
});
const upload: fc.Arbitrary<pb.UploadVersionRequest> = fc.oneof(
  fc.constant({ part: undefined }),
  uploadHeader.map((value) => ({ part: { $case: 'header' as const, value } })),
  chunk.map((value) => ({ part: { $case: 'chunk' as const, value } })),
);
const download: fc.Arbitrary<pb.DownloadVersionResponse> = fc.oneof(
  fc.constant({ part: undefined }),
  fc.record({ model: text, version: fc.nat(), sizeBytes: fc.bigInt({ min: 0n, max: 2n ** 63n - 1n }) }).map((v) => ({
    part: { $case: 'header' as const, value: { version: pb.ModelVersion.fromPartial(v) } },
  })),
  chunk.map((value) => ({ part: { $case: 'chunk' as const, value } })),
);
const generatedDownload = (m: pb.DownloadVersionResponse): Buffer =>
  Buffer.from(pb.DownloadVersionResponse.encode(m).finish());

/** What a decoder makes of bytes: the message, or the error's message. */
function outcome<T>(decode: () => T): { ok: T } | { error: string } {
  try {
    return { ok: decode() };
  } catch (error: unknown) {
    return { error: String(error) };
  }
}

describe('encodeUploadVersionRequest', () => {
  it('writes the bytes the generated encoder writes', () => {
    fc.assert(
      fc.property(upload, (m) => {
        expect(encodeUploadVersionRequest(m).equals(pb.UploadVersionRequest.encode(m).finish())).toBe(true);
      }),
    );
  });

  it('round-trips through the generated decoder', () => {
    fc.assert(
      fc.property(upload, (m) => {
        expect(pb.UploadVersionRequest.decode(encodeUploadVersionRequest(m))).toEqual(
          pb.UploadVersionRequest.decode(pb.UploadVersionRequest.encode(m).finish()),
        );
      }),
    );
  });

  it('copies a chunk, so later writes to it do not change the encoding', () => {
    const value = Buffer.from([1, 2, 3]);
    const encoded = encodeUploadVersionRequest({ part: { $case: 'chunk', value } });
    value[0] = 9;
    expect([...encoded]).toEqual([0x12, 3, 1, 2, 3]);
  });
});

describe('readUploadChunks', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'quanta-registry-codec-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads the file in order; each chunk encodes as the generated encoder does, in its read buffer', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 5000 }),
        fc.integer({ min: 1, max: 300 }),
        fc.constantFrom(1, 127, 128, 1000, 16_384),
        async (content, start, chunkSize) => {
          const file = join(dir, 'model.bin');
          await writeFile(file, content);
          const from = Math.min(start, content.length);
          const chunks: Buffer[] = [];
          for await (const c of readUploadChunks(file, chunkSize, from)) {
            expect(c.length).toBeLessThanOrEqual(chunkSize);
            const encoded = encodeUploadVersionRequest({ part: { $case: 'chunk', value: c } });
            expect(
              encoded.equals(pb.UploadVersionRequest.encode({ part: { $case: 'chunk', value: c } }).finish()),
            ).toBe(true);
            // No copy: the encoding ends in the very bytes the chunk views.
            expect(encoded.buffer).toBe(c.buffer);
            expect(encoded.byteOffset + encoded.length).toBe(c.byteOffset + c.length);
            chunks.push(c);
          }
          expect(Buffer.concat(chunks).equals(Buffer.from(content.subarray(from)))).toBe(true);
          expect(chunks.slice(0, -1).every((c) => c.length === chunkSize)).toBe(true);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('rejects a chunk size that is not a positive integer', async () => {
    await expect(readUploadChunks(join(dir, 'none'), 0).next()).rejects.toThrow(/chunk size/);
  });
});

describe('decodeDownloadVersionResponse', () => {
  it('decodes what the generated decoder decodes', () => {
    fc.assert(
      fc.property(download, (m) => {
        const bytes = generatedDownload(m);
        expect(decodeDownloadVersionResponse(bytes)).toEqual(pb.DownloadVersionResponse.decode(bytes));
      }),
    );
  });

  it('returns a chunk as a view of the received bytes', () => {
    const bytes = generatedDownload({ part: { $case: 'chunk', value: Buffer.alloc(1000, 7) } });
    const m = decodeDownloadVersionResponse(bytes);
    expect(m.part?.$case).toBe('chunk');
    const value = m.part?.$case === 'chunk' ? m.part.value : Buffer.alloc(0);
    expect(value.buffer).toBe(bytes.buffer);
    expect(value.length).toBe(1000);
  });

  it('fails as the generated decoder fails on corrupted or random bytes', () => {
    const corrupted = fc
      .tuple(download, fc.nat(), fc.nat(255), fc.constantFrom('truncate', 'extend', 'flip', 'length'))
      .map(([m, at, byte, how]) => {
        const bytes = generatedDownload(m);
        const i = bytes.length === 0 ? 0 : at % bytes.length;
        if (how === 'truncate') return bytes.subarray(0, i);
        if (how === 'extend') return Buffer.concat([bytes, Buffer.from([byte])]);
        const out = Buffer.from(bytes.length === 0 ? [0x12] : bytes);
        out[how === 'length' ? Math.min(1, out.length - 1) : i % out.length] = byte;
        return out;
      });
    const anyBytes = fc.oneof(
      corrupted,
      fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)),
      fc.uint8Array({ maxLength: 8 }).map((b) => Buffer.from([0x12, ...b])),
    );
    fc.assert(
      fc.property(anyBytes, (bytes) => {
        expect(outcome(() => decodeDownloadVersionResponse(bytes))).toEqual(
          outcome(() => pb.DownloadVersionResponse.decode(bytes)),
        );
      }),
      { numRuns: 1000 },
    );
  });
});

describe('LeanRegistryServiceClient', () => {
  const chunks = [Buffer.from('hello, '), Buffer.alloc(70_000, 3), Buffer.alloc(0), Buffer.from('world')];
  const version = pb.ModelVersion.fromPartial({ model: 'm', version: 1, sizeBytes: 70_012n });
  let server: grpc.Server;
  let address = '';
  const received: pb.UploadVersionRequest[] = [];

  beforeAll(async () => {
    server = new grpc.Server();
    const unimplemented = (_call: unknown, callback: grpc.sendUnaryData<never>): void =>
      callback({ code: grpc.status.UNIMPLEMENTED });
    const impl = Object.fromEntries(
      Object.keys(pb.RegistryServiceService).map((k) => [k, unimplemented]),
    ) as unknown as pb.RegistryServiceServer;
    impl.uploadVersion = (call, callback) => {
      call.on('data', (m: pb.UploadVersionRequest) => received.push(m));
      call.on('end', () => callback(null, { version }));
    };
    impl.downloadVersion = (call) => {
      call.write({ part: { $case: 'header', value: { version } } });
      for (const value of chunks) call.write({ part: { $case: 'chunk', value } });
      call.end();
    };
    server.addService(pb.RegistryServiceService, impl);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    address = `127.0.0.1:${port}`;
  });
  afterAll(() => {
    server.forceShutdown();
  });

  it('uploads and downloads the messages the generated client would', async () => {
    const client = new LeanRegistryServiceClient(address, grpc.credentials.createInsecure());
    try {
      const header: pb.UploadHeader = {
        model: 'm',
        description: 'd',
        tags: { a: 'b' },
        expectedSha256: '',
        expectedSizeBytes: 70_012n,
        createModel: true,
        lineage: undefined,
      };
      const sent: pb.UploadVersionRequest[] = [
        { part: { $case: 'header', value: header } },
        ...chunks.map((value) => ({ part: { $case: 'chunk' as const, value } })),
      ];
      const response = await new Promise<pb.UploadVersionResponse>((resolve, reject) => {
        const call = client.uploadVersion((e, r) =>
          e ? reject(e) : r === undefined ? reject(new Error('no response')) : resolve(r),
        );
        for (const m of sent) call.write(m);
        call.end();
      });
      expect(response.version).toEqual(version);
      expect(received).toEqual(sent);

      const got: pb.DownloadVersionResponse[] = [];
      for await (const m of client.downloadVersion({
        ref: 'm:1',
        chunkSizeBytes: 0,
        tenant: '',
      }) as AsyncIterable<pb.DownloadVersionResponse>)
        got.push(m);
      expect(got).toEqual([
        { part: { $case: 'header', value: { version } } },
        ...chunks.map((value) => ({ part: { $case: 'chunk', value } })),
      ]);

      await expect(
        new Promise((resolve, reject) => client.getVersion({ ref: 'm:1' }, (e, r) => (e ? reject(e) : resolve(r)))),
      ).rejects.toMatchObject({ code: grpc.status.UNIMPLEMENTED });
    } finally {
      client.close();
    }
  });
});
