import { connect } from 'node:net';

/** What a raw HTTP/1.1 exchange got back: the status (0 when none came) and the body as latin1 text. */
export interface RawAnswer {
  readonly status: number;
  readonly body: string;
}

/**
 * Writes `chunks` to a fresh connection to 127.0.0.1:`port` and reads the answer until the server
 * closes or has sent Content-Length bytes. For tests that send what an HTTP client would refuse to
 * (malformed request lines, lying lengths, junk): a reset or a broken pipe ends the read, not the test.
 */
export function rawHttp(port: number, chunks: readonly (Buffer | string)[]): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    const finish = (): void => {
      const text = Buffer.concat(got).toString('latin1');
      const split = text.indexOf('\r\n\r\n');
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0),
        body: split < 0 ? '' : text.slice(split + 4),
      });
      socket.destroy();
    };
    socket.on('data', (d: Buffer) => {
      got.push(d);
      const text = Buffer.concat(got).toString('latin1');
      const split = text.indexOf('\r\n\r\n');
      const length = /\r\ncontent-length: (\d+)/i.exec(text);
      if (split >= 0 && length !== null && text.length - split - 4 >= Number(length[1])) finish();
    });
    socket.on('close', finish);
    socket.on('error', (error: NodeJS.ErrnoException) =>
      error.code === 'ECONNRESET' || error.code === 'EPIPE' ? finish() : reject(error),
    );
    socket.on('connect', () => {
      for (const chunk of chunks) socket.write(chunk);
    });
  });
}
