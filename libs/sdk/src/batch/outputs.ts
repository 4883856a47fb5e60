// Where a text sink's lines go: a plain file, a file sealed with the crypto service's streaming
// AEAD (EncryptStream: `quanta decrypt --key K` reads it), or one Fernet token per line (the
// Encrypt RPC on a fernet key: Python's cryptography reads each line). Each is resumable: `sync`
// makes what was written durable and gives its position; `open` cuts the file back to one.
import { createReadStream } from 'node:fs';
import { open as openFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import type { crypto } from '@quanta/contracts';
import type { CallOptions, QuantaClient } from '../client.js';

export interface LineOutput {
  /** Cuts the file back to the latest of `positions` it can honour and says which (-1: started afresh). */
  open(positions: readonly unknown[]): Promise<number>;
  writeLine(text: string): Promise<void>;
  sync(): Promise<unknown>;
  retain?(position: unknown, latest: unknown): boolean;
  close(): Promise<void>;
  abort(): Promise<void>;
}

const FLUSH_BYTES = 256 * 1024;

const bytesOf = (position: unknown): number | undefined => {
  const value = (position as { bytes?: unknown } | undefined)?.bytes;
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : undefined;
};

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** A file written through a buffer; its position is its length in bytes. */
export class PlainFile implements LineOutput {
  private handle: FileHandle | undefined;
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  private bytes = 0;

  constructor(readonly path: string) {}

  /** The latest position no longer than the file (a crash loses only what was not synced). */
  async open(positions: readonly unknown[]): Promise<number> {
    const size = await sizeOf(this.path);
    let chosen = -1;
    positions.forEach((p, i) => {
      const at = bytesOf(p);
      if (at !== undefined && size !== undefined && at <= size) chosen = i;
    });
    this.handle = await openFile(this.path, chosen < 0 ? 'w' : 'r+');
    this.bytes = chosen < 0 ? 0 : bytesOf(positions[chosen])!;
    await this.handle.truncate(this.bytes);
    return chosen;
  }

  async write(data: Buffer): Promise<void> {
    this.buffered.push(data);
    this.bufferedBytes += data.length;
    if (this.bufferedBytes >= FLUSH_BYTES) await this.flush();
  }

  async writeLine(text: string): Promise<void> {
    await this.write(Buffer.from(`${text}\n`, 'utf8'));
  }

  private async flush(): Promise<void> {
    if (this.bufferedBytes === 0) return;
    const data = this.buffered.length === 1 ? this.buffered[0]! : Buffer.concat(this.buffered);
    this.buffered = [];
    this.bufferedBytes = 0;
    await this.handle!.write(data, 0, data.length, this.bytes);
    this.bytes += data.length;
  }

  async sync(): Promise<{ bytes: number }> {
    await this.flush();
    await this.handle!.sync();
    return { bytes: this.bytes };
  }

  async close(): Promise<void> {
    await this.sync();
    await this.handle!.close();
    this.handle = undefined;
  }

  async abort(): Promise<void> {
    await this.handle?.close();
    this.handle = undefined;
  }
}

/** A queue a producer writes into and an async iterable reads from, holding at most `capacity` items. */
class Channel<T> implements AsyncIterable<T> {
  private items: T[] = [];
  private ended = false;
  private reader: (() => void) | undefined;
  private writers: (() => void)[] = [];

  constructor(private readonly capacity: number) {}

  async push(item: T): Promise<void> {
    while (this.items.length >= this.capacity && !this.ended) await new Promise<void>((r) => this.writers.push(r));
    this.items.push(item);
    this.reader?.();
  }

  end(): void {
    this.ended = true;
    this.reader?.();
    for (const w of this.writers.splice(0)) w();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      const item = this.items.shift();
      if (item !== undefined) {
        this.writers.shift()?.();
        yield item;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((r) => (this.reader = r));
      this.reader = undefined;
    }
  }
}

const PIECE = 64 * 1024;
/** Encrypted output keeps checkpoint marks this far behind the latest: the stream's last segment lags. */
const AEAD_MARK_SPAN = 16 * 1024 * 1024;

/**
 * A file sealed with EncryptStream under an AEAD key of the tenant. A stream cannot be continued,
 * so a resume decrypts what the old file holds (every whole segment authenticates on its own),
 * seals the part its checkpoint covers again into a new stream, and goes on writing to that.
 */
export class AeadFile implements LineOutput {
  private handle: FileHandle | undefined;
  private channel: Channel<Buffer> | undefined;
  private pumping: Promise<void> | undefined;
  private controller = new AbortController();
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private plainBytes = 0;
  private cipherBytes = 0;
  private failure: Error | undefined;
  /** While resuming, the sealed stream goes to a new file renamed over the old one at the first sync. */
  private replacing: string | undefined;

  constructor(
    private readonly client: QuantaClient,
    private readonly key: string,
    readonly path: string,
    private readonly call: CallOptions = {},
  ) {}

  private async decrypted(onChunk: (chunk: Buffer) => Promise<boolean>): Promise<void> {
    async function* requests(path: string, key: string): AsyncGenerator<crypto.DecryptStreamRequest> {
      yield { part: { $case: 'header', value: { keyName: key, associatedData: Buffer.alloc(0) } } };
      for await (const chunk of createReadStream(path, { highWaterMark: PIECE })) {
        yield { part: { $case: 'chunk', value: chunk as Buffer } };
      }
    }
    const controller = new AbortController();
    try {
      for await (const reply of this.client.crypto.decryptStream(requests(this.path, this.key), {
        ...this.call,
        signal: controller.signal,
      })) {
        if (!(await onChunk(reply.chunk))) {
          controller.abort();
          return;
        }
      }
    } catch (error: unknown) {
      // A file cut short by a crash ends with INVALID_ARGUMENT after its last whole segment: what came before is good.
      const code = (error as { code?: unknown }).code;
      if (code !== 3 && !controller.signal.aborted) throw error;
    }
  }

  async open(positions: readonly unknown[]): Promise<number> {
    let chosen = -1;
    if (positions.length > 0 && (await sizeOf(this.path)) !== undefined) {
      let recovered = 0;
      await this.decrypted((chunk) => {
        recovered += chunk.length;
        return Promise.resolve(true);
      });
      positions.forEach((p, i) => {
        const at = bytesOf(p);
        if (at !== undefined && at <= recovered) chosen = i;
      });
    }
    const target = chosen < 0 ? this.path : `${this.path}.resume`;
    this.replacing = chosen < 0 ? undefined : target;
    this.handle = await openFile(target, 'w');
    this.start(target);
    if (chosen >= 0) {
      let left = bytesOf(positions[chosen])!;
      await this.decrypted(async (chunk) => {
        const part = chunk.subarray(0, Math.min(chunk.length, left));
        left -= part.length;
        if (part.length > 0) await this.write(Buffer.from(part));
        return left > 0;
      });
      if (left > 0) throw new Error(`${this.path}: the encrypted output changed while it was read back`);
    }
    return chosen;
  }

  private start(target: string): void {
    const channel = new Channel<Buffer>(4);
    this.channel = channel;
    const key = this.key;
    async function* requests(): AsyncGenerator<crypto.EncryptStreamRequest> {
      yield { part: { $case: 'header', value: { keyName: key, associatedData: Buffer.alloc(0) } } };
      for await (const chunk of channel) yield { part: { $case: 'chunk', value: chunk } };
    }
    const handle = this.handle!;
    this.pumping = (async () => {
      for await (const reply of this.client.crypto.encryptStream(requests(), {
        ...this.call,
        signal: this.controller.signal,
      })) {
        if (reply.part?.$case !== 'chunk') continue;
        const chunk = reply.part.value;
        await handle.write(chunk, 0, chunk.length, this.cipherBytes);
        this.cipherBytes += chunk.length;
      }
    })().catch((error: unknown) => {
      this.failure ??= new Error(`encrypting ${target}: ${error instanceof Error ? error.message : String(error)}`, {
        cause: error,
      });
      channel.end();
    });
  }

  private check(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  async write(data: Buffer): Promise<void> {
    this.check();
    this.pending.push(data);
    this.pendingBytes += data.length;
    this.plainBytes += data.length;
    if (this.pendingBytes >= PIECE) await this.send();
  }

  async writeLine(text: string): Promise<void> {
    await this.write(Buffer.from(`${text}\n`, 'utf8'));
  }

  private async send(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const data = Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    await this.channel!.push(data);
  }

  /**
   * Sends what is buffered and fsyncs what the service has sealed so far. The position is the
   * plaintext sent; its last segment reaches the file later, so older marks are kept (`retain`).
   */
  async sync(): Promise<{ bytes: number }> {
    this.check();
    await this.send();
    await this.handle!.sync();
    if (this.replacing !== undefined) {
      await rename(this.replacing, this.path);
      this.replacing = undefined;
    }
    return { bytes: this.plainBytes };
  }

  retain(position: unknown, latest: unknown): boolean {
    return (bytesOf(latest) ?? 0) - (bytesOf(position) ?? 0) <= AEAD_MARK_SPAN;
  }

  /** Seals the stream: the last segment is written and the file is complete. */
  async close(): Promise<void> {
    this.check();
    await this.send();
    this.channel!.end();
    await this.pumping;
    this.check();
    await this.handle!.sync();
    await this.handle!.close();
    this.handle = undefined;
    if (this.replacing !== undefined) await rename(this.replacing, this.path);
  }

  async abort(): Promise<void> {
    this.controller.abort();
    this.channel?.end();
    await this.pumping;
    await this.handle?.close();
    this.handle = undefined;
    if (this.replacing !== undefined) await rm(this.replacing, { force: true });
  }
}

/**
 * One Fernet token per line (crypto's Encrypt on a fernet key), written in order with up to
 * `depth` Encrypt calls in flight. The file is plain text, so it resumes like a plain file.
 */
export class FernetLines implements LineOutput {
  private readonly file: PlainFile;
  private inflight: Promise<Buffer>[] = [];

  constructor(
    private readonly client: QuantaClient,
    private readonly key: string,
    path: string,
    private readonly call: CallOptions = {},
    private readonly depth = 32,
  ) {
    this.file = new PlainFile(path);
  }

  open(positions: readonly unknown[]): Promise<number> {
    return this.file.open(positions);
  }

  async writeLine(text: string): Promise<void> {
    const token = this.client.crypto
      .encrypt({ keyName: this.key, plaintext: Buffer.from(text, 'utf8') }, this.call)
      .then((reply) => Buffer.concat([reply.ciphertext, Buffer.from('\n')]));
    token.catch(() => undefined); // awaited in order below
    this.inflight.push(token);
    if (this.inflight.length >= this.depth) await this.file.write(await this.inflight.shift()!);
  }

  private async drain(): Promise<void> {
    while (this.inflight.length > 0) await this.file.write(await this.inflight.shift()!);
  }

  async sync(): Promise<{ bytes: number }> {
    await this.drain();
    return this.file.sync();
  }

  async close(): Promise<void> {
    await this.drain();
    await this.file.close();
  }

  async abort(): Promise<void> {
    this.inflight = [];
    await this.file.abort();
  }
}
