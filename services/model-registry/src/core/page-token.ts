import { invalidArgument } from '@quanta/service-kit';

/** Opaque to callers: base64url of a small JSON cursor, bound to what it pages through and its filters. */
export function encodePageToken(scope: string, cursor: string): string {
  return Buffer.from(JSON.stringify({ s: scope, c: cursor }), 'utf8').toString('base64url');
}

export function decodePageToken(scope: string, token: string): string | undefined {
  if (token === '') return undefined;
  try {
    const parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { s?: unknown; c?: unknown };
    if (parsed.s === scope && typeof parsed.c === 'string') return parsed.c;
  } catch {
    // the error below says it all
  }
  throw invalidArgument(
    'page_token is invalid: pass the next_page_token of a previous page unchanged, with the same filters',
  );
}

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 1000;

export function pageSize(requested: number): number {
  return requested === 0 ? DEFAULT_PAGE_SIZE : Math.min(requested, MAX_PAGE_SIZE);
}
