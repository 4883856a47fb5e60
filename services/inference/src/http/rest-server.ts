// KServe v2 REST (node:http) over the same InferenceApi as gRPC, with the same tokens
// (`Authorization: Bearer`) and scopes. Health endpoints and server metadata are public.
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import type { Authenticator, Principal, Scope, ServerTlsOptions } from '@quanta/service-kit';
import { AbortListeners, httpStatusOf, isDomainError, requireScope, unauthenticated } from '@quanta/service-kit';
import { setHttpRoute, traceHttpRequests } from '@quanta/telemetry';
import type { Logger } from 'pino';
import type { CancelSignal } from '../core/types.js';
import { toDomainError } from '../server/errors.js';
import type { InferenceApi } from '../server/inference-api.js';
import { startHttpListener, type HttpListener } from './http-listener.js';
import {
  decodeIndexRequest,
  decodeJsonInfer,
  decodeRepositoryParameters,
  encodeJsonIndex,
  encodeJsonInfer,
  encodeJsonMetadata,
  encodeJsonModelConfig,
  encodeJsonStats,
  parseJson,
  splitInferBody,
} from './rest-convert.js';

export const DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024;
const DISCARD_FACTOR = 4;

export interface RestServerOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly api: InferenceApi;
  /** Checks bearer tokens; without one, every endpoint but health and metadata answers 401. */
  readonly authenticator: Authenticator | undefined;
  /** Largest request body; larger ones get 413. Default 64 MiB. */
  readonly maxBodyBytes?: number;
  /** HTTPS (and client certificates with caFile + requireClientCert), as the gRPC listener; plain HTTP without. */
  readonly tls?: ServerTlsOptions | undefined;
  readonly logger: Logger;
}

/** `url` is `http://host:port` (https with TLS); close() lets requests under way finish. */
export type RestServer = HttpListener;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

type Json = unknown;

/** A request's body, read on demand (within the size limit). */
interface Body {
  (): Promise<Json>;
  bytes(): Promise<Buffer | undefined>;
  header(name: string): string | undefined;
}

interface Reply {
  readonly status?: number;
  readonly body: Json;
  /** Binary tensors sent after the JSON (Triton's binary tensor data extension). */
  readonly binary?: readonly Buffer[];
}

interface Route {
  readonly method: 'GET' | 'POST';
  /** The path template the span is named after (set when the table is built). */
  readonly route?: string;
  /** The scope needed, or public. */
  readonly scope: Scope | 'public';
  handle(match: RegExpExecArray, principal: Principal | undefined, body: Body, signal: CancelSignal): Promise<Reply>;
}

const segment = '([^/]+)';
const modelPath = `/v2/models/${segment}(?:/versions/${segment})?`;

function decode(part: string | undefined): string {
  if (part === undefined) return '';
  try {
    return decodeURIComponent(part);
  } catch {
    throw new HttpError(400, `"${part}" is not a valid URL path segment`);
  }
}

function tenant(principal: Principal | undefined): string {
  if (principal === undefined) throw unauthenticated('a bearer token is needed');
  return principal.tenant;
}

