// GET /metrics on a listener of its own (Triton's :8002), in Prometheus text format. Who sees what
// follows the monitoring service's /metrics: a bearer token with `monitoring:read` shows its
// tenant's models, one with `admin` every tenant's; with `public` (loopback only, the config
// checks) no token is needed and every tenant shows, as Triton shows everything.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Authenticator, ServerTlsOptions } from '@quanta/service-kit';
import { hasScope, HttpError, httpErrorOf, isDomainError, sendHttpError } from '@quanta/service-kit';
import type { Logger } from 'pino';
import { authorizationMetadata } from '../http/http-auth.js';
import { startHttpListener, type HttpListener } from '../http/http-listener.js';
import type { TritonMetrics } from './triton-metrics.js';

export interface MetricsServerOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  /** HTTPS with the service's certificate and client-certificate rule (as REST); plain HTTP without. */
  readonly tls?: ServerTlsOptions | undefined;
  readonly metrics: TritonMetrics;
  /** Checks bearer tokens; without one, only `public` lets a scrape through. */
  readonly authenticator: Authenticator | undefined;
  /** Every tenant's series without a token. */
  readonly public: boolean;
  readonly logger: Logger;
}

export const METRICS_PATH = '/metrics';

/** Sends `error` as `{"error": message}`, unless the client has gone. */
function answer(res: ServerResponse, error: HttpError): void {
  if (!res.destroyed) sendHttpError(res, error);
}

/** The tenant whose series a scrape may see; undefined: every tenant. */
async function viewOf(req: IncomingMessage, options: MetricsServerOptions): Promise<{ tenant: string | undefined }> {
  const header = req.headers.authorization;
  if (header === undefined) {
    if (options.public) return { tenant: undefined };
    throw new HttpError(
      401,
      `${METRICS_PATH} needs a bearer token with scope monitoring:read (Authorization: Bearer <token>)`,
    );
  }
  if (options.authenticator === undefined)
    throw new HttpError(
      401,
      `${METRICS_PATH} needs scope monitoring:read but this server has no authenticator configured`,
    );
  const metadata = authorizationMetadata(header, METRICS_PATH);
  try {
    const principal = await options.authenticator(metadata);
    if (!hasScope(principal, 'monitoring:read'))
      throw new HttpError(
        403,
        `${METRICS_PATH} needs scope monitoring:read; the token of "${principal.subject}" does not grant it`,
      );
    return { tenant: principal.scopes.includes('admin') ? undefined : principal.tenant };
  } catch (error: unknown) {
    if (error instanceof HttpError) throw error;
    // The authenticator's refusals, whatever their code, are the token's fault: 403 for a scope it
    // lacks, 401 for anything else.
    if (isDomainError(error)) throw new HttpError(error.code === 'PERMISSION_DENIED' ? 403 : 401, error.message);
    throw error;
  }
}

export function startMetricsServer(options: MetricsServerOptions): Promise<HttpListener> {
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const { pathname } = new URL(req.url ?? '/', 'http://localhost');
    if (pathname !== METRICS_PATH)
      throw new HttpError(404, `no such endpoint: ${pathname}; the metrics are at ${METRICS_PATH}`);
    if (req.method !== 'GET' && req.method !== 'HEAD')
      throw new HttpError(405, `${METRICS_PATH} takes GET, not ${req.method ?? ''}`, { allow: 'GET, HEAD' });
    const view = await viewOf(req, options);
    const text = await options.metrics.render(view);
    if (res.destroyed) return;
    res.writeHead(200, {
      'content-type': options.metrics.contentType,
      'cache-control': 'no-store',
      'content-length': Buffer.byteLength(text),
    });
    res.end(req.method === 'HEAD' ? undefined : text);
  };
  return startHttpListener({
    host: options.host,
    port: options.port,
    tls: options.tls,
    what: 'metrics listener',
    onRequest: (req, res) => {
      handle(req, res).catch((error: unknown) => {
        const known = httpErrorOf(error);
        if (known !== undefined) return answer(res, known);
        options.logger.error({ err: error, url: req.url }, 'a metrics scrape failed');
        return answer(res, new HttpError(500, 'internal error'));
      });
    },
    refuse: (res) => answer(res, new HttpError(503, 'the server is shutting down', { connection: 'close' })),
  });
}
