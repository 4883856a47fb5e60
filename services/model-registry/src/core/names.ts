import { invalidArgument } from '@quanta/service-kit';

/** Model, alias and deployment names: see "Names" in registry.proto. */
const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export type NameKind = 'model' | 'alias' | 'deployment';

/** Throws INVALID_ARGUMENT naming the field and the rule. */
export function checkName(kind: NameKind, name: string, field = kind === 'model' ? 'name' : kind): string {
  if (name === '') throw invalidArgument(`${field} is required: a ${kind} name`);
  if (!NAME.test(name)) {
    throw invalidArgument(
      `${field} "${name}" is not a valid ${kind} name: 1 to 63 characters of a-z, 0-9, ".", "_" and "-", ` +
        `starting with a letter or digit`,
    );
  }
  if (kind === 'alias' && /^\d+$/.test(name))
    throw invalidArgument(`${field} "${name}" is all digits: an alias must not look like a version number`);
  return name;
}

/** A parsed model reference: `name`, `name:3` or `name@alias`. */
export type ModelRef =
  | { readonly model: string; readonly kind: 'latest' }
  | { readonly model: string; readonly kind: 'version'; readonly version: number }
  | { readonly model: string; readonly kind: 'alias'; readonly alias: string };

export function parseRef(ref: string, field = 'ref'): ModelRef {
  const trimmed = ref.trim();
  if (trimmed === '') throw invalidArgument(`${field} is required: "name", "name:3" or "name@alias"`);
  const at = trimmed.indexOf('@');
  const colon = trimmed.indexOf(':');
  if (at >= 0 && colon >= 0)
    throw invalidArgument(`${field} "${ref}" has both ":" and "@": use "name:3" or "name@alias"`);
  if (at >= 0) {
    const model = checkName('model', trimmed.slice(0, at), field);
    return { model, kind: 'alias', alias: checkName('alias', trimmed.slice(at + 1), `${field} alias`) };
  }
  if (colon >= 0) {
    const model = checkName('model', trimmed.slice(0, colon), field);
    const text = trimmed.slice(colon + 1);
    const version = /^\d{1,9}$/.test(text) ? Number(text) : 0;
    if (version < 1) throw invalidArgument(`${field} "${ref}": the version after ":" must be a number from 1`);
    return { model, kind: 'version', version };
  }
  return { model: checkName('model', trimmed, field), kind: 'latest' };
}

export function formatRef(ref: ModelRef): string {
  switch (ref.kind) {
    case 'latest':
      return ref.model;
    case 'version':
      return `${ref.model}:${ref.version}`;
    case 'alias':
      return `${ref.model}@${ref.alias}`;
  }
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Lower-cases and checks a hex sha256; empty stays empty (not given). */
export function checkSha256(value: string, field: string): string {
  const v = value.trim().toLowerCase();
  if (v === '') return '';
  if (!SHA256_HEX.test(v)) throw invalidArgument(`${field} "${value}" is not a sha256: 64 hex digits`);
  return v;
}

const TAG_KEY = /^[A-Za-z0-9][A-Za-z0-9._/:-]{0,127}$/;

export function checkTags(tags: Readonly<Record<string, string>>, field: string): Record<string, string> {
  for (const [key, value] of Object.entries(tags)) {
    if (!TAG_KEY.test(key))
      throw invalidArgument(
        `${field} key "${key}" is invalid: 1 to 128 characters of A-Z, a-z, 0-9, ".", "_", "/", ":" and "-"`,
      );
    if (value.length > 1024) throw invalidArgument(`${field} "${key}" has a value over 1024 characters`);
  }
  return { ...tags };
}