function routes(api: InferenceApi): [RegExp, Route[]][] {
  const table: [string, Route[]][] = [
    ['/v2/health/live', [{ method: 'GET', scope: 'public', handle: () => Promise.resolve({ body: { live: true } }) }]],
    [
      '/v2/health/ready',
      [
        {
          method: 'GET',
          scope: 'public',
          handle: () =>
            Promise.resolve(
              api.ready()
                ? { body: { ready: true } }
                : {
                    status: 503,
                    body: { ready: false, error: 'the replica is not serving every model it is meant to yet' },
                  },
            ),
        },
      ],
    ],
    ['/v2/?', [{ method: 'GET', scope: 'public', handle: () => Promise.resolve({ body: api.serverMetadata() }) }]],
    [
      '/v2/models/stats',
      [
        {
          method: 'GET',
          scope: 'models:read',
          handle: (_m, p) =>
            Promise.resolve({ body: { model_stats: api.stats(tenant(p), '', '').map(encodeJsonStats) } }),
        },
      ],
    ],
    [
      modelPath,
      [
        {
          method: 'GET',
          scope: 'models:read',
          handle: (m, p) =>
            Promise.resolve({ body: encodeJsonMetadata(api.modelMetadata(tenant(p), decode(m[1]), decode(m[2]))) }),
        },
      ],
    ],
    [
      `${modelPath}/config`,
      [
        {
          method: 'GET',
          scope: 'models:read',
          handle: (m, p) =>
            Promise.resolve({ body: encodeJsonModelConfig(api.modelConfig(tenant(p), decode(m[1]), decode(m[2]))) }),
        },
      ],
    ],
    [
      `${modelPath}/ready`,
      [
        {
          method: 'GET',
          scope: 'models:read',
          handle: (m, p) => {
            const name = decode(m[1]);
            const ready = api.modelReady(tenant(p), name, decode(m[2]));
            return Promise.resolve(
              ready
                ? { body: { name, ready } }
                : { status: 503, body: { name, ready, error: `model "${name}" is not ready` } },
            );
          },
        },
      ],
    ],
    [
      `${modelPath}/stats`,
      [
        {
          method: 'GET',
          scope: 'models:read',
          handle: (m, p) =>
            Promise.resolve({
              body: { model_stats: api.stats(tenant(p), decode(m[1]), decode(m[2])).map(encodeJsonStats) },
            }),
        },
      ],
    ],
    [
      `${modelPath}/infer`,
      [
        {
          method: 'POST',
          scope: 'infer',
          handle: async (m, p, body, signal) => {
            const { request, binaryOutputs } = decodeJsonInfer(
              splitInferBody(await body.bytes(), body.header('inference-header-content-length')),
              signal,
            );
            const { json, binary } = encodeJsonInfer(
              await api.infer(tenant(p), decode(m[1]), decode(m[2]), request),
              binaryOutputs,
            );
            return { body: json, binary };
          },
        },
      ],
    ],
    [
      '/v2/repository/index',
      [
        {
          method: 'POST',
          scope: 'models:read',
          handle: async (_m, p, body) => ({
            body: encodeJsonIndex(api.index(tenant(p), decodeIndexRequest(await body()))),
          }),
        },
      ],
    ],
    [
      `/v2/repository/models/${segment}/load`,
      [
        {
          method: 'POST',
          scope: 'models:write',
          handle: async (m, p, body) => {
            await api.load(tenant(p), decode(m[1]), decodeRepositoryParameters(await body()));
            return { body: {} };
          },
        },
      ],
    ],
    [
      `/v2/repository/models/${segment}/unload`,
      [
        {
          method: 'POST',
          scope: 'models:write',
          handle: async (m, p, body) => {
            const parameters = decodeRepositoryParameters(await body());
            await api.unload(tenant(p), decode(m[1]), parameters['unload_dependents'] === 'true');
            return { body: {} };
          },
        },
      ],
    ],
  ];
  return table.map(([pattern, handlers]) => {
    const route = routeTemplate(pattern);
    return [new RegExp(`^${pattern}$`), handlers.map((handler) => ({ ...handler, route }))];
  });
}

/** A route's pattern as the low-cardinality template its spans are named after: `/v2/models/{model}[/versions/{version}]/infer`. */
function routeTemplate(pattern: string): string {
  return pattern
    .replace(modelPath, '/v2/models/{model}[/versions/{version}]')
    .replace(segment, '{model}')
    .replace('/v2/?', '/v2');
}

/** The request's URL; a request target that is no URL (`http://x:99999/`, say) is the caller's fault. */
function requestUrl(req: IncomingMessage): URL {
  try {
    return new URL(req.url ?? '/', 'http://localhost');
  } catch {
    throw new HttpError(400, `the request target ${JSON.stringify(req.url)} is not a valid URL`);
  }
}

