import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Authenticator, HttpLimits } from '@quanta/service-kit';
import {
  HttpError,
  answerClientErrors,
  httpErrorOf,
  httpServerLimits,
  listenHttp,
  sendHttpError,
} from '@quanta/service-kit';
import { traceHttpRequests } from '@quanta/telemetry';
import type { Logger } from 'pino';
import type { AlertEngine } from '../core/alerts.js';
import type { DriftEngine } from '../core/drift.js';
import type { HealthBoard } from '../core/health-board.js';
import type { WindowStore } from '../core/window-store.js';
import { loadDashboardPage } from './dashboard-page.js';
import type { PromMetrics } from './prometheus.js';
import { createRoutes } from './routes.js';

export interface HttpServerOptions {
  readonly host: string;
  readonly port: number;
  readonly store: WindowStore;
  readonly alerts: AlertEngine;
  readonly board: HealthBoard;
  readonly metrics: PromMetrics;
  /** Drift baselines, for the dashboard's drift table. */
  readonly drift?: DriftEngine | undefined;
  readonly authenticator: Authenticator | undefined;
  /** Every tenant's data without a token (only on loopback; the config checks that). */
  readonly public: boolean;
  readonly logger: Logger;
  /**
   * Serve HTTPS with this certificate chain and key (the gRPC server's); no client certificate
   * is asked for, whatever the gRPC server requires. Absent: plain HTTP.
   */
  readonly tls?: { readonly certFile: string; readonly keyFile: string } | undefined;
  /** How slow a request may be before its connection is cut (service-kit's defaults when absent). */
  readonly limits?: HttpLimits | undefined;
}

export interface HttpServer {
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

async function readPem(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error: unknown) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`HTTP listener: cannot read the TLS ${what} file "${path}": ${reason}`, { cause: error });
  }
}

/** Error answers, like pages, are never cached. */
const noStore = (error: HttpError): HttpError =>
  new HttpError(error.status, error.message, { ...error.headers, 'cache-control': 'no-store' });

/**
 * The HTTP(S) listener: its pages (routes.ts), errors as `{"error": "..."}` with their status
 * (an HttpError or a DomainError mapped by service-kit; anything else is logged and answered 500),
 * and what node refuses before a handler runs answered the same way.
 */
export async function startHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const handle = createRoutes({ ...options, page: await loadDashboardPage() });
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch((error: unknown) => {
      const known = httpErrorOf(error);
      if (known !== undefined) return sendHttpError(res, noStore(known));
      options.logger.error({ err: error, path: req.url }, 'HTTP request failed');
      return sendHttpError(res, noStore(new HttpError(500, 'internal error')));
    });
  };
  // One server span per request, continuing the caller's traceparent; a token check that fetches
  // crypto's keys runs inside it and carries the trace on.
  const traced = traceHttpRequests(onRequest);
  const tls = options.tls;
  const limits = httpServerLimits(options.limits);
  const server =
    tls === undefined
      ? createServer(limits, traced)
      : createTlsServer(
          {
            ...limits,
            cert: await readPem(tls.certFile, 'certificate'),
            key: await readPem(tls.keyFile, 'private key'),
          },
          traced,
        );
  answerClientErrors(server);
  const { port, url } = await listenHttp(server, options.port, options.host, tls === undefined ? 'http' : 'https');
  return {
    port,
    url: `${url}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
