// A REST request's body, read only when a handler asks for it and never past the size limit.
import type { IncomingMessage } from 'node:http';
import { HttpError } from '@quanta/service-kit';
import { parseJson } from './rest-convert.js';

export const DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024;

/** How many limits' worth of an oversized body is read and dropped before the connection is cut. */
const DISCARD_FACTOR = 4;

/** A request's body, read on demand (within the size limit); calling it parses the body as JSON. */
export interface Body {
  (): Promise<unknown>;
  bytes(): Promise<Buffer | undefined>;
  header(name: string): string | undefined;
}

/**
 * Reads the body up to `limit` bytes; undefined when empty. Past the limit it fails with 413 but
 * goes on reading (and dropping) the rest, so that the 413 reaches the client on a connection it
 * can keep, rather than a reset while it is still sending; a client that sends more than
 * DISCARD_FACTOR limits past that loses the connection.
 */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise<Buffer | undefined>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    const tooLarge = (what: string): void => {
      over = true;
      chunks.length = 0;
      reject(new HttpError(413, `the request body${what} is larger than the limit of ${limit} bytes`));
    };
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) tooLarge(` (${declared} bytes)`);
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (over) {
        if (size > limit * DISCARD_FACTOR) req.socket.destroy();
        return;
      }
      if (size > limit) tooLarge('');
      else chunks.push(chunk);
    });
    req.once('error', reject);
    req.once('end', () => {
      if (!over) resolve(size === 0 ? undefined : Buffer.concat(chunks, size));
    });
  });
}

/** The body of `req`, read at most once, whichever of its forms a handler asks for. */
export function bodyOf(req: IncomingMessage, limit: number): Body {
  let read: Promise<Buffer | undefined> | undefined;
  const bytes = (): Promise<Buffer | undefined> => (read ??= readBody(req, limit));
  const json = async (): Promise<unknown> => {
    const buffer = await bytes();
    return buffer === undefined ? undefined : parseJson(buffer);
  };
  return Object.assign(json, {
    bytes,
    header: (name: string): string | undefined => {
      const value = req.headers[name];
      return Array.isArray(value) ? value[0] : value;
    },
  });
}
