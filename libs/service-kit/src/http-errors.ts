import type { ServerResponse } from 'node:http';
import { DomainError, type ErrorCode } from './errors.js';

/**
 * An HTTP front end's own refusal, before a core is reached: a bad path, a body over the limit, a
 * method the route does not take. Cores never throw it; they throw DomainErrors, which
 * `httpErrorOf` maps.
 */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

const HTTP_STATUS: Partial<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: 400,
  FAILED_PRECONDITION: 400,
  OUT_OF_RANGE: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  ABORTED: 409,
  RESOURCE_EXHAUSTED: 429,
  // 499 is nginx's "client closed request": nobody reads it, but logs tell it apart from a 500.
  CANCELLED: 499,
  UNIMPLEMENTED: 501,
  UNAVAILABLE: 503,
  DEADLINE_EXCEEDED: 504,
};

/** The HTTP status of a domain error code (500 for INTERNAL, UNKNOWN, DATA_LOSS). */
export function httpStatusOf(code: ErrorCode): number {
  return HTTP_STATUS[code] ?? 500;
}

/**
 * The HttpError for what a handler threw: an HttpError as it is, a DomainError with its mapped
 * status and details as headers; anything else is not ours to describe (undefined: answer 500
 * with a reference and log it).
 */
export function httpErrorOf(error: unknown): HttpError | undefined {
  if (error instanceof HttpError) return error;
  if (error instanceof DomainError) return new HttpError(httpStatusOf(error.code), error.message, error.details);
  return undefined;
}

/** Sends `{"error": message}` with the error's status and headers, unless the response has begun. */
export function sendHttpError(res: ServerResponse, error: HttpError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ error: error.message });
  res.writeHead(error.status, {
    ...error.headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}
