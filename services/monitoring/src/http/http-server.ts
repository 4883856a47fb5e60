import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import type { Authenticator, HttpLimits } from '@quanta/service-kit';
import { answerClientErrors, hasScope, httpServerLimits, isDomainError, listenHttp } from '@quanta/service-kit';
import { setHttpRoute, traceHttpRequests } from '@quanta/telemetry';
import type { Logger } from 'pino';
import type { AlertEngine } from '../core/alerts.js';
import type { HealthBoard } from '../core/health-board.js';
import type { WindowStore } from '../core/window-store.js';
import { DASHBOARD_HTML } from './dashboard-page.js';
import { buildOverview } from './overview.js';
import type { PromMetrics } from './prometheus.js';

export interface HttpServerOptions {
  readonly host: string;
  readonly port: number;
  readonly store: WindowStore;
  readonly alerts: AlertEngine;
  readonly board: HealthBoard;
  readonly metrics: PromMetrics;
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

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Who may see what on the HTTP listener. The gRPC API is per tenant, and so is this: a bearer
 * token (header, or `?token=` for a browser) with `monitoring:read` shows its tenant; one with
 * `admin` shows every tenant; with QUANTA_MONITORING_DASHBOARD_PUBLIC=1 (loopback only) no
 * token is needed and every tenant shows. The page itself holds no data and is always served.
 */
async function viewOf(
  req: IncomingMessage,
  url: URL,
  options: HttpServerOptions,
): Promise<{ tenant: string | undefined }> {
  const header = req.headers.authorization;
  const token =
    url.searchParams.get('token') ?? (header !== undefined ? /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1] : undefined);
  if (token === undefined || token === '') {
    if (options.public) return { tenant: undefined };
    throw new HttpError(401, 'a bearer token with scope monitoring:read is needed (Authorization header or ?token=)');
  }
  if (options.authenticator === undefined) throw new HttpError(401, 'this server checks no tokens');
  const metadata = new grpc.Metadata();
  try {
    metadata.set('authorization', `Bearer ${token}`);
  } catch {
    throw new HttpError(401, 'the token has characters no token has');
  }
  try {
    const principal = await options.authenticator(metadata);
    if (!hasScope(principal, 'monitoring:read'))
      throw new HttpError(403, `the token of "${principal.subject}" lacks scope monitoring:read`);
    return { tenant: principal.scopes.includes('admin') ? undefined : principal.tenant };
  } catch (error: unknown) {
    if (error instanceof HttpError) throw error;
    if (isDomainError(error)) throw new HttpError(error.code === 'PERMISSION_DENIED' ? 403 : 401, error.message);
    throw error;
  }
}

/** The pages served, which name their spans (anything else is one 404 span name). */
const PAGES = new Set(['/', '/index.html', '/metrics', '/api/overview', '/healthz']);

function intParam(url: URL, name: string, fallback: number, min: number, max: number): number {
  const raw = url.searchParams.get(name);
  if (raw === null) return fallback;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min || v > max)
    throw new HttpError(400, `${name} must be a whole number from ${min} to ${max}, got "${raw}"`);
  return v;
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, {
    'content-type': type,
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

async function readPem(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error: unknown) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`HTTP listener: cannot read the TLS ${what} file "${path}": ${reason}`, { cause: error });
  }
}

export async function startHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      throw new HttpError(400, `the request target ${JSON.stringify(req.url)} is not a valid URL`);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD')
      throw new HttpError(405, `${req.method ?? '?'} is not allowed; use GET`);
    if (PAGES.has(url.pathname)) setHttpRoute(req.method, url.pathname);
    switch (url.pathname) {
      case '/':
      case '/index.html':
        return send(res, 200, 'text/html; charset=utf-8', DASHBOARD_HTML);
      case '/metrics': {
        const view = await viewOf(req, url, options);
        const body = options.metrics.render(view.tenant === undefined ? {} : { tenant: view.tenant });
        return send(res, 200, 'text/plain; version=0.0.4; charset=utf-8', body);
      }
      case '/api/overview': {
        const view = await viewOf(req, url, options);
        const windowSeconds = intParam(url, 'window', 300, 10, options.store.horizonSeconds);
        const stepSeconds = intParam(url, 'step', Math.max(1, Math.floor(windowSeconds / 60)), 1, windowSeconds);
        if (windowSeconds / stepSeconds > 3600) throw new HttpError(400, 'window / step gives more than 3600 points');
        const overview = buildOverview(options, { tenant: view.tenant, windowSeconds, stepSeconds });
        return send(res, 200, 'application/json', JSON.stringify(overview));
      }
      case '/healthz':
        return send(res, 200, 'text/plain', 'ok\n');
      default:
        throw new HttpError(404, `no page at ${url.pathname}; try /, /metrics or /api/overview`);
    }
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch((error: unknown) => {
      if (error instanceof HttpError)
        return send(res, error.status, 'application/json', JSON.stringify({ error: error.message }));
      options.logger.error({ err: error, path: req.url }, 'HTTP request failed');
      return send(res, 500, 'application/json', JSON.stringify({ error: 'internal error' }));
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
