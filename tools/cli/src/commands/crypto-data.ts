import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import type { crypto as pb } from '@quanta/contracts';
import type { Command } from 'commander';
import { CliError } from '../errors.js';
import { action } from '../action.js';
import { parseSeconds, withCrypto } from './keys.js';

/** First byte of each ciphertext format (see crypto.proto): unary AEAD, streaming AEAD; Fernet tokens are text. */
const UNARY_FORMAT = 0x01;
const STREAM_FORMAT = 0x02;
const PIECE = 256 * 1024;

/** stdin as a pull-based reader: lets us peek at the first bytes, then stream the rest. */
function stdinReader(): { next(): Promise<Buffer | undefined>; rest(): Promise<Buffer> } {
  const iterator = (process.stdin as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const next = async (): Promise<Buffer | undefined> => {
    const item = await iterator.next();
    return item.done === true ? undefined : item.value;
  };
  return {
    next,
    async rest() {
      const chunks: Buffer[] = [];
      for (let c = await next(); c !== undefined; c = await next()) chunks.push(c);
      return Buffer.concat(chunks);
    },
  };
}

async function writeOut(data: Buffer): Promise<void> {
  if (!process.stdout.write(data)) await once(process.stdout, 'drain');
}

function splitPieces(data: Buffer): Buffer[] {
  const pieces: Buffer[] = [];
  for (let i = 0; i < data.length; i += PIECE) pieces.push(data.subarray(i, i + PIECE));
  return pieces;
}

type StreamCall<Req, Res> = grpc.ClientDuplexStream<Req, Res>;

/**
 * Runs one streaming call: writes `first` messages, then every later stdin chunk, with
 * backpressure both ways; `onReply` gets each reply in order. Resolves at the OK status.
 */
async function pump<Req, Res>(
  call: StreamCall<Req, Res>,
  first: Req[],
  input: { next(): Promise<Buffer | undefined> },
  toRequest: (chunk: Buffer) => Req,
  onReply: (reply: Res) => Promise<void>,
): Promise<void> {
  const finished = new Promise<void>((resolve, reject) => {
    call.on('error', reject);
    call.on('status', (status: grpc.StatusObject) => {
      if (status.code === grpc.status.OK) resolve();
    });
  });
  let failed = false;
  // Marked handled at once: an early error (unknown key) must not be an unhandled rejection while stdin is read.
  finished.catch(() => {
    failed = true;
  });
  // Replies are handled one at a time; while stdout is full we stop reading replies.
  let replies = Promise.resolve();
  call.on('data', (reply: Res) => {
    call.pause();
    replies = replies.then(() => onReply(reply)).finally(() => call.resume());
  });
  const send = async (message: Req): Promise<void> => {
    if (!call.write(message)) await Promise.race([once(call, 'drain'), finished]);
  };
  try {
    for (const m of first) await send(m);
    for (let chunk = await input.next(); chunk !== undefined && !failed; chunk = await input.next()) {
      for (const piece of splitPieces(chunk)) if (!failed) await send(toRequest(piece));
    }
    if (!failed) call.end();
  } catch (error: unknown) {
    call.cancel();
    throw error;
  }
  await finished;
  await replies;
}

export function registerCryptoDataCommands(program: Command): void {
  program
    .command('encrypt')
    .description(
      'encrypt stdin to stdout with a key (binary-safe; a fernet key writes a Fernet token as text) — scope keys:use',
    )
    .requiredOption('--key <name>', 'the key')
    .option('--aad <text>', 'associated data: authenticated, not encrypted; decrypt needs the same text')
    .action(
      action(async ({ settings, out }, opts: { key: string; aad?: string }) => {
        const aad = Buffer.from(opts.aad ?? '', 'utf8');
        const input = stdinReader();
        const result = await withCrypto(settings, async (rpc) => {
          // AEAD keys stream in bounded memory. The server answers the header first, so a key that
          // cannot stream (fernet) is known before any data is sent, and the data goes unary.
          const call = rpc.client.encryptStream();
          const header = new Promise<number>((resolve, reject) => {
            call.once('data', (reply: pb.EncryptStreamResponse) =>
              reply.part?.$case === 'header'
                ? resolve(reply.part.value.keyVersion)
                : reject(new CliError('EncryptStream answered without a header')),
            );
            call.once('error', reject);
          });
          call.write({ part: { $case: 'header', value: { keyName: opts.key, associatedData: aad } } });
          let version: number;
          try {
            version = await header;
          } catch (error: unknown) {
            if ((error as Partial<grpc.ServiceError>).code !== grpc.status.FAILED_PRECONDITION) throw error;
            call.cancel();
            const reply = await rpc('encrypt', {
              keyName: opts.key,
              plaintext: await input.rest(),
              associatedData: aad,
            });
            const text = reply.ciphertext.toString('latin1');
            if (settings.json)
              return {
                key: opts.key,
                keyVersion: reply.keyVersion,
                format: 'unary',
                ciphertext: /^[A-Za-z0-9_=-]+$/.test(text) ? text : reply.ciphertext.toString('base64'),
              };
            // A Fernet token is ASCII text: write it as a line.
            await writeOut(/^gAAAA[A-Za-z0-9_=-]+$/.test(text) ? Buffer.from(`${text}\n`) : reply.ciphertext);
            return undefined;
          }
          const collected: Buffer[] = [];
          await pump(
            call,
            [],
            input,
            (chunk): pb.EncryptStreamRequest => ({ part: { $case: 'chunk', value: chunk } }),
            async (reply: pb.EncryptStreamResponse) => {
              if (reply.part?.$case !== 'chunk') return;
              if (settings.json) collected.push(reply.part.value);
              else await writeOut(reply.part.value);
            },
          );
          return settings.json
            ? {
                key: opts.key,
                keyVersion: version,
                format: 'stream',
                ciphertext: Buffer.concat(collected).toString('base64'),
              }
            : undefined;
        });
        if (result !== undefined) out.result(result, () => '');
      }),
    );

  program
    .command('decrypt')
    .description(
      'decrypt stdin to stdout (ciphertext from `quanta encrypt`, the Encrypt RPC, or a Fernet token) — scope keys:use',
    )
    .requiredOption('--key <name>', 'the key')
    .option('--aad <text>', 'the associated data given when encrypting')
    .option('--ttl <duration>', 'fernet tokens only: refuse tokens older than this (e.g. 3600, 1h)')
    .action(
      action(async ({ settings, out }, opts: { key: string; aad?: string; ttl?: string }) => {
        const aad = Buffer.from(opts.aad ?? '', 'utf8');
        const ttlSeconds = BigInt(opts.ttl === undefined ? 0 : parseSeconds(opts.ttl, '--ttl'));
        const input = stdinReader();
        const first = await input.next();
        if (first === undefined) throw new CliError('nothing to decrypt: stdin is empty');
        const result = await withCrypto(settings, async (rpc) => {
          if (first[0] === STREAM_FORMAT) {
            const collected: Buffer[] = [];
            await pump(
              rpc.client.decryptStream(),
              [
                { part: { $case: 'header', value: { keyName: opts.key, associatedData: aad } } },
                ...splitPieces(first).map((value): pb.DecryptStreamRequest => ({ part: { $case: 'chunk', value } })),
              ],
              input,
              (chunk): pb.DecryptStreamRequest => ({ part: { $case: 'chunk', value: chunk } }),
              async (reply: pb.DecryptStreamResponse) => {
                if (settings.json) collected.push(reply.chunk);
                else await writeOut(reply.chunk);
              },
            );
            return settings.json
              ? { key: opts.key, plaintext: Buffer.concat(collected).toString('base64') }
              : undefined;
          }
          const whole = Buffer.concat([first, await input.rest()]);
          // Unary AEAD ciphertext is binary; anything else is taken as a Fernet token (text, trimmed).
          const ciphertext = whole[0] === UNARY_FORMAT ? whole : Buffer.from(whole.toString('latin1').trim(), 'latin1');
          const reply = await rpc('decrypt', { keyName: opts.key, ciphertext, associatedData: aad, ttlSeconds });
          if (settings.json)
            return { key: opts.key, keyVersion: reply.keyVersion, plaintext: reply.plaintext.toString('base64') };
          await writeOut(reply.plaintext);
          return undefined;
        });
        if (result !== undefined) out.result(result, () => '');
      }),
    );
}