async function authenticate(
  req: IncomingMessage,
  authenticator: Authenticator | undefined,
  scope: Scope,
  what: string,
): Promise<Principal> {
  const header = req.headers.authorization;
  if (header === undefined)
    throw unauthenticated(`${what} needs a bearer token with scope "${scope}" (Authorization: Bearer <token>)`);
  if (authenticator === undefined)
    throw unauthenticated(`${what} needs scope "${scope}" but this server has no authenticator configured`);
  const metadata = new grpc.Metadata();
  try {
    metadata.set('authorization', header);
  } catch {
    throw unauthenticated(`${what}: the Authorization header has characters no token has; send "Bearer <token>"`);
  }
  const principal = await authenticator(metadata);
  requireScope(principal, scope, what);
  return principal;
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

function bodyOf(req: IncomingMessage, limit: number): Body {
  let read: Promise<Buffer | undefined> | undefined;
  const bytes = (): Promise<Buffer | undefined> => (read ??= readBody(req, limit));
  const json = async (): Promise<Json> => {
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

function send(res: ServerResponse, status: number, body: Json, close = false, binary: readonly Buffer[] = []): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  const jsonLength = Buffer.byteLength(text);
  const binaryLength = binary.reduce((n, b) => n + b.length, 0);
  res.writeHead(status, {
    ...(binary.length === 0
      ? { 'content-type': 'application/json' }
      : { 'content-type': 'application/octet-stream', 'inference-header-content-length': jsonLength }),
    'content-length': jsonLength + binaryLength,
    ...(close ? { connection: 'close' } : {}),
  });
  if (binary.length === 0) {
    res.end(text);
    return;
  }
  res.write(text);
  for (const part of binary) res.write(part);
  res.end();
}

/**
 * A REST request's cancellation: aborted when the client goes away before its answer is written.
 * Not an AbortController: Node 20 makes one per request costly (see service-kit's
 * `ctx.cancellation`, where one per gRPC call brought a full mark-compact every ~50 PP-OCR requests),
 * and, for the same reason, no closure is made per request: one shared 'close' listener, attached
 * only while someone listens, finds the cancellation by its response.
 */
class ResponseCancellation implements CancelSignal {
  readonly #res: ServerResponse;
  #listeners: AbortListeners | undefined = undefined;
  #fired = false;

  constructor(res: ServerResponse) {
    this.#res = res;
  }

  get aborted(): boolean {
    return this.#fired || ((this.#res.destroyed || this.#res.closed) && !this.#res.writableFinished);
  }

  addEventListener(type: 'abort', listener: () => void): void {
    if (type !== 'abort' || this.aborted) return;
    if (!(this.#listeners ??= new AbortListeners()).add(listener)) return;
    cancellations.set(this.#res, this);
    this.#res.on('close', ResponseCancellation.#onClose);
  }

  removeEventListener(type: 'abort', listener: () => void): void {
    if (type === 'abort' && this.#listeners?.remove(listener) === true) this.#detach();
  }

  #detach(): void {
    cancellations.delete(this.#res);
    this.#res.removeListener('close', ResponseCancellation.#onClose);
  }

  static #onClose(this: ServerResponse): void {
    const cancellation = cancellations.get(this);
    if (cancellation === undefined || this.writableFinished) return;
    cancellation.#fired = true;
    cancellation.#detach();
    cancellation.#listeners?.fire();
  }
}

/** Responses whose cancellation has listeners, to it (for the one shared 'close' listener). */
const cancellations = new Map<ServerResponse, ResponseCancellation>();

export async function startRestServer(options: RestServerOptions): Promise<RestServer> {
  const limit = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const table = routes(options.api);
  const { logger } = options;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = requestUrl(req);
    const entry = table.find(([pattern]) => pattern.test(url.pathname));
    if (entry === undefined) throw new HttpError(404, `no such endpoint: ${req.method ?? ''} ${url.pathname}`);
    const [pattern, candidates] = entry;
    const route = candidates.find((r) => r.method === req.method);
    if (route === undefined) {
      res.setHeader('allow', candidates.map((r) => r.method).join(', '));
      throw new HttpError(
        405,
        `${url.pathname} takes ${candidates.map((r) => r.method).join(' or ')}, not ${req.method ?? ''}`,
      );
    }
    setHttpRoute(route.method, route.route ?? url.pathname);
    const what = `${route.method} ${url.pathname}`;
    const principal =
      route.scope === 'public' ? undefined : await authenticate(req, options.authenticator, route.scope, what);
    // The caller hanging up abandons its request: a queued one is dropped by the core.
    const cancellation = new ResponseCancellation(res);
    const match = pattern.exec(url.pathname)!;
    const result = await route.handle(match, principal, bodyOf(req, limit), cancellation);
    send(res, result.status ?? 200, result.body, false, result.binary);
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch((error: unknown) => {
      if (error instanceof HttpError) {
        send(res, error.status, { error: error.message });
        return;
      }
      const mapped = toDomainError(error);
      if (isDomainError(mapped)) {
        send(res, httpStatusOf(mapped.code), { error: mapped.message });
        return;
      }
      const reference = randomBytes(8).toString('hex');
      logger.error({ err: error, method: req.method, url: req.url, reference }, 'unhandled error in a REST request');
      send(res, 500, { error: `internal error (error id ${reference})` });
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
    refuse: (res) => send(res, 503, { error: 'the server is shutting down' }, true),
  });
}
