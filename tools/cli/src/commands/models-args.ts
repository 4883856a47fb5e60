import { CliError } from '../errors.js';

/** Commander's collector for a repeatable option: each occurrence appends to the list. */
export const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** `k=v` (or a bare `k`, an empty value) into a tag map. */
export function parseTags(items: readonly string[] | undefined): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const item of items ?? []) {
    const eq = item.indexOf('=');
    const key = eq < 0 ? item : item.slice(0, eq);
    if (key === '') throw new CliError(`tag "${item}" has no key: write KEY=VALUE`, 2);
    tags[key] = eq < 0 ? '' : item.slice(eq + 1);
  }
  return tags;
}

export function parseWhole(text: string, what: string): number {
  if (!/^\d+$/.test(text)) throw new CliError(`${what} must be a whole number, got "${text}"`, 2);
  return Number(text);
}
