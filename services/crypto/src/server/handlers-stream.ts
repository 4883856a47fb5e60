import { Readable } from 'node:stream';
import type { Transform } from 'node:stream';
import type { crypto as pb } from '@quanta/contracts';
import { bidiStreaming, invalidArgument } from '@quanta/service-kit';
import type { KeyManager } from '../core/index.js';
import { actorOf } from './context.js';
import { optionalBytes } from './convert.js';

type StreamHandlers = Pick<pb.CryptoServiceServer, 'encryptStream' | 'decryptStream'>;
type Part = { $case: 'header'; value: pb.StreamHeader } | { $case: 'chunk'; value: Buffer } | undefined;

/** The first message must be the header; it says which key and which associated data. */
async function readHeader(requests: AsyncIterator<{ part?: Part }>, rpc: string): Promise<pb.StreamHeader> {
  const first = await requests.next();
  if (first.done === true) throw invalidArgument(`${rpc}: the stream ended before its header message`);
  const part = first.value.part;
  if (part?.$case !== 'header')
    throw invalidArgument(
      `${rpc}: the first message must carry "header" (key_name, associated_data), not "${part?.$case ?? 'nothing'}"`,
    );
  if (part.value.keyName === '') throw invalidArgument(`${rpc}: header.key_name is empty`);
  return part.value;
}

/** The chunks after the header; a second header is a client bug worth naming. */
async function* chunksOf(requests: AsyncIterator<{ part?: Part }>, rpc: string): AsyncGenerator<Buffer> {
  for (let index = 1; ; index++) {
    const next = await requests.next();
    if (next.done === true) return;
    const part = next.value.part;
    if (part?.$case === 'header')
      throw invalidArgument(`${rpc}: message ${index} carries a second header; only the first message may`);
    if (part?.$case === 'chunk' && part.value.length > 0) yield part.value;
  }
}

/**
 * Pushes the request chunks through the engine's transform and yields what comes out. The readable
 * source holds one chunk at most and the transform its high-water mark, so when the client reads
 * slowly, backpressure reaches grpc-js, which stops reading from the network: memory stays bounded.
 */
async function* through(chunks: AsyncIterable<Buffer>, transform: Transform): AsyncGenerator<Buffer> {
  const source = Readable.from(chunks, { objectMode: false, highWaterMark: 1 });
  source.once('error', (error) => transform.destroy(error));
  source.pipe(transform);
  try {
    for await (const chunk of transform as AsyncIterable<Buffer>) yield chunk;
  } finally {
    source.destroy();
    transform.destroy();
  }
}

/** Streaming encryption for payloads larger than one message (scope `keys:use`). */
export function createStreamHandlers(keys: KeyManager): StreamHandlers {
  return {
    encryptStream: bidiStreaming<pb.EncryptStreamRequest, pb.EncryptStreamResponse>(async function* (requests, ctx) {
      const iterator = requests[Symbol.asyncIterator]();
      const header = await readHeader(iterator, 'EncryptStream');
      const { version, transform } = await keys.encryptStream(
        actorOf(ctx),
        header.keyName,
        optionalBytes(header.associatedData),
      );
      yield { part: { $case: 'header', value: { keyVersion: version } } };
      for await (const chunk of through(chunksOf(iterator, 'EncryptStream'), transform)) {
        yield { part: { $case: 'chunk', value: chunk } };
      }
    }),

    decryptStream: bidiStreaming<pb.DecryptStreamRequest, pb.DecryptStreamResponse>(async function* (requests, ctx) {
      const iterator = requests[Symbol.asyncIterator]();
      const header = await readHeader(iterator, 'DecryptStream');
      const transform = await keys.decryptStream(actorOf(ctx), header.keyName, optionalBytes(header.associatedData));
      for await (const chunk of through(chunksOf(iterator, 'DecryptStream'), transform)) {
        yield { chunk };
      }
    }),
  };
}
