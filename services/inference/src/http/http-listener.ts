// One node:http(s) listener as the inference process runs them (REST, metrics): HTTPS with the
// gRPC listener's certificate and client-certificate rule when the service has TLS, plain HTTP
// without; a close that stops taking requests, lets those under way finish, then drops the rest.
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { answerClientErrors, httpServerLimits, listenHttp } from '@quanta/service-kit';
import type { HttpLimits, ServerTlsOptions } from '@quanta/service-kit';

export interface HttpListenerOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  /** HTTPS (and client certificates with caFile + requireClientCert), as the gRPC listener; plain HTTP without. */
  readonly tls?: ServerTlsOptions | undefined;
  /** Names the listener in errors: "REST listener". */
  readonly what: string;
  readonly onRequest: (req: IncomingMessage, res: ServerResponse) => void;
  /** Answers a request that arrives while the listener closes (503, say); it must end the response. */
  readonly refuse: (res: ServerResponse) => void;
  /** How slow a request may be before its connection is cut (service-kit's defaults when absent). */
  readonly limits?: HttpLimits | undefined;
}

export interface HttpListener {
  readonly port: number;
  /** `http://host:port` or `https://host:port` */
  readonly url: string;
  /**
   * Stops accepting connections and requests, lets those under way finish within `graceMs`, then
   * closes every connection. Called again, it returns the first call's promise.
   */
  close(options?: { graceMs?: number }): Promise<void>;
}

async function readPem(path: string, what: string, listener: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error: unknown) {
    throw new Error(`${listener}: cannot read the TLS ${what} file "${path}": ${(error as Error).message}`, {
      cause: error,
    });
  }
}

export async function startHttpListener(options: HttpListenerOptions): Promise<HttpListener> {
  const inFlight = new Set<ServerResponse>();
  let closing = false;
  let drained: (() => void) | undefined;

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    if (closing) {
      options.refuse(res);
      return;
    }
    inFlight.add(res);
    res.once('close', () => {
      inFlight.delete(res);
      if (inFlight.size === 0) drained?.();
    });
    options.onRequest(req, res);
  };
  const { tls, what } = options;
  const limits = httpServerLimits(options.limits);
  const server =
    tls === undefined
      ? createServer(limits, onRequest)
      : createTlsServer(
          {
            ...limits,
            cert: await readPem(tls.certFile, 'certificate', what),
            key: await readPem(tls.keyFile, 'private key', what),
            ...(tls.caFile === undefined ? {} : { ca: await readPem(tls.caFile, 'CA', what), requestCert: true }),
            rejectUnauthorized: tls.requireClientCert === true,
          },
          onRequest,
        );

  answerClientErrors(server);
  const { port, url } = await listenHttp(server, options.port, options.host, tls === undefined ? 'http' : 'https');
  let closed: Promise<void> | undefined;

  return {
    port,
    url,
    close({ graceMs = 10_000 } = {}) {
      closed ??= (async () => {
        closing = true;
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        if (inFlight.size > 0) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, graceMs);
            drained = () => {
              clearTimeout(timer);
              resolve();
            };
          });
        }
        server.closeAllConnections();
        await stopped;
      })();
      return closed;
    },
  };
}
