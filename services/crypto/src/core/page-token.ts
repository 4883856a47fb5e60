import { invalidArgument } from '@quanta/service-kit';

/** Opaque to callers: base64url of a small JSON cursor, tagged by what it pages through. */
export function encodePageToken(kind: string, cursor: string): string {
  return Buffer.from(JSON.stringify({ k: kind, c: cursor }), 'utf8').toString('base64url');
}

export function decodePageToken(kind: string, token: string | undefined): string | undefined {
  if (token === undefined || token === '') return undefined;
  try {
    const parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { k?: unknown; c?: unknown };
    if (parsed.k === kind && typeof parsed.c === 'string') return parsed.c;
  } catch {
    // fall through to the error below
  }
  throw invalidArgument('page_token is invalid: pass the next_page_token of a previous page unchanged');
}

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 1000;

export function pageSize(requested: number): number {
  if (!Number.isInteger(requested) || requested < 0)
    throw invalidArgument(`page_size must be a non-negative integer; got ${requested}`);
  return requested === 0 ? DEFAULT_PAGE_SIZE : Math.min(requested, MAX_PAGE_SIZE);
}
