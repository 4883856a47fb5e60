// Writes a REST handler's reply: JSON, or with binary tensors the JSON header followed by the
// tensors' bytes (Triton's binary tensor data extension).
import type { ServerResponse } from 'node:http';

export interface Reply {
  /** 200 when absent. */
  readonly status?: number;
  readonly body: unknown;
  /** Binary tensors sent after the JSON (Triton's binary tensor data extension). */
  readonly binary?: readonly Buffer[];
}

/** Sends `reply`, unless the response has begun or the client has gone. */
export function sendReply(res: ServerResponse, reply: Reply): void {
  if (res.headersSent || res.destroyed) return;
  const binary = reply.binary ?? [];
  const text = JSON.stringify(reply.body);
  const jsonLength = Buffer.byteLength(text);
  const binaryLength = binary.reduce((n, b) => n + b.length, 0);
  res.writeHead(reply.status ?? 200, {
    ...(binary.length === 0
      ? { 'content-type': 'application/json' }
      : { 'content-type': 'application/octet-stream', 'inference-header-content-length': jsonLength }),
    'content-length': jsonLength + binaryLength,
  });
  if (binary.length === 0) {
    res.end(text);
    return;
  }
  res.write(text);
  for (const part of binary) res.write(part);
  res.end();
}
