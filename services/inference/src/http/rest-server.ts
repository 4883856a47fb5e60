// The KServe v2 REST listener (node:http) over the same InferenceApi as gRPC, with the same tokens
// (`Authorization: Bearer`) and scopes: each request is routed (rest-routes.ts), authenticated
// (http-auth.ts), handed its body on demand (rest-body.ts) and a cancellation (rest-cancellation.ts),
// and answered with its reply or with service-kit's HTTP mapping of what it threw.
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Authenticator, ServerTlsOptions } from '@quanta/service-kit';
import { HttpError, httpErrorOf, sendHttpError } from '@quanta/service-kit';
import { setHttpRoute, traceHttpRequests } from '@quanta/telemetry';
import type { Logger } from 'pino';
import { toDomainError } from '../server/errors.js';
import type { InferenceApi } from '../server/inference-api.js';
import { authenticate } from './http-auth.js';
import { startHttpListener, type HttpListener } from './http-listener.js';
import { bodyOf, DEFAULT_MAX_BODY_BYTES } from './rest-body.js';
import { ResponseCancellation } from './rest-cancellation.js';
import { sendReply } from './rest-reply.js';
import { findRoute, restRoutes } from './rest-routes.js';

export interface RestServerOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly api: InferenceApi;
  /** Checks bearer tokens; without one, every endpoint but health and metadata answers 401. */
  readonly authenticator: Authenticator | undefined;
  /** Largest request body; larger ones get 413. Default 64 MiB. */
  readonly maxBodyBytes?: number;
  /**
   * HTTPS (and client certificates with caFile + requireClientCert), as the gRPC listener; plain
   * HTTP without.
   */
  readonly tls?: ServerTlsOptions | undefined;
  readonly logger: Logger;
}

/** `url` is `http://host:port` (https with TLS); close() lets requests under way finish. */
export type RestServer = HttpListener;

/** Sends `error` as `{"error": message}`, unless the client has gone. */
function answer(res: ServerResponse, error: HttpError): void {
  if (!res.destroyed) sendHttpError(res, error);
}

/** The request's URL; a request target that is no URL (`http://x:99999/`, say) is the caller's fault. */
function requestUrl(req: IncomingMessage): URL {
  try {
    return new URL(req.url ?? '/', 'http://localhost');
  } catch {
    throw new HttpError(400, `the request target ${JSON.stringify(req.url)} is not a valid URL`);
  }
}

export async function startRestServer(options: RestServerOptions): Promise<RestServer> {
  const limit = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const table = restRoutes(options.api);
  const { logger } = options;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = requestUrl(req);
    const { route, match } = findRoute(table, req.method, url.pathname);
    setHttpRoute(route.method, route.template);
    const what = `${route.method} ${url.pathname}`;
    const principal =
      route.scope === 'public' ? undefined : await authenticate(req, options.authenticator, route.scope, what);
    // The caller hanging up abandons its request: a queued one is dropped by the core.
    const cancellation = new ResponseCancellation(res);
    sendReply(res, await route.handle(match, principal, bodyOf(req, limit), cancellation));
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch((error: unknown) => {
      const known = httpErrorOf(toDomainError(error));
      if (known !== undefined) {
        answer(res, known);
        return;
      }
      const reference = randomBytes(8).toString('hex');
      logger.error({ err: error, method: req.method, url: req.url, reference }, 'unhandled error in a REST request');
      answer(res, new HttpError(500, `internal error (error id ${reference})`));
    });
  };
  return startHttpListener({
    host: options.host,
    port: options.port,
    tls: options.tls,
    what: 'REST listener',
    // One server span per request, continuing the caller's traceparent; the gRPC calls a request
    // makes (a load's registry download, token checks) run inside it and carry the trace on.
    onRequest: traceHttpRequests(onRequest),
    refuse: (res) => answer(res, new HttpError(503, 'the server is shutting down', { connection: 'close' })),
  });
}
