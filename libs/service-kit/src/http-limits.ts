import type { Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';

/** How long a client may take over a request before its connection is cut. */
export interface HttpLimits {
  /** From connection to the last header byte (slow headers); default 10 s. */
  readonly headersTimeoutMs?: number;
  /** From connection to the last body byte (a trickled body: slowloris); default 120 s. */
  readonly requestTimeoutMs?: number;
}

export const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;
export const DEFAULT_REQUEST_TIMEOUT_MS = 120_000;

/**
 * The node:http(s) `createServer` options that enforce `limits`. Node checks the timeouts every
 * `connectionsCheckingInterval` (30 s by default, longer than a short limit): it is kept at a
 * quarter of the shorter limit, at most 1 s, so a connection is cut soon after its limit passes.
 */
export function httpServerLimits(limits: HttpLimits = {}): {
  headersTimeout: number;
  requestTimeout: number;
  connectionsCheckingInterval: number;
} {
  const requestTimeout = limits.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const headersTimeout = Math.min(limits.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS, requestTimeout);
  return {
    headersTimeout,
    requestTimeout,
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersTimeout / 4))),
  };
}

const REASONS: Readonly<Record<string, [number, string]>> = {
  HPE_HEADER_OVERFLOW: [431, 'the request headers are larger than the server accepts (16 KiB in all)'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'the request was not received in time: its headers or body came too slowly'],
  HPE_INVALID_METHOD: [400, 'the request line has an invalid method'],
  HPE_INVALID_URL: [400, 'the request line has an invalid URL'],
  HPE_INVALID_HEADER_TOKEN: [400, 'a request header has an invalid name or value'],
  HPE_INVALID_CONTENT_LENGTH: [400, 'Content-Length is invalid'],
  HPE_UNEXPECTED_CONTENT_LENGTH: [400, 'Content-Length and Transfer-Encoding: chunked were both sent'],
  HPE_INVALID_CHUNK_SIZE: [400, 'a chunk of the chunked body has an invalid size'],
  HPE_INVALID_TRANSFER_ENCODING: [400, 'Transfer-Encoding is invalid'],
};

/**
 * Answers what node:http rejects before a request reaches the handler (a malformed request line or
 * header, headers over the size limit, a request too slow) with a JSON `{"error": "..."}` body, as
 * the handlers answer theirs, instead of node's bare status line; then closes the connection.
 */
export function answerClientErrors(server: HttpServer | HttpsServer): void {
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    if (!socket.writable || (error.code === 'ECONNRESET' && socket.destroyed)) {
      socket.destroy();
      return;
    }
    const [status, message] = REASONS[error.code ?? ''] ?? [
      400,
      `the request is malformed (${error.code ?? 'parse error'})`,
    ];
    const body = JSON.stringify({ error: message });
    const reason =
      status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request';
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
}

/**
 * Starts `server` listening on `host:port` (port 0 picks a free one) and resolves once it listens,
 * or rejects with the listen error; gives the port taken and the listener's `scheme://host:port`
 * (an IPv6 host in brackets).
 */
export async function listenHttp(
  server: HttpServer | HttpsServer,
  port: number,
  host: string,
  scheme: 'http' | 'https',
): Promise<{ port: number; url: string }> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const taken = (server.address() as AddressInfo).port;
  return { port: taken, url: `${scheme}://${host.includes(':') ? `[${host}]` : host}:${taken}` };
}
